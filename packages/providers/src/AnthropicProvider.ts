/**
 * The Anthropic `LlmProvider`: the Messages API through the official `@anthropic-ai/sdk`.
 *
 * What the port has and the Messages API does not: `seed` (ignored: Anthropic samples without
 * one), `response_format: json_object` (refused: Anthropic's structured output needs a schema;
 * `json_schema` goes out as `output_config.format`) and embeddings (no `embed`: Anthropic has
 * no embeddings API).
 */
import Anthropic, { APIError } from "@anthropic-ai/sdk"
import type {
  ContentBlockParam,
  MessageCreateParamsNonStreaming,
  MessageParam,
  RawMessageStreamEvent,
  TextBlockParam,
  Tool,
  ToolChoice
} from "@anthropic-ai/sdk/resources/messages"
import { Errors, Pulls, Spans, type LlmRequest, type Usage } from "@tidyllm/core"
import * as LlmProvider from "@tidyllm/corporate-llm/LlmProvider"
import { Effect, Either, Predicate, Redacted, type Scope } from "effect"
import {
  causeChain,
  connectionCodes,
  connectionMessage,
  kindByStatus,
  scrubber,
  scrubError,
  socketCodes,
  stringProperty,
  timeoutCodes
} from "./internal/errors.js"
import { retryAfterField, retryAfterMs } from "./internal/retryAfter.js"
import { clientSpan } from "./internal/spans.js"
import { abandoned, iteratorPull, timedPromise, TimedOut, within } from "./internal/timed.js"

/** Adapter options the app decides. */
export interface Options {
  /** Provider name to register under (default `anthropic`). */
  readonly name?: string
  /** `providers.anthropic.api_key` / `ANTHROPIC_API_KEY`; without it the provider reports itself unconfigured. */
  readonly apiKey?: Redacted.Redacted<string> | undefined
  /** The API's base URL, `https://api.anthropic.com` in production. */
  readonly baseUrl: string
}

/** Who a failure belongs to, for {@link toProviderError}. */
export interface ErrorContext {
  readonly provider: string
  readonly model: string
}

/** The request body of a call, as the Messages API takes it (without `stream`). */
export type MessagesRequest = Omit<MessageCreateParamsNonStreaming, "stream">

// ---------------------------------------------------------------------------------------------
// Errors

/** Anthropic's `error.type` names; they decide when there is no HTTP status (a mid-stream `error` event). */
const kindByApiType: ReadonlyMap<string, Errors.ProviderErrorKind> = new Map<string, Errors.ProviderErrorKind>([
  ["rate_limit_error", "throttled"],
  ["overloaded_error", "server"],
  ["api_error", "server"],
  ["timeout_error", "timeout"],
  ["invalid_request_error", "validation"],
  ["request_too_large", "validation"],
  ["authentication_error", "auth"],
  ["permission_error", "auth"],
  ["billing_error", "auth"],
  ["not_found_error", "not_found"]
])



/** The kind a broken transport shows, by the codes and messages along the cause chain. */
const transportKind = (chain: ReadonlyArray<unknown>): Errors.ProviderErrorKind | undefined => {
  const codes = chain.flatMap((e) => {
    const code = stringProperty(e, "code")
    return code === undefined ? [] : [code]
  })
  if (codes.some((c) => timeoutCodes.has(c))) return "timeout"
  if (codes.some((c) => connectionCodes.has(c) || socketCodes.has(c) || c.startsWith("ERR_HTTP2"))) return "connection"
  // undici ends a body whose socket closed early with a bare `TypeError: terminated`.
  const messages = chain.flatMap((e) => {
    const message = stringProperty(e, "message")
    return message === undefined ? [] : [message]
  })
  if (messages.some((m) => m === "terminated" || connectionMessage.test(m))) return "connection"
  return undefined
}

/**
 * Maps anything the SDK (or the socket under it) throws to one `ProviderError`: by HTTP status
 * first, then by Anthropic's error type (mid-stream `error` events have no status), then by the
 * SDK's connection errors and the marks of a broken socket.
 */
export const toProviderError = (error: unknown, context: ErrorContext): Errors.ProviderError => {
  if (error instanceof Errors.ProviderError) return error
  const chain = causeChain(error)
  const name = stringProperty(error, "name")
  // Read as properties: `instanceof` narrows to `APIError<any, any, any>`.
  const fromApi = error instanceof APIError
  const status = fromApi && Predicate.hasProperty(error, "status") && typeof error.status === "number" ? error.status : undefined
  const apiType = fromApi ? stringProperty(error, "type") : undefined
  const apiMessage = fromApi ? stringProperty(error, "apiMessage") : undefined
  // The answer's headers (a `Headers`), for the wait a 429 asks for.
  const headers = fromApi && Predicate.hasProperty(error, "headers") && error.headers instanceof Headers ? error.headers : undefined
  const kind: Errors.ProviderErrorKind =
    (status === undefined ? undefined : kindByStatus(status)) ??
      (apiType === undefined ? undefined : kindByApiType.get(apiType)) ??
      (name === "APIConnectionTimeoutError" ? "timeout" : undefined) ??
      transportKind(chain) ??
      (name === "APIConnectionError" ? "connection" : undefined) ??
      "unknown"
  // The SDK's own message for an HTTP error is the status and the whole JSON body; Anthropic's
  // `error.message` says the same in words. Transport errors say more in their causes.
  const message = apiMessage ??
    chain.flatMap((e) => {
      const m = stringProperty(e, "message")
      return m === undefined || m.length === 0 ? [] : [m.replace(/\.$/, "")]
    }).join(": ")
  const code = chain.map((e) => stringProperty(e, "code")).find(Predicate.isNotUndefined)
  const upstreamType = apiType ?? (name !== undefined && name !== "Error" && name !== "TypeError" ? name : code)
  return new Errors.ProviderError({
    message: `Anthropic: ${message.length > 0 ? message : String(error)}`,
    provider: context.provider,
    model: context.model,
    kind,
    retryable: Errors.retryableKinds.has(kind),
    ...(status === undefined ? {} : { upstream_status: status }),
    ...(upstreamType === undefined ? {} : { upstream_type: upstreamType }),
    ...retryAfterField(headers === undefined ? undefined : retryAfterMs((name) => headers.get(name)))
  })
}

const validationError = (message: string, context: ErrorContext): Errors.ProviderError =>
  new Errors.ProviderError({
    message: `Anthropic: ${message}`,
    provider: context.provider,
    model: context.model,
    kind: "validation",
    retryable: false
  })

// ---------------------------------------------------------------------------------------------
// Mapping

/** Anthropic's stop reason in the words OpenAI-style clients expect; unknown ones pass through. */
export const finishReason = (stopReason: string | null | undefined): string => {
  switch (stopReason) {
    case "end_turn":
    case "stop_sequence":
      return "stop"
    case "max_tokens":
    case "model_context_window_exceeded":
      return "length"
    case "tool_use":
      return "tool_calls"
    case "refusal":
      return "content_filter"
    case null:
    case undefined:
      return "unknown"
    default:
      return stopReason
  }
}

interface AnthropicUsage {
  readonly input_tokens?: number | null | undefined
  readonly output_tokens?: number | null | undefined
  readonly cache_creation_input_tokens?: number | null | undefined
  readonly cache_read_input_tokens?: number | null | undefined
}

/** Input tokens as Anthropic bills them: uncached, cache writes and cache reads together. */
const inputTokensOf = (usage: AnthropicUsage | undefined): number | undefined =>
  usage?.input_tokens === undefined || usage.input_tokens === null
    ? undefined
    : usage.input_tokens + (usage.cache_creation_input_tokens ?? 0) + (usage.cache_read_input_tokens ?? 0)

const toolChoiceOf = (choice: LlmRequest.ToolChoice): ToolChoice => {
  switch (choice) {
    case "auto":
      return { type: "auto" }
    case "required":
      return { type: "any" }
    case "none":
      return { type: "none" }
    default:
      return { type: "tool", name: choice.function.name }
  }
}

const toolOf = (tool: LlmRequest.ToolDefinition): Tool => ({
  name: tool.function.name,
  ...(tool.function.description === undefined ? {} : { description: tool.function.description }),
  // The caller's JSON Schema goes out as given; Anthropic validates it (it must be an object schema).
  input_schema: (tool.function.parameters ?? { type: "object" }) as Tool.InputSchema
})

/**
 * The Messages request of a call: `system` messages apart; user and assistant turns
 * alternating (consecutive turns of one role merged into one message's blocks); an assistant's
 * tool calls as `tool_use` blocks and `tool` messages as the user's `tool_result` blocks.
 * Fails (as a validation error) on what Anthropic cannot take: a tool call whose arguments are
 * not JSON, a tool message without `tool_call_id`, a JSON response format without a schema.
 */
export const toMessagesRequest = (
  call: LlmProvider.ProviderCall,
  context: ErrorContext
): Either.Either<MessagesRequest, Errors.ProviderError> => {
  const system: Array<TextBlockParam> = []
  const messages: Array<{ role: "user" | "assistant"; content: Array<ContentBlockParam> }> = []
  for (const [i, m] of call.messages.entries()) {
    if (m.role === "system") {
      // Anthropic refuses empty text blocks.
      if (m.content.length > 0) system.push({ type: "text", text: m.content })
      continue
    }
    const blocks: Array<ContentBlockParam> = []
    if (m.role === "tool") {
      if (m.tool_call_id === undefined) {
        return Either.left(validationError(`messages[${i}] is a tool message without tool_call_id`, context))
      }
      blocks.push({ type: "tool_result", tool_use_id: m.tool_call_id, content: m.content })
    } else {
      if (m.content.length > 0 || m.tool_calls === undefined || m.tool_calls.length === 0) {
        blocks.push({ type: "text", text: m.content })
      }
      for (const [j, toolCall] of (m.role === "assistant" ? m.tool_calls ?? [] : []).entries()) {
        let input: unknown
        try {
          input = JSON.parse(toolCall.function.arguments)
        } catch {
          return Either.left(validationError(
            `messages[${i}].tool_calls[${j}].function.arguments is not valid JSON (tool ${toolCall.function.name})`,
            context
          ))
        }
        blocks.push({ type: "tool_use", id: toolCall.id, name: toolCall.function.name, input })
      }
    }
    const role = m.role === "assistant" ? "assistant" : "user"
    const last = messages.at(-1)
    if (last?.role === role) last.content.push(...blocks)
    else messages.push({ role, content: blocks })
  }

  let outputConfig: MessagesRequest["output_config"] = undefined
  const format = call.response_format
  if (format?.type === "json_object") {
    return Either.left(validationError(
      "response_format json_object is not supported: Anthropic's structured output needs a JSON schema (use json_schema)",
      context
    ))
  }
  if (format?.type === "json_schema") {
    if (format.json_schema.schema === undefined) {
      return Either.left(validationError("response_format json_schema needs json_schema.schema for Anthropic", context))
    }
    outputConfig = { format: { type: "json_schema", schema: format.json_schema.schema } }
  }

  return Either.right({
    model: call.model_id,
    max_tokens: call.max_tokens,
    messages: messages satisfies Array<MessageParam>,
    ...(system.length === 0 ? {} : { system }),
    ...(call.temperature === undefined ? {} : { temperature: call.temperature }),
    ...(call.top_p === undefined ? {} : { top_p: call.top_p }),
    ...(call.stop === undefined || call.stop.length === 0 ? {} : { stop_sequences: [...call.stop] }),
    ...(call.tools === undefined || call.tools.length === 0 ? {} : { tools: call.tools.map(toolOf) }),
    ...(call.tool_choice === undefined ? {} : { tool_choice: toolChoiceOf(call.tool_choice) }),
    ...(outputConfig === undefined ? {} : { output_config: outputConfig })
  })
}

/**
 * Folds the Messages stream into the port's events. Tool calls are numbered among tool blocks
 * only (a text block before them takes no number), as OpenAI numbers them.
 */
const streamMapper = () => {
  const toolIndexByBlock = new Map<number, number>()
  let inputTokens = 0
  let outputTokens = 0
  let usageSent = false
  let finishSent = false
  let stopped = false
  const step = (event: RawMessageStreamEvent): ReadonlyArray<LlmProvider.StreamEvent> => {
    switch (event.type) {
      case "message_start": {
        inputTokens = inputTokensOf(event.message.usage) ?? 0
        outputTokens = event.message.usage?.output_tokens ?? 0
        return []
      }
      case "content_block_start": {
        const block = event.content_block
        if (block.type !== "tool_use") return []
        const index = toolIndexByBlock.size
        toolIndexByBlock.set(event.index, index)
        return [{ _tag: "ToolCallDelta", index, id: block.id, name: block.name, arguments: "" }]
      }
      case "content_block_delta": {
        const delta = event.delta
        if (delta.type === "text_delta") return delta.text.length === 0 ? [] : [{ _tag: "TextDelta", text: delta.text }]
        if (delta.type === "input_json_delta") {
          const index = toolIndexByBlock.get(event.index)
          return index === undefined || delta.partial_json.length === 0
            ? []
            : [{ _tag: "ToolCallDelta", index, arguments: delta.partial_json }]
        }
        return []
      }
      case "message_delta": {
        // `message_delta` counts are cumulative; input appears there only on newer API versions.
        inputTokens = inputTokensOf(event.usage) ?? inputTokens
        outputTokens = event.usage?.output_tokens ?? outputTokens
        const out: Array<LlmProvider.StreamEvent> = []
        if (!usageSent) {
          usageSent = true
          out.push({ _tag: "Usage", usage: { input_tokens: inputTokens, output_tokens: outputTokens } })
        }
        if (!finishSent && event.delta.stop_reason !== null && event.delta.stop_reason !== undefined) {
          finishSent = true
          out.push({ _tag: "Finish", finish_reason: finishReason(event.delta.stop_reason) })
        }
        return out
      }
      case "message_stop": {
        stopped = true
        const out: Array<LlmProvider.StreamEvent> = []
        if (!usageSent) {
          usageSent = true
          out.push({ _tag: "Usage", usage: { input_tokens: inputTokens, output_tokens: outputTokens } })
        }
        if (!finishSent) {
          finishSent = true
          out.push({ _tag: "Finish", finish_reason: "unknown" })
        }
        return out
      }
      default:
        return []
    }
  }
  return { step, stopped: () => stopped }
}

// ---------------------------------------------------------------------------------------------
// Provider

const redactedUrl = (base: string): string => {
  try {
    const url = new URL(base)
    url.username = ""
    url.password = ""
    return url.toString()
  } catch {
    return "(unparseable base URL)"
  }
}

/** Sent when no key is configured: the call still goes out and fails as Anthropic's 401. */
const placeholderKey = "unconfigured"

/** Builds the Anthropic provider (scoped like every adapter; the SDK client itself needs no closing). */
export const make = (options: Options): Effect.Effect<LlmProvider.LlmProvider, never, Scope.Scope> =>
  Effect.gen(function*() {
    const name = options.name ?? "anthropic"
    const secret = options.apiKey === undefined ? undefined : Redacted.value(options.apiKey)
    // The SDK client holds no sockets of its own (Node's global `fetch` pools them) and needs no
    // closing; in-flight requests are aborted by their own fibers' interruption.
    const client = new Anthropic({
      apiKey: secret ?? placeholderKey,
      baseURL: options.baseUrl,
      // The gateway owns retries (backoff, failover); the SDK's own would multiply them.
      maxRetries: 0,
      // An explicit timeout also keeps the SDK from refusing non-streaming calls with a large
      // `max_tokens`; the gateway's per-attempt timeout is the one that matters.
      timeout: 10 * 60 * 1000
    })
    const contextOf = (call: LlmProvider.ProviderCall): ErrorContext => ({ provider: name, model: call.model_id })
    // An upstream may echo the key back in an error message: every failure of both calls is
    // scrubbed, inside their spans.
    const scrub = scrubError(scrubber([secret]))

    const chatSpan = clientSpan("anthropic", "chat", options.baseUrl)

    const timedOut = (call: LlmProvider.ProviderCall) => () => LlmProvider.timedOut(name, call.model.id, call.timeout_ms ?? 0)

    const complete = (call: LlmProvider.ProviderCall) => Effect.gen(function*() {
      yield* Spans.annotate({ provider: name, model: call.model_id, "gen_ai.request.model": call.model_id })
      const context = contextOf(call)
      const request = yield* toMessagesRequest(call, context)
      // Interruption, or the call's timeout, aborts the request.
      const message = yield* timedPromise(
        (signal) => client.messages.create({ ...request, stream: false }, { signal }),
        call.timeout_ms,
        timedOut(call),
        (error) => toProviderError(error, context)
      )
      const toolCalls: Array<LlmRequest.ToolCall> = []
      const text: Array<string> = []
      for (const block of message.content) {
        if (block.type === "text") text.push(block.text)
        else if (block.type === "tool_use") {
          toolCalls.push({
            id: block.id,
            type: "function",
            function: { name: block.name, arguments: JSON.stringify(block.input ?? {}) }
          })
        }
      }
      const usage: Usage.TokenUsage = {
        input_tokens: inputTokensOf(message.usage) ?? 0,
        output_tokens: message.usage?.output_tokens ?? 0
      }
      return {
        text: text.join(""),
        usage,
        finish_reason: finishReason(message.stop_reason),
        ...(toolCalls.length === 0 ? {} : { tool_calls: toolCalls })
      } satisfies LlmProvider.Completion
    }).pipe(Effect.mapError(scrub), Spans.span("AnthropicProvider.complete", chatSpan))

    const open = (call: LlmProvider.ProviderCall): Pulls.Open<LlmProvider.StreamEvent, Errors.ProviderError> => {
      const context = contextOf(call)
      return Effect.gen(function*() {
        const request = yield* toMessagesRequest(call, context)
        // One controller for the whole exchange: aborting it after the headers still closes the
        // body's socket, so a consumer that stops (or is interrupted) stops the generation.
        const controller = yield* Effect.acquireRelease(
          Effect.sync(() => new AbortController()),
          (controller) => Effect.sync(() => controller.abort(abandoned))
        )
        // The call's timeout, with a plain timer per wait: for the response to start, then for each event.
        const ms = call.timeout_ms
        const failure = (error: unknown) => (error instanceof TimedOut ? timedOut(call)() : toProviderError(error, context))
        const events = yield* Effect.tryPromise({
          try: () => within(client.messages.create({ ...request, stream: true }, { signal: controller.signal }), ms),
          catch: failure
        })
        // Not `Stream.fromAsyncIterable`: its finalizer awaits `iterator.return()`, which an async
        // generator queues behind the pending `next()`, so interruption would wait for the model.
        const iterator = events[Symbol.asyncIterator]()
        const mapper = streamMapper()
        const pull = iteratorPull({
          next: () => iterator.next(),
          ms,
          failure,
          finish: scrub,
          // A body that ends without `message_stop` is a cut answer (a proxy closed it cleanly, or
          // the SDK swallowed an abort), never a complete one.
          map: (event: RawMessageStreamEvent | undefined) =>
            event !== undefined
              ? Either.right(mapper.step(event))
              : mapper.stopped()
              ? Either.right([])
              : Either.left(new Errors.ProviderError({
                message: "Anthropic: the stream ended before message_stop",
                provider: context.provider,
                model: context.model,
                kind: "stream",
                retryable: true
              }))
        })
        return pull
      }).pipe(
        Effect.mapError(scrub),
        Pulls.span("AnthropicProvider.stream", { ...chatSpan, attributes: { ...chatSpan.attributes, provider: name, model: call.model_id, "gen_ai.request.model": call.model_id } })
      )
    }
    const stream = (call: LlmProvider.ProviderCall) => Pulls.toStream(open(call))

    const detail = [
      `Anthropic Messages API at ${redactedUrl(options.baseUrl)}`,
      secret === undefined ? "unconfigured: ANTHROPIC_API_KEY / providers.anthropic.api_key missing" : undefined
    ].filter(Predicate.isNotUndefined).join(", ")

    return {
      name,
      mock: false,
      timed: true,
      complete,
      stream,
      open,
      health: Effect.succeed({ configured: secret !== undefined, detail })
    } satisfies LlmProvider.LlmProvider
  })

/**
 * The OpenAI `LlmProvider`, and the same adapter for any OpenAI-compatible server (vLLM, Ollama,
 * LM Studio, llama.cpp server): chat completions, plain and streamed, over an undici pool of its
 * own (`internal/jsonPost.ts`, `internal/sse.ts`), their failures mapped as the official `openai`
 * client maps them; embeddings through that client.
 */
import { Errors, Pulls, Spans, type LlmRequest, type Usage } from "@tidyllm/core"
import * as LlmProvider from "@tidyllm/corporate-llm/LlmProvider"
import { Chunk, Effect, Either, Option, Predicate, Redacted, type Scope } from "effect"
import type { EventSourceMessage } from "eventsource-parser"
import type { Dispatcher } from "undici"
import {
  APIConnectionError,
  APIConnectionTimeoutError,
  APIError,
  APIUserAbortError,
  AuthenticationError,
  BadRequestError,
  ConflictError,
  InternalServerError,
  NotFoundError,
  OpenAI,
  PermissionDeniedError,
  RateLimitError,
  UnprocessableEntityError
} from "openai"
import {
  causeChain,
  connectionCodes,
  connectionMessage,
  kindByStatus,
  scrubber,
  scrubError,
  socketCodes,
  stringProperty
} from "./internal/errors.js"
import { endpoint, headerOf, postJson, postStreaming } from "./internal/jsonPost.js"
import { retryAfterField, retryAfterMs } from "./internal/retryAfter.js"
import { abandoned, EmitterSignal, timedPromise, TimedOut, within } from "./internal/timed.js"
import { eventReader } from "./internal/sse.js"
import { clientSpan } from "./internal/spans.js"

/** Adapter options the app decides. */
export interface Options {
  /** The name requests use: `openai`, or the server's key under `providers.openai_compatible` (e.g. `ollama`). */
  readonly name: string
  /** The API root, `…/v1`. */
  readonly baseUrl: string
  readonly apiKey?: Redacted.Redacted<string> | undefined
  readonly organization?: string | undefined
  readonly project?: string | undefined
  /** `openai`: unconfigured without an api key. `compatible`: configured by its base URL alone. */
  readonly flavour: "openai" | "compatible"
}

/** Who a failure belongs to, for {@link toProviderError}. */
export interface ErrorContext {
  readonly provider: string
  readonly model: string
}

// ---------------------------------------------------------------------------------------------
// Errors

/** Upstream error codes that say more than their HTTP status. */
const kindByCode: ReadonlyMap<string, Errors.ProviderErrorKind> = new Map<string, Errors.ProviderErrorKind>([
  // A 429 that no retry cures: the account has no credit left. Not retryable, so the gateway fails over at once.
  ["insufficient_quota", "auth"]
])

/**
 * Error types and codes of an `error` event inside a stream, which comes without a status.
 * (With a status, the status decides: OpenAI calls its 401s and 404s `invalid_request_error` too.)
 */
const kindByType: ReadonlyMap<string, Errors.ProviderErrorKind> = new Map<string, Errors.ProviderErrorKind>([
  ["rate_limit_exceeded", "throttled"],
  ["server_error", "server"],
  ["invalid_request_error", "validation"],
  ["context_length_exceeded", "validation"],
  ["model_not_found", "not_found"]
])

const labelOf = (provider: string): string => (provider === "openai" ? "OpenAI" : provider)

/** undici's words for a connection the other side closed mid-answer. */
const cutMessage = /^terminated$|other side closed|socket hang up/i

// `instanceof` alone narrows to `APIError<any, any, any>`.
const isApiError = (u: unknown): u is APIError => u instanceof APIError

// The client's error classes by name, most specific first. Not `constructor.name`: the client sets
// no `name` of its own, and a bundler renames classes whose names collide (the server's bundle
// holds the Anthropic client's classes of the same names).
const apiErrorNames: ReadonlyArray<readonly [new (...args: never) => APIError, string]> = [
  [APIConnectionTimeoutError, "APIConnectionTimeoutError"],
  [APIConnectionError, "APIConnectionError"],
  [APIUserAbortError, "APIUserAbortError"],
  [BadRequestError, "BadRequestError"],
  [AuthenticationError, "AuthenticationError"],
  [PermissionDeniedError, "PermissionDeniedError"],
  [NotFoundError, "NotFoundError"],
  [ConflictError, "ConflictError"],
  [UnprocessableEntityError, "UnprocessableEntityError"],
  [RateLimitError, "RateLimitError"],
  [InternalServerError, "InternalServerError"]
]
const apiErrorName = (error: APIError): string => apiErrorNames.find(([c]) => error instanceof c)?.[1] ?? "APIError"

const kindOfApiError = (error: APIError): Errors.ProviderErrorKind => {
  if (error instanceof APIConnectionTimeoutError) return "timeout"
  // Our own interruption aborted the call; nothing waits for this error, and a retry would be safe.
  if (error instanceof APIUserAbortError || error instanceof APIConnectionError) return "connection"
  const code = typeof error.code === "string" ? error.code : undefined
  const byCode = code === undefined ? undefined : kindByCode.get(code)
  if (byCode !== undefined) return byCode
  if (error.status !== undefined) return kindByStatus(error.status) ?? (error.status === 422 ? "validation" : "unknown")
  // An `error` event inside a stream; one that names nothing we know still broke the answer off.
  return (code === undefined ? undefined : kindByType.get(code)) ??
    (error.type === undefined ? undefined : kindByType.get(error.type)) ??
    "stream"
}

/**
 * Maps anything the `openai` client (or the socket under it) throws to one `ProviderError`: by
 * the client's error class and the upstream `error.code` / `error.type`, then HTTP status, then
 * the marks of a broken connection anywhere in the cause chain.
 */
export const toProviderError = (error: unknown, context: ErrorContext): Errors.ProviderError => {
  if (error instanceof Errors.ProviderError) return error
  const chain = causeChain(error)
  const codes = chain.flatMap((e) => {
    const code = stringProperty(e, "code")
    return code === undefined ? [] : [code]
  })
  const messages = chain.flatMap((e) => {
    const message = stringProperty(e, "message") ?? (typeof e === "string" ? e : undefined)
    return message === undefined || message.length === 0 ? [] : [message]
  })
  // "Connection error: fetch failed: other side closed": the cause says what the wrapper does not.
  const message = messages.length === 0
    ? String(error)
    : messages.map((m, i) => (i < messages.length - 1 ? m.replace(/\.$/, "") : m)).join(": ")
  const brokenConnection = codes.some((code) => connectionCodes.has(code) || socketCodes.has(code)) ||
    messages.some((m) => connectionMessage.test(m) || cutMessage.test(m))
  const name = stringProperty(error, "name")
  let kind: Errors.ProviderErrorKind
  let status: number | undefined
  let upstreamType: string | undefined
  if (isApiError(error)) {
    kind = kindOfApiError(error)
    status = error.status
    upstreamType = error instanceof APIConnectionError
      ? codes[0] ?? apiErrorName(error)
      : (typeof error.code === "string" ? error.code : undefined) ?? error.type ?? apiErrorName(error)
  } else {
    kind = codes.includes("ETIMEDOUT") || codes.includes("UND_ERR_HEADERS_TIMEOUT") || codes.includes("UND_ERR_BODY_TIMEOUT")
      ? "timeout"
      : brokenConnection || name === "AbortError"
      ? "connection"
      // A chunk that is not JSON: the answer could not be read; another attempt may read it.
      : name === "SyntaxError"
      ? "stream"
      : "unknown"
    upstreamType = codes[0] ?? (name !== undefined && name !== "Error" ? name : undefined)
  }
  return new Errors.ProviderError({
    message: `${labelOf(context.provider)}: ${message}`,
    provider: context.provider,
    model: context.model,
    kind,
    retryable: Errors.retryableKinds.has(kind),
    ...(status === undefined ? {} : { upstream_status: status }),
    ...(upstreamType === undefined ? {} : { upstream_type: upstreamType })
  })
}

/**
 * The error of a non-2xx answer to a request (plain or streamed), as the `openai` client would make it: the
 * upstream's `error.message` after the status, its `error.code` (else `error.type`) as the
 * upstream type, and the kind by code, then by status.
 */
export const httpError = (status: number, text: string, context: ErrorContext, retryAfter?: number): Errors.ProviderError => {
  let body: unknown = undefined
  try {
    body = JSON.parse(text)
  } catch {
    // Not JSON: the text itself says what went wrong.
  }
  const error = Predicate.hasProperty(body, "error") ? body.error : body
  const code = stringProperty(error, "code")
  const type = stringProperty(error, "type")
  const detail = stringProperty(error, "message") ??
    (typeof error === "string" ? error : text.trim().length > 0 ? text.trim().slice(0, 500) : "status code (no body)")
  const kind = (code === undefined ? undefined : kindByCode.get(code)) ?? kindByStatus(status) ?? (status === 422 ? "validation" : "unknown")
  const upstreamType = code ?? type
  return new Errors.ProviderError({
    message: `${labelOf(context.provider)}: ${status} ${detail}`,
    provider: context.provider,
    model: context.model,
    kind,
    retryable: Errors.retryableKinds.has(kind),
    upstream_status: status,
    ...(upstreamType === undefined ? {} : { upstream_type: upstreamType }),
    ...retryAfterField(retryAfter)
  })
}

// ---------------------------------------------------------------------------------------------
// Mapping

const toMessage = (
  m: LlmRequest.ChatMessage,
  index: number
): Either.Either<OpenAI.ChatCompletionMessageParam, string> => {
  const name = m.name === undefined ? {} : { name: m.name }
  switch (m.role) {
    case "system":
      return Either.right({ role: "system", content: m.content, ...name })
    case "user":
      return Either.right({ role: "user", content: m.content, ...name })
    case "assistant": {
      const toolCalls = m.tool_calls ?? []
      return Either.right({
        role: "assistant",
        // OpenAI wants no content (rather than "") beside the tool calls of a turn that only called tools.
        content: toolCalls.length > 0 && m.content.length === 0 ? null : m.content,
        ...name,
        ...(toolCalls.length === 0 ? {} : {
          tool_calls: toolCalls.map((c) => ({
            id: c.id,
            type: "function" as const,
            function: { name: c.function.name, arguments: c.function.arguments }
          }))
        })
      })
    }
    case "tool":
      return m.tool_call_id === undefined
        ? Either.left(`messages[${index}]: a tool message needs the tool_call_id of the call it answers`)
        : Either.right({ role: "tool", content: m.content, tool_call_id: m.tool_call_id })
  }
}

const toTool = (t: LlmRequest.ToolDefinition): OpenAI.ChatCompletionFunctionTool => ({
  type: "function",
  function: {
    name: t.function.name,
    ...(t.function.description === undefined ? {} : { description: t.function.description }),
    ...(t.function.parameters === undefined ? {} : { parameters: { ...t.function.parameters } })
  }
})

const toResponseFormat = (
  f: LlmRequest.ResponseFormat
): NonNullable<OpenAI.ChatCompletionCreateParamsNonStreaming["response_format"]> => {
  if (f.type !== "json_schema") return { type: f.type }
  const s = f.json_schema
  return {
    type: "json_schema",
    json_schema: {
      name: s.name,
      ...(s.description === undefined ? {} : { description: s.description }),
      ...(s.schema === undefined ? {} : { schema: { ...s.schema } }),
      ...(s.strict === undefined ? {} : { strict: s.strict })
    }
  }
}

/**
 * The chat completion request of a call (without `stream`). OpenAI itself takes
 * `max_completion_tokens` (its reasoning models refuse `max_tokens`); compatible servers know
 * `max_tokens` only. Fails with the reason when the conversation cannot be sent.
 */
export const toChatParams = (
  call: LlmProvider.ProviderCall,
  flavour: Options["flavour"]
): Either.Either<OpenAI.ChatCompletionCreateParamsNonStreaming, string> =>
  Either.all(call.messages.map(toMessage)).pipe(Either.map((messages) => ({
    model: call.model_id,
    messages,
    ...(flavour === "openai" ? { max_completion_tokens: call.max_tokens } : { max_tokens: call.max_tokens }),
    ...(call.temperature === undefined ? {} : { temperature: call.temperature }),
    ...(call.top_p === undefined ? {} : { top_p: call.top_p }),
    ...(call.stop === undefined || call.stop.length === 0 ? {} : { stop: [...call.stop] }),
    ...(call.tools === undefined || call.tools.length === 0 ? {} : { tools: call.tools.map(toTool) }),
    ...(call.tool_choice === undefined
      ? {}
      : { tool_choice: typeof call.tool_choice === "string" ? call.tool_choice : { type: "function" as const, function: { name: call.tool_choice.function.name } } }),
    ...(call.response_format === undefined ? {} : { response_format: toResponseFormat(call.response_format) }),
    ...(call.seed === undefined ? {} : { seed: call.seed })
  })))

const toUsage = (usage: OpenAI.CompletionUsage | null | undefined): Usage.TokenUsage => ({
  input_tokens: usage?.prompt_tokens ?? 0,
  output_tokens: usage?.completion_tokens ?? 0
})

const toToolCalls = (calls: ReadonlyArray<OpenAI.ChatCompletionMessageToolCall> | undefined): ReadonlyArray<LlmRequest.ToolCall> =>
  (calls ?? []).flatMap((c) =>
    c.type === "function"
      ? [{ id: c.id, type: "function" as const, function: { name: c.function.name, arguments: c.function.arguments } }]
      : []
  )

/**
 * The choices of a chunk. Compatible servers are looser than the types: some send the usage
 * chunk without `choices`, or a finish chunk without `delta`.
 */
const choicesOf = (chunk: OpenAI.ChatCompletionChunk): ReadonlyArray<OpenAI.ChatCompletionChunk.Choice> => {
  const choices: ReadonlyArray<OpenAI.ChatCompletionChunk.Choice> | null | undefined = chunk.choices
  return choices ?? []
}

/** The deltas of one chunk of the (only) choice. */
const deltasOf = (chunk: OpenAI.ChatCompletionChunk): ReadonlyArray<LlmProvider.StreamEvent> => {
  const events: Array<LlmProvider.StreamEvent> = []
  for (const choice of choicesOf(chunk)) {
    const delta = choice.delta as OpenAI.ChatCompletionChunk.Choice.Delta | null | undefined
    if (choice.index !== 0 || delta === null || delta === undefined) continue
    const text = delta.content ?? delta.refusal
    if (text !== undefined && text !== null && text.length > 0) events.push({ _tag: "TextDelta", text })
    for (const t of delta.tool_calls ?? []) {
      events.push({
        _tag: "ToolCallDelta",
        index: t.index,
        ...(t.id === undefined ? {} : { id: t.id }),
        ...(t.function?.name === undefined ? {} : { name: t.function.name }),
        arguments: t.function?.arguments ?? ""
      })
    }
  }
  return events
}

const finishOf = (chunk: OpenAI.ChatCompletionChunk): string | undefined => {
  for (const choice of choicesOf(chunk)) {
    if (choice.index === 0 && choice.finish_reason !== null && choice.finish_reason !== undefined) return choice.finish_reason
  }
  return undefined
}

/** The answer of a chat completion; throws on a body that is not one (the caller maps that). */
const toCompletion = (response: OpenAI.ChatCompletion): LlmProvider.Completion | undefined => {
  const choice = response.choices[0]
  if (choice === undefined) return undefined
  const toolCalls = toToolCalls(choice.message.tool_calls)
  return {
    text: choice.message.content ?? choice.message.refusal ?? "",
    usage: toUsage(response.usage),
    finish_reason: choice.finish_reason ?? "unknown",
    ...(toolCalls.length === 0 ? {} : { tool_calls: toolCalls })
  }
}

/** Vectors in input order; throws on a body that is not an embedding list (the caller maps that). */
const toEmbeddings = (response: OpenAI.CreateEmbeddingResponse): LlmProvider.Embeddings => ({
  vectors: [...response.data].sort((a, b) => a.index - b.index).map((d) => d.embedding),
  // Some compatible servers leave usage out.
  input_tokens: (response.usage as OpenAI.CreateEmbeddingResponse.Usage | undefined)?.prompt_tokens ?? 0
})

// ---------------------------------------------------------------------------------------------
// Provider

const redactedUrl = (endpoint: string): string => {
  try {
    const url = new URL(endpoint)
    url.username = ""
    url.password = ""
    return url.toString()
  } catch {
    return "(unparseable URL)"
  }
}

/** The password of a URL's userinfo, as written and decoded. */
const passwordsOf = (endpoint: string): ReadonlyArray<string> => {
  try {
    const password = new URL(endpoint).password
    return password.length === 0 ? [] : [password, decodeURIComponent(password)]
  } catch {
    return []
  }
}

/** Builds the provider; its client lives as long as the scope. */
export const make = (options: Options): Effect.Effect<LlmProvider.LlmProvider, never, Scope.Scope> =>
  Effect.gen(function*() {
    const { name, flavour } = options
    const label = labelOf(name)
    const apiKey = options.apiKey === undefined ? undefined : Redacted.value(options.apiKey)
    const missingKey = flavour === "openai" && (apiKey === undefined || apiKey.length === 0)

    // Every option is given, so the client reads no `OPENAI_*` variable of its own. It holds no
    // sockets of its own (fetch's pool is global), so there is nothing to release with the scope.
    const client = yield* Effect.sync(() =>
      new OpenAI({
          baseURL: options.baseUrl,
          // The client insists on a key; a keyless compatible server gets no Authorization header at all.
          apiKey: apiKey ?? "unused",
          organization: options.organization ?? null,
          project: options.project ?? null,
          webhookSecret: null,
          // The gateway owns retries (backoff, failover); the client's own would multiply them.
          maxRetries: 0,
          // Covers only the wait for response headers; the gateway's per-attempt timeout interrupts
          // (and so aborts) long before, this is the backstop for a caller without one.
          timeout: 10 * 60 * 1000,
          // The gateway logs and audits; the client would otherwise print SSE parse failures, and
          // prompts under OPENAI_LOG=debug.
          logLevel: "off",
          ...(apiKey === undefined ? { defaultHeaders: { Authorization: null } } : {})
        })
    )

    // Plain chat completions go over a pool of their own (see `internal/jsonPost.ts`); its sockets
    // are closed with the scope.
    const target = yield* Effect.acquireRelease(
      Effect.sync(() => endpoint(options.baseUrl)),
      (t) => Effect.promise(() => t.pool.destroy())
    )
    const headers: Readonly<Record<string, string>> = {
      "content-type": "application/json",
      accept: "application/json",
      "user-agent": "tidyllm-gateway",
      ...(apiKey === undefined ? {} : { authorization: `Bearer ${apiKey}` }),
      ...(options.organization === undefined ? {} : { "openai-organization": options.organization }),
      ...(options.project === undefined ? {} : { "openai-project": options.project })
    }

    // A server may echo the key (or the base URL's password) back in an error message: every
    // failure of the three calls is scrubbed, inside their spans.
    const scrub = scrubError(scrubber([apiKey, ...passwordsOf(options.baseUrl)]))

    const contextOf = (model: string): ErrorContext => ({ provider: name, model })
    const keyMissing = (context: ErrorContext) =>
      new Errors.ProviderError({
        message: `${label}: no API key (OPENAI_API_KEY / providers.openai.api_key is missing)`,
        ...context,
        kind: "auth",
        retryable: false
      })
    const requireKey = (context: ErrorContext): Effect.Effect<void, Errors.ProviderError> =>
      missingKey ? Effect.fail(keyMissing(context)) : Effect.void
    /** A 200 whose body is not what the API promises: a broken server or proxy; another attempt may do better. */
    const malformed = (context: ErrorContext, what: string, kind: "server" | "stream" = "server") => (cause: unknown) => {
      const detail = stringProperty(cause, "message")
      return new Errors.ProviderError({
        message: `${label}: ${what}${detail === undefined ? "" : ` (${detail})`}`,
        ...context,
        kind,
        retryable: true
      })
    }
    const paramsOf = (call: LlmProvider.ProviderCall, context: ErrorContext) =>
      toChatParams(call, flavour).pipe(Either.mapLeft((reason) =>
        new Errors.ProviderError({ message: `${label}: ${reason}`, ...context, kind: "validation", retryable: false })
      ))

    // A compatible server (vLLM, Ollama…) is its own GenAI system, named as configured.
    const system = flavour === "openai" ? "openai" : name
    const chatSpan = clientSpan(system, "chat", options.baseUrl)

    /** The answer of a finished call: the completion, or why there is none. */
    const answerOf = (answer: { readonly status: number; readonly text: string; readonly header: (name: string) => string | undefined }, context: ErrorContext): Effect.Effect<LlmProvider.Completion, Errors.ProviderError> => {
      if (answer.status < 200 || answer.status > 299) return Effect.fail(httpError(answer.status, answer.text, context, retryAfterMs(answer.header)))
      let completion: LlmProvider.Completion | undefined
      try {
        completion = toCompletion(JSON.parse(answer.text) as OpenAI.ChatCompletion)
      } catch (error) {
        return Effect.fail(malformed(context, "the answer is not a chat completion")(error))
      }
      return completion === undefined ? Effect.fail(malformed(context, "the answer has no choices")(undefined)) : Effect.succeed(completion)
    }

    // Plain steps rather than a generator: this runs for every request (docs/performance.md).
    const complete = (call: LlmProvider.ProviderCall) =>
      Spans.annotateThen(
        () => ({ provider: name, model: call.model_id, "gen_ai.request.model": call.model_id }),
        (): Effect.Effect<LlmProvider.Completion, Errors.ProviderError> => {
          const context = contextOf(call.model_id)
          if (missingKey) return Effect.fail(keyMissing(context))
          const params = paramsOf(call, context)
          if (Either.isLeft(params)) return Effect.fail(params.left)
          // Interruption, or the call's timeout, aborts the request (or the read of its body).
          const ms = call.timeout_ms
          return Effect.flatMap(
            timedPromise(
              (signal) => postJson(target, "/chat/completions", headers, JSON.stringify(params.right), signal),
              ms,
              () => LlmProvider.timedOut(name, call.model.id, ms ?? 0),
              (error) => toProviderError(error, context),
              () => new EmitterSignal()
            ),
            (answer) => answerOf(answer, context)
          )
        }
      ).pipe(Effect.mapError(scrub), Spans.span("OpenAiProvider.complete", chatSpan))

    const streamHeaders: Readonly<Record<string, string>> = { ...headers, accept: "text/event-stream" }

    /**
     * The chunks of one event, as the `openai` client reads them: `[DONE]` ends the answer, an
     * `error` inside the data (or an `error` event) is the upstream's failure, anything else is a
     * chunk (text that is not JSON throws its `SyntaxError`, a broken stream).
     */
    const chunkOf = (message: EventSourceMessage): OpenAI.ChatCompletionChunk | "done" | undefined => {
      if (message.data.startsWith("[DONE]")) return "done"
      const data = JSON.parse(message.data) as { readonly error?: object; readonly message?: string } | null
      if (message.event === "error") throw new APIError(undefined, data?.error, data?.message, undefined)
      if (message.event !== undefined && message.event.startsWith("thread.")) return undefined
      if (data !== null && typeof data === "object" && Boolean(data.error)) throw new APIError(undefined, data.error, undefined, undefined)
      return data as unknown as OpenAI.ChatCompletionChunk
    }

    /**
     * The answer's events, a read of the body per pull (the response has started, 2xx): the text
     * and tool calls as they come, the finish reason and usage at the end.
     */
    const pullOf = (response: Dispatcher.ResponseData, ms: number | undefined, context: ErrorContext, timedOut: () => Errors.ProviderError, bodyEnded: () => void) => {
      const seen: { finish: string | undefined; usage: Usage.TokenUsage | undefined; done: boolean } = { finish: undefined, usage: undefined, done: false }
      const reader = eventReader(response.body)
      /** The events of a read's messages; the body is read on after `[DONE]`, so that its connection can be reused. */
      const eventsOf = (messages: ReadonlyArray<EventSourceMessage>): Either.Either<Array<LlmProvider.StreamEvent>, Errors.ProviderError> => {
        try {
          const events: Array<LlmProvider.StreamEvent> = []
          for (const message of messages) {
            if (seen.done) continue
            const chunk = chunkOf(message)
            if (chunk === "done") seen.done = true
            if (chunk === "done" || chunk === undefined) continue
            events.push(...deltasOf(chunk))
            seen.finish = seen.finish ?? finishOf(chunk)
            // Some servers repeat usage on several chunks; the last one counts.
            if (chunk.usage !== null && chunk.usage !== undefined) seen.usage = toUsage(chunk.usage)
          }
          return Either.right(events)
        } catch (error) {
          return Either.left(isApiError(error) || (error instanceof Error && error.name === "SyntaxError") ? toProviderError(error, context) : malformed(context, "a chunk is not a chat completion chunk", "stream")(error))
        }
      }
      type Pull = Effect.Effect<Chunk.Chunk<LlmProvider.StreamEvent>, Option.Option<Errors.ProviderError>>
      const failWith = (error: Errors.ProviderError): Pull => Effect.fail(Option.some(scrub(error)))
      let over = false
      /**
       * The end of the body. One that just stops ends the events quietly (as the client's iterator
       * does), so the finish reason is what tells a whole answer from a truncated one.
       */
      const ending = (): Pull => {
        over = true
        if (seen.finish === undefined) {
          return failWith(new Errors.ProviderError({ message: `${label}: the stream ended before a finish reason (the answer is truncated)`, ...context, kind: "stream", retryable: true }))
        }
        return Effect.succeed(Chunk.unsafeFromArray<LlmProvider.StreamEvent>([
          { _tag: "Finish", finish_reason: seen.finish },
          ...(seen.usage === undefined ? [] : [{ _tag: "Usage", usage: seen.usage } as const])
        ]))
      }
      /**
       * One stage for the whole answer (each `Stream` stage costs its own setup and teardown): a
       * pull reads the body on until a read completes events, and gives them as one chunk.
       */
      const pull: Pull = Effect.suspend(() =>
        over
          ? Effect.fail(Option.none())
          : Effect.matchEffect(Effect.tryPromise({ try: () => within(reader.next(), ms), catch: (error) => error }), {
            onSuccess: (messages) => {
              if (messages === undefined) {
                bodyEnded()
                return ending()
              }
              const events = eventsOf(messages)
              if (Either.isLeft(events)) return failWith(events.left)
              return events.right.length === 0 ? pull : Effect.succeed(Chunk.unsafeFromArray(events.right))
            },
            // Only the `[DONE]` line is missing: the answer is whole. Otherwise the socket's error
            // ("other side closed") says what broke, this says when.
            onFailure: (error) =>
              error instanceof TimedOut
                ? failWith(timedOut())
                : seen.finish !== undefined && seen.usage !== undefined
                ? ending()
                : failWith(toProviderError(new Error("the stream was cut", { cause: error }), context))
          })
      )
      return pull
    }

    // Plain steps rather than a generator: a stream's opening is in its time to first byte.
    const open = (call: LlmProvider.ProviderCall): Pulls.Open<LlmProvider.StreamEvent, Errors.ProviderError> =>
      Effect.suspend((): Pulls.Open<LlmProvider.StreamEvent, Errors.ProviderError> => {
        const context = contextOf(call.model_id)
        if (missingKey) return Effect.fail(keyMissing(context))
        const params = paramsOf(call, context)
        if (Either.isLeft(params)) return Effect.fail(params.left)
        // The call's timeout, with a plain timer per wait: for the response to start, then for each read.
        const ms = call.timeout_ms
        const timedOut = () => LlmProvider.timedOut(name, call.model.id, ms ?? 0)
        const failure = (error: unknown) => (error instanceof TimedOut ? timedOut() : toProviderError(error, context))
        const body = JSON.stringify({ ...params.right, stream: true, stream_options: { include_usage: true } })
        // One controller for the whole exchange: aborting it after the response headers cancels the
        // body, which closes the connection, so an interrupted consumer stops the generation. A body
        // read to its end needs no abort; one that is not is aborted with a reason made once
        // (`abandoned`: a bare `abort()` builds a `DOMException` and its stack, ~1 % of a stream's CPU).
        // An `EmitterSignal`, which undici takes for an `AbortSignal` at a fortieth of its cost.
        const controller = new EmitterSignal()
        let ended = false
        const aborted = Pulls.addFinalizer(() => Effect.sync(() => ended || controller.abort(abandoned)))
        const started = Effect.tryPromise({
          try: () => within(postStreaming(target, "/chat/completions", streamHeaders, body, controller.signal), ms),
          catch: failure
        })
        return Effect.zipRight(aborted, Effect.flatMap(started, (response) => {
          if (response.statusCode >= 200 && response.statusCode <= 299) {
            return Effect.succeed(pullOf(response, ms, context, timedOut, () => {
              ended = true
            }))
          }
          return Effect.flatMap(
            Effect.tryPromise({ try: () => within(response.body.text(), ms), catch: failure }),
            (text) => Effect.fail(httpError(response.statusCode, text, context, retryAfterMs(headerOf(response.headers))))
          )
        }))
      }).pipe(
        Effect.mapError(scrub),
        Pulls.span("OpenAiProvider.stream", { ...chatSpan, attributes: { ...chatSpan.attributes, provider: name, model: call.model_id, "gen_ai.request.model": call.model_id } })
      )

    const stream = (call: LlmProvider.ProviderCall) => Pulls.toStream(open(call))

    const embed = Effect.fn("OpenAiProvider.embed", clientSpan(system, "embeddings", options.baseUrl))(function*(call: LlmProvider.EmbedCall) {
      yield* Spans.annotate({ provider: name, model: call.model_id, "gen_ai.request.model": call.model_id })
      const context = contextOf(call.model_id)
      yield* requireKey(context)
      const response = yield* Effect.tryPromise({
        try: (signal) =>
          client.embeddings.create({
            model: call.model_id,
            input: [...call.input],
            encoding_format: "float",
            ...(call.dimensions === undefined ? {} : { dimensions: call.dimensions })
          }, { signal }),
        catch: (error) => toProviderError(error, context)
      })
      const embeddings = yield* Effect.try({
        try: () => toEmbeddings(response),
        catch: malformed(context, "the answer is not an embedding list")
      })
      if (embeddings.vectors.length !== call.input.length) {
        return yield* Effect.fail(
          malformed(context, `${embeddings.vectors.length} embeddings for ${call.input.length} inputs`)(undefined)
        )
      }
      return embeddings
    }, Effect.mapError(scrub))

    const where = flavour === "openai"
      ? `OpenAI API at ${redactedUrl(options.baseUrl)}`
      : `OpenAI-compatible server at ${redactedUrl(options.baseUrl)}`
    const detail = [
      where,
      `flavour ${flavour}`,
      missingKey
        ? "unconfigured: OPENAI_API_KEY / providers.openai.api_key is missing"
        : apiKey === undefined
        ? "no api key"
        : "api key set",
      options.organization === undefined ? undefined : `organization ${options.organization}`,
      options.project === undefined ? undefined : `project ${options.project}`
    ].filter(Predicate.isNotUndefined).join(", ")

    return {
      name,
      mock: false,
      timed: true,
      complete,
      stream,
      open,
      embed,
      health: Effect.succeed({ configured: !missingKey, detail })
    } satisfies LlmProvider.LlmProvider
  })

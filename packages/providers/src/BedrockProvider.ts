/**
 * The Bedrock `LlmProvider`: the Converse and ConverseStream APIs through
 * `@aws-sdk/client-bedrock-runtime`, one request shape for every Bedrock model family.
 */
import {
  BedrockRuntimeClient,
  ConverseCommand,
  ConverseStreamCommand,
  InvokeModelCommand,
  type BedrockRuntimeClientConfig,
  type ContentBlock,
  type ConverseRequest,
  type ConverseStreamOutput,
  type InferenceConfiguration,
  type Message,
  type SystemContentBlock,
  type TokenUsage,
  type ToolChoice,
  type ToolConfiguration,
  type ToolInputSchema
} from "@aws-sdk/client-bedrock-runtime"
import { NodeHttp2Handler } from "@smithy/node-http-handler"
import { Errors, Pulls, Spans, type Config, type LlmRequest, type Usage } from "@tidyllm/core"
import * as LlmProvider from "@tidyllm/corporate-llm/LlmProvider"
import { Effect, Either, Option, Predicate, Redacted, Schema, type Scope } from "effect"
import { connectionCodes, connectionMessage, kindByStatus, scrubber, scrubError, stringProperty } from "./internal/errors.js"
import { clientSpan } from "./internal/spans.js"
import { abandoned, iteratorPull, timedPromise, TimedOut, within } from "./internal/timed.js"

/** Adapter options the app decides. */
export interface Options {
  /** Provider name to register under (default `bedrock`). */
  readonly name?: string | undefined
  /**
   * Whether the app found credentials for the SDK's default chain (environment, profile, role).
   * The adapter never reads `process.env` itself; static keys in the settings count anyway.
   */
  readonly configured?: boolean | undefined
}

/** Who a failure belongs to, for {@link toProviderError}. */
export interface ErrorContext {
  readonly provider: string
  readonly model: string
}

/** How many Titan InvokeModel calls one `embed` keeps in flight (Titan takes one text per call). */
export const embedConcurrency = 4

// ---------------------------------------------------------------------------------------------
// Errors

const kindByName: ReadonlyMap<string, Errors.ProviderErrorKind> = new Map<string, Errors.ProviderErrorKind>([
  ["throttlingexception", "throttled"],
  ["toomanyrequestsexception", "throttled"],
  ["internalserverexception", "server"],
  ["serviceunavailableexception", "server"],
  // Bedrock asks callers to retry this one: the model is still being loaded.
  ["modelnotreadyexception", "server"],
  ["modeltimeoutexception", "timeout"],
  ["timeouterror", "timeout"],
  ["modelstreamerrorexception", "stream"],
  ["validationexception", "validation"],
  ["accessdeniedexception", "auth"],
  ["unrecognizedclientexception", "auth"],
  ["expiredtokenexception", "auth"],
  ["invalidsignatureexception", "auth"],
  ["credentialsprovidererror", "auth"],
  ["modelerrorexception", "model"],
  ["resourcenotfoundexception", "not_found"]
])

const httpStatusOf = (u: unknown): number | undefined =>
  Predicate.hasProperty(u, "$metadata") && Predicate.hasProperty(u.$metadata, "httpStatusCode") &&
    typeof u.$metadata.httpStatusCode === "number"
    ? u.$metadata.httpStatusCode
    : undefined

/**
 * Maps anything the SDK (or the socket under it) throws to one `ProviderError`, by error name
 * first, then HTTP status, then the marks of a broken connection.
 */
export const toProviderError = (error: unknown, context: ErrorContext): Errors.ProviderError => {
  if (error instanceof Errors.ProviderError) return error
  const name = stringProperty(error, "name")
  const code = stringProperty(error, "code")
  const status = httpStatusOf(error)
  const message = stringProperty(error, "message") ?? String(error)
  const brokenConnection = (code !== undefined && (connectionCodes.has(code) || code.startsWith("ERR_HTTP2"))) ||
    connectionMessage.test(message)
  // The HTTP/2 handler names "the session died before a response" a `TimeoutError` too; it is a
  // broken connection, not a slow model.
  const byName = name === undefined || (name === "TimeoutError" && brokenConnection)
    ? undefined
    : kindByName.get(name.toLowerCase())
  const kind: Errors.ProviderErrorKind = byName ??
    (status === undefined ? undefined : kindByStatus(status)) ??
    (code === "ETIMEDOUT" ? "timeout" : undefined) ??
    (brokenConnection ? "connection" : "unknown")
  // A bare `Error` says nothing; the socket's code says more.
  const upstreamType = name !== undefined && name !== "Error" ? name : code
  return new Errors.ProviderError({
    message: `Bedrock: ${message}`,
    provider: context.provider,
    model: context.model,
    kind,
    retryable: Errors.retryableKinds.has(kind),
    ...(status === undefined ? {} : { upstream_status: status }),
    ...(upstreamType === undefined ? {} : { upstream_type: upstreamType })
  })
}

/** A failure of the call itself, found before anything is sent: never worth a retry. */
const invalidCall = (context: ErrorContext, message: string): Errors.ProviderError =>
  new Errors.ProviderError({
    message: `Bedrock: ${message}`,
    provider: context.provider,
    model: context.model,
    kind: "validation",
    retryable: false
  })

/** An answer that broke off or made no sense: a new attempt may well get a whole one. */
const brokenStream = (context: ErrorContext, message: string): Errors.ProviderError =>
  new Errors.ProviderError({
    message: `Bedrock: ${message}`,
    provider: context.provider,
    model: context.model,
    kind: "stream",
    retryable: true
  })

// ---------------------------------------------------------------------------------------------
// Mapping

/** Bedrock's stop reason in the words OpenAI-style clients expect; unknown ones pass through. */
export const finishReason = (stopReason: string | undefined): string => {
  switch (stopReason) {
    case "end_turn":
    case "stop_sequence":
      return "stop"
    case "max_tokens":
      return "length"
    case "tool_use":
      return "tool_calls"
    case undefined:
      return "unknown"
    default:
      return stopReason
  }
}

const toUsage = (usage: TokenUsage | undefined): Usage.TokenUsage => ({
  input_tokens: usage?.inputTokens ?? 0,
  output_tokens: usage?.outputTokens ?? 0
})

/** The SDK's JSON document type (`@smithy/types` `DocumentType`, which is not our dependency). */
type Document = ToolInputSchema.JsonMember["json"]

/**
 * Our JSON values as the SDK's document type. They are JSON already (decoded from a request or
 * parsed from text); only TypeScript does not know `unknown` values are JSON.
 */
const asDocument = (json: Readonly<Record<string, unknown>>): Document => json as Document

const emptyParameters: Readonly<Record<string, unknown>> = { type: "object", properties: {} }

/** The `toolUse` block of one tool call the model made earlier: its arguments back to JSON. */
const toToolUse = (
  toolCall: LlmRequest.ToolCall,
  context: ErrorContext
): Either.Either<ContentBlock, Errors.ProviderError> => {
  const named = `tool call ${toolCall.id} (${toolCall.function.name})`
  const text = toolCall.function.arguments
  return Either.try({
    // Some clients send "" for a function without parameters.
    try: (): unknown => (text.trim() === "" ? {} : JSON.parse(text)),
    catch: () => invalidCall(context, `the arguments of ${named} are not valid JSON`)
  }).pipe(
    Either.filterOrLeft(Predicate.isRecord, () => invalidCall(context, `the arguments of ${named} are not a JSON object`)),
    Either.map((input): ContentBlock => ({
      toolUse: { toolUseId: toolCall.id, name: toolCall.function.name, input: asDocument(input) }
    }))
  )
}

const toToolChoice = (choice: Exclude<LlmRequest.ToolChoice, "none">): ToolChoice => {
  if (choice === "auto") return { auto: {} }
  if (choice === "required") return { any: {} }
  return { tool: { name: choice.function.name } }
}

/** The `toolConfig` of a call; none when it has no tools or forbids calling them. */
const toToolConfig = (call: LlmProvider.ProviderCall): ToolConfiguration | undefined => {
  // Converse has no "none": a model that must not call tools is simply not shown any.
  if (call.tools === undefined || call.tools.length === 0 || call.tool_choice === "none") return undefined
  return {
    tools: call.tools.map((tool) => ({
      toolSpec: {
        name: tool.function.name,
        ...(tool.function.description === undefined ? {} : { description: tool.function.description }),
        inputSchema: { json: asDocument(tool.function.parameters ?? emptyParameters) }
      }
    })),
    ...(call.tool_choice === undefined ? {} : { toolChoice: toToolChoice(call.tool_choice) })
  }
}

/** One chat message (not a system one) as its side on the wire and its content blocks. */
const toBlocks = (
  m: LlmRequest.ChatMessage,
  context: ErrorContext,
  toolsAsText: boolean
): Either.Either<{ readonly role: "user" | "assistant"; readonly blocks: ReadonlyArray<ContentBlock> }, Errors.ProviderError> => {
  if (toolsAsText && (m.role === "tool" || (m.role === "assistant" && (m.tool_calls ?? []).length > 0))) {
    // Converse refuses tool blocks in a request without `toolConfig` (no tools, or `tool_choice:
    // "none"`): the history's calls and results are kept as text the model can still read.
    return Either.right(m.role === "tool"
      ? { role: "user", blocks: [{ text: `[result of tool call ${m.tool_call_id ?? "?"}${m.name === undefined ? "" : ` (${m.name})`}]: ${m.content}` }] }
      : {
        role: "assistant",
        blocks: [{
          text: [m.content, ...(m.tool_calls ?? []).map((c) => `[tool call ${c.id}: ${c.function.name}(${c.function.arguments})]`)].filter((t) => t !== "").join("\n")
        }]
      })
  }
  switch (m.role) {
    case "tool":
      // Converse carries tool results as blocks of a user turn.
      return m.tool_call_id === undefined
        ? Either.left(invalidCall(context, "a tool message needs the tool_call_id of the call it answers"))
        : Either.right({
          role: "user",
          blocks: [{ toolResult: { toolUseId: m.tool_call_id, content: [{ text: m.content }] } }]
        })
    case "assistant": {
      const calls = m.tool_calls ?? []
      return Either.map(
        Either.all(calls.map((toolCall) => toToolUse(toolCall, context))),
        (toolUses): { readonly role: "assistant"; readonly blocks: ReadonlyArray<ContentBlock> } => ({
          role: "assistant",
          // A turn that only calls tools has empty content; Converse refuses blank text blocks.
          blocks: calls.length > 0 && m.content === "" ? toolUses : [{ text: m.content }, ...toolUses]
        })
      )
    }
    default:
      return Either.right({ role: "user", blocks: [{ text: m.content }] })
  }
}

/**
 * The Converse request of a call: system messages apart, the rest in order, tools in
 * `toolConfig`. Fails (a `validation` error) on what Converse cannot express.
 */
export const toConverseInput = (
  call: LlmProvider.ProviderCall,
  provider = "bedrock"
): Either.Either<ConverseRequest, Errors.ProviderError> => {
  const context: ErrorContext = { provider, model: call.model_id }
  const format = call.response_format?.type
  if (format === "json_object" || format === "json_schema") {
    // Only some Bedrock models can constrain their output to JSON: dropping the request would hand
    // the caller prose where it expects JSON, so say so instead.
    return Either.left(invalidCall(
      context,
      `response_format ${format} is not supported: Converse has no JSON mode for every model; ask for JSON in the prompt or use a tool`
    ))
  }
  // `seed`: Converse has no sampling seed; answers are not reproducible either way, so it is ignored.
  const system: Array<SystemContentBlock> = []
  const messages: Array<Message> = []
  const toolConfig = toToolConfig(call)
  for (const m of call.messages) {
    if (m.role === "system") {
      system.push({ text: m.content })
      continue
    }
    const mapped = toBlocks(m, context, toolConfig === undefined)
    if (Either.isLeft(mapped)) return Either.left(mapped.left)
    const { blocks, role } = mapped.right
    const last = messages.at(-1)
    // Converse wants user and assistant turns to alternate: consecutive turns of one side (tool
    // results count as the user's) become one message with several blocks.
    if (last?.role === role) last.content?.push(...blocks)
    else messages.push({ role, content: [...blocks] })
  }
  const inferenceConfig: InferenceConfiguration = {
    maxTokens: call.max_tokens,
    ...(call.temperature === undefined ? {} : { temperature: call.temperature }),
    ...(call.top_p === undefined ? {} : { topP: call.top_p }),
    ...(call.stop === undefined || call.stop.length === 0 ? {} : { stopSequences: [...call.stop] })
  }
  return Either.right({
    modelId: call.model_id,
    messages,
    ...(system.length === 0 ? {} : { system }),
    inferenceConfig,
    ...(toolConfig === undefined ? {} : { toolConfig })
  })
}

/** The text and tool calls of a Converse answer's content blocks. */
const fromContent = (
  content: ReadonlyArray<ContentBlock>
): { readonly text: string; readonly tool_calls: ReadonlyArray<LlmRequest.ToolCall> } => ({
  text: content.flatMap((block) => (block.text === undefined ? [] : [block.text])).join(""),
  tool_calls: content.flatMap((block) =>
    block.toolUse === undefined
      ? []
      : [{
        id: block.toolUse.toolUseId ?? "",
        type: "function" as const,
        function: { name: block.toolUse.name ?? "", arguments: JSON.stringify(block.toolUse.input ?? {}) }
      }]
  )
})

/**
 * The exception members of the ConverseStream union. The SDK throws exception frames today; its
 * types still allow them as events, so they fail the stream either way.
 */
const streamExceptionKeys = [
  "internalServerException",
  "modelStreamErrorException",
  "serviceUnavailableException",
  "throttlingException",
  "validationException"
] as const

/** What a stream has seen so far: which content blocks are tool calls, and whether it finished. */
interface StreamState {
  /** Tool call index by Converse content block index. */
  readonly toolIndexByBlock: ReadonlyMap<number, number>
  readonly stopped: boolean
}

const initialStreamState: StreamState = { toolIndexByBlock: new Map(), stopped: false }

type Emit = Either.Either<readonly [StreamState, ReadonlyArray<LlmProvider.StreamEvent>], Errors.ProviderError>

/**
 * One ConverseStream event as stream events, or (`None`) the end of the event stream: an end
 * before `messageStop` means the connection broke off, whatever the transport made of it.
 */
const toStreamEvents = (context: ErrorContext) => (state: StreamState, next: Option.Option<ConverseStreamOutput>): Emit => {
  const emit = (events: ReadonlyArray<LlmProvider.StreamEvent>, s: StreamState = state): Emit => Either.right([s, events])
  if (Option.isNone(next)) {
    return state.stopped
      ? emit([])
      : Either.left(brokenStream(context, "ConverseStream ended before messageStop (the connection closed early)"))
  }
  const event = next.value
  for (const key of streamExceptionKeys) {
    const exception = event[key]
    if (exception !== undefined) {
      // The member's value may lack a name; the member key is the exception's type.
      const name = stringProperty(exception, "name") ?? key
      return Either.left(toProviderError({ name, message: stringProperty(exception, "message") ?? key }, context))
    }
  }
  const toolStart = event.contentBlockStart?.start?.toolUse
  if (event.contentBlockStart !== undefined && toolStart !== undefined) {
    const index = state.toolIndexByBlock.size
    const toolIndexByBlock = new Map(state.toolIndexByBlock).set(event.contentBlockStart.contentBlockIndex ?? 0, index)
    return emit(
      [{ _tag: "ToolCallDelta", index, id: toolStart.toolUseId, name: toolStart.name, arguments: "" }],
      { ...state, toolIndexByBlock }
    )
  }
  const delta = event.contentBlockDelta?.delta
  const toolInput = delta?.toolUse?.input
  if (toolInput !== undefined) {
    const block = event.contentBlockDelta?.contentBlockIndex ?? 0
    const index = state.toolIndexByBlock.get(block)
    if (index === undefined) return Either.left(brokenStream(context, `tool input for content block ${block}, which no contentBlockStart opened`))
    return emit(toolInput.length === 0 ? [] : [{ _tag: "ToolCallDelta", index, arguments: toolInput }])
  }
  const text = delta?.text
  if (text !== undefined && text.length > 0) return emit([{ _tag: "TextDelta", text }])
  if (event.metadata !== undefined) return emit([{ _tag: "Usage", usage: toUsage(event.metadata.usage) }])
  if (event.messageStop !== undefined) {
    return emit([{ _tag: "Finish", finish_reason: finishReason(event.messageStop.stopReason) }], { ...state, stopped: true })
  }
  return emit([])
}

/** What Titan text embedding models answer. */
const TitanEmbedding = Schema.Struct({
  embedding: Schema.Array(Schema.Number),
  inputTextTokenCount: Schema.optional(Schema.NonNegativeInt)
})
const decodeTitanEmbedding = Schema.decodeUnknownEither(Schema.parseJson(TitanEmbedding))

/** Titan v1 (and G1) vectors have a fixed size; v2 can shorten them. */
const fixedSizeTitan = /titan-embed-(text-v1|g1-text)/

/** The InvokeModel body of one text for a Titan text embedding model. */
const titanEmbeddingBody = (text: string, dimensions: number | undefined): Record<string, unknown> =>
  dimensions === undefined ? { inputText: text } : { inputText: text, dimensions }

// ---------------------------------------------------------------------------------------------
// Provider

const redactedEndpoint = (endpoint: string): string => {
  try {
    const url = new URL(endpoint)
    url.username = ""
    url.password = ""
    return url.toString()
  } catch {
    return "(unparseable endpoint)"
  }
}

/**
 * Most requests one HTTP/2 connection carries at a time before the client opens another (AWS's
 * endpoints allow more; the server's own limit applies when it is lower).
 */
export const maxStreamsPerConnection = 100

const clientConfig = (settings: Config.BedrockSettings): BedrockRuntimeClientConfig => ({
  region: settings.region,
  // The gateway owns retries (backoff, failover); the SDK's own would multiply them.
  maxAttempts: 1,
  // The Bedrock Runtime client opens a new HTTP/2 connection for every request by default
  // (`disableConcurrentStreams: true`): a TCP connect and a TLS handshake per call. Converse and
  // InvokeModel share pooled connections instead; event streams (ConverseStream) still get one
  // each, which the SDK does whatever this says.
  requestHandler: new NodeHttp2Handler({ disableConcurrentStreams: false, maxConcurrentStreams: maxStreamsPerConnection }),
  ...(settings.endpoint === undefined ? {} : { endpoint: settings.endpoint }),
  ...(settings.access_key_id !== undefined && settings.secret_access_key !== undefined
    ? {
      credentials: {
        accessKeyId: Redacted.value(settings.access_key_id),
        secretAccessKey: Redacted.value(settings.secret_access_key),
        ...(settings.session_token === undefined ? {} : { sessionToken: Redacted.value(settings.session_token) })
      }
    }
    : {})
})

/**
 * Sends a request once more, at once, when the server refused its HTTP/2 stream (REFUSED_STREAM:
 * it started on a pooled connection the server was closing, GOAWAY on its way). The server has
 * then not processed it (RFC 9113, 8.7), so sending it again is safe; every other failure is the
 * caller's, and the gateway's retry policy, to handle.
 */
const resentIfRefused = <A>(send: () => Promise<A>): Promise<A> =>
  send().catch((error: unknown) => {
    if (stringProperty(error, "code") === "ERR_HTTP2_STREAM_ERROR" && /NGHTTP2_REFUSED_STREAM/.test(stringProperty(error, "message") ?? "")) return send()
    throw error
  })

const utf8 = new TextEncoder()
const fromUtf8Bytes = new TextDecoder()

/** Builds the Bedrock provider; its SDK client lives as long as the scope. */
export const make = (
  settings: Config.BedrockSettings,
  options?: Options
): Effect.Effect<LlmProvider.LlmProvider, never, Scope.Scope> =>
  Effect.gen(function*() {
    const name = options?.name ?? "bedrock"
    const client = yield* Effect.acquireRelease(
      Effect.sync(() => new BedrockRuntimeClient(clientConfig(settings))),
      (client) => Effect.sync(() => client.destroy())
    )
    const staticKeys = settings.access_key_id !== undefined && settings.secret_access_key !== undefined
    // The secret key never goes on the wire (SigV4 signs with it) but the session token does, and
    // an endpoint (a proxy, a stub) may echo either: every failure of the three calls is scrubbed,
    // inside their spans.
    const scrub = scrubError(scrubber(
      [settings.secret_access_key, settings.session_token].map((s) => (s === undefined ? undefined : Redacted.value(s)))
    ))
    const contextOf = (call: { readonly model_id: string }): ErrorContext => ({ provider: name, model: call.model_id })

    const url = settings.endpoint ?? `https://bedrock-runtime.${settings.region}.amazonaws.com`
    const chatSpan = clientSpan("aws.bedrock", "chat", url)

    const timedOut = (call: LlmProvider.ProviderCall) => () => LlmProvider.timedOut(name, call.model.id, call.timeout_ms ?? 0)

    const complete = (call: LlmProvider.ProviderCall) => Effect.gen(function*() {
      yield* Spans.annotate({ provider: name, model: call.model_id, "gen_ai.request.model": call.model_id })
      const input = yield* toConverseInput(call, name)
      // Interruption, or the call's timeout, aborts the request (the SDK resets its HTTP/2 stream).
      const output = yield* timedPromise(
        (signal) => resentIfRefused(() => client.send(new ConverseCommand(input), { abortSignal: signal })),
        call.timeout_ms,
        timedOut(call),
        (error) => toProviderError(error, contextOf(call))
      )
      const { text, tool_calls } = fromContent(output.output?.message?.content ?? [])
      return {
        text,
        usage: toUsage(output.usage),
        finish_reason: finishReason(output.stopReason),
        ...(tool_calls.length === 0 ? {} : { tool_calls })
      } satisfies LlmProvider.Completion
    }).pipe(Effect.mapError(scrub), Spans.span("BedrockProvider.complete", chatSpan))

    const open = (call: LlmProvider.ProviderCall): Pulls.Open<LlmProvider.StreamEvent, Errors.ProviderError> => {
      const context = contextOf(call)
      return Effect.gen(function*() {
        const input = yield* toConverseInput(call, name)
        // One controller for the whole exchange: aborting it after the response headers still
        // resets the HTTP/2 stream, so an interrupted consumer stops the upstream generation.
        const controller = yield* Effect.acquireRelease(
          Effect.sync(() => new AbortController()),
          (controller) => Effect.sync(() => controller.abort(abandoned))
        )
        // The call's timeout, with a plain timer per wait: for the response to start, then for each event.
        const ms = call.timeout_ms
        const failure = (error: unknown) => (error instanceof TimedOut ? timedOut(call)() : toProviderError(error, context))
        const response = yield* Effect.tryPromise({
          try: () => within(resentIfRefused(() => client.send(new ConverseStreamCommand(input), { abortSignal: controller.signal })), ms),
          catch: failure
        })
        // Not `Stream.fromAsyncIterable`: its finalizer awaits `iterator.return()`, which an async
        // generator queues behind the pending `next()`, so interruption would wait for the model.
        const iterator = response.stream?.[Symbol.asyncIterator]()
        const toEvents = toStreamEvents(context)
        let state = initialStreamState
        // The SDK ends the iteration quietly when the HTTP/2 stream is reset or the session dies,
        // so the end itself goes through the mapping (as `None`) to be checked for `messageStop`.
        const pull = iteratorPull({
          next: iterator === undefined ? undefined : () => iterator.next(),
          ms,
          failure,
          finish: scrub,
          map: (event: ConverseStreamOutput | undefined) =>
            Either.map(toEvents(state, Option.fromNullable(event)), ([next, events]) => {
              state = next
              return events
            })
        })
        return pull
      }).pipe(
        Effect.mapError(scrub),
        Pulls.span("BedrockProvider.stream", { ...chatSpan, attributes: { ...chatSpan.attributes, provider: name, model: call.model_id, "gen_ai.request.model": call.model_id } })
      )
    }
    const stream = (call: LlmProvider.ProviderCall) => Pulls.toStream(open(call))

    const embedOne = (call: LlmProvider.EmbedCall, text: string) =>
      Effect.tryPromise({
        try: (signal) =>
          resentIfRefused(() =>
            client.send(
              new InvokeModelCommand({
                modelId: call.model_id,
                contentType: "application/json",
                accept: "application/json",
                body: utf8.encode(JSON.stringify(titanEmbeddingBody(text, call.dimensions)))
              }),
              { abortSignal: signal }
            )
          ),
        catch: (error) => toProviderError(error, contextOf(call))
      }).pipe(
        Effect.flatMap((output) =>
          Either.mapLeft(
            decodeTitanEmbedding(fromUtf8Bytes.decode(output.body)),
            () =>
              new Errors.ProviderError({
                message: `Bedrock: ${call.model_id} answered InvokeModel with no Titan embedding ({"embedding": [...]})`,
                provider: name,
                model: call.model_id,
                kind: "unknown",
                retryable: false
              })
          )
        )
      )

    /** Titan text embeddings: one InvokeModel per input (Titan takes one text), a few at a time. */
    const embed = Effect.fn("BedrockProvider.embed", clientSpan("aws.bedrock", "embeddings", url))(function*(call: LlmProvider.EmbedCall) {
      yield* Spans.annotate({ provider: name, model: call.model_id, inputs: call.input.length, "gen_ai.request.model": call.model_id })
      if (call.dimensions !== undefined && fixedSizeTitan.test(call.model_id)) {
        return yield* invalidCall(contextOf(call), `${call.model_id} has vectors of a fixed size: dimensions is not supported`)
      }
      // In input order, whatever order the answers come in; a failure interrupts (aborts) the rest.
      const results = yield* Effect.forEach(call.input, (text) => embedOne(call, text), { concurrency: embedConcurrency })
      return {
        vectors: results.map((r) => r.embedding),
        input_tokens: results.reduce((sum, r) => sum + (r.inputTextTokenCount ?? 0), 0)
      } satisfies LlmProvider.Embeddings
    }, Effect.mapError(scrub))

    const detail = [
      `Bedrock Converse in ${settings.region}`,
      settings.endpoint === undefined ? undefined : `endpoint ${redactedEndpoint(settings.endpoint)}`,
      staticKeys ? "static credentials" : "credentials from the AWS default chain"
    ].filter(Predicate.isNotUndefined).join(", ")

    return {
      name,
      mock: false,
      timed: true,
      complete,
      stream,
      open,
      embed,
      health: Effect.succeed({ configured: staticKeys || options?.configured === true, detail })
    } satisfies LlmProvider.LlmProvider
  })

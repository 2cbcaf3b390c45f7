/**
 * The Bedrock `LlmProvider`: the Converse and ConverseStream APIs through
 * `@aws-sdk/client-bedrock-runtime`, one request shape for every Bedrock model family.
 */
import {
  BedrockRuntimeClient,
  ConverseCommand,
  ConverseStreamCommand,
  type BedrockRuntimeClientConfig,
  type ConverseStreamOutput,
  type InferenceConfiguration,
  type Message,
  type SystemContentBlock,
  type TokenUsage
} from "@aws-sdk/client-bedrock-runtime"
import { Errors, type Config, type Usage } from "@tidyllm/core"
import type { LlmProvider } from "@tidyllm/corporate-llm"
import { Effect, Option, Predicate, Redacted, Stream, type Scope } from "effect"
import { connectionCodes, connectionMessage, kindByStatus, stringProperty } from "./internal/errors.js"

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
  const kind: Errors.ProviderErrorKind =
    (name === undefined ? undefined : kindByName.get(name.toLowerCase())) ??
      (status === undefined ? undefined : kindByStatus(status)) ??
      (code === "ETIMEDOUT" ? "timeout" : undefined) ??
      ((code !== undefined && (connectionCodes.has(code) || code.startsWith("ERR_HTTP2"))) || connectionMessage.test(message)
        ? "connection"
        : "unknown")
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

/** The Converse request body of a call: system messages apart, the rest in order. */
export const toConverseInput = (call: LlmProvider.ProviderCall) => {
  const system: Array<SystemContentBlock> = []
  const messages: Array<Message> = []
  for (const m of call.messages) {
    if (m.role === "system") {
      system.push({ text: m.content })
      continue
    }
    const role = m.role === "tool" ? "user" : m.role
    const last = messages.at(-1)
    // Converse wants user and assistant turns to alternate: consecutive turns of one role
    // become one message with several blocks.
    if (last?.role === role) last.content?.push({ text: m.content })
    else messages.push({ role, content: [{ text: m.content }] })
  }
  const inferenceConfig: InferenceConfiguration = {
    maxTokens: call.max_tokens,
    ...(call.temperature === undefined ? {} : { temperature: call.temperature }),
    ...(call.top_p === undefined ? {} : { topP: call.top_p }),
    ...(call.stop === undefined || call.stop.length === 0 ? {} : { stopSequences: [...call.stop] })
  }
  return {
    modelId: call.model_id,
    messages,
    ...(system.length === 0 ? {} : { system }),
    inferenceConfig
  }
}

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

const toStreamEvents = (
  event: ConverseStreamOutput,
  context: ErrorContext
): Effect.Effect<ReadonlyArray<LlmProvider.StreamEvent>, Errors.ProviderError> => {
  for (const key of streamExceptionKeys) {
    const exception = event[key]
    if (exception !== undefined) {
      // The member's value may lack a name; the member key is the exception's type.
      const name = stringProperty(exception, "name") ?? key
      return Effect.fail(toProviderError({ name, message: stringProperty(exception, "message") ?? key }, context))
    }
  }
  const text = event.contentBlockDelta?.delta?.text
  if (text !== undefined && text.length > 0) return Effect.succeed([{ _tag: "TextDelta", text }])
  if (event.metadata !== undefined) return Effect.succeed([{ _tag: "Usage", usage: toUsage(event.metadata.usage) }])
  if (event.messageStop !== undefined) {
    return Effect.succeed([{ _tag: "Finish", finish_reason: finishReason(event.messageStop.stopReason) }])
  }
  return Effect.succeed([])
}

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

const clientConfig = (settings: Config.BedrockSettings): BedrockRuntimeClientConfig => ({
  region: settings.region,
  // The gateway owns retries (backoff, failover); the SDK's own would multiply them.
  maxAttempts: 1,
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
    const contextOf = (call: LlmProvider.ProviderCall): ErrorContext => ({ provider: name, model: call.model_id })

    const complete = Effect.fn("BedrockProvider.complete")(function*(call: LlmProvider.ProviderCall) {
      yield* Effect.annotateCurrentSpan({ provider: name, model: call.model_id })
      const output = yield* Effect.tryPromise({
        try: (signal) => client.send(new ConverseCommand(toConverseInput(call)), { abortSignal: signal }),
        catch: (error) => toProviderError(error, contextOf(call))
      })
      const text = (output.output?.message?.content ?? [])
        .flatMap((block) => (block.text === undefined ? [] : [block.text]))
        .join("")
      return {
        text,
        usage: toUsage(output.usage),
        finish_reason: finishReason(output.stopReason)
      } satisfies LlmProvider.Completion
    })

    const stream = (call: LlmProvider.ProviderCall): Stream.Stream<LlmProvider.StreamEvent, Errors.ProviderError> => {
      const context = contextOf(call)
      return Stream.unwrapScoped(Effect.gen(function*() {
        // One controller for the whole exchange: aborting it after the response headers still
        // resets the HTTP/2 stream, so an interrupted consumer stops the upstream generation.
        const controller = yield* Effect.acquireRelease(
          Effect.sync(() => new AbortController()),
          (controller) => Effect.sync(() => controller.abort())
        )
        const response = yield* Effect.tryPromise({
          try: () => client.send(new ConverseStreamCommand(toConverseInput(call)), { abortSignal: controller.signal }),
          catch: (error) => toProviderError(error, context)
        })
        if (response.stream === undefined) return Stream.empty
        const iterator = response.stream[Symbol.asyncIterator]()
        // Not `Stream.fromAsyncIterable`: its finalizer awaits `iterator.return()`, which an async
        // generator queues behind the pending `next()`, so interruption would wait for the model.
        return Stream.repeatEffectOption(
          Effect.tryPromise({
            try: () => iterator.next(),
            catch: (error) => Option.some(toProviderError(error, context))
          }).pipe(
            Effect.flatMap((result) => (result.done === true ? Effect.fail(Option.none()) : Effect.succeed(result.value)))
          )
        ).pipe(
          Stream.mapEffect((event) => toStreamEvents(event, context)),
          Stream.flattenIterables
        )
      })).pipe(Stream.withSpan("BedrockProvider.stream", { attributes: { provider: name, model: call.model_id } }))
    }

    const detail = [
      `Bedrock Converse in ${settings.region}`,
      settings.endpoint === undefined ? undefined : `endpoint ${redactedEndpoint(settings.endpoint)}`,
      staticKeys ? "static credentials" : "credentials from the AWS default chain"
    ].filter(Predicate.isNotUndefined).join(", ")

    return {
      name,
      mock: false,
      complete,
      stream,
      health: Effect.succeed({ configured: staticKeys || options?.configured === true, detail })
    } satisfies LlmProvider.LlmProvider
  })

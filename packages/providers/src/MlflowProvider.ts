/**
 * The MLflow AI Gateway `LlmProvider`: plain `fetch` against `POST {gateway}/gateway/{endpoint}/invocations`
 * (no JS client exists), where a call's `model_id` names the gateway endpoint. Chat endpoints take
 * and answer OpenAI's shapes (SSE chunks ending in `data: [DONE]` when streaming); embedding
 * endpoints take `{input}` and answer `{data: [{embedding, index}], usage}`.
 *
 * `seed` is not sent: the gateway's chat schema has none.
 */
import { Errors, Pulls, Spans, type LlmRequest, type Usage } from "@tidyllm/core"
import * as LlmProvider from "@tidyllm/corporate-llm/LlmProvider"
import { Chunk, Duration, Effect, Either, Option, ParseResult, Predicate, Redacted, Schema, type Scope } from "effect"
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
import { abandoned, timedPromise, TimedOut, within } from "./internal/timed.js"

/** Adapter options the app decides. */
export interface Options {
  /** Provider name to register under (default `mlflow`). */
  readonly name?: string
  /** The gateway's base URL, e.g. `http://127.0.0.1:5000`. */
  readonly gatewayUrl: string
  /** Sent as `Authorization: Bearer …` (a gateway behind an authenticating proxy). */
  readonly token?: Redacted.Redacted<string> | undefined
}

/** Who a failure belongs to, for {@link toProviderError}. */
export interface ErrorContext {
  readonly provider: string
  readonly model: string
}

/** How long `health` waits for `GET /health`. */
const healthTimeout = Duration.millis(1500)

// ---------------------------------------------------------------------------------------------
// Errors

/** MLflow's REST `error_code`s; they decide when the HTTP status does not (or there is none). */
const kindByErrorCode: ReadonlyMap<string, Errors.ProviderErrorKind> = new Map<string, Errors.ProviderErrorKind>([
  ["RESOURCE_EXHAUSTED", "throttled"],
  ["REQUEST_LIMIT_EXCEEDED", "throttled"],
  ["INTERNAL_ERROR", "server"],
  ["TEMPORARILY_UNAVAILABLE", "server"],
  ["DEADLINE_EXCEEDED", "timeout"],
  ["INVALID_PARAMETER_VALUE", "validation"],
  ["BAD_REQUEST", "validation"],
  ["MALFORMED_REQUEST", "validation"],
  ["INVALID_STATE", "validation"],
  ["UNAUTHENTICATED", "auth"],
  ["PERMISSION_DENIED", "auth"],
  ["RESOURCE_DOES_NOT_EXIST", "not_found"],
  ["ENDPOINT_NOT_FOUND", "not_found"]
])



const providerError = (
  context: ErrorContext,
  kind: Errors.ProviderErrorKind,
  message: string,
  extra: { readonly upstream_status?: number | undefined; readonly upstream_type?: string | undefined; readonly retry_after_ms?: number | undefined } = {}
) =>
  new Errors.ProviderError({
    message: `MLflow gateway: ${message}`,
    provider: context.provider,
    model: context.model,
    kind,
    retryable: Errors.retryableKinds.has(kind),
    ...(extra.upstream_status === undefined ? {} : { upstream_status: extra.upstream_status }),
    ...retryAfterField(extra.retry_after_ms),
    ...(extra.upstream_type === undefined ? {} : { upstream_type: extra.upstream_type })
  })

/**
 * Maps what `fetch` (or the body's reader) throws to one `ProviderError`, by the socket codes
 * and messages along the cause chain: undici says `fetch failed` with the reason in `cause`,
 * and a body cut short as `terminated`.
 */
export const toProviderError = (error: unknown, context: ErrorContext): Errors.ProviderError => {
  if (error instanceof Errors.ProviderError) return error
  const chain = causeChain(error)
  const codes = chain.map((e) => stringProperty(e, "code")).filter(Predicate.isNotUndefined)
  const messages = chain.map((e) => stringProperty(e, "message")).filter((m): m is string => m !== undefined && m.length > 0)
  const kind: Errors.ProviderErrorKind =
    codes.some((c) => timeoutCodes.has(c)) || stringProperty(error, "name") === "TimeoutError"
      ? "timeout"
      : codes.some((c) => connectionCodes.has(c) || socketCodes.has(c)) ||
          messages.some((m) => m === "terminated" || m === "fetch failed" || connectionMessage.test(m))
      ? "connection"
      : "unknown"
  const name = stringProperty(error, "name")
  return providerError(context, kind, messages.length > 0 ? messages.join(": ") : String(error), {
    upstream_type: codes[0] ?? (name !== undefined && name !== "Error" && name !== "TypeError" ? name : undefined)
  })
}

/** The readable part of an MLflow error body: `{error_code, message}`, FastAPI's `{detail}`, or OpenAI's `{error}`. */
const errorBodyOf = (body: unknown): { readonly message?: string; readonly code?: string } | undefined => {
  if (!Predicate.isRecord(body)) return undefined
  const code = stringProperty(body, "error_code")
  const detail = body.detail
  const nested = Predicate.isRecord(body.error) ? body.error : undefined
  const message = stringProperty(body, "message") ??
    (typeof detail === "string" ? detail : detail === undefined ? undefined : JSON.stringify(detail)) ??
    (nested === undefined ? (typeof body.error === "string" ? body.error : undefined) : stringProperty(nested, "message"))
  if (code === undefined && message === undefined) return undefined
  return {
    ...(message === undefined ? {} : { message }),
    ...(code === undefined ? (nested === undefined ? {} : withCode(stringProperty(nested, "type"))) : { code })
  }
}
const withCode = (code: string | undefined) => (code === undefined ? {} : { code })

const parseJsonText = (text: string): unknown => {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

/** A non-2xx answer: the kind by HTTP status (FastAPI's 422 is a validation error), else by `error_code`. */
const httpError = (status: number, text: string, context: ErrorContext, retryAfter?: number): Errors.ProviderError => {
  const body = errorBodyOf(parseJsonText(text))
  const kind = kindByStatus(status) ??
    (status === 422 ? "validation" : undefined) ??
    (body?.code === undefined ? undefined : kindByErrorCode.get(body.code)) ??
    "unknown"
  const words = body?.message ?? (text.trim().length > 0 ? text.trim().slice(0, 500) : "(no body)")
  return providerError(context, kind, `HTTP ${status}: ${words}`, { upstream_status: status, upstream_type: body?.code, retry_after_ms: retryAfter })
}

// ---------------------------------------------------------------------------------------------
// Wire shapes

const ToolCallOut = Schema.Struct({
  id: Schema.String,
  function: Schema.Struct({ name: Schema.String, arguments: Schema.String })
})

const UsageOut = Schema.Struct({
  prompt_tokens: Schema.optional(Schema.NullOr(Schema.Number)),
  completion_tokens: Schema.optional(Schema.NullOr(Schema.Number))
})

const ChatResponse = Schema.Struct({
  choices: Schema.NonEmptyArray(Schema.Struct({
    message: Schema.Struct({
      content: Schema.optional(Schema.NullOr(Schema.String)),
      tool_calls: Schema.optional(Schema.NullOr(Schema.Array(ToolCallOut)))
    }),
    finish_reason: Schema.optional(Schema.NullOr(Schema.String))
  })),
  usage: Schema.optional(Schema.NullOr(UsageOut))
})

const ChatChunk = Schema.Struct({
  // A usage-only chunk may come without `choices`.
  choices: Schema.optionalWith(Schema.Array(Schema.Struct({
    delta: Schema.optional(Schema.NullOr(Schema.Struct({
      content: Schema.optional(Schema.NullOr(Schema.String)),
      tool_calls: Schema.optional(Schema.NullOr(Schema.Array(Schema.Struct({
        index: Schema.Number,
        id: Schema.optional(Schema.NullOr(Schema.String)),
        function: Schema.optional(Schema.NullOr(Schema.Struct({
          name: Schema.optional(Schema.NullOr(Schema.String)),
          arguments: Schema.optional(Schema.NullOr(Schema.String))
        })))
      }))))
    }))),
    finish_reason: Schema.optional(Schema.NullOr(Schema.String))
  })), { default: () => [] }),
  usage: Schema.optional(Schema.NullOr(UsageOut))
})

const EmbeddingsResponse = Schema.Struct({
  data: Schema.Array(Schema.Struct({ embedding: Schema.Array(Schema.Number), index: Schema.Number })),
  usage: Schema.optional(Schema.NullOr(Schema.Struct({ prompt_tokens: Schema.optional(Schema.NullOr(Schema.Number)) })))
})

/** Decodes a 2xx body; a body of another shape is the gateway's fault, not the caller's. */
const decode = <A, I>(schema: Schema.Schema<A, I>, body: unknown, context: ErrorContext): Either.Either<A, Errors.ProviderError> =>
  Schema.decodeUnknownEither(schema)(body).pipe(
    Either.mapLeft((error) =>
      providerError(context, "unknown", `unexpected response shape: ${ParseResult.TreeFormatter.formatErrorSync(error).slice(0, 500)}`)
    )
  )

const usageOf = (usage: typeof UsageOut.Type | null | undefined): Usage.TokenUsage => ({
  input_tokens: usage?.prompt_tokens ?? 0,
  output_tokens: usage?.completion_tokens ?? 0
})

/** A chat message in OpenAI's shape. */
const messageOf = (m: LlmRequest.ChatMessage) => ({
  role: m.role,
  // An assistant turn that only calls tools has no text; `null` is what OpenAI-shaped servers expect.
  content: m.role === "assistant" && m.content.length === 0 && m.tool_calls !== undefined && m.tool_calls.length > 0
    ? null
    : m.content,
  ...(m.tool_calls === undefined || m.tool_calls.length === 0 ? {} : { tool_calls: m.tool_calls }),
  ...(m.tool_call_id === undefined ? {} : { tool_call_id: m.tool_call_id }),
  ...(m.name === undefined ? {} : { name: m.name })
})

/** The chat request body of a call (OpenAI's shapes, as the gateway takes them). */
export const toChatBody = (call: LlmProvider.ProviderCall, stream: boolean) => ({
  messages: call.messages.map(messageOf),
  max_tokens: call.max_tokens,
  ...(call.temperature === undefined ? {} : { temperature: call.temperature }),
  ...(call.top_p === undefined ? {} : { top_p: call.top_p }),
  ...(call.stop === undefined || call.stop.length === 0 ? {} : { stop: call.stop }),
  ...(call.tools === undefined || call.tools.length === 0 ? {} : { tools: call.tools }),
  ...(call.tool_choice === undefined ? {} : { tool_choice: call.tool_choice }),
  ...(call.response_format === undefined ? {} : { response_format: call.response_format }),
  ...(stream ? { stream: true } : {})
})

// ---------------------------------------------------------------------------------------------
// Server-sent events

interface SseEvent {
  readonly event: string | undefined
  readonly data: string
}

/**
 * An incremental SSE parser: text goes in as it arrives (split anywhere, even inside a line or
 * a CRLF), whole events come out.
 */
const sseParser = () => {
  let buffer = ""
  let data: Array<string> = []
  let event: string | undefined
  const line = (text: string, out: Array<SseEvent>) => {
    if (text.length === 0) {
      if (data.length > 0) out.push({ event, data: data.join("\n") })
      data = []
      event = undefined
      return
    }
    if (text.startsWith(":")) return
    const colon = text.indexOf(":")
    const field = colon === -1 ? text : text.slice(0, colon)
    const raw = colon === -1 ? "" : text.slice(colon + 1)
    const value = raw.startsWith(" ") ? raw.slice(1) : raw
    if (field === "data") data.push(value)
    else if (field === "event") event = value
  }
  return (chunk: string): ReadonlyArray<SseEvent> => {
    buffer += chunk
    const out: Array<SseEvent> = []
    let start = 0
    for (let i = 0; i < buffer.length; i++) {
      const c = buffer[i]
      if (c !== "\n" && c !== "\r") continue
      // A CR at the very end may be the first half of a CRLF still on its way.
      if (c === "\r" && i + 1 === buffer.length) break
      line(buffer.slice(start, i), out)
      if (c === "\r" && buffer[i + 1] === "\n") i++
      start = i + 1
    }
    buffer = buffer.slice(start)
    return out
  }
}

// ---------------------------------------------------------------------------------------------
// Provider

const redactedUrl = (base: string): string => {
  try {
    const url = new URL(base)
    url.username = ""
    url.password = ""
    return url.toString().replace(/\/$/, "")
  } catch {
    return "(unparseable gateway URL)"
  }
}

/** Builds the MLflow AI Gateway provider (scoped like every adapter; `fetch` holds nothing to close). */
export const make = (options: Options): Effect.Effect<LlmProvider.LlmProvider, never, Scope.Scope> =>
  Effect.gen(function*() {
    const name = options.name ?? "mlflow"
    const base = options.gatewayUrl.replace(/\/+$/, "")
    const secret = options.token === undefined ? undefined : Redacted.value(options.token)
    const headers = (accept: string): Record<string, string> => ({
      "content-type": "application/json",
      accept,
      ...(secret === undefined ? {} : { authorization: `Bearer ${secret}` })
    })
    const invocations = (endpoint: string) => `${base}/gateway/${encodeURIComponent(endpoint)}/invocations`
    // The gateway may echo the token back (in an error body or an SSE error event): every failure
    // of the three calls is scrubbed, inside their spans, and so is the health detail.
    const scrubText = scrubber([secret])
    const scrub = scrubError(scrubText)

    /**
     * One JSON exchange. Headers and body are read under one promise, so interrupting the
     * effect at any point aborts the request.
     */
    /** One JSON exchange; with `timeout` (the call's), timed here with one timer that aborts the request. */
    const exchange = <A, I>(endpoint: string, body: unknown, schema: Schema.Schema<A, I>, context: ErrorContext, timeout?: { readonly ms: number; readonly model: string }) =>
      timedPromise(
        async (signal) => {
          const response = await fetch(invocations(endpoint), {
            method: "POST",
            headers: headers("application/json"),
            body: JSON.stringify(body),
            signal
          })
          return { status: response.status, ok: response.ok, text: await response.text(), retryAfter: retryAfterMs((name) => response.headers.get(name)) }
        },
        timeout?.ms,
        () => LlmProvider.timedOut(name, timeout?.model ?? context.model, timeout?.ms ?? 0),
        (error) => toProviderError(error, context)
      ).pipe(
        Effect.flatMap(({ ok, retryAfter, status, text }) => {
          if (!ok) return Effect.fail(httpError(status, text, context, retryAfter))
          const json = parseJsonText(text)
          return json === undefined
            ? Effect.fail(providerError(context, "unknown", `HTTP ${status} with a body that is not JSON`, { upstream_status: status }))
            : decode(schema, json, context)
        })
      )

    const contextOf = (modelId: string): ErrorContext => ({ provider: name, model: modelId })

    const chatSpan = clientSpan(name, "chat", base)

    const complete = (call: LlmProvider.ProviderCall) => Effect.gen(function*() {
      yield* Spans.annotate({ provider: name, model: call.model_id, "gen_ai.request.model": call.model_id })
      const response = yield* exchange(call.model_id, toChatBody(call, false), ChatResponse, contextOf(call.model_id),
        call.timeout_ms === undefined ? undefined : { ms: call.timeout_ms, model: call.model.id })
      const choice = response.choices[0]
      const toolCalls = (choice.message.tool_calls ?? []).map((t): LlmRequest.ToolCall => ({
        id: t.id,
        type: "function",
        function: { name: t.function.name, arguments: t.function.arguments }
      }))
      return {
        text: choice.message.content ?? "",
        // No usage in the answer means the gateway's provider reported none; zeros, not a guess.
        usage: usageOf(response.usage),
        finish_reason: choice.finish_reason ?? "unknown",
        ...(toolCalls.length === 0 ? {} : { tool_calls: toolCalls })
      } satisfies LlmProvider.Completion
    }).pipe(Effect.mapError(scrub), Spans.span("MlflowProvider.complete", chatSpan))

    const open = (call: LlmProvider.ProviderCall): Pulls.Open<LlmProvider.StreamEvent, Errors.ProviderError> => {
      const context = contextOf(call.model_id)
      // The call's timeout, with a plain timer per wait: for the response to start, then for each read.
      const ms = call.timeout_ms
      const timedOut = () => LlmProvider.timedOut(name, call.model.id, ms ?? 0)
      return Effect.gen(function*() {
        // One controller for the whole exchange: aborting it after the headers also cancels the
        // body, so a consumer that stops (or is interrupted) closes the upstream connection.
        const controller = yield* Effect.acquireRelease(
          Effect.sync(() => new AbortController()),
          (controller) => Effect.sync(() => controller.abort(abandoned))
        )
        const response = yield* Effect.tryPromise({
          try: () =>
            within(fetch(invocations(call.model_id), {
              method: "POST",
              headers: headers("text/event-stream"),
              body: JSON.stringify(toChatBody(call, true)),
              signal: controller.signal
            }), ms),
          catch: (error) => (error instanceof TimedOut ? timedOut() : toProviderError(error, context))
        })
        if (!response.ok) {
          const text = yield* Effect.promise(() => within(response.text(), ms).catch(() => ""))
          return yield* Effect.fail(httpError(response.status, text, context, retryAfterMs((name) => response.headers.get(name))))
        }
        if (response.body === null) {
          return yield* Effect.fail(providerError(context, "stream", "the stream has no body", { upstream_status: response.status }))
        }
        const reader: ReadableStreamDefaultReader<Uint8Array> = response.body.getReader()
        const decoder = new TextDecoder("utf-8")
        const parse = sseParser()
        let done = false
        // A failure found after some events of the same read: those go out first.
        let pending: Errors.ProviderError | undefined
        let usage: Usage.TokenUsage | undefined
        let finish: string | undefined

        /** The port's events of one SSE event; `[DONE]` releases the held usage and finish. */
        const eventsOf = (sse: SseEvent): Either.Either<ReadonlyArray<LlmProvider.StreamEvent>, Errors.ProviderError> => {
          if (sse.data === "[DONE]") {
            done = true
            return Either.right([
              ...(usage === undefined ? [] : [{ _tag: "Usage", usage } as const]),
              { _tag: "Finish", finish_reason: finish ?? "unknown" } as const
            ])
          }
          const json = parseJsonText(sse.data)
          const upstreamError = sse.event === "error" || (Predicate.isRecord(json) && !("choices" in json) && !("usage" in json))
            ? errorBodyOf(json)
            : undefined
          if (upstreamError !== undefined || sse.event === "error") {
            const kind = (upstreamError?.code === undefined ? undefined : kindByErrorCode.get(upstreamError.code)) ?? "server"
            return Either.left(providerError(context, kind, upstreamError?.message ?? sse.data.slice(0, 500), {
              upstream_type: upstreamError?.code
            }))
          }
          return decode(ChatChunk, json, context).pipe(Either.map((chunk) => {
            // Sent once, at `[DONE]`: some servers repeat usage (or a finish reason) in later chunks.
            if (chunk.usage !== undefined && chunk.usage !== null) usage = usageOf(chunk.usage)
            const out: Array<LlmProvider.StreamEvent> = []
            for (const choice of chunk.choices) {
              const text = choice.delta?.content
              if (text !== undefined && text !== null && text.length > 0) out.push({ _tag: "TextDelta", text })
              for (const t of choice.delta?.tool_calls ?? []) {
                out.push({
                  _tag: "ToolCallDelta",
                  index: t.index,
                  ...(t.id === undefined || t.id === null ? {} : { id: t.id }),
                  ...(t.function?.name === undefined || t.function.name === null ? {} : { name: t.function.name }),
                  arguments: t.function?.arguments ?? ""
                })
              }
              if (finish === undefined && choice.finish_reason !== undefined && choice.finish_reason !== null) {
                finish = choice.finish_reason
              }
            }
            return out
          }))
        }

        const pull: Pulls.Pull<LlmProvider.StreamEvent, Errors.ProviderError> = Effect.suspend(() =>
          pending !== undefined
            ? Effect.fail(Option.some(pending))
            : done
            ? Effect.fail(Option.none())
            : Effect.tryPromise({
              try: () => within(reader.read(), ms),
              catch: (error) => Option.some(error instanceof TimedOut ? timedOut() : toProviderError(error, context))
            }).pipe(Effect.flatMap((result) => {
              if (result.done) {
                // The body ended cleanly but without `[DONE]`: a cut answer, never a complete one.
                return Effect.fail(Option.some(providerError(context, "stream", "the stream ended before [DONE]")))
              }
              const out: Array<LlmProvider.StreamEvent> = []
              for (const sse of parse(decoder.decode(result.value, { stream: true }))) {
                const events = eventsOf(sse)
                if (Either.isLeft(events)) {
                  if (out.length === 0) return Effect.fail(Option.some(events.left))
                  pending = events.left
                  break
                }
                out.push(...events.right)
                if (done) break
              }
              return Effect.succeed(Chunk.unsafeFromArray(out))
            }))
        ).pipe(Effect.mapError(Option.map(scrub)))
        return pull
      }).pipe(
        Effect.mapError(scrub),
        Pulls.span("MlflowProvider.stream", { ...chatSpan, attributes: { ...chatSpan.attributes, provider: name, model: call.model_id, "gen_ai.request.model": call.model_id } })
      )
    }
    const stream = (call: LlmProvider.ProviderCall) => Pulls.toStream(open(call))

    const embed = Effect.fn("MlflowProvider.embed", clientSpan(name, "embeddings", base))(function*(call: LlmProvider.EmbedCall) {
      yield* Spans.annotate({ provider: name, model: call.model_id, "gen_ai.request.model": call.model_id })
      const context = contextOf(call.model_id)
      const response = yield* exchange(
        call.model_id,
        { input: call.input, ...(call.dimensions === undefined ? {} : { dimensions: call.dimensions }) },
        EmbeddingsResponse,
        context
      )
      const vectors = [...response.data].sort((a, b) => a.index - b.index).map((d) => d.embedding)
      if (vectors.length !== call.input.length) {
        return yield* Effect.fail(providerError(context, "unknown", `${vectors.length} vectors for ${call.input.length} inputs`))
      }
      const wrongSize = call.dimensions === undefined ? undefined : vectors.find((v) => v.length !== call.dimensions)
      if (wrongSize !== undefined) {
        // An endpoint that ignores `dimensions` would otherwise hand back vectors of another size.
        return yield* Effect.fail(providerError(
          context,
          "validation",
          `the endpoint answered ${wrongSize.length}-dimensional vectors, ${call.dimensions} were asked for`
        ))
      }
      return { vectors, input_tokens: response.usage?.prompt_tokens ?? 0 } satisfies LlmProvider.Embeddings
    }, Effect.mapError(scrub))

    const where = `MLflow AI Gateway at ${redactedUrl(base)}`
    const health: Effect.Effect<LlmProvider.ProviderHealth> = Effect.tryPromise({
      try: async (signal) => {
        const response = await fetch(`${base}/health`, { headers: headers("application/json"), signal })
        return { status: response.status, text: await response.text() }
      },
      catch: (error) => toProviderError(error, contextOf("health")).message.replace(/^MLflow gateway: /, "")
    }).pipe(
      Effect.timeoutFail({ duration: healthTimeout, onTimeout: () => `no answer within ${Duration.format(healthTimeout)}` }),
      Effect.map(({ status, text }) => {
        const body = parseJsonText(text)
        const reported = Predicate.isRecord(body) ? stringProperty(body, "status") : undefined
        return status === 200
          ? { reachable: true, state: `reachable, status ${reported ?? text.trim().slice(0, 100)}` }
          : { reachable: false, state: `unhealthy: HTTP ${status}` }
      }),
      Effect.catchAll((reason) => Effect.succeed({ reachable: false, state: `unreachable: ${reason}` })),
      // The gateway is configured by its URL alone; whether it answers is the detail, partly in
      // the gateway's own words (its body, its error), so scrubbed too.
      Effect.map(({ reachable, state }) => ({ configured: true, reachable, detail: scrubText(`${where}: ${state}`) }))
    )

    return {
      name,
      mock: false,
      timed: true,
      complete,
      stream,
      open,
      embed,
      health
    } satisfies LlmProvider.LlmProvider
  })

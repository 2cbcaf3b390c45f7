/**
 * Gateway #2: processing around gateway #1 — backend choice with ordered failover, an exact-match
 * response cache with TTL, retries with exponential backoff and jitter on retryable failures only,
 * a per-attempt timeout, and a circuit breaker per backend and model. Every attempt is one audited
 * request of gateway #1.
 */
import { createHash } from "node:crypto"
import { Cause, Chunk, Clock, Context, Data, Duration, Effect, Either, ExecutionStrategy, Exit, Fiber, Layer, Option, Random, Ref, Schema, Scope, Stream } from "effect"
import { Errors, LlmRequest, Pulls, Spans, ThrottledLog } from "@tidyllm/core"
import type { Config } from "@tidyllm/core"
import { CorporateLlmGateway } from "@tidyllm/corporate-llm"
import { canonicalJson } from "./internal/canonicalJson.js"
import * as CircuitBreaker from "./internal/circuitBreaker.js"
import * as Metrics from "./Metrics.js"
import * as ResponseCache from "./ResponseCache.js"

/**
 * The settings of gateway #2: the core `ai_processing` section. The circuit-breaker fields may be
 * absent (settings written before they existed); {@link defaults} then apply.
 */
export type SettingsShape = Omit<Config.AiProcessingSettings, "circuit_breaker_failures" | "circuit_breaker_cooldown_seconds"> & {
  /** Consecutive counted failures of one backend/model that open its breaker; 0 turns breakers off. */
  readonly circuit_breaker_failures?: number | undefined
  /** How long an open breaker fails fast before it lets one probe call through, in seconds. */
  readonly circuit_breaker_cooldown_seconds?: number | undefined
}

/** Defaults of the settings that may be absent. */
export const defaults = { circuit_breaker_failures: 5, circuit_breaker_cooldown_seconds: 30 } as const

/** The settings gateway #2 runs with. */
export class Settings extends Context.Tag("@tidyllm/ai-processing/Settings")<Settings, SettingsShape>() {}

/** A streamed answer: deltas (text and tool-call pieces), then `Done` carrying the full response metadata. */
export type StreamEvent = CorporateLlmGateway.StreamEvent

/** One circuit breaker (`backend/model`), as health and metrics report it. */
export type CircuitBreakerStatus = CircuitBreaker.Status

/** Health of gateway #2. */
export interface Health {
  readonly healthy: boolean
  readonly caching: boolean
  readonly cache_ttl_seconds: number
  readonly max_retries: number
  readonly timeout_seconds: number
  readonly backends: ReadonlyArray<string>
  readonly circuit_breaker_failures: number
  readonly circuit_breaker_cooldown_seconds: number
  /** Breakers that are open, half open, or closed with failures counted (this replica's view). */
  readonly circuit_breakers: ReadonlyArray<CircuitBreakerStatus>
}

/** The gateway #2 service. */
export interface Service {
  readonly process: (request: LlmRequest.AIRequest, context: LlmRequest.CallContext) => Effect.Effect<LlmRequest.LLMResponse, Errors.GatewayError>
  readonly processStream: (request: LlmRequest.AIRequest, context: LlmRequest.CallContext) => Stream.Stream<StreamEvent, Errors.GatewayError>
  /** `processStream` opened for pulling (`Pulls`): it succeeds once a backend gave its first events, or fails when none did. */
  readonly openStream: (request: LlmRequest.AIRequest, context: LlmRequest.CallContext) => Pulls.Open<StreamEvent, Errors.GatewayError>
  /**
   * Embeddings through gateway #1 with the same retries, per-attempt timeout and failover as chat
   * (the request's `provider`, else the default, then the fallback backends that serve the model).
   */
  readonly embed: (request: LlmRequest.EmbeddingRequest, context: LlmRequest.CallContext) => Effect.Effect<EmbedAnswer, Errors.GatewayError>
  /** The backends a request would try, in order. */
  readonly backendsFor: (request: LlmRequest.AIRequest) => ReadonlyArray<string>
  readonly health: Effect.Effect<Health>
  /** Every circuit breaker this replica has used, closed ones included (for metrics). */
  readonly breakers: Effect.Effect<ReadonlyArray<CircuitBreakerStatus>>
}

/** An embeddings answer and the backend that gave it. */
export interface EmbedAnswer extends LlmRequest.EmbeddingResponse {
  readonly backend_used: string
  readonly attempts: number
}

/** Gateway #2. */
export class AiProcessingGateway extends Context.Tag("@tidyllm/ai-processing/AiProcessingGateway")<AiProcessingGateway, Service>() {}

/**
 * The cache key: a hash of everything that changes the answer — backends, canonical model, the
 * messages with their tool calls, tool-call ids and names, the tools offered, tool choice, response
 * format, seed and sampling parameters — and nothing that does not (reason, user, metadata, request
 * id, `use_cache`). Objects are serialised with sorted keys, so the key order of a tool's JSON
 * Schema does not split the cache. A caller's team is part of the key: one team's answers (and
 * the fact that someone asked) are never served to another.
 */
export const cacheKey = (backends: ReadonlyArray<string>, model: string, request: LlmRequest.AIRequest, maxTokens: number, team?: string  ): string =>
  createHash("sha256").update(canonicalJson({
    v: 2,
    ...(team === undefined ? {} : { team }),
    backends,
    model,
    messages: LlmRequest.messagesOf(request).map((m) => ({
      role: m.role, content: m.content, tool_calls: m.tool_calls, tool_call_id: m.tool_call_id, name: m.name
    })),
    tools: request.tools ?? null,
    tool_choice: request.tool_choice ?? null,
    response_format: request.response_format ?? null,
    seed: request.seed ?? null,
    temperature: request.temperature ?? null,
    top_p: request.top_p ?? null,
    max_tokens: maxTokens,
    stop: request.stop ?? null
  })).digest("hex")

/** Errors after which the next backend is tried: provider failures, and a backend that is not configured or does not serve the model. */
const failsOver = (e: Errors.GatewayError): boolean =>
  e._tag === "ProviderError" || (e._tag === "UnknownModel" && e.provider !== undefined) || (e._tag === "InvalidRequest" && e.field === "provider")

const describe = (e: Errors.GatewayError) => ({
  error_type: e.type,
  message: e.message,
  ...(e._tag === "ProviderError" ? { kind: e.kind } : {}),
  ...(e._tag === "ProviderError" && e.retry_after_ms !== undefined ? { retry_after_ms: e.retry_after_ms } : {})
})

/**
 * Provider failures that say the backend is unwell and count towards opening its breaker. Not
 * counted: `throttled` (the backend is up and protecting a quota — our own load, which backoff and
 * failover already handle; opening the breaker on it would also stop the probes that find out when
 * the quota is back), and the failures of one request rather than of the backend (`validation`,
 * `auth`, `model`, `not_found`, `unknown`), nor anything gateway #1 refused before calling out
 * (policy, budget, cost cap, unknown model).
 */
export const breakerCountedKinds: ReadonlySet<Errors.ProviderErrorKind> = new Set(["server", "timeout", "connection", "stream"])

const counts = (e: unknown): boolean => e instanceof Errors.ProviderError && breakerCountedKinds.has(e.kind)

const outcomeOf = (exit: Exit.Exit<unknown, unknown>): CircuitBreaker.Outcome => {
  if (Exit.isSuccess(exit)) return "success"
  const error = Cause.failureOption(exit.cause)
  return Option.isSome(error) && counts(error.value) ? "failure" : "neutral"
}

/** A backend skipped because its breaker is open; failover moves on to the next backend. */
class CircuitOpen extends Data.TaggedError("CircuitOpen")<{ readonly rejection: CircuitBreaker.Rejection }> {
  override get message() {
    const r = this.rejection
    return r.state === "half_open"
      ? `the circuit breaker of '${r.backend}/${r.model}' is half open and its probe call is in flight`
      : `the circuit breaker of '${r.backend}/${r.model}' is open since ${new Date(r.opened_at).toISOString()}; a probe call is let through from ${new Date(r.retry_at).toISOString()}`
  }
}

/** Longest wait for a cache read; a slower cache is a miss. */
const cacheGetTimeout = Duration.millis(250)
/** Longest a response waits for its cache write; the write goes on in the background after that. */
const cacheSetWait = Duration.millis(250)
/** Longest a background cache write may run. */
const cacheSetLimit = Duration.seconds(10)

/** Finish reasons of an answer that ended as the model meant it to (`length` too: max_tokens is in the key). */
const cleanFinishes: ReadonlySet<string> = new Set(["stop", "length", "tool_calls", "end_turn", "stop_sequence", "max_tokens", "tool_use"])
const toolFinishes: ReadonlySet<string> = new Set(["tool_calls", "tool_use"])
const isCachedResponse = Schema.is(ResponseCache.CachedResponse)

/** Whether an answer may be cached: it finished cleanly and holds something. */
const cacheable = (v: ResponseCache.CachedResponse): boolean => {
  const calls = (v.tool_calls?.length ?? 0) > 0
  if (!cleanFinishes.has(v.finish_reason) || (toolFinishes.has(v.finish_reason) && !calls)) return false
  return v.text !== "" || calls
}

/** Whether a cache entry can be served: well formed, and a tool-call answer still has its calls (an adapter may have dropped them). */
const servable = (v: unknown): v is ResponseCache.CachedResponse =>
  isCachedResponse(v) && !(toolFinishes.has(v.finish_reason) && (v.tool_calls?.length ?? 0) === 0)

/** How an attempt ended, as its span says: `success`, the error's type (with a provider error's kind), or `cancelled`. */
const attemptOutcome = (exit: Exit.Exit<unknown, Errors.GatewayError>): string => {
  if (Exit.isSuccess(exit)) return "success"
  const error = Cause.failureOption(exit.cause)
  if (Option.isSome(error)) return error.value._tag === "ProviderError" ? `${error.value.type}:${error.value.kind}` : error.value.type
  return Cause.isInterruptedOnly(exit.cause) ? "cancelled" : "defect"
}

/** One attempt of one backend as a span of its own (gateway #1's span is its child). */
const tracedAttempt = <A>(attempt: Effect.Effect<A, Errors.GatewayError>, backend: string, n: number): Effect.Effect<A, Errors.GatewayError> =>
  Spans.whenTracing(attempt, (traced) =>
    traced.pipe(
      Effect.onExit((exit) => Spans.annotate("tidyllm.outcome", attemptOutcome(exit))),
      Effect.withSpan("AiProcessingGateway.attempt", { attributes: { "tidyllm.backend": backend, "tidyllm.attempt": n }, captureStackTrace: false })
    ))

const firstLine = (cause: Cause.Cause<unknown>) => {
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure) && typeof failure.value === "object" && failure.value !== null && "message" in failure.value) return String(failure.value.message)
  return Cause.pretty(cause).split("\n")[0] ?? "defect"
}

/** The outcome of one guarded attempt: refused by an open breaker, or run (with the permit it ran under). */
type Guarded<A> =
  | { readonly _tag: "Rejected"; readonly error: CircuitOpen }
  | { readonly _tag: "Ran"; readonly exit: Exit.Exit<A, Errors.GatewayError>; readonly permit: CircuitBreaker.Permit | undefined }

/**
 * Builds gateway #2 on top of gateway #1. Its circuit breakers live in memory: each replica keeps
 * its own view of the backends' health.
 */
export const make = Effect.gen(function*() {
  const settings = yield* Settings
  // The clock of the fiber that builds the gateway (a `TestClock` in tests), read where a step already runs.
  const clock = yield* Effect.clock
  // A cache that is down fails every request's lookup: one warning per 10 s, with the count held back.
  const warn = ThrottledLog.make(10_000)
  const gw1 = yield* CorporateLlmGateway.CorporateLlmGateway
  const cache = yield* ResponseCache.ResponseCache
  const corporate = gw1.settings
  const breakerFailures = settings.circuit_breaker_failures ?? defaults.circuit_breaker_failures
  const breakerCooldown = settings.circuit_breaker_cooldown_seconds ?? defaults.circuit_breaker_cooldown_seconds
  const breakers = yield* CircuitBreaker.make({ failures: breakerFailures, cooldown_ms: breakerCooldown * 1000 })
  /** When each breaker's last opening that was counted happened (for the transitions metric). */
  const openingsCounted = yield* Ref.make<ReadonlyMap<string, string>>(new Map())
  if (settings.enable_caching) yield* Metrics.registerCacheSeries

  const backendsFor = (request: LlmRequest.AIRequest): ReadonlyArray<string> => {
    const first = request.backend === undefined || request.backend === "auto" ? (request.provider ?? corporate.default_provider) : request.backend
    const rest = request.fallback_backends ?? (request.backend === undefined || request.backend === "auto"
      ? [...settings.fallback_backends, ...(corporate.fallback_provider === undefined ? [] : [corporate.fallback_provider])]
      : [])
    return [...new Set([first, ...rest])]
  }

  /**
   * Backoff before retry `n` (1-based): base · 2^(n-1), with full jitter in [50 %, 100 %], in whole
   * milliseconds (a fractional sleep leaves the TestClock at a fractional instant, which its
   * `currentTimeNanos` cannot turn into a bigint).
   */
  const backoff = (n: number) =>
    Effect.map(Random.next, (r) => Duration.millis(Math.round(settings.retry_delay_base * 1000 * 2 ** (n - 1) * (0.5 + r / 2))))

  const timeout_ms = settings.timeout_seconds * 1000

  // --- cache -----------------------------------------------------------------------------------

  /**
   * A cache read that cannot fail the request: an error, a defect, a hang (bounded by
   * `cacheGetTimeout`) or an entry that is not a usable answer is a miss with a warning.
   */
  const cacheGet = (key: string): Effect.Effect<Option.Option<ResponseCache.CachedResponse>> =>
    Effect.suspend(() => cache.get(key)).pipe(
      // Disconnected: a cache that ignores interruption cannot hold the request past the timeout.
      Effect.disconnect,
      Effect.timeoutFail({ duration: cacheGetTimeout, onTimeout: () => new ResponseCache.CacheError({ message: `no answer within ${Duration.toMillis(cacheGetTimeout)} ms` }) }),
      Effect.flatMap((hit) => {
        if (Option.isNone(hit) || servable(hit.value)) return Effect.succeed(hit)
        return warn("cache-entry", "response cache returned an unusable entry, treating it as a miss").pipe(Effect.zipRight(Metrics.cacheError("get")), Effect.as(Option.none()))
      }),
      Effect.catchAllCause((cause) =>
        warn("cache-get", `response cache unavailable, treating as a miss: ${firstLine(cause)}`).pipe(Effect.zipRight(Metrics.cacheError("get")), Effect.as(Option.none())))
    )

  /** The cache lookup, if caching applies. */
  const lookup = (request: LlmRequest.AIRequest, backends: ReadonlyArray<string>, context: LlmRequest.CallContext) =>
    Effect.gen(function*() {
      if (!settings.enable_caching || request.use_cache === false) return Option.none<{ key: string; hit: Option.Option<ResponseCache.CachedResponse> }>()
      const resolved = yield* gw1.resolve({ ...request, provider: backends[0] ?? corporate.default_provider }).pipe(Effect.option)
      if (Option.isNone(resolved)) return Option.none()
      const maxTokens = request.max_tokens ?? Math.min(corporate.default_max_tokens, resolved.value.model.max_output_tokens)
      const key = cacheKey(backends, resolved.value.model.id, request, maxTokens, context.caller.team)
      const hit = yield* cacheGet(key)
      yield* Metrics.cacheLookup(Option.isSome(hit))
      return Option.some({ key, hit })
    })

  /**
   * Stores a cleanly finished answer. The write runs on its own fiber: the response waits for it
   * at most `cacheSetWait` (so a fast cache is read-your-writes), and a failing write is a warning.
   */
  const store = (key: string, value: ResponseCache.CachedResponse) =>
    Effect.gen(function*() {
      if (!cacheable(value)) return
      const write = Effect.suspend(() => cache.set(key, value, settings.cache_ttl_seconds)).pipe(
        Effect.disconnect,
        Effect.timeoutFail({ duration: cacheSetLimit, onTimeout: () => new ResponseCache.CacheError({ message: `no answer within ${Duration.toSeconds(cacheSetLimit)} s` }) }),
        Effect.catchAllCause((cause) => warn("cache-set", `response cache write failed: ${firstLine(cause)}`).pipe(Effect.zipRight(Metrics.cacheError("set"))))
      )
      const fiber = yield* Effect.forkDaemon(write)
      yield* Fiber.await(fiber).pipe(Effect.timeout(cacheSetWait), Effect.ignore)
    })

  const hitResponse = (request: LlmRequest.AIRequest, context: LlmRequest.CallContext, hit: ResponseCache.CachedResponse, started: number) =>
    Effect.gen(function*() {
      const auditId = yield* gw1.recordCacheHit(request, context, { provider: hit.provider, model: hit.model, usage: hit.usage })
      const now = yield* Clock.currentTimeMillis
      return {
        status: "success",
        data: {
          response: hit.text, model: hit.model, provider: hit.provider, finish_reason: hit.finish_reason, usage: hit.usage,
          ...(hit.tool_calls === undefined || hit.tool_calls.length === 0 ? {} : { tool_calls: hit.tool_calls })
        },
        metadata: {
          request_id: context.request_id, audit_id: auditId, provider: hit.provider, model: hit.model, model_id: hit.model_id,
          cost_usd: "0.000000000", latency_ms: Math.round(now - started), mock: hit.mock,
          cache_hit: true, backend_used: hit.provider, attempts: 0
        }
      } satisfies LlmRequest.LLMResponse
    })

  /** A cached answer as a stream: its text, each tool call whole, then `Done`. */
  const replay = (response: LlmRequest.LLMResponse): Pulls.Pull<StreamEvent, never> => {
    const text = response.data?.response ?? ""
    const calls = response.data?.tool_calls ?? []
    const events: Array<StreamEvent> = [
      ...(text === "" ? [] : [{ _tag: "Delta", text } as const]),
      ...calls.map((c, index) => ({ _tag: "ToolCallDelta", index, id: c.id, name: c.function.name, arguments: c.function.arguments } as const)),
      { _tag: "Done", response: response.data === undefined ? response : { ...response, data: { ...response.data, response: "" } } }
    ]
    return Pulls.fromIterable(events)
  }

  // --- circuit breakers and failover -------------------------------------------------------------

  /** The catalog model a backend would serve the request with; none when it cannot (gateway #1 then says why). */
  const breakerModel = (request: LlmRequest.AIRequest, backend: string) =>
    breakers.enabled
      ? gw1.resolve({ ...request, provider: backend }).pipe(Effect.map((r) => Option.some(r.model.id)), Effect.orElseSucceed(() => Option.none<string>()))
      : Effect.succeedNone

  /**
   * Runs one attempt under the backend/model's breaker; the permit is given back whatever happens,
   * interruption included. With `deferSuccess` (streams) only a probe's success is settled here:
   * a stream's first event closes a half-open breaker, but resets a closed breaker's count only
   * once the stream has finished (`streamEnded`), so a backend that always breaks mid-stream opens.
   */
  /**
   * Counts the breaker transitions a settled attempt caused: a probe's success closes its breaker;
   * a counted failure may open it (this attempt's or a concurrent one: each opening is counted
   * once, by when it opened). Only failures and probes pay for the status lookup.
   */
  const breakerMoved = (permit: CircuitBreaker.Permit, outcome: CircuitBreaker.Outcome) =>
    outcome === "neutral" || (outcome === "success" && !permit.probe)
      ? Effect.void
      : Effect.flatMap(breakers.status, (all) => {
          // The permit's key is the breaker's `backend/model`.
          const b = all.find((s) => `${s.backend}/${s.model}` === permit.key)
          if (b === undefined) return Effect.void
          if (outcome === "success") return b.state === "closed" ? Metrics.breakerTransition(b.backend, b.model, "closed") : Effect.void
          const at = b.opened_at
          if (b.state !== "open" || at === undefined) return Effect.void
          return Ref.modify(openingsCounted, (m): readonly [boolean, ReadonlyMap<string, string>] =>
            m.get(permit.key) === at ? [false, m] : [true, new Map(m).set(permit.key, at)]
          ).pipe(Effect.flatMap((fresh) => (fresh ? Metrics.breakerTransition(b.backend, b.model, "open") : Effect.void)))
        })

  const guarded = <A>(backend: string, model: Option.Option<string>, attempt: Effect.Effect<A, Errors.GatewayError>, deferSuccess: boolean): Effect.Effect<Guarded<A>> =>
    Option.isNone(model)
      ? Effect.map(Effect.exit(attempt), (exit): Guarded<A> => ({ _tag: "Ran", exit, permit: undefined }))
      : Effect.uninterruptibleMask((restore) =>
          Effect.flatMap(breakers.acquire(backend, model.value), Either.match({
            onLeft: (rejection) => Effect.succeed<Guarded<A>>({ _tag: "Rejected", error: new CircuitOpen({ rejection }) }),
            onRight: (permit) =>
              // A probe permit means the breaker let its one trial call through: it is half open now.
              // (After a probe that told nothing, the next one is counted again.)
              (permit.probe ? Metrics.breakerTransition(backend, model.value, "half_open") : Effect.void).pipe(
                Effect.zipRight(Effect.exit(restore(attempt))),
                Effect.tap((exit) => {
                  const outcome = outcomeOf(exit)
                  const settled = outcome === "success" && deferSuccess && !permit.probe ? "neutral" : outcome
                  return breakers.release(permit, settled).pipe(Effect.zipRight(breakerMoved(permit, settled)))
                }),
                Effect.map((exit): Guarded<A> => ({ _tag: "Ran", exit, permit }))
              )
          })))

  /**
   * Runs `attempt` over the backends with retries: retryable failures are retried on the same
   * backend up to `max_retries` times, then (like any provider failure) the next backend is tried.
   * A backend whose breaker is open is skipped without a call; it is listed in `AllBackendsFailed`
   * with `error_type: "circuit_open"` and `attempt: 0` (no attempt was made). Retries on a backend
   * stop as soon as its breaker opens. When every backend refused the request as invalid (an
   * upstream 400), that refusal is the answer (HTTP 400), not `AllBackendsFailed`.
   */
  const withFailover = <A>(
    request: LlmRequest.AIRequest,
    context: LlmRequest.CallContext,
    backends: ReadonlyArray<string>,
    attempt: (backend: string, n: number) => Effect.Effect<A, Errors.GatewayError>,
    deferSuccess = false
  ): Effect.Effect<{ value: A; backend: string; attempts: number; permit: CircuitBreaker.Permit | undefined }, Errors.GatewayError> =>
    Effect.gen(function*() {
      const failures: Array<Errors.AttemptFailure> = []
      // The last upstream refusal of the request itself (a 400): when every backend refused it so, it is the client's to fix.
      let refusal: Errors.ProviderError | undefined
      let n = 0
      for (const [index, backend] of backends.entries()) {
        const model = yield* breakerModel(request, backend)
        for (let tryNo = 0; ; tryNo++) {
          const run = yield* guarded(backend, model, tracedAttempt(attempt(backend, n + 1), backend, n + 1), deferSuccess)
          if (run._tag === "Rejected") {
            failures.push({ backend, attempt: 0, error_type: "circuit_open", message: run.error.message })
            break
          }
          n++
          const exit = run.exit
          if (Exit.isSuccess(exit)) return { value: exit.value, backend, attempts: n, permit: run.permit }
          const error = Option.getOrUndefined(Cause.failureOption(exit.cause))
          if (error === undefined) return yield* Effect.failCause(exit.cause)
          if (!failsOver(error)) return yield* Effect.fail(error)
          failures.push({ backend, attempt: n, ...describe(error) })
          if (error._tag === "ProviderError" && error.kind === "validation") refusal = error
          const retryable = error._tag === "ProviderError" && error.retryable
          if (!retryable || tryNo >= settings.max_retries) break
          if (Option.isSome(model) && (yield* breakers.state(backend, model.value)) !== "closed") break
          // An upstream that asks for a wait (Retry-After) gets at least that; one that asks for
          // longer than an attempt may take is not retried now: the next backend is tried instead.
          const asked = error.retry_after_ms
          if (asked !== undefined && asked > timeout_ms) break
          yield* Metrics.retry(backend, error.kind)
          const delay = yield* backoff(tryNo + 1)
          yield* Effect.sleep(asked === undefined ? delay : Duration.max(delay, Duration.millis(asked)))
        }
        const last = failures.at(-1)
        if (index < backends.length - 1 && last !== undefined && last.backend === backend) yield* Metrics.failover(backend, last)
      }
      if (refusal !== undefined && failures.every((f) => f.kind === "validation")) return yield* refusal
      const error = new Errors.AllBackendsFailed({
        message: `every backend failed (${backends.join(", ")}) after ${n} attempt(s)`,
        attempts: failures
      })
      if (n === 0) {
        // No attempt reached gateway #1 (every breaker open): audit the refusal there, so the request still has its row.
        yield* gw1.recordRejection({ ...request, provider: backends[0] }, context, { type: "circuit_open", message: error.message }, "error").pipe(
          Effect.catchAll((e) => Effect.logWarning(`could not audit a request refused by open circuit breakers: ${e.message}`))
        )
      }
      return yield* error
    })

  /** Settles a stream's breaker permit when the stream ends after its first event: finished, failed, or neither (client gone). */
  const streamEnded = (permit: CircuitBreaker.Permit | undefined, finished: boolean, exit: Exit.Exit<unknown, unknown>) => {
    if (permit === undefined) return Effect.void
    const settled = { ...permit, probe: false }
    const outcome = finished ? "success" : Exit.isSuccess(exit) ? "neutral" : outcomeOf(exit)
    return breakers.release(settled, outcome).pipe(Effect.zipRight(breakerMoved(settled, outcome)))
  }

  // --- the gateway -------------------------------------------------------------------------------

  /** What the cache keeps of a fresh answer, plain or streamed (tool calls only when there were some). */
  const cacheEntry = (
    metadata: LlmRequest.ResponseMetadata,
    answer: { readonly text: string; readonly usage: ResponseCache.CachedResponse["usage"]; readonly finish_reason: string; readonly tool_calls?: ResponseCache.CachedResponse["tool_calls"] },
    started: number
  ): ResponseCache.CachedResponse => ({
    text: answer.text, usage: answer.usage, finish_reason: answer.finish_reason,
    provider: metadata.provider, model: metadata.model, model_id: metadata.model_id,
    mock: metadata.mock, created_at: started,
    ...(answer.tool_calls === undefined || answer.tool_calls.length === 0 ? {} : { tool_calls: answer.tool_calls })
  })

  /** A fresh answer through the backends (stored in the cache when `cached` says where). */
  const fresh = (
    request: LlmRequest.AIRequest,
    context: LlmRequest.CallContext,
    backends: ReadonlyArray<string>,
    cached: Option.Option<{ readonly key: string }>,
    started: number
  ): Effect.Effect<LlmRequest.LLMResponse, Errors.GatewayError> =>
    Effect.flatMap(
      withFailover(request, context, backends, (backend, attempt) => gw1.process({ ...request, provider: backend }, { ...context, timeout_ms, attempt })),
      (result) => {
        const { completion, response } = result.value
        const answer = Spans.annotateThen(() => ({ "tidyllm.backend_used": result.backend, "tidyllm.attempts": result.attempts }), () =>
          Effect.succeed({
            ...response,
            metadata: {
              ...response.metadata,
              latency_ms: Math.round(clock.unsafeCurrentTimeMillis() - started),
              cache_hit: false,
              backend_used: result.backend,
              attempts: result.attempts
            }
          } satisfies LlmRequest.LLMResponse))
        if (Option.isNone(cached)) return answer
        return Effect.zipRight(store(cached.value.key, cacheEntry(response.metadata, completion, started)), answer)
      }
    )

  /**
   * A request's way through the response cache, the same for a plain answer and a stream: when it
   * started, its backends, the lookup when caching applies (the span says whether it hit), then
   * `onHit` with the cached answer or `onMiss` with where a fresh one is to be stored. Plain steps
   * rather than a generator: this runs for every request (docs/performance.md).
   */
  const throughCache = <A, R>(
    request: LlmRequest.AIRequest,
    context: LlmRequest.CallContext,
    onHit: (hit: ResponseCache.CachedResponse, started: number) => Effect.Effect<A, Errors.GatewayError, R>,
    onMiss: (backends: ReadonlyArray<string>, cached: Option.Option<{ readonly key: string }>, started: number) => Effect.Effect<A, Errors.GatewayError, R>
  ): Effect.Effect<A, Errors.GatewayError, R> =>
    Effect.clockWith((clock) => {
      const started = clock.unsafeCurrentTimeMillis()
      const backends = backendsFor(request)
      if (!settings.enable_caching || request.use_cache === false) {
        return Spans.annotateThen(() => ({ "tidyllm.cache_hit": false }), () => onMiss(backends, Option.none(), started))
      }
      return Effect.flatMap(lookup(request, backends, context), (cached) => {
        const hit = Option.flatMap(cached, (c) => c.hit)
        return Spans.annotateThen(
          () => ({ "tidyllm.cache_hit": Option.isSome(hit) }),
          () => (Option.isSome(hit) ? onHit(hit.value, started) : onMiss(backends, cached, started))
        )
      })
    })

  const process = (request: LlmRequest.AIRequest, context: LlmRequest.CallContext): Effect.Effect<LlmRequest.LLMResponse, Errors.GatewayError> =>
    throughCache<LlmRequest.LLMResponse, never>(
      request,
      context,
      (hit, started) => hitResponse(request, context, hit, started),
      (backends, cached, started) => fresh(request, context, backends, cached, started)
    ).pipe(Spans.span("AiProcessingGateway.process"))

  const embed = Effect.fn("AiProcessingGateway.embed")(function*(request: LlmRequest.EmbeddingRequest, context: LlmRequest.CallContext) {
    // The failover loop reads the model and provider (breakers, the audit of a refusal) off a chat-shaped request.
    const shape: LlmRequest.AIRequest = {
      model: request.model,
      ...(request.provider === undefined ? {} : { provider: request.provider }),
      ...(request.reason === undefined ? {} : { reason: request.reason })
    }
    const result = yield* withFailover(shape, context, backendsFor(shape), (backend, attempt) =>
      gw1.embed({ ...request, provider: backend }, { ...context, timeout_ms, attempt }))
    yield* Spans.annotate({ "tidyllm.backend_used": result.backend, "tidyllm.attempts": result.attempts })
    return { ...result.value, backend_used: result.backend, attempts: result.attempts } satisfies EmbedAnswer
  })

  /**
   * One attempt at a stream, in a scope of its own forked from `outer`: closed (settled and audited
   * by gateway #1) as soon as the attempt fails, else with `outer`. It succeeds once the backend
   * gave its first events (or ended at once).
   */
  const openAttempt = (outer: Scope.Scope, request: LlmRequest.AIRequest, context: LlmRequest.CallContext, backend: string, attempt: number) =>
    Effect.flatMap(Scope.fork(outer, ExecutionStrategy.sequential), (scope) =>
      Effect.flatMap(gw1.openStream({ ...request, provider: backend }, { ...context, timeout_ms, attempt }), (pull) =>
        Effect.map(
          Effect.catchAll(pull, (e) => Option.match(e, { onNone: () => Effect.succeed(Chunk.empty<StreamEvent>()), onSome: Effect.fail })),
          (first) => ({ first, pull })
        )).pipe(
          Scope.extend(scope),
          Effect.onExit((exit) => (Exit.isFailure(exit) ? Scope.close(scope, exit) : Effect.void))
        ))

  /**
   * A stream from the backends, the first that gave its first events (failover happens only before
   * the first event: once text has reached the client it cannot be taken back). Its events pass on
   * as they come; the closing one is cached (when `cached` says where) and carries the gateway's
   * metadata.
   */
  const freshStream = (
    request: LlmRequest.AIRequest,
    context: LlmRequest.CallContext,
    backends: ReadonlyArray<string>,
    cached: Option.Option<{ readonly key: string }>,
    started: number
  ): Pulls.Open<StreamEvent, Errors.GatewayError> =>
    Effect.flatMap(Effect.scope, (outer) =>
      Effect.flatMap(
        withFailover(request, context, backends, (backend, attempt) => openAttempt(outer, request, context, backend, attempt), true),
        (opened) =>
          Spans.annotateThen(
            () => ({ "tidyllm.backend_used": opened.backend, "tidyllm.attempts": opened.attempts }),
            () => Effect.flatMap(Pulls.keepSpan, (inThisSpan) => {
              // What went through: written by the stream (one consumer), read at its end and by the finalizer.
              const seen = { text: "", tools: [] as Array<Extract<StreamEvent, { _tag: "ToolCallDelta" }>>, finished: false }
              // The scope ends with the stream: failed, finished, or (successfully, without `Done`)
              // when the client stopped reading. The breaker hears of the ending once: a failure as
              // the pull fails (the handler turns it into an event and ends), anything else as the
              // scope closes.
              let told = false
              const ending = (exit: Exit.Exit<unknown, unknown>) =>
                inThisSpan(Effect.suspend(() => {
                  if (told) return Effect.void
                  told = true
                  return streamEnded(opened.permit, seen.finished, exit)
                }))
              /** The closing event: the answer is cached (when it applies), and its metadata gets the gateway's own. */
              const finished = (response: LlmRequest.LLMResponse): Effect.Effect<StreamEvent> => {
                seen.finished = true
                const done = Effect.clockWith((clock) =>
                  Effect.succeed<StreamEvent>({
                    _tag: "Done",
                    response: {
                      ...response,
                      metadata: { ...response.metadata, latency_ms: Math.round(clock.unsafeCurrentTimeMillis() - started), cache_hit: false, backend_used: opened.backend, attempts: opened.attempts }
                    }
                  })
                )
                if (Option.isNone(cached) || response.data === undefined) return done
                const answer = { text: seen.text, usage: response.data.usage, finish_reason: response.data.finish_reason, tool_calls: CorporateLlmGateway.assembleToolCalls(seen.tools) }
                return Effect.zipRight(store(cached.value.key, cacheEntry(response.metadata, answer, started)), done)
              }
              /** A chunk of gateway #1's events as they go on: the pieces pass as they are, and only `Done` takes an effect. */
              const onward = (chunk: Chunk.Chunk<StreamEvent>): Effect.Effect<Chunk.Chunk<StreamEvent>> => {
                const out: Array<StreamEvent> = []
                let done: Effect.Effect<StreamEvent> | undefined
                let trailing = 0
                for (const event of chunk) {
                  if (done !== undefined) {
                    trailing++
                    continue
                  }
                  if (event._tag === "Delta") {
                    // Only a cached answer needs the text.
                    if (Option.isSome(cached)) seen.text += event.text
                    out.push(event)
                  } else if (event._tag === "ToolCallDelta") {
                    seen.tools.push(event)
                    out.push(event)
                  } else {
                    done = finished(event.response)
                  }
                }
                if (done === undefined) return Effect.succeed(Chunk.unsafeFromArray(out))
                // Nothing follows `Done` in gateway #1's stream; were anything to, it keeps its place.
                return Effect.map(done, (d) => Chunk.appendAll(Chunk.unsafeFromArray([...out, d]), Chunk.takeRight(chunk, trailing)))
              }
              let first: Chunk.Chunk<StreamEvent> | undefined = opened.value.first
              const rest = Effect.matchEffect(opened.value.pull, {
                onSuccess: onward,
                onFailure: (e) => Effect.zipRight(Option.isSome(e) ? Effect.uninterruptible(ending(Exit.fail(e.value))) : Effect.void, Effect.fail(e))
              })
              const pull: Pulls.Pull<StreamEvent, Errors.GatewayError> = Effect.suspend(() => {
                if (first === undefined) return rest
                const chunk = first
                first = undefined
                return onward(chunk)
              })
              return Effect.as(Pulls.addFinalizer(ending), pull)
            })
          )
      ))

  const openStream = (request: LlmRequest.AIRequest, context: LlmRequest.CallContext): Pulls.Open<StreamEvent, Errors.GatewayError> =>
    throughCache<Pulls.Pull<StreamEvent, Errors.GatewayError>, Scope.Scope>(
      request,
      context,
      (hit, started) => Effect.map(hitResponse(request, context, hit, started), replay),
      (backends, cached, started) => freshStream(request, context, backends, cached, started)
    ).pipe(Pulls.span("AiProcessingGateway.processStream"))

  const processStream = (request: LlmRequest.AIRequest, context: LlmRequest.CallContext): Stream.Stream<StreamEvent, Errors.GatewayError> =>
    Pulls.toStream(openStream(request, context))

  const openOrFailing = (b: CircuitBreakerStatus) => b.state !== "closed" || b.consecutive_failures > 0

  return AiProcessingGateway.of({
    process,
    processStream,
    openStream,
    embed,
    backendsFor,
    // An open breaker does not make the replica unhealthy: every replica sees the same provider, and the others may still answer.
    health: Effect.map(breakers.status, (all) => ({
      healthy: true,
      caching: settings.enable_caching,
      cache_ttl_seconds: settings.cache_ttl_seconds,
      max_retries: settings.max_retries,
      timeout_seconds: settings.timeout_seconds,
      backends: backendsFor({}),
      circuit_breaker_failures: breakerFailures,
      circuit_breaker_cooldown_seconds: breakerCooldown,
      circuit_breakers: all.filter(openOrFailing)
    })),
    breakers: breakers.status
  })
})

/** Gateway #2 as a layer: requires gateway #1 beneath it, its settings and a response cache. */
export const layer = Layer.effect(AiProcessingGateway, make)

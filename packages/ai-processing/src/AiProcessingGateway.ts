/**
 * Gateway #2: processing around gateway #1 — backend choice with ordered failover, an exact-match
 * response cache with TTL, retries with exponential backoff and jitter on retryable failures only,
 * and a per-attempt timeout. Every attempt is one audited request of gateway #1.
 */
import { createHash } from "node:crypto"
import { Cause, Chunk, Clock, Context, Duration, Effect, ExecutionStrategy, Exit, Layer, Option, Random, Ref, Scope, Stream } from "effect"
import { Errors, LlmRequest } from "@tidyllm/core"
import type { Config } from "@tidyllm/core"
import { CorporateLlmGateway } from "@tidyllm/corporate-llm"
import * as ResponseCache from "./ResponseCache.js"

/** The settings gateway #2 runs with. */
export class Settings extends Context.Tag("@tidyllm/ai-processing/Settings")<Settings, Config.AiProcessingSettings>() {}

/** A streamed answer: deltas, then `Done` carrying the full response metadata. */
export type StreamEvent = CorporateLlmGateway.StreamEvent

/** Health of gateway #2. */
export interface Health {
  readonly healthy: boolean
  readonly caching: boolean
  readonly cache_ttl_seconds: number
  readonly max_retries: number
  readonly timeout_seconds: number
  readonly backends: ReadonlyArray<string>
}

/** The gateway #2 service. */
export interface Service {
  readonly process: (request: LlmRequest.AIRequest, context: LlmRequest.CallContext) => Effect.Effect<LlmRequest.LLMResponse, Errors.GatewayError>
  readonly processStream: (request: LlmRequest.AIRequest, context: LlmRequest.CallContext) => Stream.Stream<StreamEvent, Errors.GatewayError>
  /** The backends a request would try, in order. */
  readonly backendsFor: (request: LlmRequest.AIRequest) => ReadonlyArray<string>
  readonly health: Effect.Effect<Health>
}

/** Gateway #2. */
export class AiProcessingGateway extends Context.Tag("@tidyllm/ai-processing/AiProcessingGateway")<AiProcessingGateway, Service>() {}

/**
 * The cache key: a hash of everything that changes the answer (backends, canonical model,
 * messages, sampling parameters) and nothing that does not (reason, user, metadata, request id).
 */
export const cacheKey = (backends: ReadonlyArray<string>, model: string, request: LlmRequest.AIRequest, maxTokens: number): string =>
  createHash("sha256").update(JSON.stringify({
    v: 1,
    backends,
    model,
    messages: LlmRequest.messagesOf(request).map((m) => [m.role, m.content]),
    temperature: request.temperature ?? null,
    top_p: request.top_p ?? null,
    max_tokens: maxTokens,
    stop: request.stop ?? null
  })).digest("hex")

/** Errors after which the next backend is tried: provider failures, and a backend that is not configured or does not serve the model. */
const failsOver = (e: Errors.GatewayError): boolean =>
  e._tag === "ProviderError" || (e._tag === "UnknownModel" && e.provider !== undefined) || (e._tag === "InvalidRequest" && e.field === "provider")

const describe = (e: Errors.GatewayError) => ({ error_type: e.type, message: e.message, ...(e._tag === "ProviderError" ? { kind: e.kind } : {}) })

/** Builds gateway #2 on top of gateway #1. */
export const make = Effect.gen(function*() {
  const settings = yield* Settings
  const gw1 = yield* CorporateLlmGateway.CorporateLlmGateway
  const cache = yield* ResponseCache.ResponseCache
  const corporate = gw1.settings

  const backendsFor = (request: LlmRequest.AIRequest): ReadonlyArray<string> => {
    const first = request.backend === undefined || request.backend === "auto" ? (request.provider ?? corporate.default_provider) : request.backend
    const rest = request.fallback_backends ?? (request.backend === undefined || request.backend === "auto"
      ? [...settings.fallback_backends, ...(corporate.fallback_provider === undefined ? [] : [corporate.fallback_provider])]
      : [])
    return [...new Set([first, ...rest])]
  }

  /** Backoff before retry `n` (1-based): base · 2^(n-1), with full jitter in [50 %, 100 %]. */
  const backoff = (n: number) =>
    Effect.map(Random.next, (r) => Duration.millis(settings.retry_delay_base * 1000 * 2 ** (n - 1) * (0.5 + r / 2)))

  const timeout_ms = settings.timeout_seconds * 1000

  /** The cache lookup, if caching applies; a failing cache is a miss with a warning. */
  const lookup = (request: LlmRequest.AIRequest, backends: ReadonlyArray<string>) =>
    Effect.gen(function*() {
      if (!settings.enable_caching || request.use_cache === false) return Option.none<{ key: string; hit: Option.Option<ResponseCache.CachedResponse> }>()
      const resolved = yield* gw1.resolve({ ...request, provider: backends[0] ?? corporate.default_provider }).pipe(Effect.option)
      if (Option.isNone(resolved)) return Option.none()
      const maxTokens = request.max_tokens ?? Math.min(corporate.default_max_tokens, resolved.value.model.max_output_tokens)
      const key = cacheKey(backends, resolved.value.model.id, request, maxTokens)
      const hit = yield* cache.get(key).pipe(
        Effect.catchAll((e) => Effect.logWarning(`response cache unavailable, treating as a miss: ${e.message}`).pipe(Effect.as(Option.none())))
      )
      return Option.some({ key, hit })
    })

  const store = (key: string, value: ResponseCache.CachedResponse) =>
    cache.set(key, value, settings.cache_ttl_seconds).pipe(
      Effect.catchAll((e) => Effect.logWarning(`response cache write failed: ${e.message}`))
    )

  const hitResponse = (request: LlmRequest.AIRequest, context: LlmRequest.CallContext, hit: ResponseCache.CachedResponse, started: number) =>
    Effect.gen(function*() {
      const auditId = yield* gw1.recordCacheHit(request, context, { provider: hit.provider, model: hit.model, usage: hit.usage })
      const now = yield* Clock.currentTimeMillis
      return {
        status: "success",
        data: { response: hit.text, model: hit.model, provider: hit.provider, finish_reason: hit.finish_reason, usage: hit.usage },
        metadata: {
          request_id: context.request_id, audit_id: auditId, provider: hit.provider, model: hit.model, model_id: hit.model_id,
          cost_usd: "0.000000000", latency_ms: Math.round(now - started), mock: hit.mock,
          cache_hit: true, backend_used: hit.provider, attempts: 0
        }
      } satisfies LlmRequest.LLMResponse
    })

  /**
   * Runs `attempt` over the backends with retries: retryable failures are retried on the same
   * backend up to `max_retries` times, then (like any provider failure) the next backend is tried.
   */
  const withFailover = <A>(
    backends: ReadonlyArray<string>,
    attempt: (backend: string, n: number) => Effect.Effect<A, Errors.GatewayError>
  ): Effect.Effect<{ value: A; backend: string; attempts: number }, Errors.GatewayError> =>
    Effect.gen(function*() {
      const failures: Array<Errors.AttemptFailure> = []
      let n = 0
      for (const backend of backends) {
        for (let tryNo = 0; ; tryNo++) {
          n++
          const exit = yield* Effect.exit(attempt(backend, n))
          if (Exit.isSuccess(exit)) return { value: exit.value, backend, attempts: n }
          const error = Option.getOrUndefined(Cause.failureOption(exit.cause))
          if (error === undefined) return yield* Effect.failCause(exit.cause)
          if (!failsOver(error)) return yield* Effect.fail(error)
          failures.push({ backend, attempt: n, ...describe(error) })
          const retryable = error._tag === "ProviderError" && error.retryable
          if (!retryable || tryNo >= settings.max_retries) break
          yield* Effect.sleep(yield* backoff(tryNo + 1))
        }
      }
      return yield* new Errors.AllBackendsFailed({
        message: `every backend failed (${backends.join(", ")}) after ${failures.length} attempt(s)`,
        attempts: failures
      })
    })

  const process = Effect.fn("AiProcessingGateway.process")(function*(request: LlmRequest.AIRequest, context: LlmRequest.CallContext) {
    const started = yield* Clock.currentTimeMillis
    const backends = backendsFor(request)
    const cached = yield* lookup(request, backends)
    if (Option.isSome(cached) && Option.isSome(cached.value.hit)) return yield* hitResponse(request, context, cached.value.hit.value, started)
    const result = yield* withFailover(backends, (backend, attempt) =>
      gw1.process({ ...request, provider: backend }, { ...context, timeout_ms, attempt })
    )
    const { response, completion } = result.value
    if (Option.isSome(cached)) {
      yield* store(cached.value.key, {
        text: completion.text, usage: completion.usage, finish_reason: completion.finish_reason,
        provider: response.metadata.provider, model: response.metadata.model, model_id: response.metadata.model_id,
        mock: response.metadata.mock, created_at: started
      })
    }
    const now = yield* Clock.currentTimeMillis
    return {
      ...response,
      metadata: { ...response.metadata, latency_ms: Math.round(now - started), cache_hit: false, backend_used: result.backend, attempts: result.attempts }
    } satisfies LlmRequest.LLMResponse
  })

  const processStream = (request: LlmRequest.AIRequest, context: LlmRequest.CallContext): Stream.Stream<StreamEvent, Errors.GatewayError> =>
    Stream.unwrapScoped(Effect.gen(function*() {
      const started = yield* Clock.currentTimeMillis
      const backends = backendsFor(request)
      const cached = yield* lookup(request, backends)
      if (Option.isSome(cached) && Option.isSome(cached.value.hit)) {
        const response = yield* hitResponse(request, context, cached.value.hit.value, started)
        return Stream.make<Array<StreamEvent>>({ _tag: "Delta", text: response.data.response }, { _tag: "Done", response: { ...response, data: { ...response.data, response: "" } } })
      }
      // Failover happens only before the first event: once text has reached the client it cannot be taken back.
      const outer = yield* Effect.scope
      const opened = yield* withFailover(backends, (backend, attempt) =>
        Effect.gen(function*() {
          const scope = yield* Scope.fork(outer, ExecutionStrategy.sequential)
          const pull = yield* Stream.toPull(gw1.processStream({ ...request, provider: backend }, { ...context, timeout_ms, attempt })).pipe(Scope.extend(scope))
          const first = yield* pull.pipe(
            Effect.catchAll((e) => Option.match(e, { onNone: () => Effect.succeed(Chunk.empty<StreamEvent>()), onSome: Effect.fail })),
            Effect.onExit((exit) => (Exit.isFailure(exit) ? Scope.close(scope, exit) : Effect.void))
          )
          return { first, pull }
        })
      )
      const text = yield* Ref.make("")
      const rest = Stream.repeatEffectChunkOption(opened.value.pull)
      return Stream.concat(Stream.fromChunk(opened.value.first), rest).pipe(
        Stream.mapEffect((event) =>
          Effect.gen(function*() {
            if (event._tag === "Delta") {
              yield* Ref.update(text, (t) => t + event.text)
              return event
            }
            if (event._tag === "ToolCallDelta") return event
            const response = event.response
            if (Option.isSome(cached) && response.data !== undefined) {
              yield* store(cached.value.key, {
                text: yield* Ref.get(text), usage: response.data.usage, finish_reason: response.data.finish_reason,
                provider: response.metadata.provider, model: response.metadata.model, model_id: response.metadata.model_id,
                mock: response.metadata.mock, created_at: started
              })
            }
            const now = yield* Clock.currentTimeMillis
            return {
              _tag: "Done",
              response: { ...response, metadata: { ...response.metadata, latency_ms: Math.round(now - started), cache_hit: false, backend_used: opened.backend, attempts: opened.attempts } }
            } satisfies StreamEvent
          })
        )
      )
    }))

  return AiProcessingGateway.of({
    process,
    processStream,
    backendsFor,
    health: Effect.succeed({
      healthy: true,
      caching: settings.enable_caching,
      cache_ttl_seconds: settings.cache_ttl_seconds,
      max_retries: settings.max_retries,
      timeout_seconds: settings.timeout_seconds,
      backends: backendsFor({})
    })
  })
})

/** Gateway #2 as a layer: requires gateway #1 beneath it, its settings and a response cache. */
export const layer = Layer.effect(AiProcessingGateway, make)

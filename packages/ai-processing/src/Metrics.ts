/**
 * Gateway #2's metrics, as Effect `Metric`s in the global registry (the server renders them at
 * `GET /metrics`): response-cache lookups and errors, retries, failovers, and circuit breakers
 * (transitions as they happen; state and failure counts set when the server is scraped).
 *
 * Label values are bounded: a backend is a configured provider (a backend a request names that
 * is not configured is counted as `other`), a model a catalog id, a kind or reason an enum.
 */
import { Effect, Metric, MetricLabel } from "effect"
import type { Errors } from "@tidyllm/core"
import type { Status as CircuitBreakerStatus } from "./internal/circuitBreaker.js"

/** The label value of a backend that is not configured. */
export const OTHER = "other"

/** Response-cache lookups by result (`hit` or `miss`; an unreadable cache is a miss, and also an error). */
export const cacheLookups = Metric.counter("tidyllm_cache_lookups_total", {
  description: "Response-cache lookups by result (hit or miss; a cache that fails or is too slow counts as a miss and as an error).",
  incremental: true
})
/** Response-cache failures by operation (`get` or `set`). */
export const cacheErrors = Metric.counter("tidyllm_cache_errors_total", {
  description: "Response-cache failures by operation (get or set): errors, timeouts and unusable entries.",
  incremental: true
})
/** Retries on the same backend, by backend and the provider error kind that caused them. */
export const retries = Metric.counter("tidyllm_retries_total", {
  description: "Retries of a request on the same backend, by backend and the kind of provider error that caused them.",
  incremental: true
})
/** Moves to the next backend after one failed, by the backend given up and why. */
export const failovers = Metric.counter("tidyllm_failovers_total", {
  description: "Failovers: a backend given up for the next one, by that backend and the reason (provider error kind, circuit_open, model_not_found, not_configured).",
  incremental: true
})
/** Circuit-breaker state changes, by backend, model and the state entered. */
export const breakerTransitions = Metric.counter("tidyllm_circuit_breaker_transitions_total", {
  description: "Circuit-breaker state changes, by backend, model and the state entered (open, half_open, closed).",
  incremental: true
})
/** Circuit-breaker state (0 closed, 1 half open, 2 open), set at scrape time. */
export const breakerState = Metric.gauge("tidyllm_circuit_breaker_state", {
  description: "Circuit-breaker state by backend and model: 0 closed, 1 half open, 2 open (this replica's view)."
})
/** Consecutive counted failures of a breaker, set at scrape time. */
export const breakerFailures = Metric.gauge("tidyllm_circuit_breaker_consecutive_failures", {
  description: "Consecutive counted failures of a circuit breaker, by backend and model."
})

const noLabels: ReadonlyArray<MetricLabel.MetricLabel> = []

const cacheHit = Metric.tagged(cacheLookups, "result", "hit")
const cacheMiss = Metric.tagged(cacheLookups, "result", "miss")
const cacheGetError = Metric.tagged(cacheErrors, "operation", "get")
const cacheSetError = Metric.tagged(cacheErrors, "operation", "set")

/** Makes the cache series exist (at 0) before the first lookup, so that rates and ratios start from zero. */
export const registerCacheSeries: Effect.Effect<void> = Effect.sync(() => {
  for (const m of [cacheHit, cacheMiss, cacheGetError, cacheSetError]) m.register()
})

/** Counts a cache lookup. */
export const cacheLookup = (hit: boolean): Effect.Effect<void> => Effect.sync(() => (hit ? cacheHit : cacheMiss).unsafeUpdate(1, noLabels))

/** Counts a failed cache operation. */
export const cacheError = (operation: "get" | "set"): Effect.Effect<void> =>
  Effect.sync(() => (operation === "get" ? cacheGetError : cacheSetError).unsafeUpdate(1, noLabels))

/** Counters tagged by a few label values, made once per combination (the combinations are bounded). */
const memo = (metric: Metric.Metric.Counter<number>, names: ReadonlyArray<string>) => {
  const made = new Map<string, Metric.Metric.Counter<number>>()
  return (values: ReadonlyArray<string>): Effect.Effect<void> =>
    Effect.sync(() => {
      const key = values.join("\u0000")
      let counter = made.get(key)
      if (counter === undefined) {
        counter = Metric.taggedWithLabels(metric, names.map((n, i) => MetricLabel.make(n, values[i] ?? "")))
        made.set(key, counter)
      }
      counter.unsafeUpdate(1, noLabels)
    })
}

const retryBy = memo(retries, ["backend", "kind"])
const failoverBy = memo(failovers, ["backend", "reason"])
const transitionBy = memo(breakerTransitions, ["backend", "model", "to"])

/** Counts a retry after a retryable provider error (which only a configured backend returns). */
export const retry = (backend: string, kind: Errors.ProviderErrorKind): Effect.Effect<void> => retryBy([backend, kind])

/**
 * Counts a failover away from `backend` after `failure` (its last attempt's `error_type` and
 * `kind`). A backend that is not configured is labelled `other`: its name came from the request.
 */
export const failover = (backend: string, failure: { readonly error_type: string; readonly kind?: string | undefined }): Effect.Effect<void> => {
  if (failure.error_type === "invalid_request_error") return failoverBy([OTHER, "not_configured"])
  return failoverBy([backend, failure.kind ?? failure.error_type])
}

/** Counts a circuit breaker entering `to`. */
export const breakerTransition = (backend: string, model: string, to: "open" | "half_open" | "closed"): Effect.Effect<void> =>
  transitionBy([backend, model, to])

const stateValue = { closed: 0, half_open: 1, open: 2 } as const

/** Sets the breaker gauges from the breakers' status. */
export const setBreakers = (all: ReadonlyArray<CircuitBreakerStatus>): Effect.Effect<void> =>
  Effect.sync(() => {
    for (const b of all) {
      const labels = [MetricLabel.make("backend", b.backend), MetricLabel.make("model", b.model)]
      breakerState.unsafeUpdate(stateValue[b.state], labels)
      breakerFailures.unsafeUpdate(b.consecutive_failures, labels)
    }
  })

/**
 * Gateway #1's metrics, as Effect `Metric`s in the global registry (the server renders them at
 * `GET /metrics`): requests by provider, model and audit status; tokens; cost; upstream latency;
 * and the budget gauges the server sets when it is scraped.
 *
 * Label values are bounded: a provider is a configured provider's name, a model a catalog id, and
 * any other name a request carries is counted as `other`; a status is the audit enum. Never a
 * user, team, key, request id or prompt.
 *
 * The request path records through tagged metrics made once per (provider, model) and kept in a
 * map, updated with `unsafeUpdate` inside one `Effect.sync`: no label arrays and no registry lookups
 * per request. (So the fiber's `Effect.tagMetrics` labels are not added to these series.)
 */
import { Effect, FiberRef, GlobalValue, Metric, MetricBoundaries, MetricLabel } from "effect"
import type { AuditStatus } from "./AuditLog.js"
import type { ScopeStatus } from "./BudgetLedger.js"

/** The label value of a provider or model that configuration does not name. */
export const OTHER = "other"

/** Upstream latency buckets in seconds: from a local stub to a long generation. */
export const upstreamBoundaries = MetricBoundaries.fromIterable([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120])

/** Requests gateway #1 finished (one per audit row: every attempt, rejection and cache hit). */
export const requests = Metric.counter("tidyllm_llm_requests_total", {
  description: "Requests gateway #1 finished, by provider, model and audit status (one per audit row: attempts, rejections and cache hits included).",
  incremental: true
})
/** Tokens consumed upstream (`type`: input or output); cache hits consume none. */
export const tokens = Metric.counter("tidyllm_tokens_total", {
  description: "Tokens consumed upstream, by provider, model and type (input or output); cache hits are not counted.",
  incremental: true
})
/** Cost charged to the budget, in USD. */
export const cost = Metric.counter("tidyllm_cost_usd_total", {
  description: "Cost charged to the budget, in US dollars, by provider and model.",
  incremental: true
})
/** Time spent waiting for the provider, per call (a stream: until its last event). */
export const upstreamDuration = Metric.histogram(
  "tidyllm_upstream_request_duration_seconds",
  upstreamBoundaries,
  "Time spent in the provider call, by provider and model (a stream: until its last event); cancelled calls are not observed."
)

/** Budget gauges, by scope and period, set when the server is scraped. */
export const budgetLimit = Metric.gauge("tidyllm_budget_limit_usd", { description: "The budget of the scope's current period, in US dollars." })
export const budgetSpent = Metric.gauge("tidyllm_budget_spent_usd", { description: "Spent in the scope's current period, in US dollars." })
export const budgetReserved = Metric.gauge("tidyllm_budget_reserved_usd", { description: "Reserved by requests in flight in the scope's current period, in US dollars." })
export const budgetRemaining = Metric.gauge("tidyllm_budget_remaining_usd", {
  description: "Left to reserve in the scope's current period (limit - spent - reserved, not below 0), in US dollars."
})

const noLabels: ReadonlyArray<MetricLabel.MetricLabel> = []

const statuses: ReadonlyArray<AuditStatus> = ["success", "error", "rejected_budget", "rejected_policy", "cancelled", "cache_hit", "stream_error"]

/** The series of one (provider, model) pair. */
export interface Instruments {
  readonly provider: string
  readonly model: string
  readonly requests: Readonly<Record<AuditStatus, Metric.Metric.Counter<number>>>
  readonly inputTokens: Metric.Metric.Counter<number>
  readonly outputTokens: Metric.Metric.Counter<number>
  readonly cost: Metric.Metric.Counter<number>
  readonly upstream: Metric.Metric.Histogram<number>
}

const instruments = (provider: string, model: string): Instruments => {
  const p = MetricLabel.make("provider", provider)
  const m = MetricLabel.make("model", model)
  // One label array per series, made once: the metric's hook cache is keyed by the array.
  const requestsBy = Object.fromEntries(statuses.map((s) =>
    [s, Metric.taggedWithLabels(requests, [p, m, MetricLabel.make("status", s)])]
  )) as Record<AuditStatus, Metric.Metric.Counter<number>>
  return {
    provider,
    model,
    requests: requestsBy,
    inputTokens: Metric.taggedWithLabels(tokens, [p, m, MetricLabel.make("type", "input")]),
    outputTokens: Metric.taggedWithLabels(tokens, [p, m, MetricLabel.make("type", "output")]),
    cost: Metric.taggedWithLabels(cost, [p, m]),
    upstream: Metric.taggedWithLabels(upstreamDuration, [p, m])
  }
}

/** Finds the series of a provider and model, mapping names configuration does not know to `other`. */
export interface Recorder {
  readonly instruments: (provider: string, model: string) => Instruments
}

/**
 * A recorder over the configured providers and the catalog: `isProvider` says whether a name is a
 * configured provider, `modelId` gives the catalog id a model name (id or alias) resolves to.
 * Only bounded names become map keys, so a stream of made-up model names adds nothing.
 */
export const makeRecorder = (isProvider: (name: string) => boolean, modelId: (name: string) => string | undefined): Recorder => {
  const byProvider = new Map<string, Map<string, Instruments>>()
  const lookup = (provider: string, model: string): Instruments => {
    let models = byProvider.get(provider)
    if (models === undefined) {
      if (provider !== OTHER && !isProvider(provider)) return lookup(OTHER, model)
      models = new Map()
      byProvider.set(provider, models)
    }
    const known = models.get(model)
    if (known !== undefined) return known
    const id = model === OTHER ? OTHER : modelId(model)
    if (id === undefined) return lookup(provider, OTHER)
    // An alias shares its model's series (aliases are bounded by the catalog too).
    const made = id === model ? instruments(provider, model) : lookup(provider, id)
    models.set(model, made)
    return made
  }
  return { instruments: lookup }
}

/** Counts one finished request, and (unless it was a cache hit) its tokens and cost; a side effect: call it inside an effect. */
export const unsafeRecordOutcome = (
  i: Instruments,
  status: AuditStatus,
  inputTokens: number,
  outputTokens: number,
  costNanos: number
): void => {
  i.requests[status].unsafeUpdate(1, noLabels)
  if (status === "cache_hit") return
  if (inputTokens > 0) i.inputTokens.unsafeUpdate(inputTokens, noLabels)
  if (outputTokens > 0) i.outputTokens.unsafeUpdate(outputTokens, noLabels)
  if (costNanos > 0) i.cost.unsafeUpdate(costNanos / 1e9, noLabels)
}

/** {@link unsafeRecordOutcome} as an effect. */
export const recordOutcome = (
  i: Instruments,
  status: AuditStatus,
  inputTokens: number,
  outputTokens: number,
  costNanos: number
): Effect.Effect<void> => Effect.sync(() => unsafeRecordOutcome(i, status, inputTokens, outputTokens, costNanos))

/**
 * Upstream time of the request being served, added to by every provider call it makes (retries
 * and failover included). The server puts one in each request's context, so that it can tell the
 * gateway's own time (overhead) from the provider's. A plain mutable cell, not a `Ref`: it is
 * shared by reference with any fiber the request forks, and costs nothing to add to.
 */
export interface UpstreamTimer {
  /** Seconds spent in provider calls (a stream: until its first event). */
  seconds: number
  /** Provider calls made. */
  calls: number
}

/** The upstream timer of the request being served, if the caller set one. */
export const currentUpstreamTimer: FiberRef.FiberRef<UpstreamTimer | undefined> = GlobalValue.globalValue(
  Symbol.for("@tidyllm/corporate-llm/Metrics/currentUpstreamTimer"),
  () => FiberRef.unsafeMake<UpstreamTimer | undefined>(undefined)
)

/** Adds a provider call's time to an upstream timer (a side effect: call it inside an effect). */
export const addUpstream = (timer: UpstreamTimer | undefined, seconds: number): void => {
  if (timer === undefined) return
  timer.seconds += seconds
  timer.calls += 1
}

/** Observes a finished provider call in the latency histogram. */
export const observeUpstream = (i: Instruments, seconds: number): Effect.Effect<void> =>
  Effect.sync(() => i.upstream.unsafeUpdate(seconds, noLabels))

/** A provider call ended: adds its time to the request's upstream timer and, if `observe`, to the latency histogram. */
export const upstreamEnded = (i: Instruments, seconds: number, observe: boolean): Effect.Effect<void> =>
  Effect.withFiberRuntime((fiber) => {
    addUpstream(fiber.getFiberRef(currentUpstreamTimer), seconds)
    if (observe) i.upstream.unsafeUpdate(seconds, noLabels)
    return Effect.void
  })

/** Seconds between two readings of `Clock.unsafeCurrentTimeNanos`. */
export const secondsBetween = (start: bigint, end: bigint): number => Number(end - start) / 1e9

const usd = (nanos: number) => nanos / 1e9

/** Sets the budget gauges from the ledger's view of each scope. */
export const setBudget = (rows: ReadonlyArray<ScopeStatus>): Effect.Effect<void> =>
  Effect.sync(() => {
    for (const row of rows) {
      const labels = [MetricLabel.make("scope", row.scope), MetricLabel.make("period", row.period)]
      budgetLimit.unsafeUpdate(usd(row.limit), labels)
      budgetSpent.unsafeUpdate(usd(row.spent), labels)
      budgetReserved.unsafeUpdate(usd(row.reserved), labels)
      budgetRemaining.unsafeUpdate(usd(Math.max(0, row.limit - row.spent - row.reserved)), labels)
    }
  })

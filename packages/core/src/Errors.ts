/**
 * Errors that cross the gateways' boundaries. Each carries a stable `type` (the `error.type` a
 * client sees) and the HTTP `status` a client expects; the server renders them as JSON.
 */
import { Schema } from "effect"

/** The request is malformed or names something that does not exist. */
export class InvalidRequest extends Schema.TaggedError<InvalidRequest>()("InvalidRequest", {
  message: Schema.String,
  /** Path of the offending field, e.g. `messages[0].content`, when one can be named. */
  field: Schema.optional(Schema.String)
}) {
  get type() { return "invalid_request_error" as const }
  get status() { return 400 }
}

/** The request names a model the catalog does not hold, or a provider that is not configured. */
export class UnknownModel extends Schema.TaggedError<UnknownModel>()("UnknownModel", {
  message: Schema.String,
  model: Schema.String,
  provider: Schema.optional(Schema.String)
}) {
  get type() { return "model_not_found" as const }
  get status() { return 400 }
}

/** The request was refused by policy (no reason given, a model not allowed, …). */
export class PolicyRejected extends Schema.TaggedError<PolicyRejected>()("PolicyRejected", {
  message: Schema.String,
  rule: Schema.String
}) {
  get type() { return "policy_rejected" as const }
  get status() { return 400 }
}

/** The worst-case cost of one request is above the per-request cap. */
export class CostCapExceeded extends Schema.TaggedError<CostCapExceeded>()("CostCapExceeded", {
  message: Schema.String,
  estimate_usd: Schema.String,
  cap_usd: Schema.String
}) {
  get type() { return "cost_cap_exceeded" as const }
  get status() { return 402 }
}

/** The caller may not do this: a model outside its team's allow-list, an action its role lacks. */
export class Forbidden extends Schema.TaggedError<Forbidden>()("Forbidden", {
  message: Schema.String,
  /** The rule that refused, e.g. `model_allow_list`, `role`. */
  rule: Schema.String
}) {
  get type() { return "permission_denied" as const }
  get status() { return 403 }
}

/** A per-key rate limit (requests or tokens per minute) is used up; retry after `retry_after_seconds`. */
export class RateLimited extends Schema.TaggedError<RateLimited>()("RateLimited", {
  message: Schema.String,
  /** `requests_per_minute` or `tokens_per_minute`. */
  limit_type: Schema.Literal("requests_per_minute", "tokens_per_minute"),
  limit: Schema.Number,
  /** Whole seconds until the window has room again (the `Retry-After` header). */
  retry_after_seconds: Schema.Int
}) {
  get type() { return "rate_limit_exceeded" as const }
  get status() { return 429 }
}

/** A budget scope has no room left for this request's reservation. */
export class BudgetExceeded extends Schema.TaggedError<BudgetExceeded>()("BudgetExceeded", {
  message: Schema.String,
  scope: Schema.String,
  limit_usd: Schema.String,
  spent_usd: Schema.String,
  reserved_usd: Schema.String,
  requested_usd: Schema.String
}) {
  get type() { return "budget_exceeded" as const }
  get status() { return 402 }
}

/** What went wrong with a provider call, coarse enough to decide retry and failover. */
export const ProviderErrorKind = Schema.Literal(
  "throttled", "server", "timeout", "connection", "validation", "auth", "model", "not_found", "stream", "unknown"
)
export type ProviderErrorKind = typeof ProviderErrorKind.Type

/** Kinds that a retry may cure. */
export const retryableKinds: ReadonlySet<ProviderErrorKind> = new Set(["throttled", "server", "timeout", "connection", "stream"])

/** One provider call failed. */
export class ProviderError extends Schema.TaggedError<ProviderError>()("ProviderError", {
  message: Schema.String,
  provider: Schema.String,
  model: Schema.String,
  kind: ProviderErrorKind,
  retryable: Schema.Boolean,
  /** Upstream HTTP status, when there was one. */
  upstream_status: Schema.optional(Schema.Number),
  /** Upstream error name, e.g. `ThrottlingException`. */
  upstream_type: Schema.optional(Schema.String),
  /** How long the upstream asked to be left alone before another call (its `Retry-After`), in ms. */
  retry_after_ms: Schema.optional(Schema.Number)
}) {
  get type() { return "upstream_error" as const }
  /** 504 for a timeout; 400 when the provider refused the request itself as invalid (the client's to fix); else 502. */
  get status() { return this.kind === "timeout" ? 504 : this.kind === "validation" ? 400 : 502 }
}

/** One failed attempt, as listed in {@link AllBackendsFailed}. */
export const AttemptFailure = Schema.Struct({
  backend: Schema.String,
  attempt: Schema.Int,
  error_type: Schema.String,
  kind: Schema.optional(Schema.String),
  message: Schema.String,
  /** The wait the upstream asked for (its `Retry-After`), in ms. */
  retry_after_ms: Schema.optional(Schema.Number)
})
export type AttemptFailure = typeof AttemptFailure.Type

/** Every backend (after its retries) failed. */
export class AllBackendsFailed extends Schema.TaggedError<AllBackendsFailed>()("AllBackendsFailed", {
  message: Schema.String,
  attempts: Schema.Array(AttemptFailure)
}) {
  get type() { return "all_backends_failed" as const }
  /**
   * 504 when every attempt timed out (the upstreams are slow, not broken); 429 when every attempt
   * was throttled (the upstreams are up but over their quota: the client should come back later,
   * `retry_after_seconds`); else 502.
   */
  get status() {
    if (this.attempts.length === 0) return 502
    if (this.attempts.every((a) => a.kind === "timeout")) return 504
    return this.attempts.every((a) => a.kind === "throttled") ? 429 : 502
  }
  /**
   * With status 429: the whole seconds until the soonest wait an upstream asked for is over (at
   * least 1; 1 when none asked). Undefined otherwise.
   */
  get retry_after_seconds(): number | undefined {
    if (this.status !== 429) return undefined
    const asked = this.attempts.flatMap((a) => (a.retry_after_ms === undefined ? [] : [a.retry_after_ms]))
    return asked.length === 0 ? 1 : Math.max(1, Math.ceil(Math.min(...asked) / 1000))
  }
}

/** The audit log (or another store the request cannot go on without) is unreachable: fail closed. */
export class StoreUnavailable extends Schema.TaggedError<StoreUnavailable>()("StoreUnavailable", {
  message: Schema.String,
  store: Schema.String
}) {
  get type() { return "service_unavailable" as const }
  get status() { return 503 }
}

/** Every error a gateway request can end with. */
export type GatewayError =
  | InvalidRequest
  | UnknownModel
  | PolicyRejected
  | Forbidden
  | RateLimited
  | CostCapExceeded
  | BudgetExceeded
  | ProviderError
  | AllBackendsFailed
  | StoreUnavailable

/** Schema of {@link GatewayError}, for API contracts. */
export const GatewayError = Schema.Union(
  InvalidRequest, UnknownModel, PolicyRejected, Forbidden, RateLimited, CostCapExceeded, BudgetExceeded, ProviderError, AllBackendsFailed, StoreUnavailable
)

/**
 * The port of per-key rate limits (requests and tokens per minute). An adapter shared by every
 * replica (Redis or Postgres; the server builds it on `@effect/experimental`'s RateLimiter) makes
 * the limit hold across replicas; the in-memory one holds within one process.
 */
import { Clock, Context, Effect, Layer, Ref } from "effect"
import { Errors } from "@tidyllm/core"

/** One limit to check: `limit` units per minute under `key`. */
export interface Limit {
  /** The counter's key, e.g. `rpm:<key id>`. */
  readonly key: string
  readonly limit_type: "requests_per_minute" | "tokens_per_minute"
  readonly limit: number
}

/** The rate-limit service. */
export interface Service {
  /** Takes `units` from the limit's window, or fails with `RateLimited` (nothing taken) when they do not fit. */
  readonly take: (limit: Limit, units: number) => Effect.Effect<void, Errors.RateLimited | Errors.StoreUnavailable>
  /** Adds `units` already used (a call's output tokens) whether or not they fit: later calls wait for them. */
  readonly add: (limit: Limit, units: number) => Effect.Effect<void, Errors.StoreUnavailable>
}

/** The rate limiter in use. */
export class RateLimits extends Context.Tag("@tidyllm/corporate-llm/RateLimits")<RateLimits, Service>() {}

/** The `RateLimited` error of a limit that has no room for `retryAfterMs`. */
export const limited = (limit: Limit, retryAfterMs: number): Errors.RateLimited =>
  new Errors.RateLimited({
    message: `rate limit of ${limit.limit} ${limit.limit_type === "requests_per_minute" ? "requests" : "tokens"} per minute reached for ${
      limit.key.replace(/^[a-z]+:/, "key ")
    }; retry after ${Math.max(1, Math.ceil(retryAfterMs / 1000))} s`,
    limit_type: limit.limit_type,
    limit: limit.limit,
    retry_after_seconds: Math.max(1, Math.ceil(retryAfterMs / 1000))
  })

const WINDOW_MS = 60_000

/** An in-memory limiter (fixed one-minute windows, one process), for unit tests and single-process runs. */
export const makeMemory = Effect.gen(function*() {
  const windows = yield* Ref.make<ReadonlyMap<string, { readonly start: number; readonly used: number }>>(new Map())
  const apply = (limit: Limit, units: number, force: boolean) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) =>
      Ref.modify(windows, (m): [number | undefined, ReadonlyMap<string, { start: number; used: number }>] => {
        const start = now - (now % WINDOW_MS)
        const current = m.get(limit.key)
        const used = current !== undefined && current.start === start ? current.used : 0
        if (!force && used + units > limit.limit) return [start + WINDOW_MS - now, m]
        return [undefined, new Map(m).set(limit.key, { start, used: used + units })]
      }))
  const service: Service = {
    take: (limit, units) => Effect.flatMap(apply(limit, units, false), (wait) => (wait === undefined ? Effect.void : Effect.fail(limited(limit, wait)))),
    add: (limit, units) => Effect.asVoid(apply(limit, units, true))
  }
  return service
})

/** An in-memory limiter, for unit tests. */
export const layerMemory = Layer.effect(RateLimits, makeMemory)

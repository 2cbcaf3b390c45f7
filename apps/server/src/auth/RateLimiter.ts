/**
 * Gateway #1's `RateLimits` port on `@effect/experimental`'s RateLimiter (fixed window), over a
 * store every replica shares: Redis when `storage.redis_url` is set, else the Postgres (or PGlite)
 * database.
 */
import * as RateLimiter from "@effect/experimental/RateLimiter"
import { Duration, Effect, Layer, Redacted } from "effect"
import type { Config } from "@tidyllm/core"
import { Errors } from "@tidyllm/core"
import { RateLimits } from "@tidyllm/corporate-llm"

const WINDOW = Duration.minutes(1)

const unavailable = (e: RateLimiter.RateLimitStoreError) =>
  new Errors.StoreUnavailable({ message: `rate-limit store: ${e.message}`, store: "rate_limits" })

/** `RateLimits` on a RateLimiter. */
export const make = Effect.gen(function*() {
  const limiter = yield* RateLimiter.RateLimiter
  return RateLimits.RateLimits.of({
    take: (limit, units) =>
      limiter.consume({ key: limit.key, limit: limit.limit, window: WINDOW, tokens: Math.max(1, units), algorithm: "fixed-window", onExceeded: "fail" }).pipe(
        Effect.asVoid,
        Effect.catchAll((e): Effect.Effect<never, Errors.RateLimited | Errors.StoreUnavailable> =>
          e.reason === "Exceeded" ? Effect.fail(RateLimits.limited(limit, Duration.toMillis(e.retryAfter))) : Effect.fail(unavailable(e)))
      ),
    // "delay" adds the units whether or not they fit: later calls wait for them.
    add: (limit, units) =>
      limiter.consume({ key: limit.key, limit: limit.limit, window: WINDOW, tokens: Math.max(1, Math.min(units, limit.limit)), algorithm: "fixed-window", onExceeded: "delay" }).pipe(
        Effect.asVoid,
        Effect.catchAll((e): Effect.Effect<void, Errors.StoreUnavailable> => (e.reason === "StoreError" ? Effect.fail(unavailable(e)) : Effect.void))
      )
  })
})

/** `RateLimits` over a `RateLimiterStore`. */
export const layer: Layer.Layer<RateLimits.RateLimits, never, RateLimiter.RateLimiterStore> = Layer.effect(RateLimits.RateLimits, make).pipe(
  Layer.provide(RateLimiter.layer)
)

/** The Redis store of `storage.redis_url` (keys under `tidyllm:ratelimit:`). */
export const redisStore = (url: Redacted.Redacted<string>): Layer.Layer<RateLimiter.RateLimiterStore> =>
  // Loaded only with Redis configured: the Redis client adds ~15 MiB to a process without it.
  Layer.unwrapEffect(Effect.map(Effect.promise(() => import("./RedisRateLimiterStore.js")), (RedisRateLimiterStore) => RedisRateLimiterStore.layer({ url })))

/** The store for `config`: Redis when configured, else the given SQL-backed one. */
export const store = <E, R>(config: Config.GatewayConfig, sqlStore: Layer.Layer<RateLimiter.RateLimiterStore, E, R>) =>
  config.storage.redis_url === undefined ? sqlStore : redisStore(config.storage.redis_url)

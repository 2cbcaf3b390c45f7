/**
 * `@effect/experimental`'s `RateLimiter.RateLimiterStore` on Redis (`storage.redis_url`), so a
 * limit holds across every replica that shares the Redis.
 *
 * The library has a Redis store of its own, but it makes its `ioredis` client without an `error`
 * listener: while Redis is down, ioredis then prints `[ioredis] Unhandled error event` with a stack
 * trace, outside the JSON log, on every reconnect attempt. This one listens, and logs a warning
 * once when Redis becomes unreachable and once when it is back.
 *
 * `fixedWindow` keeps the semantics of the library's store (and of `PgRateLimiterStore`): a counter
 * whose time to live grows by `refillRate × tokens` with every take; a missing (expired) counter
 * restarts at `tokens`; with a `limit`, a take that would bring the count above it changes nothing
 * and reports the count it would have reached with the current time to live. One script per take,
 * so the check and the change are one atomic step in Redis. `tokenBucket` is not supported (the
 * gateway limits with fixed windows): it fails with a `RateLimitStoreError`.
 */
import { RateLimiter } from "@effect/experimental"
import { Duration, Effect, Layer, Redacted } from "effect"
import { Redis } from "ioredis"
import { describeUrl, reconnectDelay, scopedClient } from "@tidyllm/store-objects/RedisUrl"

/** How to reach Redis. */
export interface Options {
  /** `redis://[user:password@]host:port[/db]` or `rediss://…` (TLS). */
  readonly url: Redacted.Redacted<string>
  /** Prefix of every key (default `tidyllm:ratelimit:`). */
  readonly prefix?: string | undefined
  /** Per-command timeout in milliseconds (default 500); a connection attempt gets four times as long. */
  readonly timeoutMs?: number | undefined
}

/** The default key prefix. */
export const defaultPrefix = "tidyllm:ratelimit:"

/**
 * KEYS[1] the counter; ARGV tokens, refill ms per token, limit (absent: none). Returns the count
 * and the time to live in ms after the take (or, refused, what the count would have been and the
 * unchanged time to live).
 */
const fixedWindowScript = `
local count = tonumber(redis.call("GET", KEYS[1]))
local tokens = tonumber(ARGV[1])
-- Whole milliseconds: PX takes no fractions (a limit of 7 a minute refills every 8571.43 ms).
local step = math.ceil(tonumber(ARGV[2]) * tokens)
local limit = tonumber(ARGV[3])
if count == nil then
  redis.call("SET", KEYS[1], tokens, "PX", step)
  return { tokens, step }
end
local ttl = tonumber(redis.call("PTTL", KEYS[1]))
if ttl < 0 then ttl = 0 end
if limit ~= nil and count + tokens > limit then
  return { count + tokens, ttl }
end
redis.call("SET", KEYS[1], count + tokens, "PX", ttl + step)
return { count + tokens, ttl + step }
`

interface FixedWindowClient extends Redis {
  fixedWindow(key: string, tokens: number, refillMillis: number, ...limit: Array<number>): Promise<[number, number]>
}

const messageOf = (cause: unknown) => (cause instanceof Error ? cause.message : String(cause))

/** The store; its client connects on first use and is closed with the scope. */
export const make = (options: Options) =>
  Effect.gen(function*() {
    const where = describeUrl(Redacted.value(options.url))
    const prefix = options.prefix ?? defaultPrefix
    const timeoutMs = options.timeoutMs ?? 500
    // One line when Redis becomes unreachable and one when it is back, not one per reconnect.
    const { client } = yield* scopedClient(`rate limit store redis ${where}`, () => {
      const c = new Redis(Redacted.value(options.url), {
        lazyConnect: true,
        connectTimeout: timeoutMs * 4,
        // While Redis is down a command fails within the timeout (the gateway then lets the
        // request through with a warning) instead of waiting for a reconnect.
        commandTimeout: timeoutMs,
        maxRetriesPerRequest: 1,
        retryStrategy: reconnectDelay
      })
      c.defineCommand("fixedWindow", { numberOfKeys: 1, lua: fixedWindowScript })
      return c as FixedWindowClient
    })

    return RateLimiter.RateLimiterStore.of({
      fixedWindow: ({ key, limit, refillRate, tokens }) =>
        Effect.tryPromise({
          try: () => client.fixedWindow(prefix + key, tokens, Duration.toMillis(refillRate), ...(limit === undefined ? [] : [limit])),
          catch: (cause) => new RateLimiter.RateLimitStoreError({ message: `rate limit store (redis ${where}) failed to take from ${key}: ${messageOf(cause)}`, cause })
        }),
      tokenBucket: ({ key }) =>
        Effect.fail(new RateLimiter.RateLimitStoreError({ message: `rate limit store (redis): token buckets are not supported (${key}); the gateway limits with fixed windows` }))
    })
  })

/** The store as a layer; the client lives as long as the layer. */
export const layer = (options: Options): Layer.Layer<RateLimiter.RateLimiterStore> => Layer.scoped(RateLimiter.RateLimiterStore, make(options))

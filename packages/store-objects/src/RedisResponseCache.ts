/**
 * `ResponseCache` in Redis, shared by every replica: one JSON value per entry under a key prefix,
 * expired by Redis itself (`SET key value PX ttl`). A Redis that is down or slow fails each
 * command within a few hundred milliseconds with a `CacheError` (gateway #2 then treats it as a
 * miss) while the client reconnects in the background.
 */
import { Context, Duration, Effect, Either, Layer, Option, Redacted, Schema } from "effect"
import { Redis } from "ioredis"
import { ResponseCache } from "@tidyllm/ai-processing"
import { describeUrl, reconnectDelay, scopedClient } from "./RedisUrl.js"

/** How to reach Redis. */
export interface Options {
  /** `redis://[user:password@]host:port[/db]` or `rediss://…` (TLS). */
  readonly url: Redacted.Redacted<string>
  /** Prefix of every key (default `tidyllm:cache:`). */
  readonly keyPrefix?: string | undefined
  /** Connect and per-command timeout in milliseconds (default 500). */
  readonly timeoutMs?: number | undefined
}

/** The Redis cache: the `ResponseCache` port plus a `ping` for diagnostics. */
export interface Service extends ResponseCache.Service {
  /** Round trip of a `PING`; fails with a `CacheError` when Redis does not answer in time. */
  readonly ping: Effect.Effect<Duration.Duration, ResponseCache.CacheError>
}

/** The Redis cache, for diagnostics that want its `ping`. */
export class RedisResponseCache extends Context.Tag("@tidyllm/store-objects/RedisResponseCache")<RedisResponseCache, Service>() {}

/** The default key prefix. */
export const defaultKeyPrefix = "tidyllm:cache:"

const Entry = Schema.parseJson(ResponseCache.CachedResponse)
const decode = Schema.decodeUnknownOption(Entry)
const encode = Schema.encodeEither(Entry)

/** The URL without its credentials, fit for a log line. */
export { describeUrl }

const messageOf = (cause: unknown) => (cause instanceof Error ? cause.message : String(cause))

/** A Redis cache; the client connects on first use and is closed with the scope. */
export const make = (options: Options) =>
  Effect.gen(function*() {
    const where = describeUrl(Redacted.value(options.url))
    const prefix = options.keyPrefix ?? defaultKeyPrefix
    const timeoutMs = options.timeoutMs ?? 500
    const { client, reachable } = yield* scopedClient(`redis cache ${where}`, () =>
      new Redis(Redacted.value(options.url), {
        lazyConnect: true,
        connectTimeout: timeoutMs,
        // Every command, also one queued while (re)connecting, fails after this: nothing waits on a down Redis.
        commandTimeout: timeoutMs,
        maxRetriesPerRequest: 1,
        retryStrategy: reconnectDelay,
        enableAutoPipelining: false
      }))

    const command = <A>(verb: string, key: string, run: () => Promise<A>) => {
      const what = key === "" ? verb : `${verb} ${key}`
      // Known down and not yet back: fail at once instead of queueing for the command timeout.
      const unreachable = Effect.flatMap(reachable.isDown, (d) =>
        d && client.status !== "ready"
          ? new ResponseCache.CacheError({ message: `redis cache ${where}: ${what} not sent: Redis is unreachable (reconnecting in the background)` })
          : Effect.void)
      return unreachable.pipe(Effect.zipRight(Effect.tryPromise({
        try: run,
        catch: (cause) => new ResponseCache.CacheError({ message: `redis cache ${where}: ${what} failed: ${messageOf(cause)}`, cause })
      }).pipe(
        // The client's own timeout should fire first; this one holds even if it does not.
        Effect.timeoutFail({
          duration: Duration.millis(timeoutMs * 2),
          onTimeout: () => new ResponseCache.CacheError({ message: `redis cache ${where}: ${what}: no answer within ${timeoutMs * 2} ms` })
        })
      )))
    }

    const service: Service = {
      get: (key) =>
        Effect.gen(function*() {
          const raw = yield* command("GET", key, () => client.get(prefix + key))
          if (raw === null) return Option.none()
          const entry = decode(raw)
          if (Option.isNone(entry)) {
            // Written by another version or torn: a miss, and gone so that the next answer replaces it.
            yield* Effect.logWarning(`redis cache ${where}: unreadable entry ${key} dropped`)
            yield* command("DEL", key, () => client.del(prefix + key)).pipe(Effect.ignore)
          }
          return entry
        }),
      set: (key, value, ttlSeconds) =>
        Effect.gen(function*() {
          const ttl = Math.round(ttlSeconds * 1000)
          // A TTL under a millisecond keeps nothing (and `PX 0` is an error).
          if (!(ttl >= 1)) return
          const json = encode(value)
          if (Either.isLeft(json)) return yield* new ResponseCache.CacheError({ message: `redis cache: entry ${key} is not a cached response`, cause: json.left })
          yield* command("SET", key, () => client.set(prefix + key, json.right, "PX", ttl))
        }),
      ping: command("PING", "", () => client.ping()).pipe(Effect.timed, Effect.map(([d]) => d))
    }
    return service
  })

/** The Redis cache as the `ResponseCache` (and as itself, for its `ping`); the client lives as long as the layer. */
export const layer = (options: Options): Layer.Layer<ResponseCache.ResponseCache | RedisResponseCache> =>
  Layer.scopedContext(Effect.map(make(options), (s) => Context.make(RedisResponseCache, s).pipe(Context.add(ResponseCache.ResponseCache, s))))

/** `PING` through the cache in context: its round trip, or a `CacheError`. */
export const ping: Effect.Effect<Duration.Duration, ResponseCache.CacheError, RedisResponseCache> = Effect.flatMap(RedisResponseCache, (c) => c.ping)

/**
 * The rate limits of the server on a real Redis (a private `redis-server` on a free loopback
 * port, killed by PID at the end): two limiters with their own connections — two replicas — share
 * one window; a Redis that stops answers fast with `StoreUnavailable` (the gateway then lets the
 * request through with a warning) and the limiter works again once Redis is back, without the
 * Redis client printing its own "Unhandled error event" lines meanwhile.
 */
import { describe, expect, it, vi } from "@effect/vitest"
import { Context, Effect, Layer, Redacted } from "effect"
import { RateLimits } from "@tidyllm/corporate-llm"
import * as RateLimiter from "../src/auth/RateLimiter.js"
import { redisServerBinary, spawnRedis } from "../../../packages/store-objects/test/redisServer.js"

const replica = (url: string) =>
  Effect.map(Layer.build(RateLimiter.layer.pipe(Layer.provide(RateLimiter.redisStore(Redacted.make(url))))), (ctx) => Context.get(ctx, RateLimits.RateLimits))

describe.skipIf(redisServerBinary === undefined)("rate limits on Redis", () => {
  it.scopedLive("two replicas share one window; Redis down is a fast StoreUnavailable; back up, limits hold again", () =>
    Effect.gen(function*() {
      const redis = yield* Effect.acquireRelease(Effect.promise(() => spawnRedis()), (r) => Effect.promise(() => r.stop()))
      const a = yield* replica(redis.url)
      const b = yield* replica(redis.url)
      const limit: RateLimits.Limit = { key: `rpm:test-${Date.now()}`, limit_type: "requests_per_minute", limit: 5 }
      const outcomes: Array<string> = []
      for (let i = 0; i < 8; i++) {
        const exit = yield* Effect.either((i % 2 === 0 ? a : b).take(limit, 1))
        outcomes.push(exit._tag === "Right" ? "ok" : exit.left._tag)
      }
      expect(outcomes).toEqual(["ok", "ok", "ok", "ok", "ok", "RateLimited", "RateLimited", "RateLimited"])
      const refused = yield* Effect.flip(b.take(limit, 1))
      expect(refused._tag).toBe("RateLimited")
      if (refused._tag === "RateLimited") {
        expect(refused.retry_after_seconds).toBeGreaterThan(0)
        expect(refused.retry_after_seconds).toBeLessThanOrEqual(60)
      }
      // Tokens: what `add` records counts against what `take` may take, across replicas.
      const tpm: RateLimits.Limit = { key: `tpm:test-${Date.now()}`, limit_type: "tokens_per_minute", limit: 1000 }
      yield* a.take(tpm, 300)
      yield* b.add(tpm, 600)
      expect((yield* Effect.flip(a.take(tpm, 200)))._tag).toBe("RateLimited")
      yield* b.take(tpm, 100)

      // A limit whose refill per token is not a whole number of milliseconds (60 s / 7).
      const seven: RateLimits.Limit = { key: `rpm:seven-${Date.now()}`, limit_type: "requests_per_minute", limit: 7 }
      const sevens: Array<string> = []
      for (let i = 0; i < 8; i++) sevens.push((yield* Effect.either(a.take(seven, 1)))._tag)
      expect(sevens).toEqual(["Right", "Right", "Right", "Right", "Right", "Right", "Right", "Left"])

      const printed = vi.spyOn(console, "error")
      yield* Effect.addFinalizer(() => Effect.sync(() => printed.mockRestore()))
      yield* Effect.promise(() => redis.stop())
      const started = Date.now()
      const down = yield* Effect.flip(a.take({ ...limit, key: "rpm:other" }, 1))
      expect(down._tag).toBe("StoreUnavailable")
      expect(Date.now() - started).toBeLessThan(5_000)

      yield* Effect.promise(() => redis.restart())
      // The client reconnects by itself; the fresh server has empty windows.
      let back = false
      for (let i = 0; i < 50 && !back; i++) {
        back = (yield* Effect.either(a.take({ ...limit, key: "rpm:after" }, 1)))._tag === "Right"
        if (!back) yield* Effect.sleep("100 millis")
      }
      expect(back).toBe(true)
      // The store listens for the client's errors (and logs a state change once): ioredis prints nothing itself.
      expect(printed.mock.calls.filter((args) => String(args[0]).includes("[ioredis]"))).toEqual([])
    }), { timeout: 30_000 })
})

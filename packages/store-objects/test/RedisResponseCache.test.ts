/**
 * The Redis cache through the real ioredis client against a real `redis-server` on loopback (see
 * `redisServer.ts`). Keys go under a prefix unique to this run and are deleted at the end.
 */
import { describe, expect, it, layer } from "@effect/vitest"
import { Duration, Effect, Option, Redacted, Ref, Schedule, Stream } from "effect"
import { Redis } from "ioredis"
import type { ResponseCache } from "@tidyllm/ai-processing"
import { RedisResponseCache } from "@tidyllm/store-objects"
import { ctx, ok, scripted } from "../../corporate-llm/test/harness.js"
import { make as makeGateway, req } from "../../ai-processing/test/harness.js"
import { findRedis, freePort, redisServerBinary, spawnRedis } from "./redisServer.js"

const prefix = `tidyllm:test:${process.pid}:${Date.now()}:`

const value: ResponseCache.CachedResponse = {
  text: "", usage: { input_tokens: 12, output_tokens: 6 }, finish_reason: "tool_calls",
  provider: "bedrock", model: "claude-3-haiku", model_id: "anthropic.claude-3-haiku-20240307-v1:0", mock: false, created_at: 1_700_000_000_000,
  tool_calls: [{ id: "call_1", type: "function", function: { name: "get_weather", arguments: "{\"city\":\"Zurich\"}" } }]
}

/** A raw client on the same server, to look behind the adapter's back. */
const rawClient = (url: string) =>
  Effect.acquireRelease(Effect.sync(() => new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 })), (c) => Effect.promise(() => c.quit()).pipe(Effect.ignore))

/** The Redis the suite runs against; its test keys are deleted (and a spawned server stopped) at the end. */
class RedisServer extends Effect.Service<RedisServer>()("test/RedisServer", {
  scoped: Effect.gen(function*() {
    const server = yield* Effect.acquireRelease(Effect.promise(findRedis), (s) => Effect.promise(s.stop))
    yield* Effect.addFinalizer(() =>
      Effect.scoped(Effect.gen(function*() {
        const raw = yield* rawClient(server.url)
        const keys = yield* Effect.promise(() => raw.keys(`${prefix}*`))
        if (keys.length > 0) yield* Effect.promise(() => raw.del(...keys))
      })).pipe(Effect.ignore))
    return { url: server.url, spawned: server.spawned } as const
  })
}) {}

const cacheOn = (url: string, keyPrefix = prefix) => RedisResponseCache.make({ url: Redacted.make(url), keyPrefix })

/** A URL nothing listens on. */
const closedUrl = Effect.map(Effect.promise(freePort), (port) => `redis://:secret-password@127.0.0.1:${port}`)

// Real time (TTLs are Redis's own): no TestClock in this block.
layer(RedisServer.Default, { timeout: "60 seconds", excludeTestServices: true })("RedisResponseCache", (it) => {
  it.effect("round-trips an entry with its tool calls; the TTL is Redis's own (PX); an unknown key is a miss", () =>
    Effect.gen(function*() {
      const { url } = yield* RedisServer
      const cache = yield* cacheOn(url)
      yield* cache.set("k1", value, 60)
      expect(yield* cache.get("k1")).toEqual(Option.some(value))
      expect(yield* cache.get("missing")).toEqual(Option.none())
      const raw = yield* rawClient(url)
      const pttl = yield* Effect.promise(() => raw.pttl(`${prefix}k1`))
      expect(pttl).toBeGreaterThan(59_000)
      expect(pttl).toBeLessThanOrEqual(60_000)
      expect(JSON.parse((yield* Effect.promise(() => raw.get(`${prefix}k1`))) ?? "null")).toEqual(value)
      // Another client (another replica) with the same prefix sees it; one with another prefix does not.
      expect(Option.isSome(yield* (yield* cacheOn(url)).get("k1"))).toBe(true)
      expect(yield* (yield* cacheOn(url, `${prefix}other:`)).get("k1")).toEqual(Option.none())
      expect(Duration.toMillis(yield* cache.ping)).toBeLessThan(500)
    }).pipe(Effect.scoped))

  it.effect("an entry expires after its TTL", () =>
    Effect.gen(function*() {
      const { url } = yield* RedisServer
      const cache = yield* cacheOn(url)
      yield* cache.set("short", value, 0.15)
      expect(Option.isSome(yield* cache.get("short"))).toBe(true)
      yield* Effect.sleep(Duration.millis(400))
      expect(yield* cache.get("short")).toEqual(Option.none())
      // A TTL under a millisecond keeps nothing rather than failing.
      yield* cache.set("zero", value, 0)
      expect(yield* cache.get("zero")).toEqual(Option.none())
    }).pipe(Effect.scoped))

  it.effect("a corrupt or foreign value is a miss, not a crash, and is removed", () =>
    Effect.gen(function*() {
      const { url } = yield* RedisServer
      const cache = yield* cacheOn(url)
      const raw = yield* rawClient(url)
      yield* Effect.promise(() => raw.set(`${prefix}torn`, "{\"text\": \"half", "PX", 60_000))
      yield* Effect.promise(() => raw.set(`${prefix}foreign`, JSON.stringify({ text: 42, answer: "not ours" }), "PX", 60_000))
      expect(yield* cache.get("torn")).toEqual(Option.none())
      expect(yield* cache.get("foreign")).toEqual(Option.none())
      expect(yield* Effect.promise(() => raw.exists(`${prefix}torn`, `${prefix}foreign`))).toBe(0)
    }).pipe(Effect.scoped))

  it.effect("the layer closes its client with the scope", () =>
    Effect.gen(function*() {
      const { url } = yield* RedisServer
      const raw = yield* rawClient(url)
      const clients = () => Effect.promise(() => raw.client("LIST")).pipe(Effect.map((s) => String(s).split("\n").filter((l) => l.includes("cmd=")).length))
      const before = yield* clients()
      yield* Effect.gen(function*() {
        const cache = yield* RedisResponseCache.RedisResponseCache
        yield* cache.set("layered", value, 60)
        expect(yield* clients()).toBe(before + 1)
        expect(Duration.toMillis(yield* RedisResponseCache.ping)).toBeLessThan(500)
      }).pipe(Effect.provide(RedisResponseCache.layer({ url: Redacted.make(url), keyPrefix: prefix })))
      yield* Effect.sleep(Duration.millis(100))
      expect(yield* clients()).toBe(before)
    }).pipe(Effect.scoped))
})

describe("RedisResponseCache when Redis is down", () => {
  it.live("every command fails fast with a CacheError that does not show the password", () =>
    Effect.gen(function*() {
      const cache = yield* cacheOn(yield* closedUrl)
      for (const op of [cache.get("k"), cache.set("k", value, 60), cache.ping]) {
        const [elapsed, error] = yield* Effect.timed(Effect.flip(op))
        expect(error._tag).toBe("CacheError")
        expect(Duration.toMillis(elapsed)).toBeLessThan(1000)
        expect(error.message).toContain("127.0.0.1")
        expect(error.message).not.toContain("secret-password")
      }
    }).pipe(Effect.scoped))

  it.live("gateway #2 over a down Redis still answers, with cache_hit false", () =>
    Effect.gen(function*() {
      const cache = yield* cacheOn(yield* closedUrl)
      const p1 = yield* scripted("p1", () => Effect.succeed(ok("fresh")), () => Stream.make({ _tag: "TextDelta" as const, text: "fresh" }))
      const { gateway } = yield* makeGateway([p1.provider], {}, {}, cache)
      for (let i = 0; i < 2; i++) {
        const [elapsed, response] = yield* Effect.timed(gateway.process(req, ctx()))
        expect(response.metadata.cache_hit).toBe(false)
        expect(response.data?.response).toBe("fresh")
        expect(Duration.toMillis(elapsed)).toBeLessThan(1500)
      }
      expect(yield* Ref.get(p1.calls)).toBe(2)
    }).pipe(Effect.scoped))
})

describe("RedisResponseCache across a Redis restart", () => {
  // Needs a server of its own to stop: runs wherever the redis-server binary is.
  it.live.skipIf(redisServerBinary === undefined)("fails fast while Redis is stopped, and works again once it is back", () =>
    Effect.gen(function*() {
      const server = yield* Effect.acquireRelease(Effect.promise(spawnRedis), (s) => Effect.promise(s.stop))
      const cache = yield* cacheOn(server.url)
      yield* cache.set("before", value, 60)
      expect(Option.isSome(yield* cache.get("before"))).toBe(true)
      yield* Effect.promise(server.stop)
      const [elapsed, error] = yield* Effect.timed(Effect.flip(cache.get("before")))
      expect(error._tag).toBe("CacheError")
      expect(Duration.toMillis(elapsed)).toBeLessThan(1000)
      yield* Effect.promise(server.restart)
      // The client reconnects in the background (backoff up to 5 s); nothing was persisted, so it is a miss.
      const recovered = yield* cache.get("before").pipe(
        Effect.retry({ times: 40, schedule: Schedule.spaced(Duration.millis(250)) })
      )
      expect(recovered).toEqual(Option.none())
      yield* cache.set("after", value, 60)
      expect(yield* cache.get("after")).toEqual(Option.some(value))
      // And gateway #2 over it caches again.
      const p1 = yield* scripted("p1", () => Effect.succeed(ok("fresh")))
      const { gateway } = yield* makeGateway([p1.provider], {}, {}, cache)
      yield* gateway.process(req, ctx())
      expect((yield* gateway.process(req, ctx())).metadata.cache_hit).toBe(true)
    }).pipe(Effect.scoped), 60_000)
})

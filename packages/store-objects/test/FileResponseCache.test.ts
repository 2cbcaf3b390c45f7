import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Option, TestClock } from "effect"
import { FileResponseCache } from "@tidyllm/store-objects"
import { ResponseCache } from "@tidyllm/ai-processing"

const dir = mkdtempSync(join(tmpdir(), "tidyllm-cache-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const value: ResponseCache.CachedResponse = {
  text: "cached answer", usage: { input_tokens: 3, output_tokens: 2 }, finish_reason: "stop",
  provider: "mock", model: "claude-3-haiku", model_id: "claude-3-haiku", mock: true, created_at: 0
}
const withCache = <A, E>(f: (c: ResponseCache.Service) => Effect.Effect<A, E>) =>
  Effect.flatMap(Effect.provide(ResponseCache.ResponseCache, FileResponseCache.layer(dir)), f)

describe("FileResponseCache", () => {
  it.effect("round-trips an entry through a file, and a second cache over the same dir sees it", () =>
    withCache((cache) => Effect.gen(function*() {
      yield* cache.set("abc123", value, 60)
      expect(readdirSync(dir)).toContain("abc123.json")
      expect(readdirSync(dir).filter((f) => f.endsWith(".tmp"))).toEqual([])
      const other = yield* Effect.provide(ResponseCache.ResponseCache, FileResponseCache.layer(dir))
      expect(yield* other.get("abc123")).toEqual(Option.some(value))
      expect(yield* cache.get("missing")).toEqual(Option.none())
    })))

  it.effect("an entry expires after its TTL (TestClock) and its file is removed", () =>
    withCache((cache) => Effect.gen(function*() {
      yield* cache.set("ttl1", value, 10)
      yield* TestClock.adjust(Duration.seconds(9))
      expect(Option.isSome(yield* cache.get("ttl1"))).toBe(true)
      yield* TestClock.adjust(Duration.seconds(2))
      expect(yield* cache.get("ttl1")).toEqual(Option.none())
      expect(readdirSync(dir)).not.toContain("ttl1.json")
    })))

  it.effect("a corrupt entry is a miss, not a failure; a key that is not a safe file name is refused", () =>
    withCache((cache) => Effect.gen(function*() {
      writeFileSync(join(dir, "torn.json"), "{\"expires_at\": 99999999999999, \"value\": {\"te")
      expect(yield* cache.get("torn")).toEqual(Option.none())
      expect(yield* cache.get("../../etc/passwd")).toEqual(Option.none())
      const error = yield* Effect.flip(cache.set("../escape", value, 10))
      expect(error._tag).toBe("CacheError")
    })))
})

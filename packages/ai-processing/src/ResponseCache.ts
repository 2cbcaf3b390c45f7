/** The port of gateway #2's exact-match response cache. */
import { Clock, Context, Data, Effect, Layer, Option, Ref, Schema } from "effect"
import { LlmRequest, Usage } from "@tidyllm/core"

/** A cached answer; adapters that serialise entries decode them with this schema (a corrupt entry is a miss). */
export const CachedResponse = Schema.Struct({
  text: Schema.String,
  usage: Usage.TokenUsage,
  finish_reason: Schema.String,
  provider: Schema.String,
  model: Schema.String,
  model_id: Schema.String,
  mock: Schema.Boolean,
  /** When it was stored (epoch ms). */
  created_at: Schema.Number,
  /** The tool calls the model made, when it made any. */
  tool_calls: Schema.optional(Schema.Array(LlmRequest.ToolCall))
})
export type CachedResponse = typeof CachedResponse.Type

/** The cache backend failed; gateway #2 treats this as a miss and logs a warning. */
export class CacheError extends Data.TaggedError("CacheError")<{ readonly message: string; readonly cause?: unknown }> {}

/** The cache service. Entries older than their TTL are never returned. */
export interface Service {
  readonly get: (key: string) => Effect.Effect<Option.Option<CachedResponse>, CacheError>
  readonly set: (key: string, value: CachedResponse, ttlSeconds: number) => Effect.Effect<void, CacheError>
}

/** The response cache in use. */
export class ResponseCache extends Context.Tag("@tidyllm/ai-processing/ResponseCache")<ResponseCache, Service>() {}

/** An in-memory cache (TTL by the Effect `Clock`, so `TestClock` drives expiry). */
export const makeMemory = Effect.gen(function*() {
  const entries = yield* Ref.make(new Map<string, { value: CachedResponse; expires: number }>())
  const service: Service = {
    get: (key) =>
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        const e = (yield* Ref.get(entries)).get(key)
        if (e === undefined) return Option.none()
        if (e.expires <= now) {
          yield* Ref.update(entries, (m) => { const n = new Map(m); n.delete(key); return n })
          return Option.none()
        }
        return Option.some(e.value)
      }),
    set: (key, value, ttlSeconds) =>
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        yield* Ref.update(entries, (m) => new Map(m).set(key, { value, expires: now + ttlSeconds * 1000 }))
      })
  }
  return service
})

/** An in-memory cache, for unit tests and the `memory` storage setting. */
export const layerMemory = Layer.effect(ResponseCache, makeMemory)

/** A cache that never holds anything (caching disabled). */
export const layerNone = Layer.succeed(ResponseCache, { get: () => Effect.succeedNone, set: () => Effect.void })

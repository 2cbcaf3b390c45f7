/** `ResponseCache` in a local directory (the embedded default, `.bedrock_cache/`): one JSON file per entry. */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as NodePath from "@effect/platform-node/NodePath"
import { Clock, Effect, Layer, Option, Schema } from "effect"
import { ResponseCache } from "@tidyllm/ai-processing"

const Entry = Schema.parseJson(Schema.Struct({
  expires_at: Schema.Number,
  value: ResponseCache.CachedResponse
}))
const decode = Schema.decodeUnknownOption(Entry)
const encode = Schema.encodeSync(Entry)

/** A file cache rooted at `dir` (created if missing). Keys are hex digests, so they are safe file names. */
export const make = (dir: string) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    yield* fs.makeDirectory(dir, { recursive: true }).pipe(
      Effect.mapError((cause) => new ResponseCache.CacheError({ message: `cannot create cache directory ${dir}`, cause }))
    )
    const fileOf = (key: string) => {
      if (!/^[A-Za-z0-9_-]{1,200}$/.test(key)) return Option.none<string>()
      return Option.some(path.join(dir, `${key}.json`))
    }
    const service: ResponseCache.Service = {
      get: (key) =>
        Effect.gen(function*() {
          const file = fileOf(key)
          if (Option.isNone(file)) return Option.none()
          const text = yield* fs.readFileString(file.value).pipe(
            Effect.map(Option.some),
            Effect.catchIf((e) => e._tag === "SystemError" && e.reason === "NotFound", () => Effect.succeedNone),
            Effect.mapError((cause) => new ResponseCache.CacheError({ message: `cannot read cache entry ${key}`, cause }))
          )
          if (Option.isNone(text)) return Option.none()
          const entry = decode(text.value)
          const now = yield* Clock.currentTimeMillis
          if (Option.isNone(entry) || entry.value.expires_at <= now) {
            // Expired or unreadable (a torn write from another process): drop it.
            yield* fs.remove(file.value).pipe(Effect.ignore)
            return Option.none()
          }
          return Option.some(entry.value.value)
        }),
      set: (key, value, ttlSeconds) =>
        Effect.gen(function*() {
          const file = fileOf(key)
          if (Option.isNone(file)) return yield* new ResponseCache.CacheError({ message: `invalid cache key ${key}` })
          const now = yield* Clock.currentTimeMillis
          const tmp = `${file.value}.${process.pid}.${now}.${Math.random().toString(36).slice(2)}.tmp`
          // Write then rename, so a reader never sees half an entry.
          yield* fs.writeFileString(tmp, encode({ expires_at: now + ttlSeconds * 1000, value })).pipe(
            Effect.zipRight(fs.rename(tmp, file.value)),
            Effect.tapError(() => fs.remove(tmp).pipe(Effect.ignore)),
            Effect.mapError((cause) => new ResponseCache.CacheError({ message: `cannot write cache entry ${key}`, cause }))
          )
        })
    }
    return service
  })

/** The file cache as a layer. */
export const layer = (dir: string) =>
  Layer.effect(ResponseCache.ResponseCache, make(dir)).pipe(Layer.provide(Layer.merge(NodeFileSystem.layer, NodePath.layer)))

/**
 * `ObjectStore` in a local directory: the embedded default (`.tidyllm/objects/`).
 *
 * Layout: each key segment is a directory, the last one a file with the suffix `.obj`
 * (`workflows/wf1/v1.json` → `workflows/wf1/v1.json.obj`), so that `a` and `a/b` can both hold
 * objects, as on S3. Segments are percent-encoded except for letters, digits, `.`, `_` and `-`;
 * a segment that itself ends in `.obj` has that dot encoded, so no directory ever ends in `.obj`.
 * Keys are checked first (`ObjectStore.validateKey`: no absolute keys, no `.`/`..` or empty
 * segments), and an encoded segment never holds a `/`, so no key reaches outside the directory.
 *
 * Writes go to a temporary file in the target's directory (named with a `~`, which no encoded
 * segment contains), are flushed to disk, then renamed over the target: a reader sees the old or
 * the new object, never a part. `putIfAbsent` hard-links the temporary file to the target, which
 * the file system refuses atomically when the target exists, so it is exact across processes on
 * one host. Empty directories left by `remove` are kept (harmless; `list` skips them). On a
 * case-insensitive file system (macOS, Windows) keys that differ only in case collide.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import type { PlatformError } from "@effect/platform/Error"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as NodePath from "@effect/platform-node/NodePath"
import { Effect, Layer } from "effect"
import { ObjectStore } from "@tidyllm/session-manager"
import { Ids } from "@tidyllm/core"

const SUFFIX = ".obj"
const TMP_MARK = "~tmp-"
/** Most bytes of one file name on the common file systems. */
const MAX_NAME = 255

const isNotFound = (e: PlatformError) => e._tag === "SystemError" && e.reason === "NotFound"
const isAlreadyExists = (e: PlatformError) => e._tag === "SystemError" && e.reason === "AlreadyExists"

/** Percent-encodes one key segment (everything but `[A-Za-z0-9._-]`, and the dot of a trailing `.obj`). */
export const encodeSegment = (segment: string): string => {
  let out = ""
  for (const byte of new TextEncoder().encode(segment)) {
    const c = String.fromCharCode(byte)
    out += /[A-Za-z0-9._-]/.test(c) ? c : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`
  }
  return out.endsWith(SUFFIX) ? `${out.slice(0, -SUFFIX.length)}%2E${SUFFIX.slice(1)}` : out
}

/** The key segment an encoded name stands for. */
export const decodeSegment = (name: string): string => decodeURIComponent(name)

/** A directory object store rooted at `root` (created if missing). */
export const make = (root: string): Effect.Effect<ObjectStore.Service, ObjectStore.ObjectStoreError, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const base = path.resolve(root)
    yield* fs.makeDirectory(base, { recursive: true }).pipe(
      Effect.mapError((cause) => new ObjectStore.ObjectStoreError({ message: `cannot create the object directory ${base}`, key: "", cause }))
    )

    const fail = (key: string, what: string) => (cause: unknown) =>
      new ObjectStore.ObjectStoreError({ message: `cannot ${what} ${key}: ${cause instanceof Error ? cause.message : String(cause)}`, key, cause })

    /** The file of `key`, after checking the key. */
    const fileOf = (key: string): Effect.Effect<{ readonly dir: string; readonly file: string }, ObjectStore.ObjectStoreError> =>
      Effect.flatMap(ObjectStore.checkKey(key), () => {
        const segments = key.split("/").map(encodeSegment)
        const last = segments.pop()
        if (last === undefined) return Effect.fail(new ObjectStore.ObjectStoreError({ message: "invalid object key: the key is empty", key }))
        const names = [...segments, `${last}${SUFFIX}`]
        if (names.some((n) => Buffer.byteLength(n) > MAX_NAME - 48)) {
          // 48 bytes are kept for the temporary file's mark.
          return Effect.fail(new ObjectStore.ObjectStoreError({ message: "invalid object key: a segment is too long for a file name", key }))
        }
        const dir = path.join(base, ...segments)
        return Effect.succeed({ dir, file: path.join(dir, `${last}${SUFFIX}`) })
      })

    /** Writes `body` to a new temporary file next to `file`, flushed to disk; returns its path. */
    const writeTemp = (dir: string, file: string, body: Uint8Array): Effect.Effect<string, PlatformError> =>
      Effect.gen(function*() {
        yield* fs.makeDirectory(dir, { recursive: true })
        const tmp = `${file}${TMP_MARK}${Ids.randomUuid()}`
        yield* Effect.scoped(Effect.gen(function*() {
          const handle = yield* fs.open(tmp, { flag: "wx" })
          // writeAll of nothing fails (WriteZero): an empty object is just the empty file.
          if (body.length > 0) yield* handle.writeAll(body)
          yield* handle.sync
        })).pipe(Effect.tapError(() => fs.remove(tmp).pipe(Effect.ignore)))
        return tmp
      })

    const put: ObjectStore.Service["put"] = (key, body) =>
      Effect.gen(function*() {
        const { dir, file } = yield* fileOf(key)
        yield* writeTemp(dir, file, body).pipe(
          Effect.flatMap((tmp) => fs.rename(tmp, file).pipe(Effect.tapError(() => fs.remove(tmp).pipe(Effect.ignore)))),
          Effect.mapError(fail(key, "write"))
        )
      }).pipe(Effect.withSpan("LocalObjectStore.put", { attributes: { "tidyllm.object.key": key } }))

    const putIfAbsent: ObjectStore.Service["putIfAbsent"] = (key, body) =>
      Effect.gen(function*() {
        const { dir, file } = yield* fileOf(key)
        const tmp = yield* writeTemp(dir, file, body).pipe(Effect.mapError(fail(key, "write")))
        // link(2) fails with EEXIST when the target exists: the create-only check and the write are one step.
        yield* fs.link(tmp, file).pipe(
          Effect.catchIf(isAlreadyExists, () => Effect.fail(new ObjectStore.ObjectExists({ key }))),
          Effect.catchTag("BadArgument", "SystemError", (e) => Effect.fail(fail(key, "write")(e))),
          Effect.ensuring(fs.remove(tmp).pipe(Effect.ignore))
        )
      }).pipe(Effect.withSpan("LocalObjectStore.putIfAbsent", { attributes: { "tidyllm.object.key": key } }))

    const get: ObjectStore.Service["get"] = (key) =>
      Effect.gen(function*() {
        const { file } = yield* fileOf(key)
        return yield* fs.readFile(file).pipe(
          Effect.catchIf(isNotFound, () => Effect.fail(new ObjectStore.ObjectNotFound({ key }))),
          Effect.catchTag("BadArgument", "SystemError", (e) => Effect.fail(fail(key, "read")(e)))
        )
      }).pipe(Effect.withSpan("LocalObjectStore.get", { attributes: { "tidyllm.object.key": key } }))

    const list: ObjectStore.Service["list"] = (prefix, options) =>
      Effect.gen(function*() {
        yield* ObjectStore.checkPrefix(prefix)
        // Start at the deepest directory the prefix names in full, then filter on the rest.
        const cut = prefix.lastIndexOf("/") + 1
        const dirKey = prefix.slice(0, cut)
        const start = path.join(base, ...dirKey.split("/").filter((s) => s !== "").map(encodeSegment))
        const names = yield* fs.readDirectory(start, { recursive: true }).pipe(
          Effect.catchIf(isNotFound, () => Effect.succeed<Array<string>>([])),
          Effect.mapError(fail(prefix, "list"))
        )
        const keys: Array<string> = []
        for (const name of names) {
          if (!name.endsWith(SUFFIX) || name.includes("~")) continue
          const parts = name.slice(0, -SUFFIX.length).split(path.sep)
          try {
            const key = dirKey + parts.map(decodeSegment).join("/")
            if (key.startsWith(prefix)) keys.push(key)
          } catch {
            // A file this store did not write (not percent-encoding): not an object.
          }
        }
        return ObjectStore.applyLimit(keys.sort(), options)
      }).pipe(Effect.withSpan("LocalObjectStore.list", { attributes: { "tidyllm.object.prefix": prefix } }))

    const remove: ObjectStore.Service["remove"] = (key) =>
      Effect.gen(function*() {
        const { file } = yield* fileOf(key)
        yield* fs.remove(file).pipe(
          Effect.catchIf(isNotFound, () => Effect.void),
          Effect.mapError(fail(key, "delete"))
        )
      }).pipe(Effect.withSpan("LocalObjectStore.remove", { attributes: { "tidyllm.object.key": key } }))

    return ObjectStore.ObjectStore.of({ put, putIfAbsent, get, list, remove })
  })

/** The directory object store as a layer, on Node's file system. */
export const layer = (root: string): Layer.Layer<ObjectStore.ObjectStore, ObjectStore.ObjectStoreError> =>
  Layer.effect(ObjectStore.ObjectStore, make(root)).pipe(Layer.provide(Layer.merge(NodeFileSystem.layer, NodePath.layer)))

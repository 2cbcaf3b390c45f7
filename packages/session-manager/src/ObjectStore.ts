/**
 * The port of object storage (S3, a local directory, memory) that the session manager stands on.
 *
 * Keys are `/`-separated, relative, with no empty, `.` or `..` segments (see {@link validateKey});
 * every adapter refuses other keys with `ObjectStoreError`, so a key means the same on S3 and on
 * disk. A key and a key under it (`a` and `a/b`) may both hold objects, as on S3.
 */
import { Context, Data, Effect, Layer, Option, Ref } from "effect"

/** A store operation failed (the store is unreachable, refused the request, or the key is invalid). */
export class ObjectStoreError extends Data.TaggedError("ObjectStoreError")<{
  readonly message: string
  readonly key: string
  readonly cause?: unknown
}> {}

/** `get` of a key that holds no object. */
export class ObjectNotFound extends Data.TaggedError("ObjectNotFound")<{
  readonly key: string
}> {
  override get message() {
    return `no object under key ${this.key}`
  }
}

/** `putIfAbsent` of a key that already holds an object. */
export class ObjectExists extends Data.TaggedError("ObjectExists")<{
  readonly key: string
}> {
  override get message() {
    return `an object already exists under key ${this.key}`
  }
}

/** Options of `list`. */
export interface ListOptions {
  /** Most keys returned (the first ones in lexical order); all when absent. */
  readonly limit?: number | undefined
}

/** The object store service: opaque bytes under string keys. */
export interface Service {
  /** Writes (or overwrites) the object under `key`; readers see the old or the new object, never a part. */
  readonly put: (key: string, body: Uint8Array, contentType?: string) => Effect.Effect<void, ObjectStoreError>
  /**
   * Writes the object only when `key` holds none (create-only); fails with `ObjectExists` otherwise.
   * Adapters whose backend cannot refuse an existing key atomically check, then write under a
   * per-key lock: exact within one process, see the adapter for several replicas.
   */
  readonly putIfAbsent: (key: string, body: Uint8Array, contentType?: string) => Effect.Effect<void, ObjectExists | ObjectStoreError>
  /** The object under `key`; `ObjectNotFound` when there is none. */
  readonly get: (key: string) => Effect.Effect<Uint8Array, ObjectNotFound | ObjectStoreError>
  /** Keys under a prefix (`""` for all), in lexical order. */
  readonly list: (prefix: string, options?: ListOptions) => Effect.Effect<ReadonlyArray<string>, ObjectStoreError>
  /** Deletes the object under `key`; deleting a missing key succeeds. */
  readonly remove: (key: string) => Effect.Effect<void, ObjectStoreError>
}

/** The object store in use. */
export class ObjectStore extends Context.Tag("@tidyllm/session-manager/ObjectStore")<ObjectStore, Service>() {}

/** Longest key accepted (S3's own limit, in UTF-16 units as a conservative stand-in for bytes). */
export const MAX_KEY_LENGTH = 1024

/** Why `key` is not a valid object key, or `None` when it is. */
export const validateKey = (key: string): Option.Option<string> => {
  if (key.length === 0) return Option.some("the key is empty")
  if (key.length > MAX_KEY_LENGTH) return Option.some(`the key is longer than ${MAX_KEY_LENGTH} characters`)
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(key)) return Option.some("the key contains a control character")
  if (key.startsWith("/")) return Option.some("the key is absolute (starts with /)")
  for (const segment of key.split("/")) {
    if (segment === "") return Option.some("the key has an empty segment (// or a trailing /)")
    if (segment === "." || segment === "..") return Option.some(`the key has a '${segment}' segment`)
  }
  return Option.none()
}

/** Validates `key`, failing with `ObjectStoreError` as every adapter does. */
export const checkKey = (key: string): Effect.Effect<string, ObjectStoreError> =>
  Option.match(validateKey(key), {
    onNone: () => Effect.succeed(key),
    onSome: (problem) => Effect.fail(new ObjectStoreError({ message: `invalid object key: ${problem}`, key }))
  })

/** Validates a list prefix: empty, or a key prefix whose complete segments are valid. */
export const checkPrefix = (prefix: string): Effect.Effect<string, ObjectStoreError> => {
  if (prefix === "") return Effect.succeed(prefix)
  // A trailing "/" (or a partial last segment) is fine in a prefix; the rest must read as a key.
  const complete = prefix.endsWith("/") ? prefix.slice(0, -1) : prefix
  return Effect.as(Effect.mapError(checkKey(complete), (e) => new ObjectStoreError({ ...e, message: e.message.replace("object key", "prefix"), key: prefix })), prefix)
}

/** Applies `ListOptions.limit` to keys already in lexical order. */
export const applyLimit = (keys: ReadonlyArray<string>, options?: ListOptions): ReadonlyArray<string> =>
  options?.limit === undefined ? keys : keys.slice(0, Math.max(0, Math.floor(options.limit)))

/** Mutual exclusion per key (striped: keys that hash alike share a lock, so never nest two locks of one instance). */
export interface KeyLocks {
  readonly withLock: (key: string) => <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
}

/**
 * Locks per key for check-then-write sequences (`putIfAbsent` over a backend that cannot refuse an
 * existing key, a read-modify-write of a pointer). They hold within one process only.
 */
export const makeKeyLocks = (stripes = 64): Effect.Effect<KeyLocks> =>
  Effect.map(Effect.forEach(Array.from({ length: Math.max(1, stripes) }), () => Effect.makeSemaphore(1)), (locks) => ({
    withLock: (key) => {
      // FNV-1a: cheap and spreads similar keys (v1.json, v2.json) over different stripes.
      let hash = 0x811c9dc5
      for (let i = 0; i < key.length; i++) hash = Math.imul(hash ^ key.charCodeAt(i), 0x01000193)
      const lock = locks[(hash >>> 0) % locks.length]
      // `locks` is non-empty and the index is reduced modulo its length.
      return lock!.withPermits(1)
    }
  }))

/** An in-memory object store over `objects` (exposed so tests can look inside). */
export const makeMemory = (objects: Ref.Ref<ReadonlyMap<string, Uint8Array>>): Service => ({
  put: (key, body) =>
    Effect.zipRight(checkKey(key), Ref.update(objects, (m) => new Map(m).set(key, body.slice()))),
  putIfAbsent: (key, body) =>
    Effect.flatMap(checkKey(key), () =>
      Effect.flatten(Ref.modify(objects, (m): [Effect.Effect<void, ObjectExists>, ReadonlyMap<string, Uint8Array>] =>
        m.has(key) ? [Effect.fail(new ObjectExists({ key })), m] : [Effect.void, new Map(m).set(key, body.slice())]
      ))),
  get: (key) =>
    Effect.flatMap(checkKey(key), () =>
      Effect.flatMap(Ref.get(objects), (m) => {
        const body = m.get(key)
        return body === undefined ? Effect.fail(new ObjectNotFound({ key })) : Effect.succeed(body.slice())
      })),
  list: (prefix, options) =>
    Effect.flatMap(checkPrefix(prefix), () =>
      Effect.map(Ref.get(objects), (m) => applyLimit([...m.keys()].filter((k) => k.startsWith(prefix)).sort(), options))),
  remove: (key) =>
    Effect.zipRight(checkKey(key), Ref.update(objects, (m) => {
      const n = new Map(m)
      n.delete(key)
      return n
    }))
})

/** An in-memory object store, for unit tests. */
export const layerMemory: Layer.Layer<ObjectStore> = Layer.effect(
  ObjectStore,
  Effect.map(Ref.make<ReadonlyMap<string, Uint8Array>>(new Map()), makeMemory)
)

/** The port of object storage (S3, a local directory, memory) that the session manager stands on. */
import { Context, Data, Effect, Layer, Option, Ref } from "effect"

/** A store operation failed. */
export class ObjectStoreError extends Data.TaggedError("ObjectStoreError")<{
  readonly message: string
  readonly key: string
  readonly cause?: unknown
}> {}

/** The object store service: opaque bytes under string keys. */
export interface Service {
  readonly put: (key: string, body: Uint8Array, contentType?: string) => Effect.Effect<void, ObjectStoreError>
  readonly get: (key: string) => Effect.Effect<Option.Option<Uint8Array>, ObjectStoreError>
  /** Keys under a prefix, in lexical order. */
  readonly list: (prefix: string) => Effect.Effect<ReadonlyArray<string>, ObjectStoreError>
  readonly remove: (key: string) => Effect.Effect<void, ObjectStoreError>
}

/** The object store in use. */
export class ObjectStore extends Context.Tag("@tidyllm/session-manager/ObjectStore")<ObjectStore, Service>() {}

/** An in-memory object store, for unit tests. */
export const layerMemory = Layer.effect(ObjectStore, Effect.gen(function*() {
  const objects = yield* Ref.make(new Map<string, Uint8Array>())
  return ObjectStore.of({
    put: (key, body) => Ref.update(objects, (m) => new Map(m).set(key, body.slice())),
    get: (key) => Effect.map(Ref.get(objects), (m) => Option.fromNullable(m.get(key))),
    list: (prefix) => Effect.map(Ref.get(objects), (m) => [...m.keys()].filter((k) => k.startsWith(prefix)).sort()),
    remove: (key) => Ref.update(objects, (m) => { const n = new Map(m); n.delete(key); return n })
  })
}))

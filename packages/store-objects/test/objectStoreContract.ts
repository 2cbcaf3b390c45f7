/**
 * The one contract every `ObjectStore` adapter passes (memory, local directory, S3): run it with
 * the adapter's layer. The layer is built once per suite, so each test works under its own prefix.
 */
import { expect, layer } from "@effect/vitest"
import { Effect, Either, Layer } from "effect"
import { Ids } from "@tidyllm/core"
import { ObjectStore, UnifiedSessionManager, WorkflowAudit } from "@tidyllm/session-manager"

const text = new TextEncoder()
const bytes = (s: string) => text.encode(s)
const str = (b: Uint8Array) => new TextDecoder().decode(b)
/** A fresh prefix per test, since the store outlives the test. */
const fresh = (name: string) => `t-${name}-${Ids.randomUuid().slice(0, 8)}/`
const ctx: UnifiedSessionManager.AuditContext = { actor: "user:contract", reason: "contract test" }

/** Runs the contract against `store` (built once for the suite and released after it). */
export const objectStoreContract = <E>(name: string, store: Layer.Layer<ObjectStore.ObjectStore, E>) =>
  layer(store, { timeout: "60 seconds" })(`ObjectStore contract: ${name}`, (it) => {
    it.effect("stores and gets an object, byte for byte", () =>
      Effect.gen(function*() {
        const s = yield* ObjectStore.ObjectStore
        const p = fresh("store")
        const body = new Uint8Array([0, 1, 2, 250, 255, 10, 13])
        yield* s.put(`${p}blob.bin`, body, "application/octet-stream")
        expect([...(yield* s.get(`${p}blob.bin`))]).toEqual([...body])
        yield* s.put(`${p}empty`, new Uint8Array())
        expect((yield* s.get(`${p}empty`)).length).toBe(0)
      }))

    it.effect("a missing key is a typed ObjectNotFound naming the key", () =>
      Effect.gen(function*() {
        const s = yield* ObjectStore.ObjectStore
        const key = `${fresh("missing")}nothing-here.json`
        const error = yield* Effect.flip(s.get(key))
        expect(error).toBeInstanceOf(ObjectStore.ObjectNotFound)
        expect(error._tag).toBe("ObjectNotFound")
        expect(error.key).toBe(key)
        expect(error.message).toContain(key)
      }))

    it.effect("lists keys under a prefix, in lexical order, and only those", () =>
      Effect.gen(function*() {
        const s = yield* ObjectStore.ObjectStore
        const p = fresh("list")
        for (const k of ["a/2.json", "a/1.json", "a/deep/x.json", "ab.json", "b/1.json"]) yield* s.put(p + k, bytes(k))
        yield* s.put(`${fresh("other")}a/1.json`, bytes("elsewhere"))
        expect(yield* s.list(`${p}a/`)).toEqual([`${p}a/1.json`, `${p}a/2.json`, `${p}a/deep/x.json`])
        // A prefix need not end at a segment boundary.
        expect(yield* s.list(`${p}a`)).toEqual([`${p}a/1.json`, `${p}a/2.json`, `${p}a/deep/x.json`, `${p}ab.json`])
        expect(yield* s.list(p)).toEqual(["a/1.json", "a/2.json", "a/deep/x.json", "ab.json", "b/1.json"].map((k) => p + k))
        expect(yield* s.list(`${p}a/`, { limit: 2 })).toEqual([`${p}a/1.json`, `${p}a/2.json`])
        expect(yield* s.list(`${p}zzz/`)).toEqual([])
        expect(yield* s.list(`${fresh("never")}`)).toEqual([])
      }))

    it.effect("overwrites an object", () =>
      Effect.gen(function*() {
        const s = yield* ObjectStore.ObjectStore
        const key = `${fresh("overwrite")}wf.json`
        yield* s.put(key, bytes("first"))
        yield* s.put(key, bytes("second, longer than the first"))
        expect(str(yield* s.get(key))).toBe("second, longer than the first")
        yield* s.put(key, bytes("3"))
        expect(str(yield* s.get(key))).toBe("3")
      }))

    it.effect("deletes an object; deleting a missing key succeeds", () =>
      Effect.gen(function*() {
        const s = yield* ObjectStore.ObjectStore
        const p = fresh("delete")
        yield* s.put(`${p}x.json`, bytes("x"))
        yield* s.put(`${p}y.json`, bytes("y"))
        yield* s.remove(`${p}x.json`)
        expect((yield* Effect.flip(s.get(`${p}x.json`)))._tag).toBe("ObjectNotFound")
        expect(yield* s.list(p)).toEqual([`${p}y.json`])
        yield* s.remove(`${p}x.json`)
        yield* s.remove(`${p}never.json`)
      }))

    it.effect("putIfAbsent creates once, then refuses with ObjectExists and keeps the first object", () =>
      Effect.gen(function*() {
        const s = yield* ObjectStore.ObjectStore
        const key = `${fresh("create")}v1.json`
        yield* s.putIfAbsent(key, bytes("first"), "application/json")
        const error = yield* Effect.flip(s.putIfAbsent(key, bytes("second")))
        expect(error._tag).toBe("ObjectExists")
        expect(error.key).toBe(key)
        expect(str(yield* s.get(key))).toBe("first")
      }))

    it.effect("concurrent putIfAbsent on one key: exactly one wins", () =>
      Effect.gen(function*() {
        const s = yield* ObjectStore.ObjectStore
        const key = `${fresh("race")}v1.json`
        const results = yield* Effect.forEach(Array.from({ length: 8 }, (_, i) => i), (i) =>
          Effect.either(s.putIfAbsent(key, bytes(`writer ${i}`))), { concurrency: "unbounded" })
        const winners = results.flatMap((r, i) => Either.isRight(r) ? [i] : [])
        expect(winners).toHaveLength(1)
        expect(results.filter(Either.isLeft).map((r) => r.left._tag)).toEqual(Array.from({ length: 7 }, () => "ObjectExists"))
        expect(str(yield* s.get(key))).toBe(`writer ${winners[0]}`)
      }))

    it.effect("a key and a key under it hold objects side by side", () =>
      Effect.gen(function*() {
        const s = yield* ObjectStore.ObjectStore
        const p = fresh("nest")
        yield* s.put(`${p}wf1`, bytes("plain"))
        yield* s.put(`${p}wf1/v1.json`, bytes("version"))
        expect(str(yield* s.get(`${p}wf1`))).toBe("plain")
        expect(str(yield* s.get(`${p}wf1/v1.json`))).toBe("version")
        expect(yield* s.list(p)).toEqual([`${p}wf1`, `${p}wf1/v1.json`])
      }))

    it.effect("keys with spaces, unicode and reserved characters round-trip", () =>
      Effect.gen(function*() {
        const s = yield* ObjectStore.ObjectStore
        const p = fresh("chars")
        const keys = [`${p}Straße ü/a b+c%20.json`, `${p}x~y@z=1&q.obj`, `${p}.hidden`].sort()
        for (const k of keys) yield* s.put(k, bytes(k))
        for (const k of keys) expect(str(yield* s.get(k))).toBe(k)
        expect(yield* s.list(p)).toEqual(keys)
      }))

    it.effect("refuses keys that are absolute, climb out or have empty segments, with a typed error", () =>
      Effect.gen(function*() {
        const s = yield* ObjectStore.ObjectStore
        for (const key of ["../escape.json", "a/../../escape.json", "/etc/passwd", "a//b", "a/./b", "", "trailing/", "nul\u0000byte"]) {
          const put = yield* Effect.flip(s.put(key, bytes("x")))
          expect(put._tag, key).toBe("ObjectStoreError")
          expect(put.key).toBe(key)
          const get = yield* Effect.flip(s.get(key))
          expect(get._tag, key).toBe("ObjectStoreError")
        }
        expect((yield* Effect.flip(s.list("../"))).key).toBe("../")
      }))

    it.effect("versions through the session manager: create-only v{n}.json and a current pointer", () =>
      Effect.gen(function*() {
        const s = yield* ObjectStore.ObjectStore
        const prefix = fresh("versions")
        const sm = yield* UnifiedSessionManager.make({ versionsPrefix: prefix }).pipe(Effect.provide(WorkflowAudit.layerMemory))
        const v1 = yield* sm.putVersion(ctx, "wf-1", { steps: ["a"] })
        const v2 = yield* sm.putVersion(ctx, "wf-1", { steps: ["a", "b"] })
        const v3 = yield* sm.putVersion(ctx, "wf-1", { steps: ["a", "b", "c"] }, { makeCurrent: false })
        expect([v1.version, v2.version, v3.version]).toEqual([1, 2, 3])
        expect(v3.key).toBe(`${prefix}wf-1/v3.json`)
        expect(yield* s.list(`${prefix}wf-1/`)).toEqual(["current.json", "v1.json", "v2.json", "v3.json"].map((f) => `${prefix}wf-1/${f}`))
        expect(yield* sm.listVersions(ctx, "wf-1")).toEqual({ workflow_id: "wf-1", versions: [1, 2, 3], current: 2 })
        expect((yield* sm.getVersion(ctx, "wf-1")).data).toEqual({ steps: ["a", "b"] })
        yield* sm.setCurrent(ctx, "wf-1", 3)
        const current = yield* sm.getVersion(ctx, "wf-1")
        expect([current.version, current.current, current.data]).toEqual([3, true, { steps: ["a", "b", "c"] }])
        expect((yield* sm.getVersion(ctx, "wf-1", 1)).current).toBe(false)
        expect((yield* Effect.flip(sm.getVersion(ctx, "wf-1", 9)))._tag).toBe("VersionNotFound")
        // Concurrent writers each get their own number; nothing is overwritten.
        const more = yield* Effect.forEach(["p", "q", "r", "s"], (writer) =>
          Effect.map(sm.putVersion(ctx, "wf-1", { writer }), (v) => [writer, v.version] as const), { concurrency: "unbounded" })
        expect(more.map(([, n]) => n).sort()).toEqual([4, 5, 6, 7])
        for (const [writer, n] of more) expect((yield* sm.getVersion(ctx, "wf-1", n)).data).toEqual({ writer })
      }))
  })

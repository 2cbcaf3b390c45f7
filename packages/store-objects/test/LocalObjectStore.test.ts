/** The directory store: the shared contract, plus its layout on disk and its confinement to the directory. */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { ObjectStore } from "@tidyllm/session-manager"
import { LocalObjectStore } from "@tidyllm/store-objects"
import { objectStoreContract } from "./objectStoreContract.js"

const parent = mkdtempSync(join(tmpdir(), "tidyllm-objects-"))
afterAll(() => rmSync(parent, { recursive: true, force: true }))

objectStoreContract("local directory", LocalObjectStore.layer(join(parent, "contract")))

const withStore = <A, E>(dir: string, f: (s: ObjectStore.Service) => Effect.Effect<A, E>) =>
  Effect.flatMap(Effect.provide(ObjectStore.ObjectStore, LocalObjectStore.layer(dir)), f)

/** Every file under `dir`, relative, with `/` separators. */
const files = (dir: string): ReadonlyArray<string> =>
  (readdirSync(dir, { recursive: true, withFileTypes: true }))
    .filter((d) => d.isFile())
    .map((d) => join(d.parentPath, d.name).slice(dir.length + 1).split("\\").join("/"))
    .sort()

describe("LocalObjectStore", () => {
  it.effect("lays objects out as directories and .obj files, readable by a second store over the same directory", () => {
    const dir = join(parent, "layout")
    return withStore(dir, (s) => Effect.gen(function*() {
      yield* s.put("workflows/wf1/v1.json", new TextEncoder().encode("{\"a\":1}"))
      yield* s.put("workflows/wf1", new TextEncoder().encode("plain"))
      yield* s.put("odd/name.obj", new TextEncoder().encode("escaped"))
      yield* s.put("sp ace/ü", new TextEncoder().encode("encoded"))
      expect(files(dir)).toEqual(["odd/name%2Eobj.obj", "sp%20ace/%C3%BC.obj", "workflows/wf1.obj", "workflows/wf1/v1.json.obj"])
      expect(readFileSync(join(dir, "workflows/wf1/v1.json.obj"), "utf8")).toBe("{\"a\":1}")
      const other = yield* Effect.provide(ObjectStore.ObjectStore, LocalObjectStore.layer(dir))
      expect(yield* other.list("")).toEqual(["odd/name.obj", "sp ace/ü", "workflows/wf1", "workflows/wf1/v1.json"])
    }))
  })

  it.effect("writes leave no temporary files, also when putIfAbsent is refused", () => {
    const dir = join(parent, "tmp")
    return withStore(dir, (s) => Effect.gen(function*() {
      yield* Effect.forEach(Array.from({ length: 10 }, (_, i) => i), (i) => s.put("k/x.json", new Uint8Array([i])), { concurrency: "unbounded" })
      yield* s.putIfAbsent("k/y.json", new Uint8Array([1]))
      expect((yield* Effect.flip(s.putIfAbsent("k/y.json", new Uint8Array([2]))))._tag).toBe("ObjectExists")
      expect(files(dir)).toEqual(["k/x.json.obj", "k/y.json.obj"])
      expect([...(yield* s.get("k/y.json"))]).toEqual([1])
    }))
  })

  it.effect("no key reaches outside the directory; stray files are not objects", () => {
    const dir = join(parent, "confined")
    return withStore(dir, (s) => Effect.gen(function*() {
      for (const key of ["../outside", "a/../../outside", "/tmp/outside", "..", "a/..", "%2E%2E/x"]) {
        yield* Effect.either(s.put(key, new Uint8Array([1])))
      }
      expect(existsSync(join(parent, "outside.obj"))).toBe(false)
      expect(existsSync(join(parent, "outside"))).toBe(false)
      // "%2E%2E" is a valid key segment and stays one, encoded, inside the directory.
      expect(files(dir)).toEqual(["%252E%252E/x.obj"])
      expect(yield* s.list("")).toEqual(["%2E%2E/x"])
      writeFileSync(join(dir, "stray.txt"), "not ours")
      writeFileSync(join(dir, "bad%ZZ.obj"), "not ours either")
      expect(yield* s.list("")).toEqual(["%2E%2E/x"])
    }))
  })
})

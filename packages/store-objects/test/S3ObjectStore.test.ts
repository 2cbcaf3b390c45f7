/**
 * The S3 adapter through the real AWS SDK against s3rver, an S3-compatible HTTP server started
 * in-process on loopback with a temporary directory; the bucket is created by the test.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { CreateBucketCommand, ListObjectsV2Command, S3Client } from "@aws-sdk/client-s3"
import { describe, expect, it, layer } from "@effect/vitest"
import { Effect, Layer, Redacted } from "effect"
import S3rver from "s3rver"
import { S3ObjectStore } from "@tidyllm/store-objects"
import { objectStoreContract } from "./objectStoreContract.js"

const BUCKET = "tidyllm-test"
const credentials: S3ObjectStore.Credentials = { accessKeyId: "S3RVER", secretAccessKey: Redacted.make("S3RVER") }

/** Where the server listens, for the layers built on it. */
class S3Server extends Effect.Service<S3Server>()("test/S3Server", {
  scoped: Effect.gen(function*() {
    const directory = yield* Effect.acquireRelease(
      Effect.sync(() => mkdtempSync(join(tmpdir(), "tidyllm-s3rver-"))),
      (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
    )
    const server = new S3rver({ address: "127.0.0.1", port: 0, silent: true, directory })
    const address = yield* Effect.acquireRelease(
      Effect.promise(() => server.run()),
      () => Effect.promise(() => server.close())
    )
    const endpoint = `http://127.0.0.1:${address.port}`
    // The bucket, created through the SDK like any client would.
    yield* Effect.acquireUseRelease(
      Effect.sync(() => new S3Client({ region: "us-east-1", endpoint, forcePathStyle: true, credentials: { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" } })),
      (client) => Effect.promise(() => client.send(new CreateBucketCommand({ Bucket: BUCKET }))),
      (client) => Effect.sync(() => client.destroy())
    )
    return { endpoint } as const
  })
}) {}

/** Settings for the test server; V1 listing, since s3rver's V2 paging needs DES (see `Settings.listApi`). */
const settings = (endpoint: string, over: Partial<S3ObjectStore.Settings> = {}): S3ObjectStore.Settings => ({
  bucket: BUCKET, prefix: "tidyllm", region: "us-east-1", endpoint, forcePathStyle: true, credentials, listApi: "v1", ...over
})

/** The S3 store over a server of its own, closed (and its directory removed) with the layer. */
const s3Store = Layer.unwrapEffect(Effect.map(S3Server, (s) => S3ObjectStore.layer(settings(s.endpoint)))).pipe(
  Layer.provide(S3Server.Default)
)

objectStoreContract("S3 (s3rver)", s3Store)

layer(S3Server.Default, { timeout: "60 seconds" })("S3ObjectStore", (it) => {
  it.effect("keeps objects under its key prefix, and stores with other prefixes do not see them", () =>
    Effect.gen(function*() {
      const { endpoint } = yield* S3Server
      const a = yield* S3ObjectStore.make(settings(endpoint, { prefix: "team-a" }))
      const b = yield* S3ObjectStore.make(settings(endpoint, { prefix: "team-b/" }))
      yield* a.put("workflows/wf1", new TextEncoder().encode("a"))
      expect(yield* a.list("workflows/")).toEqual(["workflows/wf1"])
      expect(yield* b.list("workflows/")).toEqual([])
      expect((yield* Effect.flip(b.get("workflows/wf1")))._tag).toBe("ObjectNotFound")
      const raw = new S3Client({ region: "us-east-1", endpoint, forcePathStyle: true, credentials: { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" } })
      const listed = yield* Effect.promise(() => raw.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: "team-a/" })))
      raw.destroy()
      expect(listed.Contents?.map((o) => o.Key)).toEqual(["team-a/workflows/wf1"])
    }).pipe(Effect.scoped))

  it.effect("lists past one page (ListObjectsV2 continuation)", () =>
    Effect.gen(function*() {
      const { endpoint } = yield* S3Server
      const s = yield* S3ObjectStore.make(settings(endpoint, { prefix: "paging" }))
      const keys = Array.from({ length: 1005 }, (_, i) => `many/${String(i).padStart(4, "0")}`)
      yield* Effect.forEach(keys, (k) => s.put(k, new Uint8Array([1])), { concurrency: 32, discard: true })
      expect(yield* s.list("many/")).toEqual(keys)
      expect(yield* s.list("many/", { limit: 3 })).toEqual(keys.slice(0, 3))
    }).pipe(Effect.scoped))

  it.effect("lists with ListObjectsV2 (the default) on one page", () =>
    Effect.gen(function*() {
      const { endpoint } = yield* S3Server
      const s = yield* S3ObjectStore.make(settings(endpoint, { prefix: "v2", listApi: undefined }))
      for (const k of ["w/b", "w/a", "w/c/d", "x"]) yield* s.put(k, new Uint8Array([1]))
      expect(yield* s.list("w/")).toEqual(["w/a", "w/b", "w/c/d"])
      expect(yield* s.list("")).toEqual(["w/a", "w/b", "w/c/d", "x"])
    }).pipe(Effect.scoped))

  it.effect("other failures are typed ObjectStoreError with the key (a bucket that does not exist)", () =>
    Effect.gen(function*() {
      const { endpoint } = yield* S3Server
      const s = yield* S3ObjectStore.make(settings(endpoint, { bucket: "no-such-bucket", maxAttempts: 1 }))
      const get = yield* Effect.flip(s.get("workflows/wf1"))
      expect(get._tag).toBe("ObjectStoreError")
      expect(get.key).toBe("workflows/wf1")
      expect(get.message).toContain("NoSuchBucket")
      const put = yield* Effect.flip(s.put("workflows/wf1", new Uint8Array([1])))
      expect(put._tag).toBe("ObjectStoreError")
      expect(put.key).toBe("workflows/wf1")
    }).pipe(Effect.scoped))

  it.effect("a server that does not answer is an ObjectStoreError, not a hang or a defect", () =>
    Effect.gen(function*() {
      const s = yield* S3ObjectStore.make(settings("http://127.0.0.1:1", { maxAttempts: 1 }))
      const error = yield* Effect.flip(s.list("workflows/"))
      expect(error._tag).toBe("ObjectStoreError")
      expect(error.key).toBe("workflows/")
    }).pipe(Effect.scoped))
})

describe("S3ObjectStore.normalizePrefix", () => {
  it("adds the trailing slash and leaves an empty prefix empty", () => {
    expect(S3ObjectStore.normalizePrefix(undefined)).toBe("")
    expect(S3ObjectStore.normalizePrefix("")).toBe("")
    expect(S3ObjectStore.normalizePrefix("a")).toBe("a/")
    expect(S3ObjectStore.normalizePrefix("a/b/")).toBe("a/b/")
  })
})

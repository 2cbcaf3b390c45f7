/**
 * With `storage.s3` set, the server keeps workflows in S3: the real server on PGlite, the object
 * store the S3 adapter (real AWS SDK) against s3rver on loopback.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { expect, layer } from "@effect/vitest"
import { Effect, Layer } from "effect"
import S3rver from "s3rver"
import * as Testing from "../src/Testing.js"

const BUCKET = "tidyllm-workflows"

const tempDir = (prefix: string) =>
  Effect.acquireRelease(
    Effect.sync(() => mkdtempSync(join(tmpdir(), prefix))),
    (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
  )

/** Every key s3rver holds under `dir` (its on-disk layout: `<bucket>/<key>._S3rver_object`). */
const keysIn = (dir: string): ReadonlyArray<string> => {
  const walk = (d: string, prefix: string): ReadonlyArray<string> =>
    readdirSync(d, { withFileTypes: true }).flatMap((e) =>
      e.isDirectory() ? walk(join(d, e.name), `${prefix}${e.name}/`) : e.name.endsWith("._S3rver_object") ? [`${prefix}${e.name.replace("._S3rver_object", "")}`] : [])
  return existsSync(join(dir, BUCKET)) ? walk(join(dir, BUCKET), "") : []
}

let s3Dir = ""
let dataDir = ""

const ServerLive = Layer.unwrapScoped(Effect.gen(function*() {
  s3Dir = yield* tempDir("tidyllm-s3rver-")
  dataDir = yield* tempDir("tidyllm-server-s3-")
  const server = new S3rver({ address: "127.0.0.1", port: 0, silent: true, directory: s3Dir, configureBuckets: [{ name: BUCKET, configs: [] }] })
  const address = yield* Effect.acquireRelease(Effect.promise(() => server.run()), () => Effect.promise(() => server.close()))
  return Testing.layer(Testing.config(dataDir, {
    storage: { s3: { bucket: BUCKET, prefix: "tidyllm", endpoint: `http://127.0.0.1:${address.port}`, force_path_style: true } },
    // s3rver's own credentials; the S3 store takes the configuration's AWS keys.
    providers: { bedrock: { access_key_id: "S3RVER", secret_access_key: "S3RVER" } }
  }))
}))

layer(ServerLive, { excludeTestServices: true, timeout: "120 seconds" })("workflows in S3 (s3rver)", (it) => {
  it.effect("PUT and GET go through the S3 store; nothing lands in the local objects directory", () =>
    Effect.gen(function*() {
      const url = yield* Testing.ServerUrl
      const definition = { name: "diag", steps: [{ id: "a", type: "intake" }, { id: "b", type: "output", config: { destination: "s3", retention_days: 7 } }] }
      const put = yield* Effect.promise(() => fetch(`${url}/v1/workflows/diag`, { method: "PUT", headers: { "content-type": "application/json", "x-tidyllm-user": "alice" }, body: JSON.stringify(definition) }))
      expect(put.status).toBe(201)
      const got = yield* Effect.promise(async () => (await fetch(`${url}/v1/workflows/diag`)).json())
      expect(got).toMatchObject({ workflow_id: "diag", version: 1, current: true, definition })
      expect(keysIn(s3Dir)).toEqual(expect.arrayContaining(["tidyllm/workflows/diag/v1.json", "tidyllm/workflows/diag/current.json"]))
      expect(existsSync(join(dataDir, "objects"))).toBe(false)
      const health = yield* Effect.promise(async () => (await fetch(`${url}/health`)).json())
      expect(health).toMatchObject({ services: { session_manager: { healthy: true } } })
    }))
})

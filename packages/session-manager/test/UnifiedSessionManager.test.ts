import { createHash } from "node:crypto"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Option, Ref } from "effect"
import { Errors } from "@tidyllm/core"
import { ObjectStore, UnifiedSessionManager, WorkflowAudit } from "@tidyllm/session-manager"

const ctx: UnifiedSessionManager.AuditContext = { actor: "user:alice", reason: "ticket OPS-1", request_id: "req-7" }
const workflow = { name: "diagnostic", steps: [{ id: "a", type: "llm" }, { id: "b", type: "llm", depends_on: ["a"] }] }

/** Memory stores whose contents the test can read. */
const stores = Effect.gen(function*() {
  const objects = yield* Ref.make<ReadonlyMap<string, Uint8Array>>(new Map())
  const rows = yield* Ref.make<ReadonlyArray<WorkflowAudit.WorkflowAuditEntry>>([])
  const sm = yield* UnifiedSessionManager.make().pipe(
    Effect.provideService(ObjectStore.ObjectStore, ObjectStore.makeMemory(objects)),
    Effect.provideService(WorkflowAudit.WorkflowAudit, WorkflowAudit.makeMemory(rows))
  )
  const text = (key: string) => Effect.map(Ref.get(objects), (m) => Option.map(Option.fromNullable(m.get(key)), (b) => new TextDecoder().decode(b)))
  return { sm, objects, rows, text }
})

const json = (s: Option.Option<string>): unknown => JSON.parse(Option.getOrThrow(s))

describe("UnifiedSessionManager: store, get, list", () => {
  it.effect("stores under prefix + identifier (default workflows/) and reads it back", () =>
    Effect.gen(function*() {
      const { sm, text } = yield* stores
      expect(yield* sm.storeWorkflow(ctx, workflow, "diag.json")).toBe("workflows/diag.json")
      expect(json(yield* text("workflows/diag.json"))).toEqual(workflow)
      expect(yield* sm.getWorkflow(ctx, "diag.json")).toEqual(workflow)
      expect(yield* sm.storeWorkflow(ctx, { other: true }, "x.json", "artefacts/run-1/")).toBe("artefacts/run-1/x.json")
      expect(yield* sm.getWorkflow(ctx, "x.json", "artefacts/run-1/")).toEqual({ other: true })
    }))

  it.effect("overwrites, and lists keys under a prefix only", () =>
    Effect.gen(function*() {
      const { sm } = yield* stores
      yield* sm.storeWorkflow(ctx, { v: 1 }, "b.json")
      yield* sm.storeWorkflow(ctx, { v: 2 }, "b.json")
      yield* sm.storeWorkflow(ctx, { v: 1 }, "a.json")
      yield* sm.storeWorkflow(ctx, { v: 1 }, "c.json", "other/")
      expect(yield* sm.getWorkflow(ctx, "b.json")).toEqual({ v: 2 })
      expect(yield* sm.listWorkflows(ctx)).toEqual(["workflows/a.json", "workflows/b.json"])
      expect(yield* sm.listWorkflows(ctx, "other/")).toEqual(["other/c.json"])
      expect(yield* sm.listWorkflows(ctx, "none/")).toEqual([])
    }))

  it.effect("typed errors: missing key, unsafe identifier or prefix, data that is not JSON, a corrupt object", () =>
    Effect.gen(function*() {
      const { sm, objects } = yield* stores
      const missing = yield* Effect.flip(sm.getWorkflow(ctx, "nope.json"))
      expect(missing).toBeInstanceOf(UnifiedSessionManager.WorkflowNotFound)
      expect(missing.status).toBe(404)
      for (const id of ["../../etc/passwd", "", "a//b", "/abs"]) {
        const e = yield* Effect.flip(sm.storeWorkflow(ctx, workflow, id))
        expect(e._tag, id).toBe("InvalidWorkflowKey")
      }
      expect((yield* Effect.flip(sm.listWorkflows(ctx, "../")))._tag).toBe("InvalidWorkflowKey")
      const cyclic: Record<string, unknown> = {}
      cyclic["self"] = cyclic
      for (const bad of [undefined, 10n, cyclic, () => 1]) {
        const e = yield* Effect.flip(sm.storeWorkflow(ctx, bad, "bad.json"))
        expect(e._tag).toBe("InvalidWorkflowData")
      }
      yield* Ref.update(objects, (m) => new Map(m).set("workflows/torn.json", new TextEncoder().encode("{\"steps\": [")))
      const corrupt = yield* Effect.flip(sm.getWorkflow(ctx, "torn.json"))
      expect(corrupt._tag).toBe("CorruptWorkflowObject")
    }))
})

describe("UnifiedSessionManager: versions", () => {
  it.effect("numbers versions from 1, create-only, under {id}/v{n}.json with a current.json pointer", () =>
    Effect.gen(function*() {
      const { sm, text } = yield* stores
      const v1 = yield* sm.putVersion(ctx, "wf1", { rev: 1 })
      expect(v1).toEqual({ workflow_id: "wf1", version: 1, key: "workflows/wf1/v1.json", current: true })
      const v2 = yield* sm.putVersion(ctx, "wf1", { rev: 2 })
      expect(v2.version).toBe(2)
      expect(json(yield* text("workflows/wf1/v1.json"))).toEqual({ rev: 1 })
      expect(json(yield* text("workflows/wf1/current.json"))).toEqual({ version: 2, updated_at: new Date(0).toISOString(), updated_by: "user:alice" })
      const current = yield* sm.getVersion(ctx, "wf1")
      expect(current).toEqual({ workflow_id: "wf1", version: 2, key: "workflows/wf1/v2.json", current: true, data: { rev: 2 } })
      expect(yield* sm.getVersion(ctx, "wf1", 1)).toEqual({ workflow_id: "wf1", version: 1, key: "workflows/wf1/v1.json", current: false, data: { rev: 1 } })
    }))

  it.effect("a proposal (makeCurrent: false) waits until setCurrent makes it current; rollback works the same", () =>
    Effect.gen(function*() {
      const { sm } = yield* stores
      yield* sm.putVersion(ctx, "wf1", { rev: 1 })
      const proposal = yield* sm.putVersion(ctx, "wf1", { rev: 2 }, { makeCurrent: false })
      expect(proposal.current).toBe(false)
      expect((yield* sm.getVersion(ctx, "wf1")).version).toBe(1)
      expect(yield* sm.listVersions(ctx, "wf1")).toEqual({ workflow_id: "wf1", versions: [1, 2], current: 1 })
      const pointer = yield* sm.setCurrent({ actor: "user:bob", reason: "approved" }, "wf1", 2)
      expect(pointer).toEqual({ version: 2, updated_at: new Date(0).toISOString(), updated_by: "user:bob" })
      expect((yield* sm.getVersion(ctx, "wf1")).data).toEqual({ rev: 2 })
      yield* sm.setCurrent(ctx, "wf1", 1)
      expect((yield* sm.getVersion(ctx, "wf1")).data).toEqual({ rev: 1 })
    }))

  it.effect("a first version that is only a proposal leaves the workflow with no current version", () =>
    Effect.gen(function*() {
      const { sm } = yield* stores
      yield* sm.putVersion(ctx, "wf2", { rev: 1 }, { makeCurrent: false })
      expect(yield* sm.listVersions(ctx, "wf2")).toEqual({ workflow_id: "wf2", versions: [1], current: null })
      expect((yield* Effect.flip(sm.getVersion(ctx, "wf2")))._tag).toBe("WorkflowNotFound")
      expect((yield* sm.getVersion(ctx, "wf2", 1)).data).toEqual({ rev: 1 })
    }))

  it.effect("typed errors: unknown version, unknown workflow, bad ids, version numbers that are not positive integers", () =>
    Effect.gen(function*() {
      const { sm } = yield* stores
      yield* sm.putVersion(ctx, "wf1", { rev: 1 })
      const e = yield* Effect.flip(sm.getVersion(ctx, "wf1", 5))
      expect(e).toBeInstanceOf(UnifiedSessionManager.VersionNotFound)
      expect(e._tag === "VersionNotFound" && [e.workflow_id, e.version, e.status]).toEqual(["wf1", 5, 404])
      expect((yield* Effect.flip(sm.setCurrent(ctx, "wf1", 5)))._tag).toBe("VersionNotFound")
      expect((yield* Effect.flip(sm.setCurrent(ctx, "wf1", 0)))._tag).toBe("VersionNotFound")
      expect((yield* Effect.flip(sm.getVersion(ctx, "wf1", 1.5)))._tag).toBe("VersionNotFound")
      expect((yield* Effect.flip(sm.getVersion(ctx, "ghost")))._tag).toBe("WorkflowNotFound")
      expect(yield* sm.listVersions(ctx, "ghost")).toEqual({ workflow_id: "ghost", versions: [], current: null })
      for (const id of ["a/b", "..", ".hidden", "", "x".repeat(129), "sp ace"]) {
        expect((yield* Effect.flip(sm.putVersion(ctx, id, {})))._tag, id).toBe("InvalidWorkflowKey")
      }
    }))

  it.effect("orders versions numerically past 9 and lists the versioned workflows", () =>
    Effect.gen(function*() {
      const { sm } = yield* stores
      for (let i = 1; i <= 11; i++) yield* sm.putVersion(ctx, "big", { i })
      yield* sm.putVersion(ctx, "small", { i: 1 })
      yield* sm.storeWorkflow(ctx, { plain: true }, "plain.json")
      expect((yield* sm.listVersions(ctx, "big")).versions).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11])
      expect((yield* sm.getVersion(ctx, "big")).version).toBe(11)
      expect(yield* sm.listVersionedWorkflows(ctx)).toEqual(["big", "small"])
    }))

  it.effect("skips a number already taken (create-only) instead of overwriting it", () =>
    Effect.gen(function*() {
      const { sm, objects } = yield* stores
      yield* sm.putVersion(ctx, "wf1", { rev: 1 })
      // Another replica's listing of the same workflow was older: it tries 2 and must not overwrite.
      const taken = new TextEncoder().encode("{\"rev\":\"someone else\"}")
      const racing: ObjectStore.Service = {
        ...ObjectStore.makeMemory(objects),
        list: (prefix) => Effect.map(ObjectStore.makeMemory(objects).list(prefix), (keys) => keys.filter((k) => !k.endsWith("v2.json")))
      }
      yield* Ref.update(objects, (m) => new Map(m).set("workflows/wf1/v2.json", taken))
      const sm2 = yield* UnifiedSessionManager.make().pipe(
        Effect.provideService(ObjectStore.ObjectStore, racing),
        Effect.provide(WorkflowAudit.layerMemory)
      )
      expect((yield* sm2.putVersion(ctx, "wf1", { rev: 3 })).version).toBe(3)
      expect((yield* sm.getVersion(ctx, "wf1", 2)).data).toEqual({ rev: "someone else" })
      const limited = yield* UnifiedSessionManager.make({ maxAllocationAttempts: 1 }).pipe(
        Effect.provideService(ObjectStore.ObjectStore, { ...racing, list: () => Effect.succeed([]) }),
        Effect.provide(WorkflowAudit.layerMemory)
      )
      expect((yield* Effect.flip(limited.putVersion(ctx, "wf1", {})))._tag).toBe("VersionConflict")
    }))

  it.effect("concurrent putVersion: distinct numbers, and the pointer ends on the highest", () =>
    Effect.gen(function*() {
      const { sm } = yield* stores
      const stored = yield* Effect.forEach(Array.from({ length: 12 }, (_, i) => i), (i) => sm.putVersion(ctx, "hot", { i }), { concurrency: "unbounded" })
      expect(stored.map((s) => s.version).sort((a, b) => a - b)).toEqual(Array.from({ length: 12 }, (_, i) => i + 1))
      expect(yield* sm.listVersions(ctx, "hot")).toEqual({ workflow_id: "hot", versions: Array.from({ length: 12 }, (_, i) => i + 1), current: 12 })
    }))
})

describe("UnifiedSessionManager: audit", () => {
  it.effect("writes one row per operation — reads, lists and failures included — with actor, reason and detail", () =>
    Effect.gen(function*() {
      const { sm, rows } = yield* stores
      yield* sm.storeWorkflow(ctx, workflow, "diag.json")
      yield* sm.getWorkflow(ctx, "diag.json")
      yield* sm.listWorkflows(ctx)
      yield* sm.putVersion(ctx, "wf1", workflow)
      yield* sm.putVersion(ctx, "wf1", { rev: 2 }, { makeCurrent: false })
      yield* sm.getVersion(ctx, "wf1")
      yield* sm.setCurrent(ctx, "wf1", 2)
      yield* sm.listVersions(ctx, "wf1")
      yield* sm.listVersionedWorkflows(ctx)
      yield* Effect.flip(sm.getWorkflow({ actor: "user:mallory" }, "../secrets"))
      yield* Effect.flip(sm.getVersion(ctx, "wf1", 9))
      const all = yield* Ref.get(rows)
      expect(all.map((r) => [r.operation, r.key, r.detail["outcome"]])).toEqual([
        ["store_workflow", "workflows/diag.json", "success"],
        ["get_workflow", "workflows/diag.json", "success"],
        ["list_workflows", "workflows/", "success"],
        ["put_version", "workflows/wf1/", "success"],
        ["put_version", "workflows/wf1/", "success"],
        ["get_version", "workflows/wf1/", "success"],
        ["set_current", "workflows/wf1/", "success"],
        ["list_versions", "workflows/wf1/", "success"],
        ["list_versioned_workflows", "workflows/", "success"],
        ["get_workflow", "workflows/../secrets", "failure"],
        ["get_version", "workflows/wf1/", "failure"]
      ])
      expect(new Set(all.map((r) => r.id)).size).toBe(all.length)
      expect(all.slice(0, 9).every((r) => r.actor === "user:alice" && r.reason === "ticket OPS-1" && r.detail["request_id"] === "req-7")).toBe(true)
      const body = new TextEncoder().encode(JSON.stringify(workflow, null, 2))
      expect(all[0]?.detail).toMatchObject({ prefix: "workflows/", bytes: body.length, sha256: createHash("sha256").update(body).digest("hex") })
      expect(all[2]?.detail).toMatchObject({ count: 1 })
      expect(all[3]?.detail).toMatchObject({ workflow_id: "wf1", version: 1, current: true, make_current: true })
      expect(all[4]?.detail).toMatchObject({ version: 2, current: false, make_current: false })
      expect(all[5]?.detail).toMatchObject({ requested: "current", version: 1 })
      expect(all[6]?.detail).toMatchObject({ version: 2, previous: 1 })
      expect(all[7]?.detail).toMatchObject({ count: 2, current: 2 })
      expect(all[9]).toMatchObject({ actor: "user:mallory", reason: null, detail: { outcome: "failure", error: "InvalidWorkflowKey" } })
      expect(all[10]?.detail).toMatchObject({ outcome: "failure", error: "VersionNotFound", requested: 9 })
      // The port's own query: newest first, filtered.
      const audit = WorkflowAudit.makeMemory(rows)
      expect((yield* audit.list({ limit: 2, key: "workflows/wf1/" })).map((r) => r.operation)).toEqual(["get_version", "list_versions"])
      expect((yield* audit.list({ limit: 10, operation: "put_version" })).length).toBe(2)
      expect((yield* audit.list({ limit: 100, key_prefix: "workflows/d" })).map((r) => r.operation)).toEqual(["get_workflow", "store_workflow"])
    }))

  it.effect("no answer without its record: a failed audit write fails the operation with StoreUnavailable", () =>
    Effect.gen(function*() {
      const down: WorkflowAudit.Service = {
        record: () => Effect.fail(new Errors.StoreUnavailable({ message: "audit down", store: "postgres" })),
        list: () => Effect.succeed([])
      }
      const sm = yield* UnifiedSessionManager.make().pipe(
        Effect.provide(ObjectStore.layerMemory),
        Effect.provideService(WorkflowAudit.WorkflowAudit, down)
      )
      expect((yield* Effect.flip(sm.storeWorkflow(ctx, workflow, "w.json")))._tag).toBe("StoreUnavailable")
      expect((yield* Effect.flip(sm.putVersion(ctx, "wf1", workflow)))._tag).toBe("StoreUnavailable")
      // A failed operation keeps its own error even when its audit row cannot be written.
      expect((yield* Effect.flip(sm.getVersion(ctx, "wf1", 7)))._tag).toBe("VersionNotFound")
    }))

  it.effect("an object store failure is StoreUnavailable, audited as a failure", () =>
    Effect.gen(function*() {
      const failing = new ObjectStore.ObjectStoreError({
        message: "S3 get of s3://secret-bucket/workflows/w.json failed: connect ECONNRESET 10.1.2.3:9000",
        key: "workflows/w.json",
        cause: Object.assign(new Error("connect ECONNRESET 10.1.2.3:9000"), { code: "ECONNRESET" })
      })
      const broken: ObjectStore.Service = {
        put: () => Effect.fail(failing),
        putIfAbsent: () => Effect.fail(failing),
        get: () => Effect.fail(failing),
        list: () => Effect.fail(failing),
        remove: () => Effect.fail(failing)
      }
      const rows = yield* Ref.make<ReadonlyArray<WorkflowAudit.WorkflowAuditEntry>>([])
      const sm = yield* UnifiedSessionManager.make().pipe(
        Effect.provideService(ObjectStore.ObjectStore, broken),
        Effect.provideService(WorkflowAudit.WorkflowAudit, WorkflowAudit.makeMemory(rows))
      )
      const e = yield* Effect.flip(sm.getWorkflow(ctx, "w.json"))
      expect(e._tag).toBe("StoreUnavailable")
      // The caller learns what failed, not the store's address or bucket (those go to the log).
      expect(e.message).toBe("object store is unavailable (ECONNRESET); the details are in the server log")
      expect(e.message).not.toMatch(/10\.1\.2\.3|secret-bucket/)
      expect((yield* Ref.get(rows)).map((r) => r.detail)).toEqual([{ request_id: "req-7", prefix: "workflows/", outcome: "failure", error: "StoreUnavailable" }])
      expect(yield* sm.health).toEqual({ healthy: false, prefix: "workflows/", detail: failing.message })
    }))
})

describe("UnifiedSessionManager: layers", () => {
  it.effect("layerMemory serves the session manager with its stores; health lists the versions prefix", () =>
    Effect.gen(function*() {
      const sm = yield* UnifiedSessionManager.UnifiedSessionManager
      expect(yield* sm.health).toEqual({ healthy: true, prefix: "workflows/" })
      yield* sm.putVersion(ctx, "wf1", workflow)
      const audit = yield* WorkflowAudit.WorkflowAudit
      expect((yield* audit.list({ limit: 10 })).map((r) => r.operation)).toEqual(["put_version"])
      const store = yield* ObjectStore.ObjectStore
      expect(yield* store.list("")).toEqual(["workflows/wf1/current.json", "workflows/wf1/v1.json"])
    }).pipe(Effect.provide(UnifiedSessionManager.layerMemory())))

  it("the layer requires both ports: leaving one out does not compile", () => {
    const complete: Layer.Layer<UnifiedSessionManager.UnifiedSessionManager> = UnifiedSessionManager.layer().pipe(
      Layer.provide(Layer.merge(ObjectStore.layerMemory, WorkflowAudit.layerMemory))
    )
    // @ts-expect-error WorkflowAudit is still required
    const noAudit: Layer.Layer<UnifiedSessionManager.UnifiedSessionManager> = UnifiedSessionManager.layer().pipe(Layer.provide(ObjectStore.layerMemory))
    // @ts-expect-error ObjectStore is still required
    const noStore: Layer.Layer<UnifiedSessionManager.UnifiedSessionManager> = UnifiedSessionManager.layer().pipe(Layer.provide(WorkflowAudit.layerMemory))
    expect([complete, noAudit, noStore].every(Layer.isLayer)).toBe(true)
  })

  it("a versions prefix that is not a valid key prefix is refused when the layer is built", () => {
    const build = Effect.runSyncExit(UnifiedSessionManager.make({ versionsPrefix: "../up/" }).pipe(
      Effect.provide(Layer.merge(ObjectStore.layerMemory, WorkflowAudit.layerMemory))
    ))
    expect(build._tag).toBe("Failure")
  })
})

describe("ObjectStore.validateKey", () => {
  it("accepts relative keys and names what is wrong with the others", () => {
    expect(ObjectStore.validateKey("workflows/wf1/v1.json")).toEqual(Option.none())
    expect(ObjectStore.validateKey(".hidden/x")).toEqual(Option.none())
    for (const [key, problem] of [
      ["", "empty"], ["/a", "absolute"], ["a//b", "empty segment"], ["a/", "empty segment"],
      ["../a", "'..'"], ["a/./b", "'.'"], ["a\u0000b", "control"], ["x".repeat(1025), "longer"]
    ] as const) {
      expect(Option.getOrThrow(ObjectStore.validateKey(key))).toContain(problem)
    }
  })
})

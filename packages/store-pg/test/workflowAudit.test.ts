/** `PgWorkflowAudit` on embedded PGlite; the same suite runs on Postgres in `workflowAudit.pg.test.ts`. */
import * as SqlClient from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { Ids } from "@tidyllm/core"
import { ObjectStore, UnifiedSessionManager, WorkflowAudit } from "@tidyllm/session-manager"
import { PgWorkflowAudit } from "../src/index.js"
import { type FreshDatabase, migrated, pglite } from "./harness.js"

const entry = (over: Partial<WorkflowAudit.WorkflowAuditEntry> = {}): WorkflowAudit.WorkflowAuditEntry => ({
  id: Ids.randomUuid(),
  created_at: new Date("2026-01-02T03:04:05.678Z"),
  operation: "store_workflow",
  key: "workflows/wf1.json",
  actor: "user:alice",
  reason: "unit test",
  detail: { outcome: "success", bytes: 12, nested: { list: [1, "two", null] } },
  ...over
})

/** The suite, on a fresh migrated database of `fresh` per test. */
export const workflowAuditSuite = (name: string, fresh: FreshDatabase) =>
  describe(`PgWorkflowAudit on ${name}`, () => {
    const withAudit = <A, E>(f: (audit: WorkflowAudit.Service) => Effect.Effect<A, E, SqlClient.SqlClient>) =>
      Effect.gen(function*() {
        const audit = yield* PgWorkflowAudit.make()
        return yield* f(audit)
      }).pipe(Effect.provide(migrated(fresh)))

    it.live("records a row and reads it back exactly (timestamptz, null reason, jsonb detail)", () =>
      withAudit((audit) => Effect.gen(function*() {
        const a = entry()
        const b = entry({ reason: null, detail: {}, operation: "get_workflow", created_at: new Date("2026-01-02T03:04:06.000Z") })
        yield* audit.record(a)
        yield* audit.record(b)
        expect(yield* audit.list({ limit: 10 })).toEqual([b, a])
        const sql = yield* SqlClient.SqlClient
        const [row] = yield* sql<{ readonly kind: string }>`SELECT jsonb_typeof(detail) AS kind FROM workflow_audit_log WHERE id = ${a.id}`
        expect(row?.kind).toBe("object")
      })))

    it.live("a retried row (same id) is written once", () =>
      withAudit((audit) => Effect.gen(function*() {
        const a = entry()
        yield* audit.record(a)
        yield* audit.record(a)
        expect((yield* audit.list({ limit: 10 })).length).toBe(1)
      })))

    it.live("lists newest first, by key, key prefix (LIKE characters taken literally) and operation, within the limit", () =>
      withAudit((audit) => Effect.gen(function*() {
        const at = (s: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, s))
        yield* audit.record(entry({ key: "workflows/wf1/", operation: "put_version", created_at: at(1) }))
        yield* audit.record(entry({ key: "workflows/wf1/", operation: "set_current", created_at: at(2) }))
        yield* audit.record(entry({ key: "workflows/wf10/", operation: "put_version", created_at: at(3) }))
        yield* audit.record(entry({ key: "workflows/a_b%/", operation: "put_version", created_at: at(4) }))
        yield* audit.record(entry({ key: "workflows/aXbY/", operation: "put_version", created_at: at(5) }))
        const keys = (rows: ReadonlyArray<WorkflowAudit.WorkflowAuditEntry>) => rows.map((r) => `${r.key} ${r.operation}`)
        expect(keys(yield* audit.list({ limit: 10, key: "workflows/wf1/" }))).toEqual(["workflows/wf1/ set_current", "workflows/wf1/ put_version"])
        expect(keys(yield* audit.list({ limit: 10, key_prefix: "workflows/wf1" }))).toEqual([
          "workflows/wf10/ put_version", "workflows/wf1/ set_current", "workflows/wf1/ put_version"
        ])
        expect(keys(yield* audit.list({ limit: 10, key_prefix: "workflows/a_b%" }))).toEqual(["workflows/a_b%/ put_version"])
        expect(keys(yield* audit.list({ limit: 10, operation: "set_current" }))).toEqual(["workflows/wf1/ set_current"])
        expect(keys(yield* audit.list({ limit: 2 }))).toEqual(["workflows/aXbY/ put_version", "workflows/a_b%/ put_version"])
        expect(yield* audit.list({ limit: 0 })).toEqual([])
      })))

    it.live("under the session manager: every operation is a row in workflow_audit_log", () =>
      Effect.gen(function*() {
        const sm = yield* UnifiedSessionManager.UnifiedSessionManager
        const ctx = { actor: "user:alice", reason: "store and approve" }
        yield* sm.putVersion(ctx, "wf1", { steps: [] })
        yield* sm.putVersion(ctx, "wf1", { steps: ["a"] }, { makeCurrent: false })
        yield* sm.setCurrent({ actor: "user:bob", reason: "approved" }, "wf1", 2)
        yield* sm.getVersion(ctx, "wf1")
        yield* Effect.flip(sm.getVersion(ctx, "wf1", 5))
        const sql = yield* SqlClient.SqlClient
        const rows = yield* sql<{ readonly operation: string; readonly actor: string; readonly reason: string | null; readonly outcome: string }>`
          SELECT operation, actor, reason, detail->>'outcome' AS outcome FROM workflow_audit_log WHERE key = 'workflows/wf1/' ORDER BY created_at, operation`
        expect(rows.map((r) => [r.operation, r.actor, r.outcome]).sort()).toEqual([
          ["get_version", "user:alice", "failure"],
          ["get_version", "user:alice", "success"],
          ["put_version", "user:alice", "success"],
          ["put_version", "user:alice", "success"],
          ["set_current", "user:bob", "success"]
        ])
        expect(rows.find((r) => r.operation === "set_current")?.reason).toBe("approved")
      }).pipe(Effect.provide(
        UnifiedSessionManager.layer().pipe(
          Layer.provideMerge(Layer.merge(ObjectStore.layerMemory, PgWorkflowAudit.layer())),
          Layer.provideMerge(migrated(fresh))
        )
      )))

    it.live("a database that is gone fails record with StoreUnavailable", () =>
      Effect.gen(function*() {
        const audit = yield* PgWorkflowAudit.make({ maxWait: "2 seconds" })
        const sql = yield* SqlClient.SqlClient
        yield* sql`DROP TABLE workflow_audit_log`
        const error = yield* Effect.flip(audit.record(entry()))
        expect(error._tag).toBe("StoreUnavailable")
        expect(error.store).toBe("postgres")
      }).pipe(Effect.provide(migrated(fresh))))
  })

workflowAuditSuite("PGlite", pglite)

/** The in-memory audit log passes the same `query`/`purge` contract as the SQL adapters (store-pg runs it on PGlite and Postgres). */
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Layer, Ref } from "effect"
import { AuditLog } from "../src/index.js"
import { auditLogContract, entry, Hooks } from "./auditLogContract.js"

/** The memory log with a set of request ids under open agreements. */
const memory = Layer.effectContext(Effect.gen(function*() {
  const rows = yield* Ref.make<ReadonlyArray<AuditLog.AuditEntry>>([])
  const open = yield* Ref.make<ReadonlySet<string>>(new Set())
  return Context.make(AuditLog.AuditLog, AuditLog.makeMemory(rows, { underAgreement: Ref.get(open) })).pipe(
    Context.add(Hooks, {
      open: (id) => Ref.update(open, (s) => new Set([...s, id])),
      close: (id) => Ref.update(open, (s) => new Set([...s].filter((x) => x !== id)))
    })
  )
}))

auditLogContract("memory", memory)

describe("AuditLog (memory)", () => {
  it.effect("list keeps its order (newest written first) for the callers that rely on it", () =>
    Effect.gen(function*() {
      const log = yield* AuditLog.AuditLog
      const a = entry({ request_id: "r", created_at: new Date(0) })
      const b = entry({ request_id: "r", created_at: new Date(0), status: "error" })
      yield* log.write(a)
      yield* log.write(b)
      expect(yield* log.list({ limit: 10 })).toEqual([b, a])
      expect(yield* log.list({ limit: 10, status: "error" })).toEqual([b])
    }).pipe(Effect.provide(AuditLog.layerMemory)))

  it.effect("without agreements, purge keeps nothing back", () =>
    Effect.gen(function*() {
      const log = yield* AuditLog.AuditLog
      yield* log.write(entry({ created_at: new Date(1_000) }))
      yield* log.write(entry({ created_at: new Date(3_000) }))
      expect(yield* log.purge({ older_than: new Date(2_000) })).toEqual({ removed: 1, kept_under_agreement: 0, by_status: { success: 1 } })
      expect((yield* log.list({ limit: 10 })).length).toBe(1)
    }).pipe(Effect.provide(AuditLog.layerMemory)))

  it.effect("cursors round-trip and are opaque base64url", () =>
    Effect.gen(function*() {
      const cursor = { created_us: 1_767_225_600_123_456, id: "0b7c2a8e-58a4-4a7e-9a61-1f0c3c1d2e3f" }
      const text = AuditLog.encodeCursor(cursor)
      expect(text).toMatch(/^[A-Za-z0-9_-]+$/)
      expect(yield* AuditLog.decodeCursor(text)).toEqual(cursor)
    }))
})

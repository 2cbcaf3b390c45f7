/**
 * Graceful shutdown of the real server process (`node apps/server/dist/bundle/main.js` on embedded
 * PGlite, the mock provider answering after 300 ms): SIGTERM while requests are in flight. The
 * server stops accepting, lets the in-flight requests finish, flushes what it holds and exits 0.
 * Then the audit log is opened and counted against what the clients saw: every answered request
 * has its row, no row is missing or extra, nothing is left reserved, and the day's spend equals
 * the audited costs. Run for `audit_durability: sync` and `buffered`.
 */
import { join } from "node:path"
import * as SqlClient from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import { PgliteClient } from "@tidyllm/store-pg"
import { startServer } from "./support/serverProcess.js"

const ADMIN = "bootstrap-admin-key-for-the-shutdown-test-000000000000"

/** The audit rows and ledger of the data directory, read after the server is gone. */
const readStore = (dataDir: string) =>
  Effect.scoped(Effect.gen(function*() {
    const ctx = yield* Layer.build(PgliteClient.layer({ dataDir: join(dataDir, "pgdata") }))
    const sql = Context.get(ctx, SqlClient.SqlClient)
    const rows = yield* sql<{ request_id: string; status: string; cost: string }>`SELECT request_id, status, cost::text AS cost FROM llm_audit_log`
    const open = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM budget_reservations`
    const ledger = yield* sql<{ spent: string; reserved: string }>`SELECT spent::text AS spent, reserved::text AS reserved FROM budget_ledger WHERE scope = 'global' AND period = 'day'`
    return { rows, open: open[0]?.n ?? -1, ledger }
  }))

const nanos = (usd: string) => BigInt(usd.replace(".", "").replace(/^0+(?=\d)/, "")) * 10n ** BigInt(9 - (usd.split(".")[1]?.length ?? 0))

describe("graceful shutdown under load", () => {
  for (const durability of ["sync", "buffered"] as const) {
    it.scopedLive(`SIGTERM with requests in flight (${durability}): every answered request has its audit row, nothing reserved, spend = audited cost`, () =>
      Effect.gen(function*() {
        const server = yield* Effect.promise(() =>
          startServer({
            yaml: `corporate_llm:\n  audit_durability: ${durability}\nproviders:\n  mock:\n    latency_ms: 300\n`,
            env: { TIDYLLM_ADMIN_KEY: ADMIN, TIDYLLM_SHUTDOWN_GRACE_SECONDS: "10" }
          })
        )
        yield* Effect.addFinalizer(() => Effect.promise(() => server.dispose()))

        // Load: 40 clients, each sending requests back to back until the server stops answering.
        const answered: Array<string> = []
        const refusedAfter: Array<string> = []
        let sigtermAt = Number.POSITIVE_INFINITY
        let sent = 0
        /** Requests in flight at SIGTERM that were still answered. */
        let finishedAfterSigterm = 0
        const client = async (c: number) => {
          for (let i = 0; i < 1000; i++) {
            const id = `shutdown-${c}-${i}`
            sent++
            try {
              const r = await fetch(`${server.url}/v1/llm`, {
                method: "POST",
                headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/json", "x-request-id": id, connection: "close" },
                body: JSON.stringify({ prompt: `request ${id}`, reason: "shutdown test", max_tokens: 50 })
              })
              const body = (await r.json()) as { status?: string; error?: { code?: string } }
              if (r.status === 200 && body.status === "success") {
                answered.push(id)
                if (Date.now() > sigtermAt) finishedAfterSigterm++
              }
              // Arrived on an open connection after the app stopped serving: refused at once, not read.
              else if (r.status === 503 && body.error?.code === "shutting_down") throw new Error("refused: shutting down")
              else throw new Error(`unexpected ${r.status}: ${JSON.stringify(body)}`)
            } catch (e) {
              // Before SIGTERM nothing may fail. After it the listener is closed: new connections are
              // refused, a connection whose request the server had not read yet is closed, and a request
              // that reaches an open connection after the app stopped serving is answered 503. None of
              // those was read, so none may have an audit row (checked below); all the server read is answered.
              if (sigtermAt === Number.POSITIVE_INFINITY) throw e
              refusedAfter.push(id)
              return
            }
          }
        }
        const load = Promise.all(Array.from({ length: 40 }, (_, c) => client(c)))
        yield* Effect.sleep("1200 millis")
        sigtermAt = Date.now()
        server.child.kill("SIGTERM")
        yield* Effect.promise(() => load)
        const code = yield* Effect.promise(() => server.exited)
        const tookMs = Date.now() - sigtermAt
        expect(code, server.output().slice(-2000)).toBe(0)
        // It waited for the in-flight requests (300 ms each), not for the 10 s grace.
        expect(tookMs).toBeLessThan(10_000)
        expect(server.output()).toContain("shutting down")

        const store = yield* readStore(server.dataDir)
        const byRequest = new Map<string, Array<string>>()
        for (const row of store.rows) byRequest.set(row.request_id, [...(byRequest.get(row.request_id) ?? []), row.status])
        // Every answered request has exactly one row, a success.
        const missing = answered.filter((id) => (byRequest.get(id) ?? []).length !== 1 || byRequest.get(id)?.[0] !== "success")
        expect(missing, "answered requests without exactly one success row").toEqual([])
        // No row for a request the client never got an answer for: what the server read, it finished
        // within the grace period (nothing cancelled), and what it did not read left no trace.
        const extra = store.rows.filter((r) => !answered.includes(r.request_id))
        expect(extra, "rows of requests no client saw answered").toEqual([])
        expect(finishedAfterSigterm, "requests in flight at SIGTERM that were answered").toBeGreaterThan(0)
        expect(store.open).toBe(0)
        const audited = store.rows.reduce((sum, r) => sum + nanos(r.cost), 0n)
        expect(store.ledger.length).toBe(1)
        expect(nanos(store.ledger[0]!.spent)).toBe(audited)
        expect(nanos(store.ledger[0]!.reserved)).toBe(0n)
        console.log(`shutdown (${durability}): ${sent} sent, ${answered.length} answered (${finishedAfterSigterm} of them in flight at SIGTERM), ${refusedAfter.length} refused after SIGTERM, ${store.rows.length} audit rows, exit in ${tookMs} ms`)
      }), { timeout: 60_000 })
  }
})

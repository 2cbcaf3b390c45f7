/**
 * Postgres stopped for 5 s under load, and started again: the real server process on a private
 * Postgres instance (initdb in a temporary directory, `pg_ctl stop -m fast` / `start`), 30 clients
 * sending back to back before, during and after the outage.
 *
 * - `audit_durability: sync`: a request either succeeds with its audit row committed or fails
 *   closed with a 503 and a JSON body, within a bounded time; none succeeds without its row.
 * - `buffered`: requests may succeed during the outage (their rows queued); after recovery every
 *   request answered 2xx has its row, written by the server before it is stopped.
 *
 * Either way the server recovers by itself: `/health/ready` returns to 200 and requests succeed
 * again, with no restart.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { openDb, scratchDatabase, startPrivatePostgres, type PrivatePostgres } from "./support/postgres.js"
import { startServer, waitUntil } from "./support/serverProcess.js"
import { errorOf, isOk, post, printTable, sleep, tally, type Outcome } from "./support/load.js"

const ADMIN = "bootstrap-admin-key-for-the-pg-outage-test-00000000"
const OUTAGE_MS = 5_000
const CLIENTS = 30
/** How long the audit writer waits for the database before failing a request (PgAuditLog's maxWait), plus the pool's connect timeout. */
const FAIL_CLOSED_WITHIN_MS = 5_000 + 5_000 + 3_000

let pg: PrivatePostgres | undefined

beforeAll(async () => {
  pg = await startPrivatePostgres()
}, 60_000)

afterAll(async () => {
  await pg?.destroy()
}, 60_000)

describe("Postgres stopped for 5 s under load", () => {
  for (const durability of ["sync", "buffered"] as const) {
    it(`${durability}: no request answered 2xx without its audit row; fails closed with 503 meanwhile; recovers by itself`, async () => {
      const db = await scratchDatabase(`tidyllm_outage_${durability}`, pg!.url)
      const sql = openDb(db.url)
      const server = await startServer({
        yaml: [
          "corporate_llm:",
          `  audit_durability: ${durability}`,
          "storage:",
          "  pool_size: 5",
          "providers:",
          "  mock:",
          "    latency_ms: 20",
          ""
        ].join("\n"),
        env: { DATABASE_URL: db.url, TIDYLLM_ADMIN_KEY: ADMIN, TIDYLLM_SHUTDOWN_GRACE_SECONDS: "10" }
      })
      const outcomes: Array<Outcome> = []
      let stop = false
      let load: Promise<unknown> = Promise.resolve()
      try {
        const client = async (c: number) => {
          for (let i = 0; i < 3_000 && !stop; i++) {
            const o = await post(`${server.url}/v1/llm`, `outage-${durability}-${c}-${i}`, { prompt: `outage ${c} ${i}`, reason: "pg outage test", max_tokens: 20 }, {
              headers: { authorization: `Bearer ${ADMIN}` },
              timeoutMs: 30_000
            })
            outcomes.push(o)
            // A refused client backs off a little instead of spinning.
            if (!isOk(o)) await sleep(100)
          }
        }
        load = Promise.all(Array.from({ length: CLIENTS }, (_, c) => client(c)))

        await sleep(2_000)
        const downAt = Date.now()
        await pg!.stop("fast")
        const stoppedAt = Date.now()
        await sleep(Math.max(0, downAt + OUTAGE_MS - Date.now()))
        await pg!.start()
        const upAt = Date.now()
        const ready = async () => (await fetch(`${server.url}/health/ready`, { signal: AbortSignal.timeout(3_000) })).status === 200
        const readyAgain = await waitUntil(ready, 20_000, 200)
        const readyAt = Date.now()
        // Load goes on a few seconds after recovery.
        await sleep(3_000)
        stop = true
        await load

        // Buffered rows are written once the database is back: wait (bounded) for every 2xx to have its row.
        const okIds = outcomes.filter(isOk).map((o) => o.id)
        const rowsOf = async () => {
          const rows = await sql.query<{ request_id: string; status: string }>("SELECT request_id, status FROM llm_audit_log")
          const count = new Map<string, number>()
          for (const r of rows) count.set(r.request_id, (count.get(r.request_id) ?? 0) + 1)
          return { rows, count }
        }
        const flushStart = Date.now()
        const flushed = await waitUntil(async () => {
          const { count } = await rowsOf()
          return okIds.every((id) => count.get(id) === 1)
        }, 20_000, 250)
        const flushMs = Date.now() - flushStart
        const { rows, count } = await rowsOf()
        const lost = okIds.filter((id) => count.get(id) !== 1)
        const readyAfter = await ready()

        const code = await server.stop()
        const t = tally(outcomes)
        const during = outcomes.filter((o) => o.endedAt >= downAt && o.startedAt <= upAt)
        const after = outcomes.filter((o) => o.startedAt >= readyAt)
        const unavailable = outcomes.filter((o) => o.status === 503)
        const slowest503 = Math.max(0, ...unavailable.map((o) => o.endedAt - o.startedAt))
        const rowsOfFailed = outcomes.filter((o) => !isOk(o) && (count.get(o.id) ?? 0) > 0).length
        printTable(`pg outage (${durability}): Postgres down ${upAt - downAt} ms (stop took ${stoppedAt - downAt} ms), ready again ${readyAt - upAt} ms after start`, [
          ["requests sent", t.sent],
          ["2xx", t.ok],
          ["2xx during the outage", during.filter(isOk).length],
          ["402/429", t.rejected],
          ["503", `${t.unavailable} (slowest ${slowest503} ms)`],
          ["other status", t.other],
          ["connection errors", t.connErrors],
          ["client timeouts", t.timeouts],
          ["audit rows", rows.length],
          ["rows of requests that failed (committed, answer lost)", rowsOfFailed],
          ["2xx after recovery / sent after recovery", `${after.filter(isOk).length} / ${after.length}`],
          ["all 2xx rows present after (ms)", flushed ? flushMs : "never"],
          ["lost (2xx without row)", lost.length],
          ["a 503's body", unavailable[0] === undefined ? "-" : JSON.stringify(unavailable[0].body).slice(0, 160)]
        ])

        expect(readyAgain, "/health/ready did not return to 200").toBe(true)
        expect(readyAfter).toBe(true)
        expect(code, server.output().slice(-2000)).toBe(0)
        // Nothing answered 2xx without its row, exactly one each.
        expect(lost).toEqual([])
        expect([...count.values()].every((n) => n === 1)).toBe(true)
        // Every failure was a clear, timely 503: no hang, no dropped connection, no other status.
        expect(t.connErrors + t.timeouts + t.other + t.rejected, JSON.stringify(outcomes.find((o) => !isOk(o) && o.status !== 503))).toBe(0)
        for (const o of unavailable) {
          const e = errorOf(o.body)
          expect(e, JSON.stringify(o.body)).toBeDefined()
          expect(typeof e?.type).toBe("string")
          expect(typeof e?.message).toBe("string")
          expect(o.endedAt - o.startedAt, `${o.id} took ${o.endedAt - o.startedAt} ms`).toBeLessThanOrEqual(FAIL_CLOSED_WITHIN_MS)
        }
        if (durability === "sync") {
          // With the database gone no request can commit its row, so none is answered 2xx while it
          // is down (0.5 s after the stop finished, up to 1 s before the start returned: the server
          // may accept connections before `start` returns): a request in flight meanwhile fails
          // closed with 503, or is answered once the database is back. Which of the two is a race
          // (a writer's last try, at least 1 s long, may outlast a 5 s outage), so either counts.
          const answeredWhileDown = outcomes.filter((o) => isOk(o) && o.endedAt > stoppedAt + 500 && o.endedAt < upAt - 1_000)
          expect(answeredWhileDown.map((o) => `${o.id} answered ${o.endedAt - downAt} ms after the stop`)).toEqual([])
          expect(t.unavailable + during.filter(isOk).length).toBeGreaterThan(0)
        }
        // The server recovered by itself: what was sent after readiness came back succeeded.
        expect(after.length).toBeGreaterThan(0)
        expect(after.filter((o) => !isOk(o)).map((o) => `${o.id}: ${o.status} ${JSON.stringify(o.body)}`)).toEqual([])
        expect(t.ok).toBeGreaterThan(0)
      } finally {
        stop = true
        await load
        await server.dispose()
        await sql.close()
        await db.drop().catch(() => undefined)
      }
    }, 75_000)
  }
})

/**
 * Test bodies shared by both engines: `pglite.test.ts` runs them on embedded PGlite,
 * `postgres.pg.test.ts` on the Postgres server at `DATABASE_URL`. Each `layer(...)` block gets a
 * database of its own.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { RateLimiter } from "@effect/experimental"
import * as SqlClient from "@effect/sql/SqlClient"
import { expect, layer } from "@effect/vitest"
import { Errors, Ids, Money } from "@tidyllm/core"
import { ApiKeys, AuditLog, BudgetLedger } from "@tidyllm/corporate-llm"
import { Cause, Clock, Duration, Effect, Exit, Fiber, Layer, Metric, Option, Random, TestClock, TestContext } from "effect"
import { auditLogContract, entry as contractEntry, Hooks as AgreementHooks } from "../../corporate-llm/test/auditLogContract.js"
import { AuditRetention, Migrator, PgApiKeys, PgAuditLog, PgBudgetLedger, PgRateLimiterStore, PgWorkflowAudit } from "../src/index.js"
import { auditEntry, type FreshDatabase, migrated } from "./harness.js"

const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "tidyllm-migrations-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

const failureOf = <A, E>(exit: Exit.Exit<A, E>): E | undefined =>
  Exit.isFailure(exit) ? Option.getOrUndefined(Cause.failureOption(exit.cause)) : undefined

const count = (table: string, where = "TRUE") =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql.unsafe<{ readonly n: number }>(`SELECT count(*)::int AS n FROM ${table} WHERE ${where}`).pipe(
      Effect.map((rows) => rows[0]?.n ?? -1)
    ))

// ---------------------------------------------------------------------------------------------
// Migrations

export const migratorSuite = (engine: string, fresh: FreshDatabase) =>
  layer(fresh, { excludeTestServices: true, timeout: "60 seconds" })(`Migrator (${engine})`, (it) => {
    it.effect("applies every file of sql/ once, in order; a second run applies nothing", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const files = (yield* Migrator.load()).map((m) => m.name)
        expect(files[0]).toBe("0001_init.sql")
        expect(yield* Migrator.applied).toEqual([])

        expect(yield* Migrator.run()).toEqual(files)
        expect(yield* Migrator.run()).toEqual([])
        const applied = yield* Migrator.applied
        expect(applied.map((a) => a.name)).toEqual(files)
        expect(applied.every((a) => a.checksum.length === 64 && a.applied_at instanceof Date)).toBe(true)

        const tables = yield* sql<{ readonly table_name: string }>`
          SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name`
        expect(tables.map((t) => t.table_name)).toEqual(expect.arrayContaining([
          "agreement_decisions",
          "api_keys",
          "budget_ledger",
          "budget_reservations",
          "flow_agreements",
          "llm_audit_log",
          "tidyllm_migrations",
          "workflow_audit_log"
        ]))
      }))

    it.scoped("replicas migrating at once apply each file exactly once", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        writeFileSync(join(dir, "0001_a.sql"), "CREATE TABLE mig_a (x int);")
        writeFileSync(join(dir, "0002_b.sql"), "CREATE TABLE mig_b (x int);\nINSERT INTO mig_b VALUES (1);\n")
        writeFileSync(join(dir, "README.txt"), "not a migration")
        const runs = yield* Effect.all([Migrator.run(dir), Migrator.run(dir), Migrator.run(dir)], { concurrency: "unbounded" })
        expect(runs.flat().sort()).toEqual(["0001_a.sql", "0002_b.sql"])
        expect(yield* count("mig_b")).toBe(1)
      }))

    it.scoped("a migration that changed after it was applied fails the run", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        writeFileSync(join(dir, "0001_c.sql"), "CREATE TABLE mig_c (x int);")
        expect(yield* Migrator.run(dir)).toEqual(["0001_c.sql"])
        writeFileSync(join(dir, "0001_c.sql"), "CREATE TABLE mig_c (x int, y int);")
        const error = failureOf(yield* Effect.exit(Migrator.run(dir)))
        expect(error?._tag).toBe("MigrationError")
        expect(error?.migration).toBe("0001_c.sql")
        expect(error?.message).toMatch(/changed after it was applied/)
      }))

    it.scoped("a failing migration leaves nothing behind and can be fixed", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const dir = yield* tempDir
        writeFileSync(join(dir, "0001_d.sql"), "CREATE TABLE mig_d (x int);\nSELECT 1 / 0;\n")
        const error = failureOf(yield* Effect.exit(Migrator.run(dir)))
        expect(error?.migration).toBe("0001_d.sql")
        expect(error?.message).toMatch(/division by zero/)
        const [reg] = yield* sql<{ readonly t: string | null }>`SELECT to_regclass('mig_d')::text AS t`
        expect(reg?.t).toBeNull()
        expect(yield* count("tidyllm_migrations", "name = '0001_d.sql'")).toBe(0)

        writeFileSync(join(dir, "0001_d.sql"), "CREATE TABLE mig_d (x int);\n")
        expect(yield* Migrator.run(dir)).toEqual(["0001_d.sql"])
      }))

    it.effect("values parse alike on both engines: numeric and int8 as strings, timestamptz as Date", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const [row] = yield* sql<Record<string, unknown>>`
          SELECT 1.5::numeric(20, 9) AS money, 9007199254740993::int8 AS big, 7::int AS small,
                 '2025-01-02T03:04:05.678Z'::timestamptz AS at, '{"a": [1]}'::jsonb AS doc`
        expect(row).toEqual({ money: "1.500000000", big: "9007199254740993", small: 7, at: new Date("2025-01-02T03:04:05.678Z"), doc: { a: [1] } })
      }))
  })

// ---------------------------------------------------------------------------------------------
// Audit log

const unique = (prefix: string) => `${prefix}-${Ids.randomUuid()}`

export const auditSuite = (engine: string, fresh: FreshDatabase) => {
  layer(Layer.provideMerge(PgAuditLog.layer(), migrated(fresh)), { excludeTestServices: true, timeout: "60 seconds" })(
    `PgAuditLog (${engine})`,
    (it) => {
      it.effect("write then list round-trips every column; cost is exact to the nano-dollar", () =>
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const log = yield* AuditLog.AuditLog
          const rid = unique("roundtrip")
          const t0 = Date.UTC(2025, 0, 2, 3, 4, 5, 678)
          const a = auditEntry({ request_id: rid, created_at: new Date(t0), cost: Money.Nanos(123_456_789_012) })
          const b = auditEntry({
            request_id: rid,
            created_at: new Date(t0 + 1),
            cost: Money.Nanos(1),
            status: "error",
            error_type: "ProviderError",
            error_message: "upstream said no",
            user_id: null,
            team: null,
            key_id: null,
            attempt: 2,
            audit_level: "hash",
            prompt: "ab".repeat(32)
          })
          // The largest amount a Nanos holds: $9,007,199.254740991.
          const c = auditEntry({ request_id: rid, created_at: new Date(t0 + 2), cost: Money.Nanos(Number.MAX_SAFE_INTEGER), status: "cache_hit" })
          yield* log.write(a)
          yield* log.write(b)
          yield* log.write(c)

          expect(yield* log.list({ limit: 10, request_id: rid })).toEqual([c, b, a])
          expect(yield* log.list({ limit: 10, request_id: rid, status: "error" })).toEqual([b])
          expect(yield* log.list({ limit: 1, request_id: rid })).toEqual([c])
          const [stored] = yield* sql<{ readonly cost: string }>`SELECT cost FROM llm_audit_log WHERE id = ${c.id}`
          expect(stored?.cost).toBe("9007199.254740991")
        }))

      it.effect("group commit: 100 concurrent writes share a few INSERTs, all rows durable", () =>
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const log = yield* AuditLog.AuditLog
          const rid = unique("group")
          const before = (yield* Metric.value(PgAuditLog.batchesCommitted)).count
          const entries = Array.from({ length: 100 }, (_, i) => auditEntry({ request_id: rid, created_at: new Date(Date.UTC(2025, 1, 1) + i) }))
          yield* Effect.forEach(entries, (e) => log.write(e), { concurrency: "unbounded", discard: true })
          const batches = (yield* Metric.value(PgAuditLog.batchesCommitted)).count - before

          // Rows committed by one statement share their transaction id: count the commits in the table itself.
          const [row] = yield* sql<{ readonly n: number; readonly commits: number }>`
            SELECT count(*)::int AS n, count(DISTINCT xmin::text)::int AS commits FROM llm_audit_log WHERE request_id = ${rid}`
          expect(row?.n).toBe(100)
          expect(row?.commits).toBe(batches)
          expect(batches).toBeGreaterThanOrEqual(1)
          expect(batches).toBeLessThanOrEqual(10)
        }))

      it.effect("a lone write commits at once, with no batching window (a TestClock never moves)", () =>
        Effect.gen(function*() {
          const rid = unique("lone")
          yield* Effect.scoped(Effect.gen(function*() {
            const log = yield* PgAuditLog.make()
            yield* log.write(auditEntry({ request_id: rid }))
          })).pipe(Effect.provide(TestContext.TestContext), Effect.timeout("10 seconds"))
          expect(yield* count("llm_audit_log", `request_id = '${rid}'`)).toBe(1)
        }))

      it.effect("a row the database refuses fails alone; the rows of its batch are written", () =>
        Effect.gen(function*() {
          const log = yield* AuditLog.AuditLog
          const rid = unique("bad-row")
          const good = Array.from({ length: 20 }, () => auditEntry({ request_id: rid }))
          const bad = auditEntry({ request_id: rid, input_tokens: -1 })
          const exits = yield* Effect.forEach([...good.slice(0, 10), bad, ...good.slice(10)], (e) => Effect.exit(log.write(e)), {
            concurrency: "unbounded"
          })
          const failures = exits.flatMap((e) => {
            const f = failureOf(e)
            return f === undefined ? [] : [f]
          })
          expect(failures).toHaveLength(1)
          expect(failures[0]).toBeInstanceOf(Errors.StoreUnavailable)
          expect(yield* count("llm_audit_log", `request_id = '${rid}'`)).toBe(20)
        }))
    }
  )

  layer(migrated(fresh), { excludeTestServices: true, timeout: "60 seconds" })(`PgAuditLog (${engine}), store failing`, (it) => {
    const hide = Effect.flatMap(SqlClient.SqlClient, (sql) => sql`ALTER TABLE llm_audit_log RENAME TO llm_audit_log_away`)
    const restore = Effect.flatMap(SqlClient.SqlClient, (sql) => sql`ALTER TABLE llm_audit_log_away RENAME TO llm_audit_log`)

    it.scoped("a write waits while the table is gone and succeeds when it returns within the wait", () =>
      Effect.gen(function*() {
        const log = yield* PgAuditLog.make({ maxWait: "10 seconds" })
        const rid = unique("comeback")
        yield* hide
        const fiber = yield* Effect.fork(log.write(auditEntry({ request_id: rid })))
        yield* Effect.sleep("300 millis")
        expect(Option.isNone(yield* Fiber.poll(fiber))).toBe(true)
        yield* restore
        yield* Fiber.join(fiber)
        expect(yield* count("llm_audit_log", `request_id = '${rid}'`)).toBe(1)
      }))

    it.scoped("a write fails closed with StoreUnavailable after the bounded wait", () =>
      Effect.gen(function*() {
        const log = yield* PgAuditLog.make({ maxWait: "1 second" })
        const failedBefore = (yield* Metric.value(PgAuditLog.rowsFailed)).count
        yield* hide
        const start = yield* Clock.currentTimeMillis
        const exit = yield* Effect.exit(log.write(auditEntry()))
        const elapsed = (yield* Clock.currentTimeMillis) - start
        yield* restore
        const error = failureOf(exit)
        expect(error).toBeInstanceOf(Errors.StoreUnavailable)
        expect(error?.store).toBe("postgres")
        // What failed, for the caller; the table and statement only in the server log.
        expect(error?.message).toMatch(/^postgres is unavailable \(SQLSTATE 42P01\)/)
        expect(error?.message).not.toMatch(/llm_audit_log/)
        expect(elapsed).toBeGreaterThanOrEqual(950)
        expect(elapsed).toBeLessThan(4_000)
        expect((yield* Metric.value(PgAuditLog.rowsFailed)).count - failedBefore).toBe(1)
        // The database is back: the same log writes again.
        yield* log.write(auditEntry())
      }))

    it.effect("rows queued when the log shuts down are written before it closes; later writes fail", () =>
      Effect.gen(function*() {
        const rid = unique("drain")
        const [log, fibers] = yield* Effect.scoped(Effect.gen(function*() {
          const log = yield* PgAuditLog.make()
          const fibers = yield* Effect.forEach(
            Array.from({ length: 50 }, () => auditEntry({ request_id: rid })),
            (e) => Effect.forkDaemon(log.write(e))
          )
          // Let every writer enqueue its row; the scope then closes with most rows still queued.
          yield* Effect.sleep("10 millis")
          return [log, fibers] as const
        }))
        const exits = yield* Effect.forEach(fibers, Fiber.await)
        expect(exits.every(Exit.isSuccess)).toBe(true)
        expect(yield* count("llm_audit_log", `request_id = '${rid}'`)).toBe(50)
        const late = failureOf(yield* Effect.exit(log.write(auditEntry({ request_id: rid }))))
        expect(late?.message).toMatch(/shutting down/)
      }))

    it.effect("buffered durability: write returns once queued; every queued row is committed by shutdown", () =>
      Effect.gen(function*() {
        const rid = unique("buffered")
        yield* Effect.scoped(Effect.gen(function*() {
          const log = yield* PgAuditLog.make({ durability: "buffered" })
          yield* Effect.forEach(Array.from({ length: 40 }, () => auditEntry({ request_id: rid })), (e) => log.write(e), { discard: true })
        }))
        expect(yield* count("llm_audit_log", `request_id = '${rid}'`)).toBe(40)
      }))

    it.scoped("a full queue makes the next write wait for room; nothing queued is lost", () =>
      Effect.gen(function*() {
        const rid = unique("full")
        const log = yield* PgAuditLog.make({ durability: "buffered", capacity: 3, lingerMs: 0 })
        yield* hide
        // The writer takes the first row into its batch (failing, retried); three more fill the queue.
        yield* log.write(auditEntry({ request_id: rid }))
        yield* Effect.sleep("50 millis")
        yield* Effect.forEach(Array.from({ length: 3 }, () => auditEntry({ request_id: rid })), (e) => log.write(e), { discard: true })
        const fifth = yield* Effect.fork(log.write(auditEntry({ request_id: rid })))
        yield* Effect.sleep("300 millis")
        expect(Option.isNone(yield* Fiber.poll(fifth))).toBe(true)
        yield* restore
        yield* Fiber.join(fifth)
        const deadline = Date.now() + 5_000
        while ((yield* count("llm_audit_log", `request_id = '${rid}'`)) < 5 && Date.now() < deadline) yield* Effect.sleep("50 millis")
        expect(yield* count("llm_audit_log", `request_id = '${rid}'`)).toBe(5)
      }))

    it.effect("buffered durability: rows that arrive while the writer lingers are committed together", () =>
      Effect.gen(function*() {
        const rid = unique("linger")
        const log = yield* PgAuditLog.make({ durability: "buffered", lingerMs: 200 })
        const before = (yield* Metric.value(PgAuditLog.batchesCommitted)).count
        // One row, then 29 more within the linger: one commit (without it, the lone first row
        // would have gone alone, and the rest after it).
        yield* log.write(auditEntry({ request_id: rid }))
        yield* Effect.sleep("20 millis")
        yield* Effect.forEach(Array.from({ length: 29 }, () => auditEntry({ request_id: rid })), (e) => log.write(e), { discard: true })
        // Committed within a few seconds whatever the machine's load (polled, not a fixed sleep).
        const deadline = Date.now() + 5_000
        while ((yield* count("llm_audit_log", `request_id = '${rid}'`)) < 30 && Date.now() < deadline) yield* Effect.sleep("50 millis")
        expect(yield* count("llm_audit_log", `request_id = '${rid}'`)).toBe(30)
        expect((yield* Metric.value(PgAuditLog.batchesCommitted)).count - before).toBe(1)
      }).pipe(Effect.scoped))
  })
}

// ---------------------------------------------------------------------------------------------
// Budget ledger

const usd = (s: string): Money.Nanos => Money.fromUsdString(s)
const day = (key: string, limit: string): BudgetLedger.Scope => ({ key, period: "day", limit: usd(limit) })
const status = (scope: BudgetLedger.Scope, periodStart: string, spent: string, reserved: string): BudgetLedger.ScopeStatus => ({
  scope: scope.key,
  period: scope.period,
  period_start: periodStart,
  limit: scope.limit,
  spent: usd(spent),
  reserved: usd(reserved)
})
const today = Effect.map(Clock.currentTimeMillis, (now) => BudgetLedger.periodStart("day", now))
const DAY_MS = 86_400_000

export const budgetSuite = (engine: string, fresh: FreshDatabase) =>
  // With the test services: the ledger reads the TestClock, shared by the tests of this block.
  layer(Layer.provideMerge(PgBudgetLedger.layer({ instanceId: "replica-a" }), migrated(fresh)), { timeout: "60 seconds" })(
    `PgBudgetLedger (${engine})`,
    (it) => {
      it.effect("daily and monthly budgets of one scope are separate rows, also on the 1st of the month", () =>
        Effect.gen(function*() {
          const ledger = yield* BudgetLedger.BudgetLedger
          const now = new Date(yield* Clock.currentTimeMillis)
          yield* TestClock.setTime(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1, 10))
          const first = yield* today
          expect(first.endsWith("-01")).toBe(true)
          const scopes: ReadonlyArray<BudgetLedger.Scope> = [day("global:dm", "1"), { key: "global:dm", period: "month", limit: usd("30") }]
          const r = yield* ledger.reserve({ scopes, amount: usd("0.5"), request_id: "dm", ttl_ms: 60_000 })
          expect(yield* ledger.status(scopes)).toEqual([status(scopes[0]!, first, "0", "0.5"), status(scopes[1]!, first, "0", "0.5")])
          yield* ledger.settle(r, usd("0.25"))
          expect(yield* ledger.status(scopes)).toEqual([status(scopes[0]!, first, "0.25", "0"), status(scopes[1]!, first, "0.25", "0")])
        }))

      it.effect("reserve, then settle: the actual cost is charged and the rest released", () =>
        Effect.gen(function*() {
          const ledger = yield* BudgetLedger.BudgetLedger
          const open = yield* ledger.openReservations
          const scopes = [day("global:rs", "10"), day("team:rs", "1")]
          const ps = yield* today
          const r = yield* ledger.reserve({ scopes, amount: usd("0.4"), request_id: "rs-1", ttl_ms: 60_000 })
          expect(r.amount).toBe(usd("0.4"))
          expect(r.rows).toEqual([{ scope: "global:rs", period: "day", period_start: ps }, { scope: "team:rs", period: "day", period_start: ps }])
          expect(yield* ledger.status(scopes)).toEqual([status(scopes[0]!, ps, "0", "0.4"), status(scopes[1]!, ps, "0", "0.4")])
          expect(yield* ledger.openReservations).toBe(open + 1)

          yield* ledger.settle(r, usd("0.123456789"))
          expect(yield* ledger.status(scopes)).toEqual([
            status(scopes[0]!, ps, "0.123456789", "0"),
            status(scopes[1]!, ps, "0.123456789", "0")
          ])
          expect(yield* ledger.openReservations).toBe(open)
        }))

      it.effect("refuses a reservation that does not fit in any one scope, and changes nothing", () =>
        Effect.gen(function*() {
          const ledger = yield* BudgetLedger.BudgetLedger
          const sql = yield* SqlClient.SqlClient
          const scopes = [day("global:x", "10"), day("team:x", "1")]
          const ps = yield* today
          const r1 = yield* ledger.reserve({ scopes, amount: usd("0.7"), request_id: "x-1", ttl_ms: 60_000 })

          const refused = failureOf(yield* Effect.exit(ledger.reserve({ scopes, amount: usd("0.4"), request_id: "x-2", ttl_ms: 60_000 })))
          expect(refused).toEqual(BudgetLedger.exceeded("team:x", usd("1"), usd("0"), usd("0.7"), usd("0.4")))
          expect(refused?.message).toBe(BudgetLedger.exceeded("team:x", usd("1"), usd("0"), usd("0.7"), usd("0.4")).message)
          // The global row's share of the refused reservation was rolled back.
          expect(yield* ledger.status(scopes)).toEqual([status(scopes[0]!, ps, "0", "0.7"), status(scopes[1]!, ps, "0", "0.7")])
          expect(yield* count("budget_reservations", "request_id = 'x-2'")).toBe(0)

          // An exact fit is allowed; one nano-dollar more is not.
          const r2 = yield* ledger.reserve({ scopes, amount: usd("0.3"), request_id: "x-3", ttl_ms: 60_000 })
          const nano = failureOf(yield* Effect.exit(ledger.reserve({ scopes, amount: Money.Nanos(1), request_id: "x-4", ttl_ms: 60_000 })))
          expect(nano?._tag).toBe("BudgetExceeded")

          // More than the whole limit of a scope never reserved against: refused, and no row appears.
          const fresh = day("team:empty", "1")
          const tooBig = failureOf(yield* Effect.exit(ledger.reserve({ scopes: [fresh], amount: usd("2"), request_id: "x-5", ttl_ms: 60_000 })))
          expect(tooBig).toEqual(BudgetLedger.exceeded("team:empty", usd("1"), Money.zero, Money.zero, usd("2")))
          expect(yield* count("budget_ledger", "scope = 'team:empty'")).toBe(0)
          expect(yield* ledger.status([fresh])).toEqual([status(fresh, ps, "0", "0")])

          yield* ledger.settle(r1, usd("0.7"))
          yield* ledger.settle(r2, usd("0.1"))
          expect(yield* ledger.status(scopes)).toEqual([status(scopes[0]!, ps, "0.8", "0"), status(scopes[1]!, ps, "0.8", "0")])
          const [row] = yield* sql<{ readonly spent: string }>`SELECT spent FROM budget_ledger WHERE scope = 'team:x'`
          expect(row?.spent).toBe("0.800000000")
        }))

      it.effect("settling twice charges once", () =>
        Effect.gen(function*() {
          const ledger = yield* BudgetLedger.BudgetLedger
          const scopes = [day("team:twice", "1")]
          const ps = yield* today
          const r = yield* ledger.reserve({ scopes, amount: usd("0.5"), request_id: "t-1", ttl_ms: 60_000 })
          yield* Effect.all([ledger.settle(r, usd("0.2")), ledger.settle(r, usd("0.2"))], { concurrency: "unbounded" })
          yield* ledger.settle(r, usd("0.3"))
          expect(yield* ledger.status(scopes)).toEqual([status(scopes[0]!, ps, "0.2", "0")])
        }))

      it.effect("a changed limit applies to the current period", () =>
        Effect.gen(function*() {
          const ledger = yield* BudgetLedger.BudgetLedger
          const ps = yield* today
          const r1 = yield* ledger.reserve({ scopes: [day("team:limit", "1")], amount: usd("0.8"), request_id: "l-1", ttl_ms: 60_000 })
          yield* ledger.settle(r1, usd("0.8"))
          const refused = failureOf(yield* Effect.exit(ledger.reserve({ scopes: [day("team:limit", "1")], amount: usd("0.5"), request_id: "l-2", ttl_ms: 60_000 })))
          expect(refused?._tag).toBe("BudgetExceeded")
          const r3 = yield* ledger.reserve({ scopes: [day("team:limit", "2")], amount: usd("0.5"), request_id: "l-3", ttl_ms: 60_000 })
          expect(yield* ledger.status([day("team:limit", "2")])).toEqual([status(day("team:limit", "2"), ps, "0.8", "0.5")])
          yield* ledger.settle(r3, usd("0.5"))
        }))

      it.effect("the reaper releases reservations past their deadline, and only those (TestClock)", () =>
        Effect.gen(function*() {
          const ledger = yield* BudgetLedger.BudgetLedger
          const scopes = [day("team:reap", "1")]
          const ps = yield* today
          const open = yield* ledger.openReservations
          const short = yield* ledger.reserve({ scopes, amount: usd("0.3"), request_id: "reap-1", ttl_ms: 1_000 })
          const long = yield* ledger.reserve({ scopes, amount: usd("0.2"), request_id: "reap-2", ttl_ms: 5_000 })
          expect(yield* ledger.reapExpired).toBe(0)
          yield* TestClock.adjust("999 millis")
          expect(yield* ledger.reapExpired).toBe(0)
          yield* TestClock.adjust("1 millis")
          expect(yield* ledger.reapExpired).toBe(1)
          expect(yield* ledger.status(scopes)).toEqual([status(scopes[0]!, ps, "0", "0.2")])
          expect(yield* ledger.openReservations).toBe(open + 1)
          // The owner settling after the reaper charges nothing more.
          yield* ledger.settle(short, usd("0.3"))
          expect(yield* ledger.status(scopes)).toEqual([status(scopes[0]!, ps, "0", "0.2")])
          yield* TestClock.adjust("4 seconds")
          expect(yield* ledger.reapExpired).toBe(1)
          yield* ledger.settle(long, usd("0.2"))
          expect(yield* ledger.status(scopes)).toEqual([status(scopes[0]!, ps, "0", "0")])
          expect(yield* ledger.openReservations).toBe(open)
        }))

      it.effect("settling after midnight charges the day the reservation was made in", () =>
        Effect.gen(function*() {
          const ledger = yield* BudgetLedger.BudgetLedger
          const sql = yield* SqlClient.SqlClient
          const scopes = [day("team:midnight", "1")]
          const now = yield* Clock.currentTimeMillis
          yield* TestClock.adjust(Math.ceil(now / DAY_MS) * DAY_MS - now - 1_000 + (now % DAY_MS === 0 ? DAY_MS : 0))
          const before = yield* today
          const r = yield* ledger.reserve({ scopes, amount: usd("0.5"), request_id: "m-1", ttl_ms: 60_000 })
          yield* TestClock.adjust("2 seconds")
          const after = yield* today
          expect(after).not.toBe(before)
          yield* ledger.settle(r, usd("0.4"))
          expect(yield* ledger.status(scopes)).toEqual([status(scopes[0]!, after, "0", "0")])
          const rows = yield* sql<{ readonly period_start: string; readonly spent: string; readonly reserved: string }>`
            SELECT period_start::text AS period_start, spent, reserved FROM budget_ledger WHERE scope = 'team:midnight'`
          expect(rows).toEqual([{ period_start: before, spent: "0.400000000", reserved: "0.000000000" }])
        }))

      it.effect("behaves as the in-memory ledger over a random sequence of reserves and settles", () =>
        Effect.gen(function*() {
          const ledger = yield* BudgetLedger.BudgetLedger
          const memory = yield* BudgetLedger.makeMemory
          const rng = Random.make("budget-differential")
          // Sorted by key: with several full scopes the SQL ledger names the first in key order.
          const keys = ["diff:a", "diff:b", "diff:c"]
          const open: Array<readonly [BudgetLedger.Reservation, BudgetLedger.Reservation]> = []
          for (let step = 0; step < 80; step++) {
            const op = yield* rng.nextIntBetween(0, 10)
            if (op < 6 || open.length === 0) {
              const chosen = keys.filter((_, i) => (step + i) % 3 !== 0)
              const limits = yield* Effect.forEach(chosen, () => rng.nextIntBetween(1, 4))
              const scopes = chosen.map((k, i) => day(k, String(limits[i])))
              const amount = Money.Nanos(yield* rng.nextIntBetween(0, 600_000_000))
              const input = { scopes, amount, request_id: `diff-${step}`, ttl_ms: 60_000 }
              const [sqlExit, memExit] = [yield* Effect.exit(ledger.reserve(input)), yield* Effect.exit(memory.reserve(input))]
              expect(sqlExit._tag).toBe(memExit._tag)
              expect(failureOf(sqlExit)).toEqual(failureOf(memExit))
              if (Exit.isSuccess(sqlExit) && Exit.isSuccess(memExit)) {
                expect(sqlExit.value.rows).toEqual(memExit.value.rows)
                open.push([sqlExit.value, memExit.value])
              }
            } else {
              const i = yield* rng.nextIntBetween(0, open.length)
              const [s, m] = open[i]!
              const actual = Money.Nanos(Math.floor(s.amount * (yield* rng.nextRange(0, 1.2))))
              yield* ledger.settle(s, actual)
              yield* memory.settle(m, actual)
              // Sometimes settle again (a retry): must change nothing.
              if (op === 9) {
                yield* ledger.settle(s, actual)
                yield* memory.settle(m, actual)
              }
              open.splice(i, 1)
            }
            const scopes = keys.map((k) => day(k, "3"))
            expect(yield* ledger.status(scopes)).toEqual(yield* memory.status(scopes))
          }
          for (const [s, m] of open) {
            yield* ledger.settle(s, s.amount)
            yield* memory.settle(m, m.amount)
          }
          expect(yield* memory.openReservations).toBe(0)
        }))
    }
  )

// ---------------------------------------------------------------------------------------------
// Audit query and retention

/** A proposed flow agreement whose proposal names `request_id` (as gateway #3 writes it). */
const proposeFor = (request_id: string, workflow_id = `wf-${request_id}`) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.map(
      sql<{ readonly id: string }>`INSERT INTO flow_agreements (id, workflow_id, status, expires_at, proposal, proposed_by)
        VALUES (${Ids.randomUuid()}, ${workflow_id}, 'proposed', now() + interval '7 days',
          ${JSON.stringify({ version: 2, base_version: 1, request_id })}::jsonb, 'alice')
        RETURNING id::text AS id`,
      (rows) => rows[0]?.id ?? ""
    ))

const decideAll = (status: "approved" | "rejected" | "expired") =>
  Effect.flatMap(SqlClient.SqlClient, (sql) => sql`UPDATE flow_agreements SET status = ${status}, decided_at = now() WHERE status = 'proposed'`)

/** The `AuditLog` contract's agreement hooks on SQL. */
const sqlAgreementHooks = Layer.effect(AgreementHooks, Effect.map(SqlClient.SqlClient, (sql) => ({
  open: (request_id: string) => Effect.orDie(Effect.provideService(proposeFor(request_id), SqlClient.SqlClient, sql)),
  close: (request_id: string) =>
    Effect.orDie(Effect.asVoid(sql`UPDATE flow_agreements SET status = 'approved', decided_at = now() WHERE proposal->>'request_id' = ${request_id}`))
})))

const y2001 = (day: number, ms = 0) => new Date(Date.UTC(2001, 0, day) + ms)
const CUTOFF = new Date(Date.UTC(2002, 0, 1))

/** A workflow audit row as the session manager and gateway #3 write them. */
const workflowRow = (operation: string, detail: Record<string, unknown>, created_at = y2001(1)) => ({
  id: Ids.randomUuid(),
  created_at,
  operation,
  key: "workflows/x/",
  actor: "user:alice",
  reason: "retention test",
  detail
})

export const auditQuerySuite = (engine: string, fresh: FreshDatabase) => {
  auditLogContract(engine, Layer.mergeAll(PgAuditLog.layer(), sqlAgreementHooks).pipe(Layer.provideMerge(migrated(fresh))))

  layer(Layer.provideMerge(PgAuditLog.layer(), migrated(fresh)), { excludeTestServices: true, timeout: "60 seconds" })(
    `audit query and retention (${engine})`,
    (it) => {
      it.effect("0003 replaces the time, team and status indexes by ones ending in (created_at, id) and adds key and model", () =>
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const indexes = yield* sql<{ readonly name: string; readonly def: string }>`
            SELECT indexname AS name, indexdef AS def FROM pg_indexes WHERE tablename = 'llm_audit_log' ORDER BY indexname`
          expect(indexes.map((i) => i.name)).toEqual([
            "llm_audit_log_created_at_id_idx",
            "llm_audit_log_key_created_at_id_idx",
            "llm_audit_log_model_created_at_id_idx",
            "llm_audit_log_pkey",
            "llm_audit_log_request_id_idx",
            "llm_audit_log_status_created_at_id_idx",
            "llm_audit_log_team_created_at_id_idx"
          ])
          expect(indexes.find((i) => i.name === "llm_audit_log_team_created_at_id_idx")?.def).toMatch(/\(team, created_at DESC, id DESC\)$/)
        }))

      it.effect("a team page after a cursor is one index range scan: filter, order and cursor in the index, no sort", () =>
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const plan = yield* sql.withTransaction(Effect.gen(function*() {
            // A small table would be read whole; make the planner show the path it takes on a big one.
            yield* sql`SET LOCAL enable_seqscan = off`
            yield* sql`SET LOCAL enable_bitmapscan = off`
            const rows = yield* sql<Record<string, string>>`EXPLAIN SELECT id FROM llm_audit_log
              WHERE team = ${"risk"} AND created_at >= ${new Date(Date.UTC(2025, 0, 1))}
                AND (created_at, id) < (${"2025-06-01T00:00:00.123456Z"}::timestamptz, ${Ids.randomUuid()}::uuid)
              ORDER BY created_at DESC, id DESC LIMIT 101`
            return rows.map((r) => Object.values(r).join(" ")).join("\n")
          }))
          expect(plan).toMatch(/Index (Only )?Scan using llm_audit_log_team_created_at_id_idx/)
          expect(plan).toMatch(/Index Cond: .*team = .*ROW\(created_at, id\) < ROW/s)
          expect(plan).not.toMatch(/Sort/)
        }))

      it.effect("LLM rows named by an open agreement's records are kept: its proposing request and the requests of its workflow audit rows", () =>
        Effect.gen(function*() {
          const log = yield* AuditLog.AuditLog
          const workflows = yield* PgWorkflowAudit.make()
          const agreement = yield* proposeFor("retention-proposal", "wf-retention")
          yield* workflows.record(workflowRow("agreement_approval_recorded", { agreement_id: agreement, workflow_id: "wf-retention", request_id: "retention-decision" }, new Date()))
          const rows = [
            auditEntry({ request_id: "retention-proposal", created_at: y2001(2), status: "success" }),
            auditEntry({ request_id: "retention-decision", created_at: y2001(3), status: "error" }),
            auditEntry({ request_id: "retention-other", created_at: y2001(4), status: "success" }),
            auditEntry({ request_id: "retention-other", created_at: y2001(5), status: "cancelled" })
          ]
          yield* Effect.forEach(rows, log.write, { discard: true })
          expect(yield* log.purge({ older_than: CUTOFF })).toEqual({ removed: 2, kept_under_agreement: 2, by_status: { success: 1, cancelled: 1 } })
          const left = yield* log.query({ to: CUTOFF, limit: 10 })
          expect(left.rows.map((r) => r.request_id).sort()).toEqual(["retention-decision", "retention-proposal"])
          // Rejected: the rows are ordinary again.
          yield* decideAll("rejected")
          expect(yield* log.purge({ older_than: CUTOFF })).toEqual({ removed: 2, kept_under_agreement: 0, by_status: { success: 1, error: 1 } })
        }))

      it.effect("workflow audit purge keeps the rows of a workflow, an agreement and the requests under an open agreement", () =>
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const workflows = yield* PgWorkflowAudit.make()
          const agreement = yield* proposeFor("wf-proposal-request", "wf-pending")
          const kept = [
            workflowRow("put_version", { workflow_id: "wf-pending", version: 1, request_id: "r1" }),
            workflowRow("get_version", { workflow_id: "wf-pending", requested: "current" }),
            workflowRow("agreement_proposed", { agreement_id: agreement, request_id: "wf-proposal-request" }),
            workflowRow("store_workflow", { prefix: "workflows/", request_id: "wf-proposal-request" })
          ]
          const purged = [
            workflowRow("put_version", { workflow_id: "wf-done", version: 3, request_id: "r2" }),
            workflowRow("put_version", { workflow_id: "wf-other", version: 1 }),
            workflowRow("list_workflows", {}),
            workflowRow("agreement_approved", { agreement_id: Ids.randomUuid(), workflow_id: "wf-done" })
          ]
          const young = workflowRow("get_version", { workflow_id: "wf-other" }, new Date())
          yield* Effect.forEach([...kept, ...purged, young], workflows.record, { discard: true })

          const dry = yield* AuditRetention.purgeWorkflowAudit({ older_than: CUTOFF, dry_run: true })
          expect(dry).toEqual({ removed: 4, kept_under_agreement: 4, by_operation: { put_version: 2, list_workflows: 1, agreement_approved: 1 } })
          const mine = [...kept, ...purged, young].map((r) => r.id)
          const left = Effect.map(
            sql<{ readonly id: string }>`SELECT id::text AS id FROM workflow_audit_log WHERE id::text IN ${sql.in(mine)} ORDER BY id`,
            (rows) => rows.map((r) => r.id)
          )
          expect(yield* left).toEqual([...mine].sort())
          expect(yield* AuditRetention.purgeWorkflowAudit({ older_than: CUTOFF, batch_size: 3 })).toEqual(dry)
          expect(yield* left).toEqual([...kept, young].map((r) => r.id).sort())

          yield* decideAll("approved")
          expect(yield* AuditRetention.purgeWorkflowAudit({ older_than: CUTOFF })).toEqual({
            removed: 4, kept_under_agreement: 0, by_operation: { put_version: 1, get_version: 1, agreement_proposed: 1, store_workflow: 1 }
          })
          expect(yield* left).toEqual([young.id])
        }))

      it.effect("a purge larger than the batch deletes everything, batch after batch, also when the batch divides it exactly", () =>
        Effect.gen(function*() {
          const log = yield* AuditLog.AuditLog
          for (const n of [23, 20]) {
            yield* Effect.forEach(Array.from({ length: n }, (_, i) => contractEntry({ created_at: y2001(1, i), status: i % 2 === 0 ? "success" : "error" })), log.write, { discard: true })
            const dry = yield* AuditRetention.purgeLlmAudit({ older_than: CUTOFF, dry_run: true })
            expect(dry.removed).toBe(n)
            const done = yield* AuditRetention.purgeLlmAudit({ older_than: CUTOFF, batch_size: 5 })
            expect(done).toEqual({ removed: n, kept_under_agreement: 0, by_status: { success: Math.ceil(n / 2), error: Math.floor(n / 2) } })
            expect(yield* count("llm_audit_log", "created_at < '2002-01-01'")).toBe(0)
          }
        }))

      it.effect("a cursor keeps microseconds: rows stored with sub-millisecond times page without loss or repetition", () =>
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const log = yield* AuditLog.AuditLog
          // Rows another writer stored with now()-style microsecond times, three in one millisecond.
          const ids = Array.from({ length: 5 }, () => Ids.randomUuid())
          const times = ["2040-01-01T00:00:00.000100Z", "2040-01-01T00:00:00.000200Z", "2040-01-01T00:00:00.000900Z", "2040-01-01T00:00:00.001000Z", "2040-01-01T00:00:00.001001Z"]
          for (const [i, id] of ids.entries()) {
            yield* sql`INSERT INTO llm_audit_log (id, request_id, created_at, caller, reason, provider, model, status, prompt, audit_level)
              VALUES (${id}, 'micro', ${times[i]!}::timestamptz, 'system', 'micro', 'mock', 'm', 'success', 'p', 'hash')`
          }
          const seen: Array<string> = []
          let cursor: string | undefined = undefined
          for (;;) {
            const page: AuditLog.Page = yield* log.query({ request_id: "micro", limit: 1, cursor })
            seen.push(...page.rows.map((r) => r.id))
            if (page.next_cursor === null) break
            cursor = page.next_cursor
          }
          expect(seen).toEqual([...ids].reverse())
        }))
    }
  )
}

/** Every shared suite, on one engine. */
export const allSuites = (engine: string, fresh: FreshDatabase) => {
  migratorSuite(engine, fresh)
  auditSuite(engine, fresh)
  budgetSuite(engine, fresh)
  auditQuerySuite(engine, fresh)
}

// ---------------------------------------------------------------------------------------------
// API keys: one contract for the memory store and the SQL one (apiKeys.test.ts, apiKeys.pg.test.ts)

const newKey = (over: Partial<ApiKeys.NewKey> = {}): ApiKeys.NewKey => {
  const { hash, id } = ApiKeys.generate()
  return { id, hash, role: "user", created_by: "cli", limits: {}, ...over }
}

/**
 * Runs the `ApiKeys` contract against `store`. The suite shares one store, so each test works on
 * teams of its own and counts active keys as a difference. It runs on the live clock: the memory
 * store stamps `created_at` with `new Date()`; a few real milliseconds between creations give
 * "newest first" an order.
 */
export const apiKeysContract = <E>(name: string, store: Layer.Layer<ApiKeys.ApiKeys, E>) =>
  layer(store, { excludeTestServices: true, timeout: "60 seconds" })(`ApiKeys contract: ${name}`, (it) => {
    it.effect("creates a key; get and findByHash return it; unknown ids and hashes find nothing", () =>
      Effect.gen(function*() {
        const keys = yield* ApiKeys.ApiKeys
        const team = unique("team")
        const expires_at = new Date(Date.UTC(2030, 0, 2, 3, 4, 5, 678))
        const input = newKey({ name: "ci pipeline", team, role: "approver", created_by: "key:admin1", expires_at })
        const before = Date.now()
        const created = yield* keys.create(input)
        const after = Date.now()
        expect(created).toStrictEqual({
          id: input.id,
          name: "ci pipeline",
          team,
          role: "approver",
          created_at: created.created_at,
          created_by: "key:admin1",
          expires_at,
          limits: {}
        })
        expect(created.created_at.getTime()).toBeGreaterThanOrEqual(before)
        expect(created.created_at.getTime()).toBeLessThanOrEqual(after)
        expect(yield* keys.get(input.id)).toStrictEqual(Option.some(created))
        expect(yield* keys.findByHash(input.hash)).toStrictEqual(Option.some(created))
        expect(yield* keys.get(unique("missing"))).toStrictEqual(Option.none())
        expect(yield* keys.findByHash(ApiKeys.hashSecret("tlk_nothing"))).toStrictEqual(Option.none())
      }))

    it.effect("a key without name, team, expiry or limits has none of those fields", () =>
      Effect.gen(function*() {
        const keys = yield* ApiKeys.ApiKeys
        const input = newKey({ role: "admin", created_by: "config" })
        const created = yield* keys.create(input)
        expect(Object.keys(created).sort()).toEqual(["created_at", "created_by", "id", "limits", "role"])
        expect(created.limits).toStrictEqual({})
        expect(yield* keys.get(input.id)).toStrictEqual(Option.some(created))
      }))

    it.effect("limits round-trip, fractional dollars included", () =>
      Effect.gen(function*() {
        const keys = yield* ApiKeys.ApiKeys
        const limits = { budget_daily_usd: 12.345, budget_monthly_usd: 0.000000001, requests_per_minute: 60, tokens_per_minute: 100_000 }
        const full = newKey({ limits })
        const partial = newKey({ limits: { budget_monthly_usd: 250.5, requests_per_minute: 1 } })
        expect((yield* keys.create(full)).limits).toStrictEqual(limits)
        expect((yield* keys.create(partial)).limits).toStrictEqual({ budget_monthly_usd: 250.5, requests_per_minute: 1 })
        expect(Option.map(yield* keys.get(full.id), (k) => k.limits)).toStrictEqual(Option.some(limits))
        expect(Option.map(yield* keys.findByHash(partial.hash), (k) => k.limits)).toStrictEqual(
          Option.some({ budget_monthly_usd: 250.5, requests_per_minute: 1 })
        )
      }))

    it.effect("a second key with the same id or the same secret hash fails with InvalidRequest on field id, storing nothing", () =>
      Effect.gen(function*() {
        const keys = yield* ApiKeys.ApiKeys
        const team = unique("team")
        const first = yield* keys.create(newKey({ team, name: "first" }))
        const firstHash = newKey().hash
        const original = yield* keys.create(newKey({ team, hash: firstHash }))
        const sameId = failureOf(yield* Effect.exit(keys.create(newKey({ id: first.id, team, name: "second" }))))
        expect(sameId?._tag).toBe("InvalidRequest")
        expect(sameId?._tag === "InvalidRequest" ? sameId.field : undefined).toBe("id")
        const sameHash = failureOf(yield* Effect.exit(keys.create(newKey({ hash: firstHash, team }))))
        expect(sameHash?._tag).toBe("InvalidRequest")
        expect(sameHash?._tag === "InvalidRequest" ? sameHash.field : undefined).toBe("id")
        expect(yield* keys.get(first.id)).toStrictEqual(Option.some(first))
        expect(yield* keys.findByHash(firstHash)).toStrictEqual(Option.some(original))
        expect((yield* keys.list({ team })).length).toBe(2)
      }))

    it.effect("list: newest first, by team, revoked keys only when asked", () =>
      Effect.gen(function*() {
        const keys = yield* ApiKeys.ApiKeys
        const [teamA, teamB] = [unique("team-a"), unique("team-b")]
        const created: Array<ApiKeys.ApiKey> = []
        for (const team of [teamA, teamB, teamA, teamA]) {
          created.push(yield* keys.create(newKey({ team })))
          yield* Effect.sleep("3 millis")
        }
        const [a1, b1, a2, a3] = created as [ApiKeys.ApiKey, ApiKeys.ApiKey, ApiKeys.ApiKey, ApiKeys.ApiKey]
        const ids = (list: ReadonlyArray<ApiKeys.ApiKey>) => list.map((k) => k.id)
        expect(ids(yield* keys.list({ team: teamA }))).toEqual([a3.id, a2.id, a1.id])
        expect(ids(yield* keys.list({ team: teamB }))).toEqual([b1.id])
        const all = ids(yield* keys.list({}))
        expect(all.filter((id) => created.some((k) => k.id === id))).toEqual([a3.id, a2.id, b1.id, a1.id])

        const revoked = yield* keys.revoke(a2.id, new Date())
        expect(Option.map(revoked, (k) => k.id)).toStrictEqual(Option.some(a2.id))
        expect(ids(yield* keys.list({ team: teamA }))).toEqual([a3.id, a1.id])
        expect(ids(yield* keys.list({ team: teamA, include_revoked: false }))).toEqual([a3.id, a1.id])
        const withRevoked = yield* keys.list({ team: teamA, include_revoked: true })
        expect(ids(withRevoked)).toEqual([a3.id, a2.id, a1.id])
        expect(withRevoked[1]).toStrictEqual(Option.getOrThrow(revoked))
        expect(ids(yield* keys.list({})).includes(a2.id)).toBe(false)
        expect(yield* keys.list({ team: unique("nobody") })).toEqual([])
      }))

    it.effect("revoke keeps the first time; an unknown id revokes nothing", () =>
      Effect.gen(function*() {
        const keys = yield* ApiKeys.ApiKeys
        const key = yield* keys.create(newKey({ limits: { requests_per_minute: 5 } }))
        const first = new Date(Date.UTC(2026, 4, 1, 12, 0, 0, 123))
        const once = yield* keys.revoke(key.id, first)
        expect(once).toStrictEqual(Option.some({ ...key, revoked_at: first }))
        const twice = yield* keys.revoke(key.id, new Date(first.getTime() + 60_000))
        expect(twice).toStrictEqual(once)
        expect(yield* keys.get(key.id)).toStrictEqual(once)
        expect(yield* keys.revoke(unique("missing"), first)).toStrictEqual(Option.none())
      }))

    it.effect("countActive counts keys neither revoked nor expired at the given time", () =>
      Effect.gen(function*() {
        const keys = yield* ApiKeys.ApiKeys
        const t = Date.UTC(2031, 0, 1)
        const at = (offsetMs: number) => new Date(t + offsetMs)
        const instants = [at(-1), at(0), at(30 * 60_000), at(2 * 3_600_000)]
        // The store is shared with the other tests: count the difference our keys make.
        const base = yield* Effect.forEach(instants, keys.countActive)
        yield* keys.create(newKey())
        yield* keys.create(newKey({ expires_at: at(3_600_000) }))
        yield* keys.create(newKey({ expires_at: at(0) }))
        const revokedLater = yield* keys.create(newKey())
        yield* keys.revoke(revokedLater.id, at(30 * 60_000))
        const revokedNow = yield* keys.create(newKey({ expires_at: at(10 * 3_600_000) }))
        yield* keys.revoke(revokedNow.id, new Date())
        const counts = yield* Effect.forEach(instants, keys.countActive)
        // Just before t: all but the key revoked now; at t the key expiring at t is gone; the
        // revocation counts from its own instant on; after 2 h only the key with no end is left.
        expect(counts.map((n, i) => n - base[i]!)).toEqual([4, 3, 2, 1])
      }))
  })

// ---------------------------------------------------------------------------------------------
// Rate limits (rateLimiter.test.ts, rateLimiter.pg.test.ts)

const exceeded = <A>(exit: Exit.Exit<A, RateLimiter.RateLimiterError>) => {
  const error = failureOf(exit)
  return error instanceof RateLimiter.RateLimitExceeded ? error : undefined
}

const counterRow = (key: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<{ readonly count: string }>`SELECT count::text AS count FROM rate_limit_counters WHERE key = ${key}`.pipe(
      Effect.map((rows) => rows.map((r) => Number(r.count)))
    ))

/**
 * `RateLimiter.make` over `PgRateLimiterStore` on a migrated database of `fresh`. The store uses
 * the database's clock, which no TestClock reaches: the expiry tests sleep for real, on windows
 * of a few hundred milliseconds.
 */
export const rateLimiterSuite = (engine: string, fresh: FreshDatabase) => {
  const store = Layer.provideMerge(PgRateLimiterStore.layer, migrated(fresh))
  layer(Layer.orDie(Layer.provideMerge(RateLimiter.layer, store)), { excludeTestServices: true, timeout: "60 seconds" })(
    `PgRateLimiterStore (${engine})`,
    (it) => {
      it.effect("limit 5 per minute: five takes succeed, the sixth fails with a retry-after within the minute and adds nothing", () =>
        Effect.gen(function*() {
          const limiter = yield* RateLimiter.RateLimiter
          const key = unique("rpm")
          const consume = limiter.consume({ key, limit: 5, window: "1 minute" })
          const results = yield* Effect.forEach([1, 2, 3, 4, 5], () => consume)
          expect(results.map((r) => r.remaining)).toEqual([4, 3, 2, 1, 0])
          expect(results.every((r) => Duration.isZero(r.delay))).toBe(true)
          // Each take adds window / limit to the counter's life: after five, it ends a minute from now.
          const reset = Duration.toMillis(results[4]!.resetAfter)
          expect(reset).toBeGreaterThan(50_000)
          expect(reset).toBeLessThanOrEqual(60_000)

          const sixth = exceeded(yield* Effect.exit(consume))
          expect(sixth?.key).toBe(key)
          expect(sixth?.limit).toBe(5)
          const retry = sixth === undefined ? -1 : Duration.toMillis(sixth.retryAfter)
          expect(retry).toBeGreaterThan(0)
          expect(retry).toBeLessThanOrEqual(60_000)
          expect(yield* counterRow(key)).toEqual([5])
        }))

      it.effect("keys are independent", () =>
        Effect.gen(function*() {
          const limiter = yield* RateLimiter.RateLimiter
          const [a, b] = [unique("a"), unique("b")]
          const consume = (key: string) => Effect.exit(limiter.consume({ key, limit: 2, window: "1 minute" }))
          const outcomes = yield* Effect.forEach([a, a, a, b, b, b], consume)
          expect(outcomes.map((e) => Exit.isSuccess(e))).toEqual([true, true, false, true, true, false])
          expect(yield* counterRow(a)).toEqual([2])
          expect(yield* counterRow(b)).toEqual([2])
        }))

      it.effect("onExceeded delay adds every take, past the limit too, and tells the later ones to wait", () =>
        Effect.gen(function*() {
          const limiter = yield* RateLimiter.RateLimiter
          const key = unique("delay")
          const results = yield* Effect.forEach([1, 2, 3, 4, 5, 6, 7], () =>
            limiter.consume({ key, limit: 5, window: "1 minute", onExceeded: "delay" }))
          expect(results.slice(0, 5).every((r) => Duration.isZero(r.delay))).toBe(true)
          const sixth = Duration.toMillis(results[5]!.delay)
          expect(sixth).toBeGreaterThan(50_000)
          expect(sixth).toBeLessThanOrEqual(60_000)
          expect(results[6]!.remaining).toBe(-2)
          expect(yield* counterRow(key)).toEqual([7])
        }))

      it.effect("tokens: a take of several units counts them all and is refused whole when they do not fit", () =>
        Effect.gen(function*() {
          const limiter = yield* RateLimiter.RateLimiter
          const key = unique("tpm")
          const consume = (tokens: number) => Effect.exit(limiter.consume({ key, limit: 1_000, window: "1 minute", tokens }))
          expect(Exit.isSuccess(yield* consume(600))).toBe(true)
          expect(exceeded(yield* consume(401))?.limit).toBe(1_000)
          expect(Exit.isSuccess(yield* consume(400))).toBe(true)
          expect(yield* counterRow(key)).toEqual([1_000])
        }))

      it.effect("the store itself: count and time to live as the Redis store reports them", () =>
        Effect.gen(function*() {
          const store = yield* RateLimiter.RateLimiterStore
          const key = unique("raw")
          const take = (tokens: number, limit: number | undefined) =>
            store.fixedWindow({ key, tokens, refillRate: Duration.seconds(10), limit })
          const near = (ms: number, expected: number) => expect(Math.abs(ms - expected)).toBeLessThan(2_000)

          const [c1, t1] = yield* take(3, 5)
          expect(c1).toBe(3)
          near(t1, 30_000)
          // Over the limit: the count it would reach, the time to live unchanged.
          const [c2, t2] = yield* take(3, 5)
          expect(c2).toBe(6)
          near(t2, 30_000)
          // No limit: always added, and the life grows by refill × tokens.
          const [c3, t3] = yield* take(3, undefined)
          expect(c3).toBe(6)
          near(t3, 60_000)
          expect(yield* counterRow(key)).toEqual([6])
        }))

      it.effect("50 concurrent takes against a limit of 20 on one key: exactly 20 succeed, on a new key and on a used one", () =>
        Effect.gen(function*() {
          const limiter = yield* RateLimiter.RateLimiter
          for (const used of [false, true]) {
            const key = unique("burst")
            const consume = Effect.exit(limiter.consume({ key, limit: 20, window: "1 minute" }))
            if (used) expect(Exit.isSuccess(yield* consume)).toBe(true)
            const outcomes = yield* Effect.all(Array.from({ length: used ? 49 : 50 }, () => consume), { concurrency: "unbounded" })
            const succeeded = outcomes.filter(Exit.isSuccess).length + (used ? 1 : 0)
            expect(succeeded).toBe(20)
            expect(outcomes.filter((e) => exceeded(e) !== undefined).length).toBe(30)
            expect(yield* counterRow(key)).toEqual([20])
          }
        }))

      it.effect("first takes racing on new keys with a limit of 1: exactly one per key succeeds, the others are refused", () =>
        Effect.gen(function*() {
          const limiter = yield* RateLimiter.RateLimiter
          // Refusals whose statement began before the winner's insert committed see no row in their
          // snapshot: the store must still report them as refusals, not as failures or successes.
          for (let round = 0; round < 10; round++) {
            const key = unique("first")
            const outcomes = yield* Effect.all(
              Array.from({ length: 10 }, () => Effect.exit(limiter.consume({ key, limit: 1, window: "1 minute" }))),
              { concurrency: "unbounded" }
            )
            expect(outcomes.filter(Exit.isSuccess).length).toBe(1)
            expect(outcomes.filter((e) => exceeded(e) !== undefined).length).toBe(9)
            expect(yield* counterRow(key)).toEqual([1])
          }
        }))

      it.effect("a window ends: after its time to live the counter restarts, and purgeExpired deletes what has ended", () =>
        Effect.gen(function*() {
          const limiter = yield* RateLimiter.RateLimiter
          const [key, other] = [unique("short"), unique("long")]
          const consume = Effect.exit(limiter.consume({ key, limit: 2, window: "200 millis" }))
          expect(Exit.isSuccess(yield* consume)).toBe(true)
          expect(Exit.isSuccess(yield* consume)).toBe(true)
          const refused = exceeded(yield* consume)
          const wait = refused === undefined ? -1 : Duration.toMillis(refused.retryAfter)
          expect(wait).toBeGreaterThan(0)
          expect(wait).toBeLessThanOrEqual(200)
          yield* limiter.consume({ key: other, limit: 2, window: "1 minute" })

          yield* Effect.sleep(Duration.millis(wait + 50))
          const again = yield* consume
          expect(Exit.isSuccess(again) ? again.value.remaining : undefined).toBe(1)
          expect(yield* counterRow(key)).toEqual([1])

          yield* Effect.sleep("150 millis")
          expect(yield* PgRateLimiterStore.purgeExpired).toBeGreaterThanOrEqual(1)
          expect(yield* counterRow(key)).toEqual([])
          expect(yield* counterRow(other)).toEqual([1])
          expect(yield* PgRateLimiterStore.purgeExpired).toBe(0)
        }))

      it.effect("token buckets are refused with a RateLimitStoreError that says so", () =>
        Effect.gen(function*() {
          const limiter = yield* RateLimiter.RateLimiter
          const error = failureOf(yield* Effect.exit(limiter.consume({ key: unique("tb"), limit: 5, window: "1 minute", algorithm: "token-bucket" })))
          expect(error?.reason).toBe("StoreError")
          expect(error?.message).toMatch(/not supported by the Postgres/)
        }))
    }
  )

  layer(Layer.provideMerge(PgRateLimiterStore.layer, fresh), { excludeTestServices: true, timeout: "60 seconds" })(
    `PgRateLimiterStore (${engine}, no schema)`,
    (it) => {
      it.effect("a database failure is a RateLimitStoreError", () =>
        Effect.gen(function*() {
          const store = yield* RateLimiter.RateLimiterStore
          const error = failureOf(yield* Effect.exit(store.fixedWindow({ key: "k", tokens: 1, refillRate: Duration.seconds(1), limit: 5 })))
          expect(error?._tag).toBe("RateLimiterError")
          expect(error?.reason).toBe("StoreError")
          expect(error?.message).toMatch(/rate_limit_counters/)
          const purge = failureOf(yield* Effect.exit(PgRateLimiterStore.purgeExpired))
          expect(purge?.reason).toBe("StoreError")
        }))
    }
  )
}

/** What is particular to the SQL key store: rows of older schemas, the exact decimals, failures. */
export const pgApiKeysSuite = (engine: string, fresh: FreshDatabase) => {
  layer(Layer.orDie(Layer.provideMerge(PgApiKeys.layer, migrated(fresh))), { excludeTestServices: true, timeout: "60 seconds" })(
    `PgApiKeys (${engine})`,
    (it) => {
      it.effect("a row written before 0004 reads as a key created by 'unknown' with no limits; roles are checked", () =>
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const keys = yield* ApiKeys.ApiKeys
          yield* sql`INSERT INTO api_keys (id, hash, team, role) VALUES ('old1', 'old-hash', 'team-old', 'compliance')`
          const old = yield* keys.findByHash("old-hash")
          expect(Option.map(old, ({ created_at: _, ...k }) => k)).toStrictEqual(
            Option.some({ id: "old1", team: "team-old", role: "compliance", created_by: "unknown", limits: {} })
          )
          const bad = yield* Effect.exit(sql`INSERT INTO api_keys (id, hash, role) VALUES ('bad1', 'bad-hash', 'root')`)
          expect(Exit.isFailure(bad)).toBe(true)
        }))

      it.effect("dollars are stored exactly as numeric(20, 9); limits out of range are an InvalidRequest", () =>
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const keys = yield* ApiKeys.ApiKeys
          const key = yield* keys.create(newKey({ limits: { budget_daily_usd: 12.345, budget_monthly_usd: 1234.000000001 } }))
          const [row] = yield* sql<{ readonly d: string; readonly m: string }>`
            SELECT budget_daily_usd::text AS d, budget_monthly_usd::text AS m FROM api_keys WHERE id = ${key.id}`
          expect(row).toEqual({ d: "12.345000000", m: "1234.000000001" })
          const huge = failureOf(yield* Effect.exit(keys.create(newKey({ limits: { budget_daily_usd: 1e12 } }))))
          expect(huge?._tag).toBe("InvalidRequest")
          expect(huge?._tag === "InvalidRequest" ? huge.field : undefined).toBe("limits")
        }))

      it.effect("0004's indexes and the agreement team column exist", () =>
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const indexes = yield* sql<{ readonly indexname: string }>`
            SELECT indexname FROM pg_indexes WHERE schemaname = 'public' AND indexname IN (
              'api_keys_team_created_at_idx', 'flow_agreements_team_created_at_idx', 'rate_limit_counters_expires_at_idx',
              'llm_audit_log_key_created_at_id_idx') ORDER BY indexname`
          expect(indexes.map((i) => i.indexname)).toEqual([
            "api_keys_team_created_at_idx", "flow_agreements_team_created_at_idx", "llm_audit_log_key_created_at_id_idx",
            "rate_limit_counters_expires_at_idx"
          ])
          const [team] = yield* sql<{ readonly is_nullable: string }>`
            SELECT is_nullable FROM information_schema.columns WHERE table_name = 'flow_agreements' AND column_name = 'team'`
          expect(team?.is_nullable).toBe("YES")
        }))
    }
  )

  layer(Layer.provideMerge(PgApiKeys.layer, fresh), { excludeTestServices: true, timeout: "60 seconds" })(
    `PgApiKeys (${engine}, no schema)`,
    (it) => {
      it.effect("a database failure is StoreUnavailable on every method", () =>
        Effect.gen(function*() {
          const keys = yield* ApiKeys.ApiKeys
          const errors = yield* Effect.forEach([
            keys.create(newKey()),
            keys.get("k"),
            keys.findByHash("h"),
            keys.list({}),
            keys.revoke("k", new Date()),
            keys.countActive(new Date())
          ], (e: Effect.Effect<unknown, Errors.InvalidRequest | Errors.StoreUnavailable>) => Effect.map(Effect.exit(e), failureOf))
          expect(errors.map((e) => e?._tag)).toEqual(Array(6).fill("StoreUnavailable"))
          // A client reads these messages: the SQLSTATE, not the driver's text naming the table.
          for (const e of errors) {
            expect(e?.message).toMatch(/is unavailable \(SQLSTATE 42P01\); the details are in the server log$/)
            expect(e?.message).not.toMatch(/api_keys|relation/)
          }
        }))
    }
  )
}

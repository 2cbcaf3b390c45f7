/**
 * The shared suites on the Postgres server at `DATABASE_URL` (default
 * postgres://postgres@127.0.0.1:5432/postgres; each suite creates and drops its own database),
 * and the budget's exactness under concurrency across two replicas.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import { Money } from "@tidyllm/core"
import { BudgetLedger } from "@tidyllm/corporate-llm"
import { Config, ConfigProvider, Context, Effect, Exit, Fiber, Layer, Random, Redacted, Ref } from "effect"
import { Migrator, PgBudgetLedger, PgClient } from "../src/index.js"
import { databaseUrl, freshDatabaseUrl, postgres } from "./harness.js"
import { allSuites } from "./suites.js"

allSuites("postgres", postgres())

describe("PgBudgetLedger on Postgres, two replicas", () => {
  it.scopedLive("200 concurrent reservations never overshoot; settling all leaves spent exact and nothing open", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabaseUrl
      const replica = (instanceId: string) =>
        Layer.build(Layer.provideMerge(PgBudgetLedger.layer({ instanceId }), PgClient.layer({ url, poolSize: 8 })))
      const a = yield* replica("replica-a")
      const b = yield* replica("replica-b")
      yield* Migrator.run().pipe(Effect.provide(a))
      const ledgers = [Context.get(a, BudgetLedger.BudgetLedger), Context.get(b, BudgetLedger.BudgetLedger)] as const
      const sql = Context.get(a, SqlClient.SqlClient)

      const global: BudgetLedger.Scope = { key: "global", period: "day", limit: Money.fromUsdString("1") }
      const teams = [0, 1, 2, 3].map((i): BudgetLedger.Scope => ({ key: `team:${i}`, period: "day", limit: Money.fromUsdString("0.3") }))
      const rng = Random.make("two-replicas")
      const requests = yield* Effect.forEach(Array.from({ length: 200 }, (_, i) => i), (i) =>
        Effect.map(rng.nextIntBetween(1_000_000, 40_000_000), (amount) => ({ i, amount: Money.Nanos(amount), team: teams[i % 4]! })))

      // A watcher samples every row while the requests run: no row may ever hold more than its limit.
      const overshoots = yield* Ref.make(0)
      const samples = yield* Ref.make(0)
      const watcher = yield* Effect.fork(Effect.forEach(Array.from({ length: 500 }, (_, i) => i), () =>
        sql<{ readonly over: number }>`SELECT count(*)::int AS over FROM budget_ledger WHERE spent + reserved > limit_usd`.pipe(
          Effect.flatMap(([row]) => Ref.update(overshoots, (n) => n + (row?.over ?? 0))),
          Effect.zipRight(Ref.update(samples, (n) => n + 1)),
          Effect.zipRight(Effect.sleep("2 millis"))
        ), { discard: true }))

      // Phase 1: every request reserves at once, half on each replica.
      const reserved = yield* Effect.forEach(requests, (r) =>
        Effect.exit(ledgers[r.i % 2]!.reserve({ scopes: [global, r.team], amount: r.amount, request_id: `req-${r.i}`, ttl_ms: 60_000 })).pipe(
          Effect.map((exit) => ({ ...r, exit }))
        ), { concurrency: "unbounded" })
      const accepted = reserved.flatMap((r) => Exit.isSuccess(r.exit) ? [{ ...r, reservation: r.exit.value }] : [])
      const refused = reserved.filter((r) => Exit.isFailure(r.exit))
      expect(accepted.length + refused.length).toBe(200)
      expect(accepted.length).toBeGreaterThan(0)
      expect(refused.length).toBeGreaterThan(0)
      for (const r of refused) {
        expect(Exit.isFailure(r.exit) && r.exit.cause._tag === "Fail" ? r.exit.cause.error._tag : "not a failure").toBe("BudgetExceeded")
      }
      const sumReserved = accepted.reduce((s, r) => s + r.amount, 0)
      const [g] = yield* ledgers[0].status([global])
      expect(g?.reserved).toBe(sumReserved)
      expect(g!.spent + g!.reserved).toBeLessThanOrEqual(global.limit)

      // Phase 2: settle each accepted reservation twice, concurrently, from either replica.
      const actuals = yield* Effect.forEach(accepted, (r) =>
        Effect.map(rng.nextIntBetween(0, r.amount + 1), (actual) => ({ r, actual: Money.Nanos(actual) })))
      yield* Effect.forEach([...actuals, ...actuals], ({ r, actual }, k) => ledgers[k % 2]!.settle(r.reservation, actual), {
        concurrency: "unbounded",
        discard: true
      })
      yield* Fiber.interrupt(watcher)

      expect(yield* ledgers[1].openReservations).toBe(0)
      const sumActual = actuals.reduce((s, a) => s + a.actual, 0)
      const [after] = yield* ledgers[1].status([global])
      expect(after?.reserved).toBe(0)
      expect(after?.spent).toBe(sumActual)
      const teamStatus = yield* ledgers[0].status(teams)
      expect(teamStatus.reduce((s, t) => s + t.spent, 0)).toBe(sumActual)
      expect(teamStatus.every((t) => t.reserved === 0 && t.spent <= t.limit)).toBe(true)
      const [exact] = yield* sql<{ readonly spent: string }>`SELECT spent::text AS spent FROM budget_ledger WHERE scope = 'global'`
      expect(exact?.spent).toBe(Money.toUsdString(Money.Nanos(sumActual)))
      expect(yield* Ref.get(overshoots)).toBe(0)
      expect(yield* Ref.get(samples)).toBeGreaterThan(0)
    }), 120_000)
})

describe("PgClient", () => {
  it.live("layerConfig reads its settings with Config (a redacted URL) and keeps column names snake_case", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const [row] = yield* sql<Record<string, unknown>>`SELECT 1::int AS some_column`
      expect(row).toEqual({ some_column: 1 })
    }).pipe(
      Effect.provide(PgClient.layerConfig({ url: Config.redacted("DATABASE_URL"), poolSize: Config.succeed(2) })),
      Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["DATABASE_URL", databaseUrl]])))
    ))

  it.live("an unreachable server fails the layer with a SqlError, without hanging", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(Layer.launch(PgClient.layer({ url: Redacted.make("postgres://postgres@127.0.0.1:1/none"), connectTimeout: "2 seconds" })))
      expect(Exit.isFailure(exit) && exit.cause._tag === "Fail" ? exit.cause.error._tag : undefined).toBe("SqlError")
    }))
})

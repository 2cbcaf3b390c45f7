/**
 * The `tidyllm` commands on a real Postgres (`DATABASE_URL`, default
 * postgres://postgres@127.0.0.1:5432/postgres), in a database created for the suite and dropped after it.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Option, Redacted } from "effect"
import { Ids } from "@tidyllm/core"
import { ApiKeys } from "@tidyllm/corporate-llm"
import { PgApiKeys, PgClient } from "@tidyllm/store-pg"
import { auditIdOf, parseDiagnose, rowOf, sandbox, type Sandbox } from "./harness.js"

const databaseUrl = process.env["DATABASE_URL"] ?? "postgres://postgres@127.0.0.1:5432/postgres"

const admin = (statement: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(statement)).pipe(
    Effect.provide(PgClient.layer({ url: Redacted.make(databaseUrl), poolSize: 1 }))
  )

/** A database of its own on the server, dropped when the scope closes; its URL. */
const freshDatabase = Effect.gen(function*() {
  const name = `tidyllm_cli_${Ids.randomUuid().replaceAll("-", "").slice(0, 16)}`
  yield* Effect.acquireRelease(admin(`CREATE DATABASE ${name}`), () => admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).pipe(Effect.orDie))
  const url = new URL(databaseUrl)
  url.pathname = `/${name}`
  return url.toString()
})

const sandboxes: Array<Sandbox> = []
afterAll(() => {
  for (const s of sandboxes) s.remove()
})

const nanos = (usd: string) => {
  const [whole = "0", frac = ""] = usd.split(".")
  return Number(whole) * 1e9 + Number(frac.padEnd(9, "0"))
}

/** Today's global spend in a `budget --json` output (the body of GET /v1/budget). */
const globalSpent = (stdout: string) =>
  (JSON.parse(stdout) as { budgets: ReadonlyArray<{ scope: string; period: string; spent_usd: string }> }).budgets
    .find((b) => b.scope === "global" && b.period === "day")?.spent_usd ?? "missing"

describe("tidyllm on Postgres", () => {
  it.scopedLive("diagnose reports pending migrations without applying them; migrate applies them; the gateway chain then passes", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabase
      const s = sandbox()
      sandboxes.push(s)
      const run = (args: ReadonlyArray<string>) => s.run(args, { DATABASE_URL: url })

      const before = yield* run(["diagnose"])
      expect(before.code).toBe(1)
      const pending = parseDiagnose(before.stdout).rows
      expect(rowOf(pending, "database")).toMatchObject({ status: "ok", detail: "Postgres (DATABASE_URL): SELECT 1 answered" })
      expect(rowOf(pending, "migrations")).toMatchObject({
        status: "failed",
        detail: "4 pending: 0001_init.sql, 0002_agreements.sql, 0003_audit_query.sql, 0004_keys_limits.sql — run `tidyllm migrate`"
      })

      const first = yield* run(["migrate"])
      expect(first.code).toBe(0)
      expect(first.stdout).toContain("database: Postgres (DATABASE_URL)")
      expect(first.stdout).toMatch(/^\[1\/4\] applied 0001_init\.sql \(\d+ ms\)$/m)
      expect(first.stdout).toMatch(/^\[4\/4\] applied 0004_keys_limits\.sql \(\d+ ms\)$/m)
      expect((yield* run(["migrate"])).stdout).toContain("up to date")

      const diagnose = yield* run(["diagnose", "--level", "2"])
      expect(diagnose.code).toBe(0)
      const migrated = parseDiagnose(diagnose.stdout)
      expect(migrated.rows.filter((x) => x.status === "failed" || x.status === "warning")).toEqual([])
      expect(migrated.summary).toBe("all 11 checks passed (4 skipped)")

      const spent = nanos(globalSpent((yield* run(["budget", "--json"])).stdout))
      const ask = yield* run(["ask", "What is VaR?", "--reason", "cli pg test"])
      expect(ask.code).toBe(0)
      expect(ask.stdout).toBe("[mock claude-3-haiku] This is a mock response to: What is VaR?")
      const id = auditIdOf(ask)
      const rows = JSON.parse((yield* run(["audit", "tail", "--json", "--limit", "1"])).stdout) as ReadonlyArray<{ id: string; reason: string; cost_usd: string }>
      expect(rows).toHaveLength(1)
      expect(rows[0]).toMatchObject({ id, reason: "cli pg test" })
      const after = nanos(globalSpent((yield* run(["budget", "--json"])).stdout))
      expect(after - spent).toBe(nanos(rows[0]?.cost_usd ?? "0"))
      expect(after - spent).toBeGreaterThan(0)
    }), { timeout: 180_000 })

  it.scopedLive("keys create → list → revoke on Postgres: the secret's hash is what the store finds, limits round-trip, budget shows the key's own", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabase
      const s = sandbox()
      sandboxes.push(s)
      const run = (args: ReadonlyArray<string>) => s.run(args, { DATABASE_URL: url })
      expect((yield* run(["migrate"])).code).toBe(0)

      const created = yield* run(["keys", "create", "--role", "approver", "--team", "risk-desk", "--budget-daily", "2.5", "--budget-monthly", "40.123456789", "--rpm", "30", "--json"])
      expect(created.code).toBe(0)
      const { key, secret } = JSON.parse(created.stdout) as { key: { id: string; status: string; limits: object }; secret: string }
      expect(key).toMatchObject({ status: "active", limits: { budget_daily_usd: 2.5, budget_monthly_usd: 40.123456789, requests_per_minute: 30 } })
      const found = yield* Effect.flatMap(ApiKeys.ApiKeys, (keys) => keys.findByHash(ApiKeys.hashSecret(secret))).pipe(
        Effect.provide(PgApiKeys.layer.pipe(Layer.provide(PgClient.layer({ url: Redacted.make(url), poolSize: 1 }))))
      )
      expect(Option.map(found, (k) => [k.id, k.created_by])).toEqual(Option.some([key.id, "cli"]))

      const listed = JSON.parse((yield* run(["keys", "list", "--json"])).stdout) as { keys: ReadonlyArray<{ id: string; limits: object }> }
      expect(listed.keys).toEqual([expect.objectContaining({ id: key.id, limits: key.limits })])
      const budget = JSON.parse((yield* run(["budget", "--key", key.id, "--json"])).stdout) as { budgets: ReadonlyArray<{ scope: string; limit_usd: string }> }
      expect(budget.budgets.filter((b) => b.scope === `key:${key.id}`).map((b) => b.limit_usd)).toEqual(["2.500000000", "40.123456789"])

      expect((yield* run(["keys", "revoke", key.id])).code).toBe(0)
      expect(JSON.parse((yield* run(["keys", "list", "--json"])).stdout)).toEqual({ keys: [] })
      const all = JSON.parse((yield* run(["keys", "list", "--all", "--json"])).stdout) as { keys: ReadonlyArray<{ id: string; status: string }> }
      expect(all.keys.map((k) => [k.id, k.status])).toEqual([[key.id, "revoked"]])
      expect((yield* run(["keys", "revoke", "0123456789abcdef"])).code).toBe(1)
    }), { timeout: 180_000 })
})

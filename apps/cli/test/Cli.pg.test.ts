/**
 * The `tidyllm` commands on a real Postgres (`DATABASE_URL`, default
 * postgres://postgres@127.0.0.1:5432/postgres), in a database created for the suite and dropped after it.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import { Ids } from "@tidyllm/core"
import { PgClient } from "@tidyllm/store-pg"
import { auditIdOf, sandbox, type Sandbox } from "./harness.js"

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

describe("tidyllm on Postgres", () => {
  it.scopedLive("diagnose reports pending migrations without applying them; migrate applies them; the gateway chain then passes", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabase
      const s = sandbox()
      sandboxes.push(s)
      const run = (args: ReadonlyArray<string>) => s.run(args, { DATABASE_URL: url })

      const before = yield* run(["diagnose"])
      expect(before.code).toBe(1)
      expect(before.stdout).toMatch(/^✓ database — Postgres \(DATABASE_URL\): SELECT 1 answered/m)
      expect(before.stdout).toMatch(/^✗ migrations — 3 pending: 0001_init\.sql, 0002_agreements\.sql, 0003_audit_query\.sql — run `tidyllm migrate`$/m)

      const first = yield* run(["migrate"])
      expect(first.code).toBe(0)
      expect(first.stdout).toContain("database: Postgres (DATABASE_URL)")
      expect(first.stdout).toMatch(/^applied 0001_init\.sql$/m)
      expect((yield* run(["migrate"])).stdout).toContain("up to date")

      const diagnose = yield* run(["diagnose", "--level", "2"])
      expect(diagnose.code).toBe(0)
      expect(diagnose.stdout).not.toContain("✗")
      expect(diagnose.stdout.split("\n").at(-1)).toBe("all 14 checks passed")

      const spent = nanos((JSON.parse((yield* run(["budget", "--json"])).stdout) as { spent_usd: string }).spent_usd)
      const ask = yield* run(["ask", "What is VaR?", "--reason", "cli pg test"])
      expect(ask.code).toBe(0)
      expect(ask.stdout).toBe("[mock claude-3-haiku] This is a mock response to: What is VaR?")
      const id = auditIdOf(ask)
      const rows = JSON.parse((yield* run(["audit", "tail", "--json", "--limit", "1"])).stdout) as ReadonlyArray<{ id: string; reason: string; cost_usd: string }>
      expect(rows).toHaveLength(1)
      expect(rows[0]).toMatchObject({ id, reason: "cli pg test" })
      const after = nanos((JSON.parse((yield* run(["budget", "--json"])).stdout) as { spent_usd: string }).spent_usd)
      expect(after - spent).toBe(nanos(rows[0]?.cost_usd ?? "0"))
      expect(after - spent).toBeGreaterThan(0)
    }), { timeout: 180_000 })
})

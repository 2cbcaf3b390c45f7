/**
 * The server on Postgres (`DATABASE_URL`, a fresh database per run): the openai client against
 * it, and two replicas sharing one budget under concurrent load — spend never passes the limit,
 * every request has exactly one audit row, no reservation stays open.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { describe, expect, layer } from "@effect/vitest"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Context, Effect, Layer, Redacted } from "effect"
import OpenAI from "openai"
import { Ids, Money } from "@tidyllm/core"
import { AuditLog, BudgetLedger, CorporateLlmGateway } from "@tidyllm/corporate-llm"
import { PgClient } from "@tidyllm/store-pg"
import * as Testing from "../src/Testing.js"

const adminUrl = process.env["DATABASE_URL"] ?? "postgres://postgres@127.0.0.1:5432/postgres"

/** A new database on the server, dropped with the scope. */
const freshDatabase = Effect.gen(function*() {
  const name = `tidyllm_server_${Ids.randomUuid().replaceAll("-", "").slice(0, 12)}`
  const admin = (statement: string) =>
    Effect.scoped(Effect.flatMap(Layer.build(PgClient.layer({ url: Redacted.make(adminUrl), poolSize: 1 })), (ctx) =>
      Context.get(ctx, SqlClient.SqlClient).unsafe(statement)))
  yield* Effect.acquireRelease(admin(`CREATE DATABASE ${name}`), () => Effect.orDie(admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)))
  const url = new URL(adminUrl)
  url.pathname = `/${name}`
  return url.toString()
})

const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "tidyllm-server-pg-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

/** $0.002 a day: a few dozen mock answers, far fewer than the load below asks for. */
const budgetUsd = 0.002

/** Replica A (whose services the tests see) and replica B, on one database. */
const Replicas = Layer.unwrapScoped(Effect.gen(function*() {
  const url = yield* freshDatabase
  const dir = yield* tempDir
  const config = Testing.config(dir, {
    storage: { database_url: url, pool_size: 4 },
    corporate_llm: { budget_limit_daily_usd: budgetUsd },
    ai_processing: { enable_caching: false, max_retries: 0 }
  })
  const replicaB = Layer.effect(ReplicaB, Testing.ServerUrl).pipe(Layer.provide(Layer.fresh(Testing.layer(config))))
  // B starts after A, so A's migrations are in place (the migrator also copes with concurrent starts).
  return Layer.provideMerge(replicaB, Testing.layer(config))
}))

class ReplicaB extends Context.Tag("test/ReplicaB")<ReplicaB, string>() {}

layer(Replicas, { excludeTestServices: true, timeout: "120 seconds" })("server on Postgres", (it) => {
  describe("openai client", () => {
    it.effect("answers plain and streamed completions; /health/ready reports Postgres", () =>
      Effect.gen(function*() {
        const url = yield* Testing.ServerUrl
        const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: "x", maxRetries: 0 })
        const completion = yield* Effect.promise(() =>
          client.chat.completions.create({ model: "claude-3-haiku", max_tokens: 50, messages: [{ role: "user", content: "on postgres" }], metadata: { reason: "pg test" } }, { headers: { "x-request-id": "pg-1" } })
        )
        expect(completion.choices[0]?.message.content).toContain("mock response to: on postgres")
        const chunks = yield* Effect.promise(async () => {
          const stream = await client.chat.completions.create({ model: "claude-3-haiku", max_tokens: 50, stream: true, messages: [{ role: "user", content: "streamed on postgres" }], metadata: { reason: "pg test" } }, { headers: { "x-request-id": "pg-2" } })
          const all: Array<OpenAI.Chat.ChatCompletionChunk> = []
          for await (const c of stream) all.push(c)
          return all
        })
        expect(chunks.map((c) => c.choices[0]?.delta.content ?? "").join("")).toContain("streamed on postgres")
        const audit = yield* AuditLog.AuditLog
        for (const id of ["pg-1", "pg-2"]) expect((yield* Effect.orDie(audit.list({ limit: 5, request_id: id }))).map((r) => r.status)).toEqual(["success"])
        const ready = yield* Effect.promise(() => fetch(`${url}/health/ready`).then((r): Promise<unknown> => r.json()))
        expect(ready).toMatchObject({ status: "ready", engine: "postgres", migrated: true, database: true })
      }))
  })

  it.effect("two replicas, one budget: spend stays within the limit, one audit row per request, no open reservation", () =>
    Effect.gen(function*() {
      const urls = [yield* Testing.ServerUrl, yield* ReplicaB]
      const n = 120
      const statuses = yield* Effect.forEach(Array.from({ length: n }, (_, i) => i), (i) =>
        Effect.promise(() =>
          fetch(`${urls[i % 2]}/v1/llm`, {
            method: "POST",
            headers: { "content-type": "application/json", "x-request-id": `budget-${i}` },
            body: JSON.stringify({ prompt: `request number ${i} of the budget test`, model: "claude-3-haiku", max_tokens: 100, reason: "budget test" })
          }).then((r) => r.status)
        ), { concurrency: 40 })
      const ok = statuses.filter((s) => s === 200).length
      const refused = statuses.filter((s) => s === 402).length
      expect(ok).toBeGreaterThan(0)
      expect(refused).toBeGreaterThan(0)
      expect(ok + refused).toBe(n)

      const ledger = yield* BudgetLedger.BudgetLedger
      const gw1 = yield* CorporateLlmGateway.CorporateLlmGateway
      const [global] = yield* Effect.orDie(ledger.status(gw1.scopes({})))
      expect(global).toBeDefined()
      if (global !== undefined) {
        expect(global.spent).toBeLessThanOrEqual(Money.fromUsd(budgetUsd))
        expect(global.reserved).toBe(Money.zero)
      }
      expect(yield* Effect.orDie(ledger.openReservations)).toBe(0)

      const audit = yield* AuditLog.AuditLog
      const rows = yield* Effect.forEach(Array.from({ length: n }, (_, i) => `budget-${i}`), (id) => Effect.orDie(audit.list({ limit: 5, request_id: id })))
      expect(rows.every((r) => r.length === 1)).toBe(true)
      expect(rows.flat().filter((r) => r.status === "success")).toHaveLength(ok)
      expect(rows.flat().filter((r) => r.status === "rejected_budget")).toHaveLength(refused)
    }))
})

/**
 * Gateway #1 end to end on a real Postgres: 200 concurrent requests against a daily budget that
 * fits only some of them. Spend never exceeds the budget, every request has exactly one audit
 * row, and no reservation is left open.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import { ModelCatalog, Money } from "@tidyllm/core"
import { CorporateLlmGateway, LlmProviders, RateLimits } from "@tidyllm/corporate-llm"
import { Context, Effect, Layer } from "effect"
import { Migrator, PgAuditLog, PgBudgetLedger, PgClient } from "../src/index.js"
import { freshDatabaseUrl } from "./harness.js"

const limitUsd = "0.02"

describe("gateway #1 on Postgres under concurrency", () => {
  it.scopedLive("200 concurrent requests: no overshoot, one audit row each, nothing left reserved", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabaseUrl
      const db = PgClient.layer({ url, poolSize: 10 })
      const ctx = yield* Layer.build(Layer.provideMerge(
        CorporateLlmGateway.layer.pipe(Layer.provide(Layer.mergeAll(
          Layer.succeed(CorporateLlmGateway.Settings, {
            default_provider: "mock", budget_limit_daily_usd: Number(limitUsd), max_cost_per_request_usd: 1, audit_level: "hash",
            audit_durability: "sync", audit_retention_days: 365, require_reason: true, default_max_tokens: 16, default_model: "claude-3-sonnet",
            reservation_ttl_seconds: 600, budget_slice_fraction: 0, teams: {}
          }),
          ModelCatalog.layer(),
          LlmProviders.layerMock({ latency_ms: 5 }),
          PgAuditLog.layer(),
          PgBudgetLedger.layer({ instanceId: "test-replica" }),
          RateLimits.layerMemory
        ))),
        Layer.provideMerge(Migrator.layer(), db)
      ))
      const gateway = Context.get(ctx, CorporateLlmGateway.CorporateLlmGateway)
      const sql = Context.get(ctx, SqlClient.SqlClient)

      const results = yield* Effect.forEach(Array.from({ length: 200 }, (_, i) => i), (i) =>
        Effect.either(gateway.process(
          { prompt: `Summarise position ${i} of the book`, max_tokens: 16, reason: "concurrency test" },
          { request_id: `req-${i}`, caller: { team: "risk" } }
        )), { concurrency: "unbounded" })
      const ok = results.filter((r) => r._tag === "Right")
      const refused = results.filter((r) => r._tag === "Left")
      expect(ok.length).toBeGreaterThan(0)
      expect(refused.length).toBeGreaterThan(0)
      for (const r of refused) expect(r._tag === "Left" && r.left._tag).toBe("BudgetExceeded")

      const [ledger] = yield* sql<{ spent: string; reserved: string; limit_usd: string }>`SELECT spent::text, reserved::text, limit_usd::text FROM budget_ledger WHERE scope = 'global'`
      expect(ledger).toBeDefined()
      const spent = Money.fromUsdString(ledger!.spent)
      expect(spent).toBeLessThanOrEqual(Money.fromUsdString(limitUsd))
      expect(Money.fromUsdString(ledger!.reserved)).toBe(0)

      const audit = yield* sql<{ request_id: string; status: string; cost: string }>`SELECT request_id, status, cost::text FROM llm_audit_log`
      expect(audit).toHaveLength(200)
      expect(new Set(audit.map((r) => r.request_id)).size).toBe(200)
      expect(audit.filter((r) => r.status === "success")).toHaveLength(ok.length)
      expect(audit.filter((r) => r.status === "rejected_budget")).toHaveLength(refused.length)
      // What the ledger charged is exactly what the audit rows say was spent.
      const audited = audit.reduce((sum, r) => sum + Money.fromUsdString(r.cost), 0)
      expect(audited).toBe(spent)
      const total = ok.reduce((sum, r) => sum + (r._tag === "Right" ? Money.fromUsdString(r.right.response.metadata.cost_usd) : 0), 0)
      expect(total).toBe(spent)

      const [open] = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM budget_reservations`
      expect(open?.n).toBe(0)
    }), { timeout: 120_000 })
})

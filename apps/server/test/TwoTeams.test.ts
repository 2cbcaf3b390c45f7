/**
 * Two teams hammering one server at once, each with its own daily budget, on the embedded PGlite
 * store (real SQL adapters: keys, ledger with budget slices, audit, agreements). Each team stops at
 * its own limit and never above it; every request has its audit row under the right team and key;
 * and neither team can read the other's audit rows, workflows or agreements.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { expect, layer } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { Money } from "@tidyllm/core"
import { AuditLog } from "@tidyllm/corporate-llm"
import * as Testing from "../src/Testing.js"

const ADMIN = "bootstrap-admin-key-for-the-two-teams-test-0000000000"
const LIMITS = { alpha: 0.2, beta: 0.35 } as const
const PER_TEAM = 120

const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "tidyllm-teams-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

const ServerLive = Layer.unwrapScoped(Effect.map(tempDir, (dir) =>
  Testing.layer(Testing.config(dir, {
    server: { admin_key: ADMIN },
    corporate_llm: {
      budget_limit_daily_usd: 100,
      max_cost_per_request_usd: 1,
      teams: { alpha: { budget_daily_usd: LIMITS.alpha }, beta: { budget_daily_usd: LIMITS.beta } }
    },
    providers: { mock: { latency_ms: 2 } }
  }))))

/** A JSON answer, read loosely: a test asserts its shape field by field. */
type Json = Record<string, unknown>
/** The value at `path` in a JSON answer. */
const at = (json: unknown, ...path: ReadonlyArray<string>): unknown =>
  path.reduce<unknown>((node, key) => (typeof node === "object" && node !== null ? (node as Json)[key] : undefined), json)

const call = (url: string, method: string, path: string, token: string, body?: unknown) =>
  Effect.promise(async () => {
    const r = await fetch(`${url}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json", "x-tidyllm-reason": "two teams" },
      ...(body === undefined ? {} : { body: JSON.stringify(body) })
    })
    const text = await r.text()
    return { status: r.status, json: (text === "" ? {} : JSON.parse(text)) as Json }
  })

const key = (url: string, role: string, team: string) =>
  Effect.map(call(url, "POST", "/v1/keys", ADMIN, { role, team }), (r) => {
    expect(r.status).toBe(201)
    return { secret: at(r.json, "secret") as string, id: at(r.json, "key", "id") as string }
  })

const payments = (name: string) => ({
  name,
  type: "hierarchical_dag",
  compliance_required: true,
  steps: [
    { id: "in", type: "intake", config: { pii: true }, depends_on: [] },
    { id: "cls", type: "classify", config: { model: "claude-3-sonnet" }, depends_on: ["in"] },
    { id: "send", type: "output", config: { destination: "webhook" }, depends_on: ["cls"] }
  ]
})

layer(ServerLive, { excludeTestServices: true, timeout: 120_000 })("two teams", (it) => {
  it.effect("hammering concurrently, each team stops at its own budget; audit and spend agree per team", () =>
    Effect.gen(function*() {
      const url = yield* Testing.ServerUrl
      const keys = { alpha: yield* key(url, "user", "alpha"), beta: yield* key(url, "user", "beta") }
      // Opus with 300 output tokens: up to ~$0.03 of worst case a request, so each budget holds a dozen or so.
      const ask = (team: string, i: number) => ({ model: "claude-3-opus", max_tokens: 300, messages: [{ role: "user", content: `${team} request ${i}: summarise the book` }] })
      const results = yield* Effect.forEach(
        [...Array.from({ length: PER_TEAM }, (_, i) => ["alpha", i] as const), ...Array.from({ length: PER_TEAM }, (_, i) => ["beta", i] as const)],
        ([team, i]) => Effect.map(call(url, "POST", "/v1/chat/completions", keys[team].secret, ask(team, i)), (r) => ({ team, ...r })),
        { concurrency: 48 }
      )
      const log = yield* AuditLog.AuditLog
      const rows = yield* Effect.orDie(log.query({ limit: 1000 }))
      expect(rows.rows.length).toBe(PER_TEAM * 2)
      const budgets = (yield* call(url, "GET", "/v1/budget", ADMIN)).json["budgets"] as Array<{ scope: string; spent_usd: string; limit_usd: string; reserved_usd: string }>
      for (const team of ["alpha", "beta"] as const) {
        const mine = results.filter((r) => r.team === team)
        const ok = mine.filter((r) => r.status === 200)
        const refused = mine.filter((r) => r.status === 402)
        expect(ok.length + refused.length, team).toBe(PER_TEAM)
        expect(ok.length, team).toBeGreaterThan(0)
        expect(refused.length, team).toBeGreaterThan(0)
        // Refusals name the team's own budget, never the other team's or the global one.
        for (const r of refused) expect(r.json["error"], team).toMatchObject({ type: "budget_exceeded", scope: `team:${team}` })
        // One audit row per request, under the team and its key.
        const teamRows = rows.rows.filter((row) => row.team === team)
        expect(teamRows.length, team).toBe(PER_TEAM)
        expect(teamRows.every((row) => row.key_id === keys[team].id)).toBe(true)
        expect(teamRows.filter((row) => row.status === "success").length).toBe(ok.length)
        const audited = teamRows.reduce((sum, row) => Money.add(sum, row.cost), Money.zero)
        const status = budgets.find((b) => b.scope === `team:${team}`)!
        // Never above the limit; what the ledger holds as spent is what the audit rows cost.
        expect(audited).toBeLessThanOrEqual(Money.fromUsd(LIMITS[team]))
        expect(Money.fromUsd(Number(status.spent_usd))).toBe(audited)
        expect(Number(status.reserved_usd)).toBe(0)
        // The response metadata agrees with the audit rows, request by request.
        const answered = ok.reduce((sum, r) => Money.add(sum, Money.fromUsd(Number(at(r.json, "tidyllm", "cost_usd")))), Money.zero)
        expect(answered).toBe(audited)
      }
    }))

  it.effect("neither team reads the other's audit rows, workflows or agreements", () =>
    Effect.gen(function*() {
      const url = yield* Testing.ServerUrl
      const a = { user: yield* key(url, "user", "alpha"), approver: yield* key(url, "approver", "alpha"), compliance: yield* key(url, "compliance", "alpha") }
      const b = { user: yield* key(url, "user", "beta"), approver: yield* key(url, "approver", "beta"), compliance: yield* key(url, "compliance", "beta") }

      // Audit: each compliance key sees its team only; asking for the other team is a 403.
      yield* call(url, "POST", "/v1/llm", a.user.secret, { prompt: "alpha secret plan", reason: "isolation" })
      yield* call(url, "POST", "/v1/llm", b.user.secret, { prompt: "beta secret plan", reason: "isolation" })
      const alphaAudit = yield* call(url, "GET", "/v1/audit?limit=500", a.compliance.secret)
      expect(alphaAudit.status).toBe(200)
      expect((alphaAudit.json["data"] as Array<{ team: string }>).length).toBeGreaterThan(0)
      expect((alphaAudit.json["data"] as Array<{ team: string }>).every((r) => r.team === "alpha")).toBe(true)
      expect((yield* call(url, "GET", "/v1/audit?team=beta", a.compliance.secret)).status).toBe(403)
      const betaCsv = yield* Effect.promise(() =>
        fetch(`${url}/v1/audit?format=csv`, { headers: { authorization: `Bearer ${b.compliance.secret}` } }).then((r) => r.text()))
      expect(betaCsv).not.toContain("alpha")

      // Workflows: the same id in both teams, each sees its own.
      expect((yield* call(url, "PUT", "/v1/workflows/shared-flow", a.user.secret, payments("alpha-payments"))).status).toBe(201)
      expect((yield* call(url, "PUT", "/v1/workflows/shared-flow", b.user.secret, payments("beta-payments"))).status).toBe(201)
      expect((yield* call(url, "GET", "/v1/workflows/shared-flow", a.user.secret)).json).toMatchObject({ version: 1, definition: { name: "alpha-payments" } })
      expect((yield* call(url, "GET", "/v1/workflows/shared-flow", b.user.secret)).json).toMatchObject({ version: 1, definition: { name: "beta-payments" } })
      expect((yield* call(url, "PUT", "/v1/workflows/alpha-only", a.user.secret, payments("alpha-only"))).status).toBe(201)
      expect((yield* call(url, "GET", "/v1/workflows/alpha-only", b.user.secret)).status).toBe(404)
      const betaList = JSON.stringify((yield* call(url, "GET", "/v1/workflows", b.user.secret)).json)
      expect(betaList).not.toContain("alpha-only")

      // Agreements: alpha's proposal is invisible to beta, and beta cannot decide it.
      const opt = yield* call(url, "POST", "/v1/workflows/optimize", a.user.secret, { workflow_id: "alpha-only", optimization_level: "high", reason: "cut cost" })
      expect(opt.status).toBe(200)
      const agreementId = at(opt.json, "data", "agreement", "id") as string
      expect(at(opt.json, "data", "agreement")).toMatchObject({ status: "proposed", proposed_by: `key:${a.user.id}` })
      expect((yield* call(url, "GET", `/v1/agreements/${agreementId}`, b.approver.secret)).status).toBe(404)
      expect((yield* call(url, "POST", `/v1/agreements/${agreementId}/approve`, b.approver.secret, { comment: "sneaky" })).status).toBe(404)
      expect((yield* call(url, "POST", `/v1/agreements/${agreementId}/approve`, b.compliance.secret, { comment: "sneaky" })).status).toBe(404)
      expect(JSON.stringify((yield* call(url, "GET", "/v1/agreements", b.compliance.secret)).json)).not.toContain(agreementId)
      // Alpha's own approvers decide it; the decisions carry their key ids.
      expect((yield* call(url, "POST", `/v1/agreements/${agreementId}/approve`, a.approver.secret, { comment: "model ok" })).status).toBe(200)
      const done = yield* call(url, "POST", `/v1/agreements/${agreementId}/approve`, a.compliance.secret, { comment: "controls ok" })
      expect(done.status).toBe(200)
      expect(done.json["to"]).toBe("approved")
      const decided = (yield* call(url, "GET", `/v1/agreements/${agreementId}`, a.user.secret)).json
      expect((decided["decisions"] as Array<{ decided_by: string; role: string }>).map((d) => [d.decided_by, d.role])).toEqual([
        [`key:${a.approver.id}`, "approver"],
        [`key:${a.compliance.id}`, "compliance"]
      ])
    }))
})

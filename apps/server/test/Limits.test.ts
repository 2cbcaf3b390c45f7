/**
 * Money and rate per key and team through the real server (127.0.0.1, port 0) and the official
 * `openai` client, on the in-memory store: per-key request and token rates answered with 429 and
 * `Retry-After`, per-team model allow-lists (403), and `GET /v1/budget` showing each caller the
 * budgets that are its own.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { expect, layer } from "@effect/vitest"
import { Effect, Layer } from "effect"
import OpenAI from "openai"
import * as Layers from "../src/Layers.js"
import * as Testing from "../src/Testing.js"

const ADMIN = "bootstrap-admin-key-for-the-limits-test-000000000000"

const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "tidyllm-limits-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

const ServerLive = Layer.unwrapScoped(Effect.map(tempDir, (dir) => {
  const cfg = Testing.config(dir, {
    server: { admin_key: ADMIN },
    corporate_llm: {
      budget_limit_monthly_usd: 500,
      teams: { interns: { budget_daily_usd: 1, models: ["claude-3-haiku"] }, quants: { budget_daily_usd: 20, budget_monthly_usd: 200 } }
    }
  })
  return Testing.layerWith(cfg, Layers.gateways(cfg, Layers.storeMemory))
}))

const json = (url: string, method: string, path: string, token: string, body?: unknown) =>
  Effect.promise(async () => {
    const r = await fetch(`${url}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json", "x-tidyllm-reason": "limits test" },
      ...(body === undefined ? {} : { body: JSON.stringify(body) })
    })
    return { status: r.status, headers: r.headers, body: (await r.json()) as Record<string, unknown> }
  })

const createKey = (url: string, body: Record<string, unknown>) =>
  Effect.map(json(url, "POST", "/v1/keys", ADMIN, body), (r) => {
    expect(r.status).toBe(201)
    return { secret: r.body["secret"] as string, id: (r.body["key"] as { id: string }).id }
  })

const client = (url: string, apiKey: string) => new OpenAI({ apiKey, baseURL: `${url}/v1`, maxRetries: 0, defaultHeaders: { "x-tidyllm-reason": "limits test" } })

layer(ServerLive, { excludeTestServices: true })("limits", (it) => {
  it.effect("requests per minute: the third call of a 2-rpm key is a 429 with Retry-After; the openai client sees a RateLimitError; other keys go on", () =>
    Effect.gen(function*() {
      const url = yield* Testing.ServerUrl
      const key = yield* createKey(url, { role: "user", team: "quants", requests_per_minute: 2 })
      const other = yield* createKey(url, { role: "user", team: "quants", requests_per_minute: 2 })
      const ask = { model: "claude-3-haiku", messages: [{ role: "user" as const, content: "hi" }] }
      const c = client(url, key.secret)
      yield* Effect.promise(() => c.chat.completions.create(ask))
      yield* Effect.promise(() => c.chat.completions.create(ask))
      const raw = yield* json(url, "POST", "/v1/chat/completions", key.secret, { ...ask, reason: "third" })
      expect(raw.status, JSON.stringify(raw.body)).toBe(429)
      const retryAfter = Number(raw.headers.get("retry-after"))
      expect(retryAfter).toBeGreaterThanOrEqual(1)
      expect(retryAfter).toBeLessThanOrEqual(60)
      expect(raw.body["error"]).toMatchObject({ type: "rate_limit_exceeded", limit_type: "requests_per_minute", limit: 2, retry_after_seconds: retryAfter })
      const viaClient = yield* Effect.promise(() => c.chat.completions.create(ask).then(() => undefined, (e: unknown) => e))
      expect(viaClient).toBeInstanceOf(OpenAI.RateLimitError)
      // Another key of the same team has its own window.
      yield* Effect.promise(() => client(url, other.secret).chat.completions.create(ask))
      // The refusals are audited against the key.
      const audit = yield* json(url, "GET", `/v1/audit?key_id=${key.id}&status=rejected_policy`, ADMIN)
      expect((audit.body["data"] as Array<{ error_type: string }>).map((r) => r.error_type)).toEqual(["rate_limit_exceeded", "rate_limit_exceeded"])
    }))

  it.effect("tokens per minute count the prompt at admission", () =>
    Effect.gen(function*() {
      const url = yield* Testing.ServerUrl
      const key = yield* createKey(url, { role: "user", team: "quants", tokens_per_minute: 1000 })
      const big = { model: "claude-3-haiku", messages: [{ role: "user", content: "word ".repeat(1200) }], reason: "tpm" }
      const r = yield* json(url, "POST", "/v1/chat/completions", key.secret, big)
      expect(r.status, JSON.stringify(r.body)).toBe(429)
      expect(r.body["error"]).toMatchObject({ type: "rate_limit_exceeded", limit_type: "tokens_per_minute" })
      const small = yield* json(url, "POST", "/v1/chat/completions", key.secret, { ...big, messages: [{ role: "user", content: "hi" }] })
      expect(small.status).toBe(200)
    }))

  it.effect("a team's allow-list: interns call haiku, not opus (403, audited)", () =>
    Effect.gen(function*() {
      const url = yield* Testing.ServerUrl
      const key = yield* createKey(url, { role: "user", team: "interns" })
      const ok = yield* json(url, "POST", "/v1/llm", key.secret, { prompt: "hi", model: "claude-3-haiku", reason: "allowed" })
      expect(ok.status).toBe(200)
      const refused = yield* json(url, "POST", "/v1/llm", key.secret, { prompt: "hi", model: "claude-3-opus", reason: "not allowed" })
      expect(refused.status).toBe(403)
      expect(refused.body["error"]).toMatchObject({ type: "permission_denied", code: "model_allow_list" })
      const viaClient = yield* Effect.promise(() =>
        client(url, key.secret).chat.completions.create({ model: "claude-3-opus", messages: [{ role: "user", content: "hi" }] }).then(() => undefined, (e: unknown) => e)
      )
      expect(viaClient).toBeInstanceOf(OpenAI.PermissionDeniedError)
      const audit = yield* json(url, "GET", `/v1/audit?key_id=${key.id}`, ADMIN)
      expect((audit.body["data"] as Array<{ status: string; model: string }>).map((r) => [r.status, r.model])).toEqual([
        ["rejected_policy", "claude-3-opus"],
        ["rejected_policy", "claude-3-opus"],
        ["success", "claude-3-haiku"]
      ])
    }))

  it.effect("GET /v1/budget: a user sees global, its team's and its key's budgets; an admin sees every team; another team's is 403", () =>
    Effect.gen(function*() {
      const url = yield* Testing.ServerUrl
      const key = yield* createKey(url, { role: "user", team: "quants", budget_daily_usd: 3 })
      yield* json(url, "POST", "/v1/llm", key.secret, { prompt: "hi", reason: "spend a little" })
      const mine = yield* json(url, "GET", "/v1/budget", key.secret)
      expect(mine.status).toBe(200)
      const budgets = mine.body["budgets"] as Array<{ scope: string; period: string; limit_usd: string; spent_usd: string; remaining_usd: string }>
      expect(budgets.map((b) => `${b.scope}/${b.period}`)).toEqual(["global/day", "global/month", "team:quants/day", "team:quants/month", `key:${key.id}/day`])
      const own = budgets.find((b) => b.scope === `key:${key.id}`)!
      expect(Number(own.limit_usd)).toBe(3)
      expect(Number(own.spent_usd)).toBeGreaterThan(0)
      expect(Number(own.remaining_usd)).toBeCloseTo(3 - Number(own.spent_usd), 9)
      expect((yield* json(url, "GET", "/v1/budget?team=interns", key.secret)).status).toBe(403)
      const all = yield* json(url, "GET", "/v1/budget", ADMIN)
      expect((all.body["budgets"] as Array<{ scope: string }>).map((b) => b.scope)).toEqual(
        expect.arrayContaining(["global", "team:interns", "team:quants"])
      )
      const unknownTeam = yield* json(url, "GET", "/v1/budget?team=nobody", ADMIN)
      expect(unknownTeam.status).toBe(400)
      expect(unknownTeam.body["error"]).toMatchObject({ param: "team" })
      expect((yield* json(url, "GET", "/v1/keys?include_revoked=maybe", ADMIN)).status).toBe(400)
      const oneKey = yield* json(url, "GET", `/v1/budget?key_id=${key.id}`, ADMIN)
      expect((oneKey.body["budgets"] as Array<{ scope: string }>).map((b) => b.scope)).toContain(`key:${key.id}`)
      // /metrics exports the global and each configured team's budgets (a bounded label set), not keys'.
      const scrape = yield* Effect.promise(() => fetch(`${url}/metrics`).then((r) => r.text()))
      expect(scrape).toMatch(/tidyllm_budget_remaining_usd\{[^}]*scope="team:quants"[^}]*\} /)
      expect(scrape).toMatch(/tidyllm_budget_remaining_usd\{[^}]*scope="team:interns"[^}]*\} /)
      expect(scrape.split("\n").some((l) => l.startsWith("tidyllm_budget_limit_usd{") && l.includes('period="month"') && l.includes('scope="global"') && l.endsWith(" 500"))).toBe(true)
      expect(scrape).not.toContain(`key:${key.id}`)
    }))
})

/**
 * The auth matrix: every endpoint × every role × {no key, bad key, revoked, expired, valid}
 * against the real server (127.0.0.1, port 0) in keys mode, on the in-memory store. A valid key
 * whose role the endpoint allows gets past authentication and the role check (its answer may
 * still be a 400 or 404 for the empty request this test sends); every other cell is a 401 or 403
 * with the JSON envelope saying why.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it, layer } from "@effect/vitest"
import { Context, Effect, Layer, Logger, LogLevel, Option } from "effect"
import type { Caller } from "@tidyllm/core"
import { ApiKeys } from "@tidyllm/corporate-llm"
import { Api } from "../src/Api.js"
import * as Auth from "../src/auth/Auth.js"
import * as Policy from "../src/auth/Policy.js"
import * as Docs from "../src/http/Docs.js"
import * as Layers from "../src/Layers.js"
import * as HttpMetrics from "../src/metrics/HttpMetrics.js"
import * as Testing from "../src/Testing.js"

const ADMIN = "bootstrap-admin-key-for-the-auth-matrix-test-0123456789"

const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "tidyllm-auth-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

const ServerLive = Layer.unwrapScoped(Effect.map(tempDir, (dir) => {
  const cfg = Testing.config(dir, {
    server: { admin_key: ADMIN },
    corporate_llm: { teams: { alpha: { budget_daily_usd: 10 } } }
  })
  return Testing.layerWith(cfg, Layers.gateways(cfg, Layers.storeMemory))
  // Each refused cell logs a warning (a security event): several hundred lines the matrix does not read.
})).pipe(Layer.provide(Logger.minimumLogLevel(LogLevel.Error)))

interface Reply { readonly status: number; readonly body: Record<string, unknown>; readonly headers: Headers }

const call = (url: string, method: string, path: string, token: string | undefined, body?: unknown) =>
  Effect.promise(async (): Promise<Reply> => {
    const headers: Record<string, string> = { "x-tidyllm-reason": "auth matrix" }
    if (token !== undefined) headers["authorization"] = `Bearer ${token}`
    if (body !== undefined) headers["content-type"] = "application/json"
    const response = await fetch(`${url}${path}`, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) })
    const text = await response.text()
    let parsed: Record<string, unknown> = {}
    try {
      parsed = JSON.parse(text) as Record<string, unknown>
    } catch {
      // Non-JSON answers (docs, metrics) are fine where they are expected.
    }
    return { status: response.status, body: parsed, headers: response.headers }
  })

const errorOf = (r: Reply) => (r.body["error"] ?? {}) as { type?: string; code?: string | null; message?: string }

/** A concrete path and a small body for each endpoint template. */
const requestOf = (method: string, template: string): { readonly path: string; readonly body?: unknown } => {
  const path = template.replace(":id", template.startsWith("/v1/keys") ? "0000000000000000" : "00000000-0000-0000-0000-000000000000")
  return { path, ...(method === "POST" && template === "/v1/keys" ? { body: { role: "user", team: "alpha" } } : {}) }
}

const roles: ReadonlyArray<Caller.Role> = ["user", "approver", "compliance", "admin"]
type State = "none" | "bad" | "revoked" | "expired" | "valid"
const states: ReadonlyArray<State> = ["none", "bad", "revoked", "expired", "valid"]

/** Keys of every role in every state, made straight in the store the server reads. */
const makeKeys = Effect.gen(function*() {
  const store = yield* ApiKeys.ApiKeys
  const out = new Map<string, string>()
  for (const role of roles) {
    for (const state of ["revoked", "expired", "valid"] as const) {
      const g = ApiKeys.generate()
      yield* store.create({
        id: g.id, hash: g.hash, role, team: "alpha", created_by: "test", limits: {},
        ...(state === "expired" ? { expires_at: new Date(Date.now() - 1000) } : {})
      })
      if (state === "revoked") yield* store.revoke(g.id, new Date())
      out.set(`${role}/${state}`, g.secret)
    }
    // Well-formed, never stored.
    out.set(`${role}/bad`, ApiKeys.generate().secret)
  }
  return out
})

layer(ServerLive, { excludeTestServices: true })("auth", (it) => {
  it.effect("every endpoint of the API has a role rule, and the table names no endpoint that does not exist", () =>
    Effect.sync(() => {
      const templates = HttpMetrics.make(Api, Docs.routes).templates
      expect([...templates].sort()).toEqual(Object.keys(Policy.rules).sort())
    }))

  it.effect("endpoint × role × {no key, bad, revoked, expired, valid}", () =>
    Effect.gen(function*() {
      const url = yield* Testing.ServerUrl
      const keys = yield* makeKeys
      let cells = 0
      for (const [route, rule] of Object.entries(Policy.rules)) {
        const [method, template] = route.split(" ") as [string, string]
        const { path, body } = requestOf(method, template)
        for (const role of roles) {
          for (const state of states) {
            const token = state === "none" ? undefined : keys.get(`${role}/${state}`)
            const r = yield* call(url, method, path, token, body)
            const where = `${route} as ${role} with ${state} key → ${r.status} ${JSON.stringify(r.body).slice(0, 200)}`
            cells++
            if (rule === "public") {
              expect(r.status, where).not.toBe(401)
              expect(r.status, where).not.toBe(403)
              continue
            }
            if (state !== "valid") {
              expect(r.status, where).toBe(401)
              expect(errorOf(r).type, where).toBe("authentication_error")
              expect(errorOf(r).code, where).toBe(state === "none" ? "missing" : state === "bad" ? "unknown" : state)
              expect(r.headers.get("www-authenticate"), where).toContain("Bearer")
              continue
            }
            if (rule.includes(role)) {
              expect([401, 403], where).not.toContain(r.status)
              expect(r.status, where).toBeLessThan(500)
            } else {
              expect(r.status, where).toBe(403)
              expect(errorOf(r), where).toMatchObject({ type: "permission_denied", code: "role" })
              expect(errorOf(r).message, where).toContain(role)
            }
          }
        }
      }
      expect(cells).toBe(Object.keys(Policy.rules).length * roles.length * states.length)
    }))

  it.effect("malformed Authorization headers are 401 'malformed' and never reach the store", () =>
    Effect.gen(function*() {
      const url = yield* Testing.ServerUrl
      for (const header of ["Basic abc", "Bearer", "Bearer sk-not-ours", "Bearer tlk_short", "tlk_0000000000000000_" + "a".repeat(43)]) {
        const r = yield* Effect.promise(() => fetch(`${url}/v1/models`, { headers: { authorization: header } }))
        expect(r.status, header).toBe(401)
        const body = (yield* Effect.promise(() => r.json())) as { error: { code: string } }
        expect(["malformed", "missing"], header).toContain(body.error.code)
      }
    }))

  it.effect("the bootstrap admin key creates keys; the secret is shown once and works; revocation takes effect at once", () =>
    Effect.gen(function*() {
      const url = yield* Testing.ServerUrl
      const created = yield* call(url, "POST", "/v1/keys", ADMIN, { role: "user", team: "alpha", name: "ci", requests_per_minute: 100 })
      expect(created.status).toBe(201)
      const secret = created.body["secret"] as string
      const key = created.body["key"] as { id: string; status: string; created_by: string; limits: Record<string, number> }
      expect(secret).toMatch(/^tlk_/)
      expect(key).toMatchObject({ status: "active", created_by: `key:${Auth.BOOTSTRAP_KEY_ID}`, limits: { requests_per_minute: 100 } })
      const store = yield* ApiKeys.ApiKeys
      // Only the hash is stored.
      const stored = yield* store.findByHash(ApiKeys.hashSecret(secret))
      expect(Option.isSome(stored)).toBe(true)
      expect(JSON.stringify(stored)).not.toContain(secret)
      // Listing never shows a secret.
      const list = yield* call(url, "GET", "/v1/keys", ADMIN)
      expect(JSON.stringify(list.body)).not.toContain(secret)
      // The key works, then is revoked and stops working.
      const chat = { model: "claude-3-haiku", messages: [{ role: "user", content: "hi" }] }
      expect((yield* call(url, "POST", "/v1/chat/completions", secret, chat)).status).toBe(200)
      const revoked = yield* call(url, "DELETE", `/v1/keys/${key.id}`, ADMIN)
      expect(revoked.body).toMatchObject({ id: key.id, status: "revoked" })
      const after = yield* call(url, "POST", "/v1/chat/completions", secret, chat)
      expect(after.status).toBe(401)
      expect(errorOf(after).code).toBe("revoked")
    }))

  it.effect("in keys mode the key decides team and role: identity headers cannot widen them", () =>
    Effect.gen(function*() {
      const url = yield* Testing.ServerUrl
      const created = yield* call(url, "POST", "/v1/keys", ADMIN, { role: "user", team: "alpha" })
      const secret = created.body["secret"] as string
      const response = yield* Effect.promise(async () => {
        const r = await fetch(`${url}/v1/llm`, {
          method: "POST",
          headers: { authorization: `Bearer ${secret}`, "content-type": "application/json", "x-tidyllm-team": "beta", "x-tidyllm-role": "admin", "x-tidyllm-user": "mallory" },
          body: JSON.stringify({ prompt: "hi", reason: "identity" })
        })
        return (await r.json()) as { metadata: { audit_id: string } }
      })
      const audit = yield* call(url, "GET", `/v1/audit?request_id=${encodeURIComponent("x")}`, ADMIN)
      expect(audit.status).toBe(200)
      const rows = yield* call(url, "GET", "/v1/audit?limit=50", ADMIN)
      const row = (rows.body["data"] as Array<{ id: string; team: string; key_id: string; user_id: string }>).find((r) => r.id === response.metadata.audit_id)
      expect(row).toMatchObject({ team: "alpha", key_id: created.body["key"] && (created.body["key"] as { id: string }).id, user_id: "mallory" })
      // An admin header does not open the admin API.
      const keys = yield* Effect.promise(() => fetch(`${url}/v1/keys`, { headers: { authorization: `Bearer ${secret}`, "x-tidyllm-role": "admin" } }))
      expect(keys.status).toBe(403)
    }))

  it.effect("a team-bound admin manages only its team's keys", () =>
    Effect.gen(function*() {
      const url = yield* Testing.ServerUrl
      const teamAdmin = (yield* call(url, "POST", "/v1/keys", ADMIN, { role: "admin", team: "alpha" })).body["secret"] as string
      const other = (yield* call(url, "POST", "/v1/keys", ADMIN, { role: "user", team: "beta" })).body["key"] as { id: string }
      const refused = yield* call(url, "POST", "/v1/keys", teamAdmin, { role: "admin" })
      expect(refused.status).toBe(403)
      expect((yield* call(url, "POST", "/v1/keys", teamAdmin, { role: "user", team: "alpha" })).status).toBe(201)
      expect((yield* call(url, "GET", `/v1/keys/${other.id}`, teamAdmin)).status).toBe(404)
      expect((yield* call(url, "DELETE", `/v1/keys/${other.id}`, teamAdmin)).status).toBe(404)
      const listed = (yield* call(url, "GET", "/v1/keys", teamAdmin)).body["keys"] as Array<{ team: string | null }>
      expect(listed.length).toBeGreaterThan(0)
      expect(listed.every((k) => k.team === "alpha")).toBe(true)
    }))

  it.effect("key creation validates its fields and names the bad one", () =>
    Effect.gen(function*() {
      const url = yield* Testing.ServerUrl
      for (const [body, field] of [
        [{ role: "root" }, "role"],
        [{ role: "user", team: "../etc" }, "team"],
        [{ role: "user", expires_at: "2020-01-01T00:00:00Z" }, "expires_at"],
        [{ role: "user", expires_at: "tomorrow" }, "expires_at"],
        [{ role: "user", requests_per_minute: -1 }, "requests_per_minute"],
        [{ role: "user", budget_daily_usd: "NaN" }, "budget_daily_usd"],
        [{ role: "user", surprise: 1 }, "surprise"]
      ] as const) {
        const r = yield* call(url, "POST", "/v1/keys", ADMIN, body)
        expect(r.status, JSON.stringify(body)).toBe(400)
        expect(errorOf(r).message, JSON.stringify(body)).toContain(field)
      }
    }))
})

describe("auth mode", () => {
  const server = (over: Record<string, unknown>) => ({ host: "127.0.0.1", port: 0, max_body_bytes: 1, auth: "auto", key_cache_seconds: 5, ...over }) as never

  it.effect("open mode only on loopback; elsewhere a key is required", () =>
    Effect.gen(function*() {
      expect(yield* Auth.decideMode(server({}), 0)).toBe("open")
      expect(yield* Auth.decideMode(server({ host: "::1" }), 0)).toBe("open")
      expect(yield* Auth.decideMode(server({}), 1)).toBe("keys")
      const refused = yield* Effect.flip(Auth.decideMode(server({ host: "0.0.0.0" }), 0))
      expect(refused.message).toContain("refusing to start without API keys")
      expect(refused.issues.join(" ")).toContain("TIDYLLM_ADMIN_KEY")
      expect(yield* Auth.decideMode(server({ host: "0.0.0.0" }), 3)).toBe("keys")
      expect((yield* Effect.flip(Auth.decideMode(server({ host: "10.0.0.5", auth: "open" }), 0))).issues.join(" ")).toContain("loopback")
      expect((yield* Effect.flip(Auth.decideMode(server({ auth: "keys" }), 0))).issues.join(" ")).toContain("no API key")
    }))

  it.effect("open mode ends by itself once a key is made elsewhere (the CLI), at the next look (every 5 s)", () =>
    Effect.gen(function*() {
      const store = yield* ApiKeys.makeMemory
      const lazy = yield* Effect.provideService(Auth.make(server({})), ApiKeys.ApiKeys, store)
      const eager = yield* Effect.provideService(Auth.make(server({}), { openRecheckMs: 0 }), ApiKeys.ApiKeys, store)
      expect(yield* eager.mode).toBe("open")
      const g = ApiKeys.generate()
      yield* store.create({ id: g.id, hash: g.hash, role: "admin", created_by: "cli", limits: {} })
      // Within the 5 s the store is not asked again; at the next look it is.
      expect(yield* lazy.mode).toBe("open")
      expect(yield* eager.mode).toBe("keys")
    }))

  it.effect("a server bound to a non-loopback address with no key does not start", () =>
    Effect.gen(function*() {
      const dir = mkdtempSync(join(tmpdir(), "tidyllm-auth-"))
      const cfg = Testing.config(dir)
      const exit = yield* Effect.exit(Effect.scoped(Layer.build(
        Layer.provide(Layer.effect(Auth.Auth, Auth.make({ ...cfg.server, host: "0.0.0.0" })), Layers.storeMemory)
      )))
      rmSync(dir, { recursive: true, force: true })
      expect(exit._tag).toBe("Failure")
      expect(String(exit)).toContain("refusing to start without API keys")
      void Context
    }))
})

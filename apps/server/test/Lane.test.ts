/**
 * The fast lane (`POST /v1/chat/completions` served straight on Node's HTTP server) answers as the
 * `HttpApi` app does: the same statuses, headers, error bodies, answers and event streams, and the
 * same audit rows. The app serves the route itself with tracing on, so a server started with
 * `tracing: true` is the reference; the lane runs on a Node server of its own over the same services.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { createServer, type Server } from "node:http"
import type { AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { AuditLog } from "@tidyllm/corporate-llm"
import * as Auth from "../src/auth/Auth.js"
import * as Lane from "../src/http/Lane.js"
import * as Testing from "../src/Testing.js"

const ADMIN = "lane-test-admin-key-0123456789abcdef0123456789"

const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "tidyllm-lane-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

// No response cache: the second of two equal requests would be a hit.
const config = (dir: string) => Testing.config(dir, { server: { admin_key: ADMIN, max_body_bytes: 4096 }, ai_processing: { enable_caching: false } })

const ServerLive = Layer.unwrapScoped(Effect.map(tempDir, (dir) => Testing.layer(config(dir), { tracing: true })))

/** A Node server that answers with the lane only (404 for anything else), for the life of the scope. */
const laneServer = Effect.gen(function*() {
  const lane = yield* Lane.make.pipe(Effect.provide(Auth.layer(config("/unused").server)))
  const server = yield* Effect.acquireRelease(
    Effect.async<Server>((resume) => {
      const s = createServer((request, response) => {
        if (!lane(request, response)) response.writeHead(404).end()
      })
      s.listen(0, "127.0.0.1", () => resume(Effect.succeed(s)))
    }),
    (s) => Effect.async<void>((resume) => {
      s.closeAllConnections()
      s.close(() => resume(Effect.void))
    })
  )
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})

interface Answer {
  readonly status: number
  readonly headers: Headers
  readonly text: string
}

const send = (url: string, body: string, headers: Record<string, string>) =>
  Effect.promise(async (): Promise<Answer> => {
    const response = await fetch(`${url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body })
    return { status: response.status, headers: response.headers, text: await response.text() }
  })

/** What must be equal between the two: status, the headers a client reads, and the body without its per-request ids and times. */
const comparable = (a: Answer, requestId: string) => {
  const headers = Object.fromEntries(["content-type", "www-authenticate", "retry-after", "cache-control", "x-accel-buffering"].map((h) => [h, a.headers.get(h)]))
  expect(a.headers.get("x-request-id")).toBe(requestId)
  const volatile = /"(id|created|audit_id|latency_ms|request_id)":("[^"]*"|\d+)/g
  return { status: a.status, headers, body: a.text.replace(volatile, "\"$1\":_") }
}

const messages = [{ role: "user", content: "Tell me about lanes" }]

layer(ServerLive, { excludeTestServices: true, timeout: "120 seconds" })("the fast lane", (it) => {
  describe("answers POST /v1/chat/completions as the HttpApi app does", () => {
    it.scoped("answers, refusals, event streams and audit rows", () =>
      Effect.gen(function*() {
        const app = yield* Testing.ServerUrl
        const lane = yield* laneServer
        const created = yield* Effect.promise(() =>
          fetch(`${app}/v1/keys`, {
            method: "POST",
            headers: { "content-type": "application/json", authorization: `Bearer ${ADMIN}` },
            body: JSON.stringify({ role: "user", team: "lanes", name: "lane test" })
          }).then((r) => r.json() as Promise<{ secret: string }>)
        )
        const compliance = yield* Effect.promise(() =>
          fetch(`${app}/v1/keys`, {
            method: "POST",
            headers: { "content-type": "application/json", authorization: `Bearer ${ADMIN}` },
            body: JSON.stringify({ role: "compliance", name: "lane test compliance" })
          }).then((r) => r.json() as Promise<{ secret: string }>)
        )
        const user = { authorization: `Bearer ${created.secret}`, "x-tidyllm-reason": "lane test" }
        const cases: ReadonlyArray<readonly [string, string, Record<string, string>]> = [
          ["answer", JSON.stringify({ model: "claude-3-haiku", messages, max_tokens: 50 }), user],
          ["stream", JSON.stringify({ model: "claude-3-haiku", messages, max_tokens: 50, stream: true, stream_options: { include_usage: true } }), user],
          ["no key", JSON.stringify({ model: "claude-3-haiku", messages }), {}],
          ["unknown key", JSON.stringify({ model: "claude-3-haiku", messages }), { authorization: "Bearer tlk_nope" }],
          ["role", JSON.stringify({ model: "claude-3-haiku", messages }), { authorization: `Bearer ${compliance.secret}` }],
          ["not JSON", "{\"model\": ", user],
          ["bad field", JSON.stringify({ model: "claude-3-haiku", messages: [{ role: "user", content: 5 }] }), user],
          ["too large", JSON.stringify({ model: "claude-3-haiku", messages: [{ role: "user", content: "x".repeat(5000) }] }), user],
          ["unknown model", JSON.stringify({ model: "no-such-model", messages }), user],
          ["no reason", JSON.stringify({ model: "claude-3-haiku", messages }), { authorization: `Bearer ${created.secret}` }],
          ["bad identity header", JSON.stringify({ model: "claude-3-haiku", messages }), { ...user, "x-tidyllm-user": "a\tb" }]
        ]
        const audit = yield* AuditLog.AuditLog
        for (const [name, body, headers] of cases) {
          const appId = `app-${name.replaceAll(" ", "-")}`
          const laneId = `lane-${name.replaceAll(" ", "-")}`
          const viaApp = yield* send(app, body, { ...headers, "x-request-id": appId })
          const viaLane = yield* send(lane, body, { ...headers, "x-request-id": laneId })
          expect({ case: name, ...comparable(viaLane, laneId) }).toEqual({ case: name, ...comparable(viaApp, appId) })
          // The same audit rows (none for a request refused before it was read: no key, wrong role).
          const rows = (id: string) =>
            Effect.map(Effect.orDie(audit.list({ limit: 10, request_id: id })), (entries) => entries.map((e) => ({ status: e.status, model: e.model, error_type: e.error_type })))
          expect(yield* rows(laneId)).toEqual(yield* rows(appId))
        }
        const answered = yield* send(lane, JSON.stringify({ model: "claude-3-haiku", messages }), user)
        expect(answered.status).toBe(200)
        expect(answered.text).toContain("\"chat.completion\"")
      }))
  })
})

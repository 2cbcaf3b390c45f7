/**
 * The secret scan: no secret — the bootstrap admin key, a created key's secret, a provider's API
 * key or token, the AWS secret access key and session token, the database password, nor a wrong
 * key a client sent — appears in a log line, a response (body or header), an audit row or any
 * row of the database. The real server runs on Postgres (a scratch database reached through a URL
 * with a password) with every provider pointed at its wire-level stub; every log line it emits is
 * captured by a logger that replaces the default one (and every span it ends, by a recording
 * tracer, and whatever reaches stdout/stderr). Traffic covers keys, chat through the mock and the
 * stubs, upstream failures (stubs echoing the credential they received), 401s with planted
 * secrets, bad bodies, a revoked key, the audit, budget and key APIs. Then everything is scanned.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { describe, expect, it, layer } from "@effect/vitest"
import { randomBytes } from "node:crypto"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Cause, Context, Effect, Exit, HashMap, Layer, Logger, LogLevel, Redacted, Tracer } from "effect"
import { Ids } from "@tidyllm/core"
import { AuditLog } from "@tidyllm/corporate-llm"
import { PgClient } from "@tidyllm/store-pg"
import { startAnthropicStub } from "../../../packages/providers/test/stubs/AnthropicStub.js"
import { startBedrockStub } from "../../../packages/providers/test/stubs/BedrockScenarioStub.js"
import { startMlflowStub } from "../../../packages/providers/test/stubs/MlflowStub.js"
import { startOpenAiStub } from "../../../packages/providers/test/stubs/OpenAiStub.js"
import type { StubHandle } from "../../../packages/providers/test/stubs/Scenario.js"
import * as Testing from "../src/Testing.js"

// ---------------------------------------------------------------------------------------------
// The secrets (fresh per run, so nothing else can contain them by chance)

const b64 = (bytes: number) => randomBytes(bytes).toString("base64url")

const ADMIN_KEY = `scan-admin-${b64(24)}`
const OPENAI_KEY = `sk-scan-${b64(24)}`
const ANTHROPIC_KEY = `ant-scan-${b64(24)}`
const MLFLOW_TOKEN = `dapi-scan-${b64(18)}`
/** Not a secret: it is in every SigV4 Authorization header, and AWS error messages name it. */
const AWS_ACCESS_KEY_ID = "AKIASCANEXAMPLE00001"
// An AWS secret has `/` and `+` in it: the scan also looks for it URL-encoded and JSON-escaped.
const AWS_SECRET_ACCESS_KEY = `scan/${randomBytes(26).toString("base64")}`.slice(0, 40)
const AWS_SESSION_TOKEN = `IQoJscan${b64(48)}`
const DB_PASSWORD = "Db-Passw0rd-SCAN-7f3a"

/** Wrong credentials clients send: the server must not write them down either. */
const planted = {
  unknownKey: `tlk_${randomBytes(8).toString("hex")}_${b64(32)}`,
  skKey: `sk-planted-${b64(24)}`,
  adminNearMiss: `${ADMIN_KEY.slice(0, -1)}${ADMIN_KEY.endsWith("A") ? "B" : "A"}`,
  basicPassword: `basic-planted-${b64(12)}`,
  apiKeyHeader: `x-api-key-planted-${b64(12)}`,
  wrongTail: b64(32)
}

// ---------------------------------------------------------------------------------------------
// What is captured

/** One piece of text the server produced, and where it was seen. */
interface Evidence {
  readonly where: string
  readonly text: string
}

/** Everything seen, by kind. */
interface Captured {
  readonly logs: Array<Evidence>
  readonly spans: Array<Evidence>
  readonly output: Array<Evidence>
  readonly responses: Array<Evidence>
}

class Capture extends Context.Tag("test/SecretScan/Capture")<Capture, Captured>() {}

interface Stubs {
  readonly openai: StubHandle
  readonly anthropic: StubHandle
  readonly mlflow: StubHandle
  readonly bedrock: StubHandle
  /** The server's database, as the server reaches it (password and all). */
  readonly databaseUrl: string
}
class StubsTag extends Context.Tag("test/SecretScan/Stubs")<StubsTag, Stubs>() {}

/**
 * Everything inside a value, as text: error objects with their own fields, causes and stacks,
 * maps, circular references cut. What a JSON or structured log exporter could write, and more.
 */
const deepText = (value: unknown): string => {
  const seen = new WeakSet<object>()
  const walk = (u: unknown, depth: number): unknown => {
    if (typeof u === "bigint") return u.toString()
    if (typeof u === "function" || typeof u === "symbol") return String(u)
    if (typeof u !== "object" || u === null) return u
    if (seen.has(u) || depth > 12) return "[seen]"
    seen.add(u)
    if (Redacted.isRedacted(u)) return "<redacted>"
    if (u instanceof Map) return [...u.entries()].map(([k, v]) => [walk(k, depth + 1), walk(v, depth + 1)])
    if (u instanceof Set) return [...u].map((v) => walk(v, depth + 1))
    if (Array.isArray(u)) return u.map((v) => walk(v, depth + 1))
    const out: Record<string, unknown> = {}
    if (u instanceof Error) {
      out["name"] = u.name
      out["message"] = u.message
      out["stack"] = u.stack
      out["cause"] = walk(u.cause, depth + 1)
    }
    for (const key of Object.keys(u)) out[key] = walk((u as Record<string, unknown>)[key], depth + 1)
    return out
  }
  try {
    return JSON.stringify(walk(value, 0)) ?? String(value)
  } catch (e) {
    return `[unserializable: ${String(e)}]`
  }
}

/** A logger recording every line as the standard loggers would format it, plus its raw parts. */
const captureLogger = (sink: Array<Evidence>) =>
  Logger.make<unknown, void>((options) => {
    const message = Array.isArray(options.message) ? options.message.map(String).join(" ") : String(options.message)
    sink.push({
      where: `log ${options.logLevel.label} "${message.slice(0, 120)}"`,
      text: [
        Logger.logfmtLogger.log(options),
        Logger.jsonLogger.log(options),
        Cause.isEmpty(options.cause) ? "" : Cause.pretty(options.cause, { renderErrorCause: true }),
        deepText({
          message: options.message,
          failures: [...Cause.failures(options.cause)],
          defects: [...Cause.defects(options.cause)],
          annotations: [...HashMap.toEntries(options.annotations)]
        })
      ].join("\n")
    })
  })

/** The default tracer, each ended span's name, attributes, events and exit recorded. */
const recordingTracer = (native: Tracer.Tracer, sink: Array<Evidence>): Tracer.Tracer =>
  Tracer.make({
    span: (name, parent, context, links, startTime, kind, options) => {
      const span = native.span(name, parent, context, links, startTime, kind, options)
      const events: Array<unknown> = []
      const event = span.event.bind(span)
      const end = span.end.bind(span)
      span.event = (eventName, time, attributes) => {
        events.push({ eventName, attributes })
        event(eventName, time, attributes)
      }
      span.end = (endTime, exit) => {
        sink.push({
          where: `span ${name}`,
          text: [
            deepText({ attributes: [...span.attributes.entries()], events }),
            Exit.isFailure(exit) ? Cause.pretty(exit.cause, { renderErrorCause: true }) : "",
            Exit.isFailure(exit) ? deepText([...Cause.failures(exit.cause), ...Cause.defects(exit.cause)]) : ""
          ].join("\n")
        })
        end(endTime, exit)
      }
      return span
    },
    context: (f, fiber) => native.context(f, fiber)
  })

/** Whatever is written to stdout and stderr while the server runs (a stray `console.log`, a library's warning). */
const captureOutput = (sink: Array<Evidence>) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      // eslint-disable-next-line @typescript-eslint/unbound-method -- the very functions are put back as they were
      const originals = [process.stdout.write, process.stderr.write] as const
      for (const [stream, name] of [[process.stdout, "stdout"], [process.stderr, "stderr"]] as const) {
        const original = stream.write.bind(stream) as (...args: Array<unknown>) => boolean
        stream.write = ((chunk: unknown, ...rest: Array<unknown>) => {
          sink.push({ where: name, text: typeof chunk === "string" ? chunk : Buffer.from(chunk as Uint8Array).toString("utf8") })
          return original(chunk, ...rest)
        })
      }
      return originals
    }),
    ([stdout, stderr]) =>
      Effect.sync(() => {
        process.stdout.write = stdout
        process.stderr.write = stderr
      })
  )

// ---------------------------------------------------------------------------------------------
// The server

const adminUrl = process.env["DATABASE_URL"] ?? "postgres://postgres@127.0.0.1:5432/postgres"

const sqlOn = <A>(url: string, f: (sql: SqlClient.SqlClient) => Effect.Effect<A, unknown>) =>
  Effect.scoped(Effect.flatMap(Layer.build(PgClient.layer({ url: Redacted.make(url), poolSize: 1 })), (ctx) =>
    f(Context.get(ctx, SqlClient.SqlClient)))).pipe(Effect.orDie)

/** A scratch database, dropped with the scope; its URL carries the password the scan looks for. */
const freshDatabase = Effect.gen(function*() {
  const name = `tidyllm_scan_${Ids.randomUuid().replaceAll("-", "").slice(0, 12)}`
  const admin = (statement: string) => sqlOn(adminUrl, (sql) => sql.unsafe(statement))
  yield* Effect.acquireRelease(admin(`CREATE DATABASE ${name}`), () => admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`))
  const url = new URL(adminUrl)
  url.pathname = `/${name}`
  url.username = url.username === "" ? "postgres" : url.username
  url.password = DB_PASSWORD
  return url.toString()
})

const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "tidyllm-scan-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

const stub = (start: () => Promise<StubHandle>) => Effect.acquireRelease(Effect.promise(start), (s) => Effect.promise(() => s.close()))

/** The server with every provider pointed at its stub; `tracing` decides whether spans are made (and whether chat completions take the fast lane). */
const serverLive = (tracing: boolean) => Layer.unwrapScoped(Effect.gen(function*() {
  const captured: Captured = { logs: [], spans: [], output: [], responses: [] }
  yield* captureOutput(captured.output)
  const databaseUrl = yield* freshDatabase
  const dir = yield* tempDir
  const stubs = {
    openai: yield* stub(startOpenAiStub),
    anthropic: yield* stub(() => startAnthropicStub()),
    mlflow: yield* stub(() => startMlflowStub()),
    bedrock: yield* stub(startBedrockStub),
    databaseUrl
  }
  const cfg = Testing.config(dir, {
    server: { admin_key: ADMIN_KEY },
    storage: { database_url: databaseUrl, pool_size: 4 },
    corporate_llm: { default_provider: "openai", teams: { alpha: { budget_daily_usd: 10 } } },
    // No retries and no breakers: every request makes exactly the upstream calls the test expects.
    ai_processing: { enable_caching: false, max_retries: 0, circuit_breaker_failures: 0, timeout_seconds: 10 },
    providers: {
      openai: { api_key: OPENAI_KEY, base_url: stubs.openai.url },
      anthropic: { api_key: ANTHROPIC_KEY, base_url: stubs.anthropic.url },
      mlflow: { gateway_url: stubs.mlflow.url, token: MLFLOW_TOKEN },
      bedrock: {
        region: "us-east-1",
        endpoint: stubs.bedrock.url,
        access_key_id: AWS_ACCESS_KEY_ID,
        secret_access_key: AWS_SECRET_ACCESS_KEY,
        session_token: AWS_SESSION_TOKEN
      }
    },
    models: [{ id: "team-chat", provider_ids: { mlflow: "chat" }, input_usd_per_million: 3, output_usd_per_million: 15, context_window: 200_000, max_output_tokens: 4096 }]
  })
  const native = yield* Effect.tracer
  // Installed before the server is built, so its start-up lines and every request fiber use them.
  const observe = Layer.mergeAll(
    Logger.replace(Logger.defaultLogger, captureLogger(captured.logs)),
    Logger.minimumLogLevel(LogLevel.All),
    Layer.setTracer(recordingTracer(native, captured.spans))
  )
  return Testing.layer(cfg, { tracing }).pipe(
    Layer.provide(observe),
    Layer.merge(Layer.succeed(Capture, captured)),
    Layer.merge(Layer.succeed(StubsTag, stubs))
  )
}))

// ---------------------------------------------------------------------------------------------
// Traffic

interface Reply {
  readonly status: number
  readonly text: string
  readonly json: Record<string, unknown>
}

interface Request {
  readonly method?: string
  readonly token?: string | undefined
  readonly body?: unknown
  /** Sent as is (not JSON-encoded): a malformed body. */
  readonly raw?: string
  readonly headers?: Readonly<Record<string, string>>
}

/** One request; its status line, every response header and the whole body are kept for the scan. */
const send = (sink: Array<Evidence>, url: string, path: string, request: Request = {}) =>
  Effect.promise(async (): Promise<Reply> => {
    const method = request.method ?? (request.body === undefined && request.raw === undefined ? "GET" : "POST")
    const headers: Record<string, string> = { "x-tidyllm-reason": "secret scan", ...request.headers }
    if (request.token !== undefined) headers["authorization"] = `Bearer ${request.token}`
    const body = request.raw ?? (request.body === undefined ? undefined : JSON.stringify(request.body))
    if (body !== undefined) headers["content-type"] = "application/json"
    const response = await fetch(`${url}${path}`, { method, headers, ...(body === undefined ? {} : { body }) })
    const text = await response.text()
    const head = [...response.headers.entries()].map(([k, v]) => `${k}: ${v}`).join("\n")
    sink.push({ where: `${method} ${path} → ${response.status}`, text: `${response.status} ${response.statusText}\n${head}\n\n${text}` })
    let json: Record<string, unknown> = {}
    try {
      json = JSON.parse(text) as Record<string, unknown>
    } catch {
      // CSV, SSE and metrics are text.
    }
    return { status: response.status, text, json }
  })

const errorOf = (r: Reply) => (r.json["error"] ?? {}) as { readonly type?: string; readonly code?: string | null; readonly message?: string }

// ---------------------------------------------------------------------------------------------
// The scan

/** A secret by name, with the forms it could be written in. */
interface Secret {
  readonly name: string
  readonly value: string
}

const formsOf = (value: string): ReadonlyArray<string> => {
  const json = JSON.stringify(value).slice(1, -1)
  return [...new Set([value, encodeURIComponent(value), json, json.replaceAll("/", "\\/")])]
}

/** Every place a secret (in any of its forms) occurs, with a little context, the secret itself masked. */
const scan = (secrets: ReadonlyArray<Secret>, evidence: ReadonlyArray<Evidence>): ReadonlyArray<string> =>
  evidence.flatMap((e) =>
    secrets.flatMap((s) =>
      formsOf(s.value).flatMap((form) => {
        const at = e.text.indexOf(form)
        if (at < 0) return []
        const context = e.text.slice(Math.max(0, at - 80), at + form.length + 40).replace(form, `<<${s.name}>>`)
        return [`${s.name} in ${e.where}: …${context.replaceAll("\n", "⏎")}…`]
      })
    )
  )

describe("scan", () => {
  it("finds a secret in any of its forms and says where", () => {
    const secrets = [{ name: "aws", value: "a/b+c=d-0123456789" }, { name: "other", value: "never-there-0123" }]
    const hits = scan(secrets, [
      { where: "log A", text: "nothing here" },
      { where: "log B", text: `url ${encodeURIComponent("a/b+c=d-0123456789")}` },
      { where: "body C", text: JSON.stringify({ k: "a/b+c=d-0123456789" }).replaceAll("/", "\\/") }
    ])
    expect(hits).toHaveLength(2)
    expect(hits[0]).toMatch(/^aws in log B: /)
    expect(hits[1]).toMatch(/^aws in body C: .*<<aws>>/)
  })
})

// Both ways the server runs: with tracing on, the app serves every route and spans are made (and
// scanned); with it off, chat completions take the fast lane and no span is made at all.
for (const tracing of [true, false]) layer(serverLive(tracing), { excludeTestServices: true, timeout: "120 seconds" })(`secret scan on Postgres, tracing ${tracing ? "on" : "off"}`, (it) => {
  it.effect("no secret in any log line, span, response, audit row or database row", () =>
    Effect.gen(function*() {
      const url = yield* Testing.ServerUrl
      const captured = yield* Capture
      const stubs = yield* StubsTag
      const call = (path: string, request?: Request) => send(captured.responses, url, path, request)

      // --- keys
      const createKey = (body: Record<string, unknown>) =>
        Effect.map(call("/v1/keys", { token: ADMIN_KEY, body }), (r) => {
          expect(r.status, r.text).toBe(201)
          return { id: (r.json["key"] as { id: string }).id, secret: r.json["secret"] as string }
        })
      const user = yield* createKey({ role: "user", team: "alpha", name: "scan user", budget_daily_usd: 5, requests_per_minute: 1000 })
      const admin = yield* createKey({ role: "admin", name: "scan admin" })
      const compliance = yield* createKey({ role: "compliance", name: "scan compliance" })
      const doomed = yield* createKey({ role: "user", team: "alpha", name: "to be revoked", expires_in_days: 1 })
      const created = { user, admin, compliance, doomed }

      // --- public endpoints
      for (const path of ["/health", "/health/live", "/health/ready", "/metrics", "/docs/openapi.json"]) {
        expect((yield* call(path)).status, path).toBe(200)
      }

      // --- successful chat: the mock, then each stubbed provider
      const chat = { model: "gpt-4o-mini", messages: [{ role: "user", content: "Say hello" }], max_tokens: 64 }
      expect((yield* call("/v1/llm", { token: user.secret, body: { provider: "mock", model: "claude-3-haiku", prompt: "hello mock" } })).status).toBe(200)
      expect((yield* call("/v1/ai", { token: user.secret, body: { backend: "mock", model: "claude-3-haiku", prompt: "hello mock #2" } })).status).toBe(200)
      expect((yield* call("/v1/chat/completions", { token: user.secret, body: chat })).status).toBe(200)
      const streamed = yield* call("/v1/chat/completions", { token: admin.secret, body: { ...chat, stream: true, stream_options: { include_usage: true } } })
      expect(streamed.text).toContain("[DONE]")
      expect((yield* call("/v1/embeddings", { token: user.secret, body: { model: "text-embedding-3-small", input: ["hi"] } })).status).toBe(200)
      for (const provider of ["anthropic", "bedrock"]) {
        const r = yield* call("/v1/llm", { token: user.secret, body: { provider, model: "claude-3-haiku", prompt: `hello ${provider}` } })
        expect(r.status, r.text).toBe(200)
      }
      expect((yield* call("/v1/llm", { token: user.secret, body: { provider: "mlflow", model: "team-chat", prompt: "hello mlflow" } })).status).toBe(200)

      // --- upstream failures: a plain 500, then upstreams that echo the credential they received
      stubs.openai.setScenario("server_error")
      expect((yield* call("/v1/chat/completions", { token: user.secret, body: chat })).status).toBe(502)
      for (const s of [stubs.openai, stubs.anthropic, stubs.mlflow, stubs.bedrock]) s.setScenario("echo_credentials")
      const echoed = [
        yield* call("/v1/chat/completions", { token: user.secret, body: chat }),
        yield* call("/v1/chat/completions", { token: user.secret, body: { ...chat, stream: true } }),
        yield* call("/v1/embeddings", { token: user.secret, body: { model: "text-embedding-3-small", input: "hi" } }),
        yield* call("/v1/llm", { token: user.secret, body: { provider: "openai", model: "gpt-4o-mini", prompt: "echo" } }),
        // Gateway #2 fails over and lists every attempt's message.
        yield* call("/v1/ai", { token: user.secret, body: { backend: "openai", fallback_backends: ["anthropic", "bedrock", "mlflow"], model: "claude-3-haiku", prompt: "echo all" } }),
        yield* call("/v1/llm", { token: user.secret, body: { provider: "anthropic", model: "claude-3-haiku", prompt: "echo" } }),
        yield* call("/v1/llm", { token: user.secret, body: { provider: "bedrock", model: "claude-3-haiku", prompt: "echo" } }),
        yield* call("/v1/llm", { token: user.secret, body: { provider: "mlflow", model: "team-chat", prompt: "echo" } })
      ]
      // Not vacuous: the upstreams' words reached the client, with the credential scrubbed out.
      for (const r of echoed.filter((r) => r.status !== 200)) expect(r.status, r.text).toBe(502)
      expect(echoed.filter((r) => r.text.includes("[REDACTED]")).length).toBeGreaterThanOrEqual(6)
      // The health page asks the MLflow gateway, which now echoes its token.
      expect((yield* call("/health")).text).toContain("MLflow")
      for (const s of [stubs.openai, stubs.anthropic, stubs.mlflow, stubs.bedrock]) s.setScenario("success")

      // --- 401s with planted secrets, 403s, bad bodies
      const unauthorized = [
        yield* call("/v1/chat/completions", { body: chat }),
        yield* call("/v1/chat/completions", { token: planted.unknownKey, body: chat }),
        yield* call("/v1/chat/completions", { token: `tlk_${user.id}_${planted.wrongTail}`, body: chat }),
        yield* call("/v1/llm", { token: planted.skKey, body: { prompt: "hi" } }),
        yield* call("/v1/keys", { token: planted.adminNearMiss }),
        yield* call("/v1/audit", { headers: { authorization: `Basic ${Buffer.from(`admin:${planted.basicPassword}`).toString("base64")}` } }),
        yield* call("/v1/budget", { headers: { authorization: `Basic admin:${planted.basicPassword}`, "x-api-key": planted.apiKeyHeader } })
      ]
      for (const r of unauthorized) {
        expect(r.status, r.text).toBe(401)
        expect(errorOf(r).type).toBe("authentication_error")
      }
      expect((yield* call("/v1/keys", { token: user.secret })).status).toBe(403)
      expect((yield* call("/v1/audit", { token: user.secret })).status).toBe(403)
      for (const raw of ["{not json", JSON.stringify({ model: "gpt-4o-mini", messages: "hi" }), JSON.stringify({ model: "", messages: [] })]) {
        expect((yield* call("/v1/chat/completions", { token: user.secret, raw })).status, raw).toBe(400)
      }
      expect((yield* call("/v1/keys", { token: ADMIN_KEY, body: { role: "root", team: "../etc" } })).status).toBe(400)
      expect((yield* call("/v1/llm", { token: user.secret, body: { provider: "nobody", prompt: "hi" } })).status).toBe(400)

      // --- a revoked key
      expect((yield* call(`/v1/keys/${doomed.id}`, { method: "DELETE", token: admin.secret })).status).toBe(200)
      const revoked = yield* call("/v1/llm", { token: doomed.secret, body: { provider: "mock", prompt: "still there?" } })
      expect(revoked.status).toBe(401)
      expect(errorOf(revoked).code).toBe("revoked")

      // --- keys, audit and budget APIs
      expect((yield* call("/v1/keys", { token: ADMIN_KEY })).status).toBe(200)
      expect((yield* call("/v1/keys?include_revoked=true", { token: admin.secret })).status).toBe(200)
      expect((yield* call(`/v1/keys/${user.id}`, { token: admin.secret })).status).toBe(200)
      const auditJson = yield* call("/v1/audit?limit=500", { token: admin.secret })
      expect(auditJson.status).toBe(200)
      const auditCsv = yield* call("/v1/audit?format=csv", { token: compliance.secret })
      expect(auditCsv.status).toBe(200)
      expect((yield* call("/v1/audit?status=error&format=csv", { token: ADMIN_KEY })).status).toBe(200)
      for (const [token, path] of [[user.secret, "/v1/budget"], [admin.secret, "/v1/budget"], [ADMIN_KEY, "/v1/budget?team=alpha"], [admin.secret, `/v1/budget?key_id=${user.id}`]] as const) {
        expect((yield* call(path, { token })).status, path).toBe(200)
      }

      // --- what was stored
      const audit = yield* AuditLog.AuditLog
      const rows = yield* Effect.orDie(audit.list({ limit: 1000 }))
      const tables = yield* sqlOn(stubs.databaseUrl, (sql) =>
        Effect.gen(function*() {
          const names = yield* sql<{ table_name: string }>`SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY table_name`
          return yield* Effect.forEach(names, ({ table_name }) =>
            Effect.map(
              sql.unsafe<{ row: string }>(`SELECT row_to_json(t)::text AS row FROM "${table_name.replaceAll("\"", "\"\"")}" t`),
              (found) => ({ table: table_name, rows: found.map((r) => r.row) })
            ))
        }))
      const databaseRows: ReadonlyArray<Evidence> = tables.flatMap((t) => t.rows.map((row, i) => ({ where: `table ${t.table} row ${i + 1}`, text: row })))
      const auditRows: ReadonlyArray<Evidence> = rows.map((r) => ({ where: `audit row ${r.id} (${r.status}, ${r.provider})`, text: deepText(r) }))

      // --- not vacuous
      const logs = captured.logs.map((l) => l.text).join("\n")
      expect(logs).toContain("TidyLLM Gateway listening on")
      expect(logs).toContain("applied migrations")
      expect(logs).toContain(`API key ${user.id} created`)
      expect(logs).toContain(`API key ${doomed.id} revoked`)
      if (tracing) expect(captured.spans.some((s) => s.where === "span OpenAiProvider.complete")).toBe(true)
      else expect(captured.spans).toEqual([])
      const headerValues = (s: StubHandle, name: string) => s.headers().map((h) => String(h[name]))
      expect(headerValues(stubs.openai, "authorization")).toContain(`Bearer ${OPENAI_KEY}`)
      // The SDK 1.x sends the key as a bearer token (0.x sent x-api-key).
      expect(headerValues(stubs.anthropic, "authorization")).toContain(`Bearer ${ANTHROPIC_KEY}`)
      expect(headerValues(stubs.mlflow, "authorization")).toContain(`Bearer ${MLFLOW_TOKEN}`)
      expect(headerValues(stubs.bedrock, "x-amz-security-token")).toContain(AWS_SESSION_TOKEN)
      expect(headerValues(stubs.bedrock, "authorization").some((h) => h.includes(`Credential=${AWS_ACCESS_KEY_ID}/`))).toBe(true)
      expect(rows.length).toBeGreaterThanOrEqual(15)
      const scrubbedRows = rows.filter((r) => r.error_message?.includes("[REDACTED]") === true)
      expect(new Set(scrubbedRows.map((r) => r.provider))).toEqual(new Set(["openai", "anthropic", "bedrock", "mlflow"]))
      expect(rows.some((r) => r.status === "success" && r.provider === "openai")).toBe(true)
      expect(tables.find((t) => t.table === "api_keys")?.rows).toHaveLength(4)
      expect(auditCsv.text.split("\n").length).toBeGreaterThan(rows.length)

      // --- the scan
      const secrets: ReadonlyArray<Secret> = [
        { name: "server.admin_key", value: ADMIN_KEY },
        ...Object.entries(created).flatMap(([name, k]) => [
          { name: `key ${name} (secret)`, value: k.secret },
          // The part after the public id is the secret part.
          { name: `key ${name} (secret part)`, value: k.secret.slice(`tlk_${k.id}_`.length) }
        ]),
        { name: "providers.openai.api_key", value: OPENAI_KEY },
        { name: "providers.anthropic.api_key", value: ANTHROPIC_KEY },
        { name: "providers.mlflow.token", value: MLFLOW_TOKEN },
        { name: "providers.bedrock.secret_access_key", value: AWS_SECRET_ACCESS_KEY },
        { name: "providers.bedrock.session_token", value: AWS_SESSION_TOKEN },
        { name: "storage.database_url password", value: DB_PASSWORD },
        ...Object.entries(planted).map(([name, value]) => ({ name: `planted ${name}`, value }))
      ]
      // A key's secret is in the answer that created it, once, by design: that field (and only
      // that one) is left out of the scan, after checking each secret is there.
      const creations = captured.responses.filter((r) => r.where === "POST /v1/keys → 201")
      expect(creations).toHaveLength(Object.keys(created).length)
      for (const k of Object.values(created)) expect(creations.filter((r) => r.text.includes(`"secret":"${k.secret}"`))).toHaveLength(1)
      const responses = captured.responses.map((r) =>
        r.where === "POST /v1/keys → 201" ? { ...r, text: r.text.replace(/"secret":"tlk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}"/, `"secret":"(shown once)"`) } : r
      )
      const evidence = [...captured.logs, ...captured.spans, ...captured.output, ...responses, ...auditRows, ...databaseRows]
      const counts = {
        logLines: captured.logs.length,
        spans: captured.spans.length,
        outputWrites: captured.output.length,
        responses: captured.responses.length,
        auditRows: auditRows.length,
        databaseRows: databaseRows.length,
        tables: tables.length,
        secrets: secrets.length
      }
      yield* Effect.sync(() => process.stdout.write(`secret scan: ${JSON.stringify(counts)}\n`))
      expect(scan(secrets, evidence)).toEqual([])
    }))
})

describe("secret scan of a failed start", () => {
  /** The server started against `databaseUrl`; what it failed with and what it logged, as evidence. */
  const failedStart = (databaseUrl: string) =>
    Effect.gen(function*() {
      const logs: Array<Evidence> = []
      const dir = yield* tempDir
      const cfg = Testing.config(dir, {
        server: { admin_key: ADMIN_KEY },
        storage: { database_url: databaseUrl, pool_size: 1 },
        providers: { openai: { api_key: OPENAI_KEY } }
      })
      const exit = yield* Layer.build(Testing.layer(cfg)).pipe(
        Effect.provide(Logger.replace(Logger.defaultLogger, captureLogger(logs))),
        Effect.scoped,
        Effect.exit
      )
      expect(Exit.isFailure(exit)).toBe(true)
      const failure: ReadonlyArray<Evidence> = Exit.isFailure(exit)
        ? [
          { where: "start-up failure (pretty)", text: Cause.pretty(exit.cause, { renderErrorCause: true }) },
          { where: "start-up failure (fields)", text: deepText([...Cause.failures(exit.cause), ...Cause.defects(exit.cause)]) }
        ]
        : []
      return { failure, logs }
    })

  const secrets: ReadonlyArray<Secret> = [
    { name: "storage.database_url password", value: DB_PASSWORD },
    { name: "server.admin_key", value: ADMIN_KEY },
    { name: "providers.openai.api_key", value: OPENAI_KEY }
  ]

  it.scoped("a database that does not exist, and one nobody listens for: the failure names no password", () =>
    Effect.gen(function*() {
      const missing = new URL(adminUrl)
      missing.pathname = `/tidyllm_scan_missing_${Ids.randomUuid().replaceAll("-", "").slice(0, 8)}`
      missing.username = missing.username === "" ? "postgres" : missing.username
      missing.password = DB_PASSWORD
      const refused = new URL(missing)
      refused.host = "127.0.0.1:1"
      for (const url of [missing.toString(), refused.toString()]) {
        const { failure, logs } = yield* failedStart(url)
        // Not vacuous: the failure says what went wrong.
        expect(failure.map((e) => e.text).join("\n")).toMatch(/does not exist|ECONNREFUSED|connect/i)
        expect(scan(secrets, [...failure, ...logs])).toEqual([])
      }
    }), 60_000)
})


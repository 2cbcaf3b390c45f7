/**
 * The real server on 127.0.0.1, port 0, on embedded PGlite in a temporary directory with the mock
 * provider, driven by the official `openai` client and by plain `fetch`.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Layer, Schema } from "effect"
import OpenAI from "openai"
import { LlmRequest } from "@tidyllm/core"
import { AuditLog } from "@tidyllm/corporate-llm"
import * as Testing from "../src/Testing.js"

const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "tidyllm-server-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

const ServerLive = Layer.unwrapScoped(Effect.map(tempDir, (dir) => Testing.layer(Testing.config(dir))))

const client = (url: string) => new OpenAI({ baseURL: `${url}/v1`, apiKey: "x", maxRetries: 0 })

const WithMetadata = Schema.Struct({ tidyllm: LlmRequest.ResponseMetadata })
const metadataOf = Schema.decodeUnknownSync(WithMetadata)

const ErrorEnvelope = Schema.Struct({
  error: Schema.Struct({ type: Schema.String, message: Schema.String, request_id: Schema.String }, { key: Schema.String, value: Schema.Unknown })
})
const errorOf = Schema.decodeUnknownSync(ErrorEnvelope)

/** `fetch` as an Effect; the JSON body as `unknown`. */
const request = (url: string, path: string, init: RequestInit = {}) =>
  Effect.promise(async () => {
    const response = await fetch(`${url}${path}`, init)
    const text = await response.text()
    const contentType = response.headers.get("content-type") ?? ""
    return { status: response.status, headers: response.headers, text, json: contentType.includes("json") ? (JSON.parse(text) as unknown) : undefined }
  })

const post = (url: string, path: string, body: unknown, headers: Record<string, string> = {}) =>
  request(url, path, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) })

/** The audit rows of one request. */
const auditRows = (requestId: string) =>
  Effect.flatMap(AuditLog.AuditLog, (audit) => Effect.orDie(audit.list({ limit: 10, request_id: requestId })))

const messages = (text: string): Array<OpenAI.Chat.ChatCompletionMessageParam> => [
  { role: "system", content: "You are terse." },
  { role: "user", content: text }
]

layer(ServerLive, { excludeTestServices: true, timeout: "120 seconds" })("server on PGlite with the mock provider", (it) => {
  describe("POST /v1/chat/completions with the openai client", () => {
    it.effect("answers a completion with usage and the gateway metadata, and audits it once", () =>
      Effect.gen(function*() {
        const url = yield* Testing.ServerUrl
        const { data: completion, response } = yield* Effect.promise(() =>
          client(url).chat.completions.create(
            { model: "claude-3-haiku", messages: messages("Hello from the openai client"), max_tokens: 200, metadata: { reason: "unit test" } },
            { headers: { "x-request-id": "chat-plain-1", "x-tidyllm-user": "alice", "x-tidyllm-team": "platform" } }
          ).withResponse()
        )
        expect(response.headers.get("x-request-id")).toBe("chat-plain-1")
        expect(completion.object).toBe("chat.completion")
        expect(completion.model).toBe("claude-3-haiku")
        const choice = completion.choices[0]
        expect(choice?.message.role).toBe("assistant")
        expect(choice?.message.content).toContain("mock response to: Hello from the openai client")
        expect(choice?.finish_reason).toBe("stop")
        const usage = completion.usage
        expect(usage?.prompt_tokens).toBeGreaterThan(0)
        expect(usage?.completion_tokens).toBeGreaterThan(0)
        expect(usage?.total_tokens).toBe((usage?.prompt_tokens ?? 0) + (usage?.completion_tokens ?? 0))
        const meta = metadataOf(completion).tidyllm
        expect(meta).toMatchObject({ request_id: "chat-plain-1", provider: "mock", mock: true, cache_hit: false, backend_used: "mock", attempts: 1 })
        const rows = yield* auditRows("chat-plain-1")
        expect(rows).toHaveLength(1)
        expect(rows[0]).toMatchObject({ id: meta.audit_id, status: "success", reason: "unit test", user_id: "alice", team: "platform", provider: "mock" })
      }))

    it.effect("streams chunks to the end: role, text, finish reason, usage, [DONE]", () =>
      Effect.gen(function*() {
        const url = yield* Testing.ServerUrl
        const stream = yield* Effect.promise(() =>
          client(url).chat.completions.create(
            { model: "claude-3-haiku", messages: messages("Stream this answer please"), stream: true, stream_options: { include_usage: true } },
            { headers: { "x-request-id": "chat-stream-1", "x-tidyllm-reason": "streaming test" } }
          )
        )
        const chunks = yield* Effect.promise(async () => {
          const all: Array<OpenAI.Chat.ChatCompletionChunk> = []
          for await (const chunk of stream) all.push(chunk)
          return all
        })
        expect(chunks.length).toBeGreaterThan(3)
        expect(chunks.every((c) => c.object === "chat.completion.chunk" && c.id === chunks[0]?.id)).toBe(true)
        expect(chunks[0]?.choices[0]?.delta.role).toBe("assistant")
        const text = chunks.map((c) => c.choices[0]?.delta.content ?? "").join("")
        expect(text).toBe("[mock claude-3-haiku] This is a mock response to: Stream this answer please")
        // Several text deltas, not one blob.
        expect(chunks.filter((c) => (c.choices[0]?.delta.content ?? "") !== "").length).toBeGreaterThan(3)
        const finish = chunks.find((c) => c.choices[0]?.finish_reason != null)
        expect(finish?.choices[0]?.finish_reason).toBe("stop")
        expect(metadataOf(finish).tidyllm).toMatchObject({ request_id: "chat-stream-1", provider: "mock", cache_hit: false })
        const last = chunks[chunks.length - 1]
        expect(last?.choices).toEqual([])
        expect(last?.usage?.completion_tokens).toBeGreaterThan(0)
        expect(last?.usage?.total_tokens).toBe((last?.usage?.prompt_tokens ?? 0) + (last?.usage?.completion_tokens ?? 0))
        const rows = yield* auditRows("chat-stream-1")
        expect(rows.map((r) => r.status)).toEqual(["success"])
      }))

    it.effect("without include_usage, the finishing chunk carries the usage; the raw stream ends with [DONE]", () =>
      Effect.gen(function*() {
        const url = yield* Testing.ServerUrl
        const res = yield* post(url, "/v1/chat/completions", {
          model: "claude-3-haiku", stream: true, messages: [{ role: "user", content: [{ type: "text", text: "Parts " }, { type: "text", text: "joined" }] }]
        }, { "x-tidyllm-reason": "raw sse" })
        expect(res.status).toBe(200)
        expect(res.headers.get("content-type")).toContain("text/event-stream")
        const events = res.text.split("\n\n").filter((e) => e !== "")
        expect(events[events.length - 1]).toBe("data: [DONE]")
        const payloads = events.slice(0, -1).map((e) => JSON.parse(e.replace(/^data: /, "")) as { choices: Array<{ finish_reason: string | null; delta: { content?: string } }>; usage?: { total_tokens: number } })
        const finish = payloads[payloads.length - 1]
        expect(finish?.choices[0]?.finish_reason).toBe("stop")
        expect(finish?.usage?.total_tokens).toBeGreaterThan(0)
        expect(payloads.map((p) => p.choices[0]?.delta.content ?? "").join("")).toContain("mock response to: Parts joined")
      }))

    it.effect("a missing reason is a 400 naming the reason; the openai client raises BadRequestError", () =>
      Effect.gen(function*() {
        const url = yield* Testing.ServerUrl
        const error = yield* Effect.flip(Effect.tryPromise(() =>
          client(url).chat.completions.create({ model: "claude-3-haiku", messages: messages("no reason given") }, { headers: { "x-request-id": "no-reason-1" } })
        ))
        expect(error.cause).toBeInstanceOf(OpenAI.BadRequestError)
        const e = error.cause as InstanceType<typeof OpenAI.BadRequestError>
        expect(e.status).toBe(400)
        expect(e.message).toMatch(/reason is required/)
        expect(e.type).toBe("policy_rejected")
        const rows = yield* auditRows("no-reason-1")
        expect(rows.map((r) => r.status)).toEqual(["rejected_policy"])
        // A stream refused before it starts gets its HTTP status too.
        const streamed = yield* Effect.flip(Effect.tryPromise(() =>
          client(url).chat.completions.create({ model: "claude-3-haiku", messages: messages("no reason, streamed"), stream: true })
        ))
        expect(streamed.cause).toBeInstanceOf(OpenAI.BadRequestError)
      }))

    it.effect("an unknown model is a 400 naming the model", () =>
      Effect.gen(function*() {
        const url = yield* Testing.ServerUrl
        const error = yield* Effect.flip(Effect.tryPromise(() =>
          client(url).chat.completions.create({ model: "gpt-99-turbo", messages: messages("hi"), metadata: { reason: "unknown model" } })
        ))
        expect(error.cause).toBeInstanceOf(OpenAI.BadRequestError)
        const e = error.cause as InstanceType<typeof OpenAI.BadRequestError>
        expect(e.message).toContain("model 'gpt-99-turbo' is not in the model catalog")
        expect(e.type).toBe("model_not_found")
      }))

    it.effect("unsupported OpenAI features and malformed bodies are 400s that name the field", () =>
      Effect.gen(function*() {
        const url = yield* Testing.ServerUrl
        const reason = { "x-tidyllm-reason": "validation" }
        const n = yield* post(url, "/v1/chat/completions", { model: "claude-3-haiku", messages: messages("x"), n: 2 }, reason)
        expect(n.status).toBe(400)
        expect(errorOf(n.json).error).toMatchObject({ type: "invalid_request_error", param: "n" })
        const tools = yield* post(url, "/v1/chat/completions", { model: "claude-3-haiku", messages: messages("x"), tools: [{ type: "function" }] }, reason)
        expect(tools.status).toBe(400)
        expect(errorOf(tools.json).error["param"]).toBe("tools[0].function")
        const image = yield* post(url, "/v1/chat/completions", {
          model: "claude-3-haiku", messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "x" } }] }]
        }, reason)
        expect(errorOf(image.json).error).toMatchObject({ param: "messages[0].content[0].type" })
        const bad = yield* post(url, "/v1/chat/completions", { model: "claude-3-haiku", messages: [{ role: "user", content: 5 }], temperature: 7 }, reason)
        expect(bad.status).toBe(400)
        const e = errorOf(bad.json).error
        expect(e.message).toContain("messages[0].content")
        expect(e.message).toContain("temperature: expected a number between 0 and 2, got 7")
        const notJson = yield* request(url, "/v1/chat/completions", { method: "POST", body: "{oops" })
        expect(notJson.status).toBe(400)
        expect(errorOf(notJson.json).error.message).toMatch(/not valid JSON/)
        // Harmless fields are accepted and ignored.
        const harmless = yield* post(url, "/v1/chat/completions", { model: "claude-3-haiku", messages: messages("seeded"), seed: 7, presence_penalty: 0.5, n: 1, user: "u1" }, reason)
        expect(harmless.status).toBe(200)
      }))

    it.effect("a body over server.max_body_bytes is a 413", () =>
      Effect.gen(function*() {
        const url = yield* Testing.ServerUrl
        const big = "a".repeat(1_100_000)
        const res = yield* post(url, "/v1/chat/completions", { model: "claude-3-haiku", messages: messages(big) }, { "x-tidyllm-reason": "too big" })
        expect(res.status).toBe(413)
        expect(errorOf(res.json).error.type).toBe("request_too_large")
      }))
  })

  describe("native API", () => {
    it.effect("POST /v1/llm runs gateway #1 and returns an LLMResponse", () =>
      Effect.gen(function*() {
        const url = yield* Testing.ServerUrl
        const res = yield* post(url, "/v1/llm", { prompt: "What is a gateway?", model: "claude-3-sonnet", reason: "native #1" }, { "x-request-id": "llm-1" })
        expect(res.status).toBe(200)
        const body = Schema.decodeUnknownSync(LlmRequest.LLMResponse)(res.json)
        expect(body.status).toBe("success")
        expect(body.data?.response).toContain("mock response to: What is a gateway?")
        expect(body.metadata).toMatchObject({ request_id: "llm-1", provider: "mock", model: "claude-3-sonnet", mock: true })
        expect(Number(body.metadata.cost_usd)).toBeGreaterThan(0)
        expect((yield* auditRows("llm-1")).map((r) => r.status)).toEqual(["success"])
        // The native API is strict about unknown fields: a typo is named.
        const typo = yield* post(url, "/v1/llm", { prompt: "x", resaon: "typo" })
        expect(typo.status).toBe(400)
        expect(errorOf(typo.json).error).toMatchObject({ field: "resaon" })
      }))

    it.effect("POST /v1/ai: a second identical request is a cache hit, audited as one", () =>
      Effect.gen(function*() {
        const url = yield* Testing.ServerUrl
        const body = { messages: [{ role: "user", content: "Cache me if you can" }], model: "claude-3-haiku", temperature: 0.2, reason: "cache test" }
        const first = yield* post(url, "/v1/ai", body, { "x-request-id": "ai-1" })
        const second = yield* post(url, "/v1/ai", body, { "x-request-id": "ai-2" })
        const a = Schema.decodeUnknownSync(LlmRequest.LLMResponse)(first.json)
        const b = Schema.decodeUnknownSync(LlmRequest.LLMResponse)(second.json)
        expect(a.metadata).toMatchObject({ cache_hit: false, backend_used: "mock", attempts: 1 })
        expect(b.metadata).toMatchObject({ cache_hit: true, cost_usd: "0.000000000" })
        expect(b.data?.response).toBe(a.data?.response)
        expect((yield* auditRows("ai-2")).map((r) => r.status)).toEqual(["cache_hit"])
        // A different temperature is a different answer: a miss.
        const third = yield* post(url, "/v1/ai", { ...body, temperature: 0.3 }, { "x-request-id": "ai-3" })
        expect(Schema.decodeUnknownSync(LlmRequest.LLMResponse)(third.json).metadata.cache_hit).toBe(false)
      }))

    it.effect("POST /v1/ai with every backend failing is a 502 listing the attempts", () =>
      Effect.gen(function*() {
        const url = yield* Testing.ServerUrl
        const res = yield* post(url, "/v1/ai", { prompt: "x", backend: "nowhere", reason: "failover" })
        expect(res.status).toBe(502)
        const e = errorOf(res.json).error
        expect(e.type).toBe("all_backends_failed")
        expect(e["attempts"]).toEqual([expect.objectContaining({ backend: "nowhere", attempt: 1 })])
      }))
  })

  describe("catalog, health and docs", () => {
    it.effect("GET /v1/models lists the catalog (the openai client pages through it)", () =>
      Effect.gen(function*() {
        const url = yield* Testing.ServerUrl
        const ids = yield* Effect.promise(async () => {
          const out: Array<string> = []
          for await (const m of client(url).models.list()) out.push(m.id)
          return out
        })
        expect(ids).toContain("claude-3-haiku")
        expect(ids).toContain("titan-embed")
      }))

    it.effect("GET /health reports each gateway; /health/live and /health/ready answer", () =>
      Effect.gen(function*() {
        const url = yield* Testing.ServerUrl
        const health = yield* request(url, "/health")
        expect(health.status).toBe(200)
        expect(health.json).toMatchObject({
          status: "healthy",
          services: {
            corporate_llm: { healthy: true, default_provider: "mock", providers: { mock: { mock: true } } },
            ai_processing: { healthy: true, backends: ["mock"] },
            storage: { healthy: true, engine: "pglite" }
          }
        })
        expect((yield* request(url, "/health/live")).json).toEqual({ status: "alive" })
        const ready = yield* request(url, "/health/ready")
        expect(ready.status).toBe(200)
        expect(ready.json).toMatchObject({ status: "ready", engine: "pglite", migrated: true, database: true })
      }))

    it.effect("GET /docs serves Swagger UI and /docs/openapi.json the contract", () =>
      Effect.gen(function*() {
        const url = yield* Testing.ServerUrl
        const docs = yield* request(url, "/docs")
        expect(docs.status).toBe(200)
        expect(docs.headers.get("content-type")).toContain("text/html")
        expect(docs.text).toContain("TidyLLM")
        // The page loads Swagger UI from the server and the contract from /docs/openapi.json.
        expect(docs.text).toContain(`src="/docs/swagger-ui-bundle.js"`)
        expect(docs.text).toContain(`href="/docs/swagger-ui.css"`)
        expect(docs.text).toContain(`url: "/docs/openapi.json"`)
        const script = yield* request(url, "/docs/swagger-ui-bundle.js")
        expect(script.status).toBe(200)
        expect(script.headers.get("content-type")).toContain("javascript")
        expect(script.text).toContain("SwaggerUIBundle")
        const css = yield* request(url, "/docs/swagger-ui.css")
        expect(css.status).toBe(200)
        expect(css.headers.get("content-type")).toContain("text/css")
        expect(css.text).toContain(".swagger-ui")
        const spec = yield* request(url, "/docs/openapi.json")
        const paths = Schema.decodeUnknownSync(Schema.Struct({ openapi: Schema.String, paths: Schema.Record({ key: Schema.String, value: Schema.Unknown }) }))(spec.json).paths
        expect(Object.keys(paths)).toEqual(expect.arrayContaining(["/v1/chat/completions", "/v1/llm", "/v1/ai", "/v1/models", "/health", "/health/live", "/health/ready"]))
      }))

    it.effect("an unknown route is a JSON 404 with the request id", () =>
      Effect.gen(function*() {
        const url = yield* Testing.ServerUrl
        const res = yield* request(url, "/v2/nothing", { headers: { "x-request-id": "missing-route" } })
        expect(res.status).toBe(404)
        expect(res.headers.get("x-request-id")).toBe("missing-route")
        expect(errorOf(res.json).error).toMatchObject({ type: "not_found", request_id: "missing-route" })
      }))
  })

  it.effect("every gateway request leaves exactly one audit row", () =>
    Effect.gen(function*() {
      const url = yield* Testing.ServerUrl
      const cases: ReadonlyArray<readonly [string, string, unknown, Record<string, string>]> = [
        ["every-1", "/v1/chat/completions", { model: "claude-3-haiku", messages: messages("audit me") }, { "x-tidyllm-reason": "audit" }],
        ["every-2", "/v1/chat/completions", { model: "claude-3-haiku", messages: messages("audit me"), stream: true }, { "x-tidyllm-reason": "audit" }],
        ["every-3", "/v1/chat/completions", { model: "claude-3-haiku", messages: messages("no reason") }, {}],
        ["every-4", "/v1/llm", { prompt: "audit me too", reason: "audit", max_tokens: 999_999 }, {}],
        ["every-5", "/v1/ai", { prompt: "audit me three", reason: "audit" }, {}],
        // Refused before a gateway could read them: audited all the same.
        ["every-6", "/v1/chat/completions", { model: "gpt-99-turbo", messages: messages("unknown model") }, { "x-tidyllm-reason": "audit" }],
        ["every-7", "/v1/chat/completions", { model: "claude-3-haiku", messages: messages("x"), n: 3 }, { "x-tidyllm-reason": "audit" }],
        ["every-8", "/v1/llm", { prompt: 42, reason: "audit", model: "claude-3-haiku" }, {}],
        ["every-9", "/v1/ai", { prompt: "x", reason: "audit", temperature: "hot" }, {}]
      ]
      for (const [id, path, body, headers] of cases) {
        yield* post(url, path, body, { ...headers, "x-request-id": id })
        const rows = yield* auditRows(id)
        expect(rows, `${id} ${path}`).toHaveLength(1)
      }
      const rejected = yield* auditRows("every-8")
      expect(rejected[0]).toMatchObject({ status: "rejected_policy", error_type: "invalid_request_error", model: "claude-3-haiku", reason: "audit" })
      expect((yield* auditRows("every-6"))[0]).toMatchObject({ status: "rejected_policy", error_type: "model_not_found", model: "gpt-99-turbo" })
      const notJson = yield* request(url, "/v1/llm", { method: "POST", body: "{oops", headers: { "x-request-id": "every-10" } })
      expect(notJson.status).toBe(400)
      expect((yield* auditRows("every-10")).map((r) => r.status)).toEqual(["rejected_policy"])
    }))
})

/**
 * Traces over OTLP/HTTP: the real server with `observability.otlp_endpoint` pointing at a
 * receiver stub on loopback that decodes each protobuf export. One chat completion, one streamed,
 * one `/v1/ai` request that fails over from a dead backend to the mock, and one embedding: each is
 * one trace rooted at the HTTP server span, with gateway #2, one span per backend attempt, gateway
 * #1 and the provider call beneath, GenAI attributes and the cost and audit id of the response and
 * the audit row; background work starts no trace. The export carries MLflow's experiment header,
 * the configured headers and the resource's service name; it happens when the tracing layer is
 * released (the flush at shutdown). Sampling ratio 0 exports nothing; without an endpoint nothing
 * is sent.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Exit, Layer, Schema, Scope } from "effect"
import { Config } from "@tidyllm/core"
import { AuditLog } from "@tidyllm/corporate-llm"
import * as Layers from "../src/Layers.js"
import * as Tracing from "../src/observability/Tracing.js"
import * as Testing from "../src/Testing.js"
import { closedPort, type ReceivedSpan, startOtlpStub } from "./otlpStub.js"

const PROMPT = "What is distributed tracing? (trace-test prompt)"
const LEAKED_KEY = "sk-trace-leak-check-0123456789"
const OTLP_TOKEN = "otlp-token-0123456789"

const SpanKind = { server: 2, client: 3 } as const

const Metadata = Schema.Struct({
  request_id: Schema.String,
  audit_id: Schema.String,
  provider: Schema.String,
  model: Schema.String,
  cost_usd: Schema.String,
  backend_used: Schema.optional(Schema.String),
  attempts: Schema.optional(Schema.Number)
})
type Metadata = typeof Metadata.Type
const Usage = Schema.Struct({ prompt_tokens: Schema.Number, completion_tokens: Schema.Number })
const ChatCompletion = Schema.Struct({ usage: Usage, tidyllm: Metadata })
const AiResponse = Schema.Struct({
  data: Schema.Struct({ usage: Schema.Struct({ input_tokens: Schema.Number, output_tokens: Schema.Number }), finish_reason: Schema.String }),
  metadata: Metadata
})
const decode = <A, I>(schema: Schema.Schema<A, I>, u: unknown) => Schema.decodeUnknownSync(schema, { onExcessProperty: "ignore" })(u)

const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "tidyllm-tracing-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

const otlpStub = Effect.acquireRelease(Effect.promise(startOtlpStub), (s) => Effect.promise(s.close))

/** The test configuration: the mock provider, a dead OpenAI-compatible backend, and `observability` as given. */
const configFor = (dir: string, deadPort: number, observability: Partial<typeof Config.ObservabilitySettings.Encoded>) =>
  Testing.config(dir, {
    corporate_llm: { budget_slice_fraction: 0 },
    ai_processing: { enable_caching: false, max_retries: 1, retry_delay_base: 0.001, circuit_breaker_failures: 0 },
    providers: { openai_compatible: { deadllm: { base_url: `http://127.0.0.1:${deadPort}/v1` } } },
    models: [{ id: "llama-local", provider_ids: { deadllm: "meta-llama/Llama-3.1-8B-Instruct" }, input_usd_per_million: 0.5, output_usd_per_million: 1.5, context_window: 32_000, max_output_tokens: 4096 }],
    observability
  })

/**
 * The server with tracing as `main.ts` wires it: the tracing layer beneath the server (so every
 * fiber the server starts sees its tracer) and the HTTP server span on. Built in `scope`; closing
 * the scope stops the server, then flushes the spans.
 */
const startServer = (cfg: Config.GatewayConfig, scope: Scope.Scope) =>
  Testing.layerWith(cfg, Layers.gateways(cfg, Layers.storeMemory)).pipe(
    Layer.buildWithScope(scope),
    Effect.map((ctx) => ({ url: Context.get(ctx, Testing.ServerUrl), audit: Context.get(ctx, AuditLog.AuditLog) }))
  )

const post = (url: string, path: string, requestId: string, body: unknown) =>
  Effect.promise(async () => {
    const response = await fetch(`${url}${path}`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "x-request-id": requestId,
        "x-tidyllm-reason": "tracing test",
        "x-tidyllm-team": "risk",
        // A credential header of some OpenAI-style clients: it must reach no span.
        "api-key": LEAKED_KEY
      },
      body: JSON.stringify(body)
    })
    return { status: response.status, text: await response.text() }
  })

/** The closing chunk of an SSE completion: `tidyllm` metadata and usage (without `include_usage`, both in one chunk). */
const lastMetadataChunk = (sse: string) => {
  const events = sse.split("\n\n").filter((e) => e.startsWith("data: ") && e !== "data: [DONE]").map((e) => JSON.parse(e.slice(6)) as unknown)
  const withMeta = events.filter((e) => typeof e === "object" && e !== null && "tidyllm" in e && "usage" in e && (e as { usage: unknown }).usage !== null)
  return decode(ChatCompletion, withMeta.at(-1))
}

const auditRows = (audit: AuditLog.Service, requestId: string) =>
  Effect.map(Effect.orDie(audit.list({ limit: 10, request_id: requestId })), (rows) => [...rows].sort((a, b) => a.attempt - b.attempt))

/** The spans of one request's trace, found by the request id its HTTP server span records. */
const traceOf = (spans: ReadonlyArray<ReceivedSpan>, requestId: string) => {
  const roots = spans.filter((s) => s.kind === SpanKind.server && s.attributes["http.request.header.x-request-id"] === requestId)
  expect(roots).toHaveLength(1)
  const root = roots[0]!
  const trace = spans.filter((s) => s.traceId === root.traceId)
  const byName = (name: string) => trace.filter((s) => s.name === name)
  const one = (name: string) => {
    const found = byName(name)
    expect(found, name).toHaveLength(1)
    return found[0]!
  }
  return { root, trace, byName, one }
}

/** Asserts `child`'s parent is `parent` (same trace, parent link). */
const expectChild = (child: ReceivedSpan, parent: ReceivedSpan) => {
  expect(child.traceId).toBe(parent.traceId)
  expect(child.parentSpanId, `${child.name} under ${parent.name}`).toBe(parent.spanId)
}

/** Gateway #1's span against the response metadata and the audit row of the same attempt. */
const expectGatewaySpan = (span: ReceivedSpan, meta: Metadata, row: AuditLog.AuditEntry, usage: { input: number; output: number }) => {
  expect(span.attributes).toMatchObject({
    "gen_ai.operation.name": "chat",
    "gen_ai.system": "mock",
    "gen_ai.provider.name": "mock",
    "gen_ai.response.model": meta.model,
    "gen_ai.usage.input_tokens": usage.input,
    "gen_ai.usage.output_tokens": usage.output,
    "gen_ai.response.finish_reasons": "stop",
    "tidyllm.audit_id": meta.audit_id,
    "tidyllm.request_id": meta.request_id,
    "tidyllm.reason": "tracing test",
    "tidyllm.team": "risk",
    "tidyllm.status": "success"
  })
  expect(span.attributes["tidyllm.cost_usd"]).toBe(Number(meta.cost_usd))
  expect(row.id).toBe(meta.audit_id)
  expect(row.status).toBe("success")
  expect(AuditLog.AuditStatus.literals).toContain(span.attributes["tidyllm.status"])
  expect(span.attributes["tidyllm.cost_usd"]).toBe(row.cost / 1e9)
  expect([row.input_tokens, row.output_tokens]).toEqual([usage.input, usage.output])
}

describe("tracing over OTLP/HTTP", () => {
  it.live("one trace per request, gateway and attempt spans with GenAI attributes, flushed at shutdown", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const stub = yield* otlpStub
      const cfg = configFor(dir, yield* Effect.promise(closedPort), {
        otlp_endpoint: stub.url,
        mlflow_experiment_id: "42",
        service_name: "tidyllm-trace-test",
        otlp_headers: { authorization: OTLP_TOKEN }
      })
      expect(Tracing.enabled(cfg)).toBe(true)

      const scope = yield* Scope.make()
      const { url, audit } = yield* startServer(cfg, scope)

      // 1. A chat completion (the mock provider).
      const chat = yield* post(url, "/v1/chat/completions", "trace-chat", {
        model: "claude-3-haiku", messages: [{ role: "user", content: PROMPT }], max_tokens: 64, temperature: 0.5
      })
      expect(chat.status, chat.text).toBe(200)
      const chatBody = decode(ChatCompletion, JSON.parse(chat.text))
      const chatRows = yield* auditRows(audit, "trace-chat")

      // 2. The same, streamed.
      const streamed = yield* post(url, "/v1/chat/completions", "trace-stream", {
        model: "claude-3-haiku", messages: [{ role: "user", content: PROMPT }], max_tokens: 64, stream: true
      })
      expect(streamed.status, streamed.text).toBe(200)
      const streamBody = lastMetadataChunk(streamed.text)
      const streamRows = yield* auditRows(audit, "trace-stream")

      // 3. Gateway #2 with failover: the dead backend (refused twice: one retry), then the mock.
      const ai = yield* post(url, "/v1/ai", "trace-ai", {
        messages: [{ role: "user", content: PROMPT }], model: "llama-local", max_tokens: 32, backend: "deadllm", fallback_backends: ["mock"]
      })
      expect(ai.status, ai.text).toBe(200)
      const aiBody = decode(AiResponse, JSON.parse(ai.text))
      expect(aiBody.metadata).toMatchObject({ backend_used: "mock", attempts: 3 })
      const aiRows = yield* auditRows(audit, "trace-ai")
      expect(aiRows.map((r) => [r.attempt, r.provider, r.status])).toEqual([[1, "deadllm", "error"], [2, "deadllm", "error"], [3, "mock", "success"]])

      // 4. Embeddings (gateway #1 directly).
      const embedded = yield* post(url, "/v1/embeddings", "trace-embed", { model: "titan-embed", input: [PROMPT] })
      expect(embedded.status, embedded.text).toBe(200)
      const embedBody = decode(Schema.Struct({ tidyllm: Metadata }), JSON.parse(embedded.text))

      // Background work (no request around it) starts no trace; a server span would. This fiber
      // built the server, so it has the server's tracer.
      yield* Effect.withSpan(Effect.void, "background-work", { root: true })
      yield* Effect.withSpan(Effect.void, "inbound-request", { root: true, kind: "server" })

      // Spans are batched (every 5 s): nothing need have arrived yet. Shutdown flushes them.
      yield* Scope.close(scope, Exit.void)
      const spans = stub.spans()
      expect(spans.length).toBeGreaterThan(0)

      // The export: protobuf POSTs to the endpoint, with MLflow's experiment and the configured headers.
      for (const e of stub.exports) {
        expect(e.method).toBe("POST")
        expect(e.path).toBe("/v1/traces")
        expect(e.headers["content-type"]).toBe("application/x-protobuf")
        expect(e.headers["x-mlflow-experiment-id"]).toBe("42")
        expect(e.headers["authorization"]).toBe(OTLP_TOKEN)
      }
      for (const s of spans) {
        expect(s.resource).toMatchObject({ "service.name": "tidyllm-trace-test", "service.version": Tracing.serviceVersion })
        expect(s.endNanos).toBeGreaterThanOrEqual(s.startNanos)
      }

      // Nothing of the prompt or the client's credential header on any span.
      const everything = JSON.stringify(spans.map((s) => s.attributes))
      expect(everything).not.toContain("distributed tracing")
      expect(everything).not.toContain(LEAKED_KEY)
      expect(everything).not.toContain(OTLP_TOKEN)

      // --- 1. chat: HTTP → gateway #2 → attempt → gateway #1 → provider ----------------------------
      {
        const t = traceOf(spans, "trace-chat")
        expect(t.root.parentSpanId).toBe("")
        expect(t.root.attributes).toMatchObject({ "http.request.method": "POST", "url.path": "/v1/chat/completions", "http.response.status_code": 200, "http.request.header.api-key": "<redacted>" })
        const gw2 = t.one("AiProcessingGateway.process")
        const attempt = t.one("AiProcessingGateway.attempt")
        const gw1 = t.one("CorporateLlmGateway.process")
        const provider = t.one("MockProvider.complete")
        expectChild(gw2, t.root)
        expectChild(attempt, gw2)
        expectChild(gw1, attempt)
        expectChild(provider, gw1)
        expect(gw2.attributes).toMatchObject({ "tidyllm.cache_hit": false, "tidyllm.backend_used": "mock", "tidyllm.attempts": 1 })
        expect(attempt.attributes).toMatchObject({ "tidyllm.backend": "mock", "tidyllm.attempt": 1, "tidyllm.outcome": "success" })
        expect(chatRows).toHaveLength(1)
        expectGatewaySpan(gw1, chatBody.tidyllm, chatRows[0]!, { input: chatBody.usage.prompt_tokens, output: chatBody.usage.completion_tokens })
        expect(gw1.attributes).toMatchObject({ "gen_ai.request.model": "claude-3-haiku", "gen_ai.request.max_tokens": 64, "gen_ai.request.temperature": 0.5 })
        expect(provider.kind).toBe(SpanKind.client)
        expect(provider.attributes).toMatchObject({ "gen_ai.operation.name": "chat", "gen_ai.system": "mock" })
        // Every span of the trace belongs to this request.
        expect(t.trace.filter((s) => s.kind === SpanKind.server)).toHaveLength(1)
        for (const s of t.trace) if ("tidyllm.request_id" in s.attributes) expect(s.attributes["tidyllm.request_id"]).toBe("trace-chat")
      }

      // --- 2. streamed: the stream spans end with the settled outcome ----------------------------
      {
        const t = traceOf(spans, "trace-stream")
        const gw2 = t.one("AiProcessingGateway.processStream")
        const attempt = t.one("AiProcessingGateway.attempt")
        const gw1 = t.one("CorporateLlmGateway.processStream")
        const provider = t.one("MockProvider.stream")
        expectChild(gw2, t.root)
        expectChild(attempt, gw2)
        expectChild(gw1, attempt)
        expectChild(provider, gw1)
        expect(gw2.attributes).toMatchObject({ "tidyllm.cache_hit": false, "tidyllm.backend_used": "mock", "tidyllm.attempts": 1 })
        expect(gw1.attributes).toMatchObject({ "gen_ai.request.stream": true, "gen_ai.request.max_tokens": 64 })
        expect(streamRows).toHaveLength(1)
        expectGatewaySpan(gw1, streamBody.tidyllm, streamRows[0]!, { input: streamBody.usage.prompt_tokens, output: streamBody.usage.completion_tokens })
        // The stream's span closes after its last event was settled and audited.
        expect(gw1.endNanos).toBeGreaterThanOrEqual(provider.endNanos)
        expect(gw2.endNanos).toBeGreaterThanOrEqual(gw1.endNanos)
      }

      // --- 3. failover: an attempt span per try, each with gateway #1 and its audit row -----------
      {
        const t = traceOf(spans, "trace-ai")
        expect(t.root.attributes).toMatchObject({ "url.path": "/v1/ai", "http.response.status_code": 200 })
        const gw2 = t.one("AiProcessingGateway.process")
        expectChild(gw2, t.root)
        expect(gw2.attributes).toMatchObject({ "tidyllm.cache_hit": false, "tidyllm.backend_used": "mock", "tidyllm.attempts": 3 })
        const attempts = t.byName("AiProcessingGateway.attempt").sort((a, b) => Number(a.attributes["tidyllm.attempt"]) - Number(b.attributes["tidyllm.attempt"]))
        expect(attempts.map((a) => [a.attributes["tidyllm.backend"], a.attributes["tidyllm.attempt"]])).toEqual([["deadllm", 1], ["deadllm", 2], ["mock", 3]])
        const gw1s = t.byName("CorporateLlmGateway.process")
        expect(gw1s).toHaveLength(3)
        for (const [i, attempt] of attempts.entries()) {
          expectChild(attempt, gw2)
          const row = aiRows[i]!
          const gw1 = gw1s.find((s) => s.parentSpanId === attempt.spanId)!
          expect(gw1, `gateway #1 under attempt ${i + 1}`).toBeDefined()
          expect(gw1.attributes["tidyllm.audit_id"]).toBe(row.id)
          expect(gw1.attributes["tidyllm.status"]).toBe(row.status)
          expect(gw1.attributes["tidyllm.cost_usd"]).toBe(row.cost / 1e9)
          expect(gw1.attributes["gen_ai.request.model"]).toBe("llama-local")
        }
        // The dead backend: two failed attempts, each with a failed client span of the OpenAI-compatible adapter.
        for (const attempt of attempts.slice(0, 2)) {
          expect(attempt.status.code).toBe(2)
          expect(String(attempt.attributes["tidyllm.outcome"])).toMatch(/^upstream_error:connection$/)
          const gw1 = gw1s.find((s) => s.parentSpanId === attempt.spanId)!
          expect(gw1.attributes).toMatchObject({ "gen_ai.system": "deadllm", "tidyllm.status": "error", "error.type": "upstream_error:connection" })
          expect(gw1.attributes["gen_ai.response.model"]).toBeUndefined()
          const calls = t.trace.filter((s) => s.parentSpanId === gw1.spanId)
          expect(calls.map((s) => s.name)).toEqual(["OpenAiProvider.complete"])
          expect(calls[0]!.kind).toBe(SpanKind.client)
          expect(calls[0]!.status.code).toBe(2)
          expect(calls[0]!.attributes).toMatchObject({ "gen_ai.system": "deadllm", "gen_ai.request.model": "meta-llama/Llama-3.1-8B-Instruct", "server.address": "127.0.0.1" })
        }
        const last = gw1s.find((s) => s.parentSpanId === attempts[2]!.spanId)!
        expect(attempts[2]!.attributes["tidyllm.outcome"]).toBe("success")
        expect(last.attributes["tidyllm.audit_id"]).toBe(aiBody.metadata.audit_id)
        expect(last.attributes["tidyllm.cost_usd"]).toBe(Number(aiBody.metadata.cost_usd))
        expect(last.attributes).toMatchObject({
          "gen_ai.system": "mock", "gen_ai.usage.input_tokens": aiBody.data.usage.input_tokens, "gen_ai.usage.output_tokens": aiBody.data.usage.output_tokens,
          "gen_ai.request.max_tokens": 32, "tidyllm.status": "success"
        })
      }

      // --- 4. embeddings ----------------------------------------------------------------------
      {
        const t = traceOf(spans, "trace-embed")
        const gw2 = t.one("AiProcessingGateway.embed")
        const attempt = t.one("AiProcessingGateway.attempt")
        const gw1 = t.one("CorporateLlmGateway.embed")
        const provider = t.one("MockProvider.embed")
        expectChild(gw2, t.root)
        expectChild(attempt, gw2)
        expectChild(gw1, attempt)
        expect(gw2.attributes).toMatchObject({ "tidyllm.backend_used": "mock", "tidyllm.attempts": 1 })
        expectChild(provider, gw1)
        expect(gw1.attributes).toMatchObject({
          "gen_ai.operation.name": "embeddings", "gen_ai.system": "mock", "gen_ai.request.model": "titan-embed",
          "tidyllm.audit_id": embedBody.tidyllm.audit_id, "tidyllm.status": "success", "gen_ai.usage.output_tokens": 0
        })
        expect(gw1.attributes["tidyllm.cost_usd"]).toBe(Number(embedBody.tidyllm.cost_usd))
        expect(provider.attributes).toMatchObject({ "gen_ai.operation.name": "embeddings" })
      }

      // Four requests, four traces, and nothing else but the other server span.
      const requestTraces = new Set(["trace-chat", "trace-stream", "trace-ai", "trace-embed"].map((id) => traceOf(spans, id).root.traceId))
      expect(requestTraces.size).toBe(4)
      expect(spans.filter((s) => !requestTraces.has(s.traceId)).map((s) => s.name)).toEqual(["inbound-request"])
    }).pipe(Effect.scoped), { timeout: 60_000 })

  it.live("trace_sample_ratio 0: requests run, no span is exported", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const stub = yield* otlpStub
      const cfg = configFor(dir, yield* Effect.promise(closedPort), { otlp_endpoint: stub.url, trace_sample_ratio: 0 })
      const scope = yield* Scope.make()
      const { url } = yield* startServer(cfg, scope)
      const chat = yield* post(url, "/v1/chat/completions", "unsampled", { model: "claude-3-haiku", messages: [{ role: "user", content: PROMPT }] })
      expect(chat.status, chat.text).toBe(200)
      yield* Scope.close(scope, Exit.void)
      expect(stub.spans()).toEqual([])
    }).pipe(Effect.scoped), { timeout: 60_000 })

  it.live("without otlp_endpoint: tracing is off and nothing is sent", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const stub = yield* otlpStub
      const cfg = configFor(dir, yield* Effect.promise(closedPort), { mlflow_experiment_id: "42" })
      expect(Tracing.enabled(cfg)).toBe(false)
      expect(Tracing.layer(cfg)).toBe(Layer.empty)
      const scope = yield* Scope.make()
      const { url } = yield* startServer(cfg, scope)
      const chat = yield* post(url, "/v1/chat/completions", "untraced", { model: "claude-3-haiku", messages: [{ role: "user", content: PROMPT }] })
      expect(chat.status, chat.text).toBe(200)
      yield* Scope.close(scope, Exit.void)
      yield* Effect.sleep("200 millis")
      expect(stub.exports).toEqual([])
    }).pipe(Effect.scoped), { timeout: 60_000 })
})

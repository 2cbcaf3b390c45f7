/**
 * The provider × mode × fault matrix: every provider adapter, through its real client library,
 * against its wire-level stub on loopback, behind the real server, driven by the official `openai`
 * client. Each cell asserts what the client sees, the audit rows of the request and what the
 * budget was charged (and that nothing stays reserved).
 */
import { describe, expect, layer } from "@effect/vitest"
import { Context, Effect, Layer, Option } from "effect"
import OpenAI from "openai"
import { ModelCatalog, Money } from "@tidyllm/core"
import type { Config } from "@tidyllm/core"
import { AuditLog, BudgetLedger } from "@tidyllm/corporate-llm"
import { startAnthropicStub } from "../../../packages/providers/test/stubs/AnthropicStub.js"
import { startBedrockStub } from "../../../packages/providers/test/stubs/BedrockScenarioStub.js"
import { startMlflowStub } from "../../../packages/providers/test/stubs/MlflowStub.js"
import { startOpenAiStub } from "../../../packages/providers/test/stubs/OpenAiStub.js"
import { fixture, type Scenario, type StubHandle } from "../../../packages/providers/test/stubs/Scenario.js"
import * as Layers from "../src/Layers.js"
import * as Testing from "../src/Testing.js"

class Stub extends Context.Tag("test/Stub")<Stub, StubHandle>() {}

const SECRET = "sk-matrix-secret-0123456789"

interface Target {
  readonly provider: string
  readonly model: string
  readonly start: () => Promise<StubHandle>
  readonly providers: (url: string) => Record<string, unknown>
  readonly models?: ReadonlyArray<Config.GatewayConfigInput["models"] extends infer M ? M extends ReadonlyArray<infer E> ? E : never : never>
}

const targets: ReadonlyArray<Target> = [
  { provider: "openai", model: "gpt-4o-mini", start: startOpenAiStub, providers: (url) => ({ openai: { api_key: SECRET, base_url: url } }) },
  {
    provider: "vllm", model: "llama-local", start: startOpenAiStub,
    providers: (url) => ({ openai_compatible: { vllm: { base_url: url } } }),
    models: [{ id: "llama-local", provider_ids: { vllm: "meta-llama/Llama-3.1-8B-Instruct" }, input_usd_per_million: 0.5, output_usd_per_million: 1.5, context_window: 32_000, max_output_tokens: 4096 }]
  },
  { provider: "anthropic", model: "claude-3-haiku", start: () => startAnthropicStub(), providers: (url) => ({ anthropic: { api_key: SECRET, base_url: url } }) },
  {
    provider: "mlflow", model: "team-chat", start: () => startMlflowStub(),
    providers: (url) => ({ mlflow: { gateway_url: url } }),
    models: [{ id: "team-chat", provider_ids: { mlflow: "chat" }, input_usd_per_million: 3, output_usd_per_million: 15, context_window: 200_000, max_output_tokens: 4096 }]
  },
  {
    provider: "bedrock", model: "claude-3-haiku", start: startBedrockStub,
    providers: (url) => ({ bedrock: { region: "us-east-1", endpoint: url, access_key_id: "AKIDMATRIX", secret_access_key: SECRET } })
  }
]

const TIMEOUT_SECONDS = 0.6

const configFor = (t: Target, url: string) => Testing.config("/nonexistent-unused", {
  corporate_llm: { default_provider: t.provider, default_model: t.model, require_reason: true, budget_slice_fraction: 0 },
  ai_processing: { enable_caching: false, max_retries: 1, retry_delay_base: 0.001, timeout_seconds: TIMEOUT_SECONDS, circuit_breaker_failures: 0 },
  providers: t.providers(url),
  ...(t.models === undefined ? {} : { models: t.models })
})

const serverFor = (t: Target) =>
  Layer.unwrapScoped(Effect.gen(function*() {
    const stub = yield* Effect.acquireRelease(Effect.promise(t.start), (s) => Effect.promise(s.close))
    const cfg = configFor(t, stub.url)
    return Testing.layerWith(cfg, Layers.gateways(cfg, Layers.storeMemory)).pipe(Layer.merge(Layer.succeed(Stub, stub)))
  }))

/** What the client must see, the audit statuses of the request in order, and whether it is charged. */
interface Expected {
  readonly http: number
  readonly audit: ReadonlyArray<AuditLog.AuditStatus>
  /** `full`: the fixture's usage; `partial`: more than zero, at most the worst case; `none`: nothing. */
  readonly charge: "full" | "partial" | "none"
}

const expected = (scenario: Scenario, stream: boolean): Expected => {
  switch (scenario) {
    case "success": case "tool_call": return { http: 200, audit: ["success"], charge: "full" }
    case "throttle_once": return { http: 200, audit: ["error", "success"], charge: "full" }
    case "server_error": return { http: 502, audit: ["error", "error"], charge: "none" }
    // Not retried: the upstream said the request itself is bad.
    case "bad_request": return { http: 400, audit: ["error"], charge: "none" }
    // Both attempts timed out: 504.
    case "hang": return { http: 504, audit: ["error", "error"], charge: "none" }
    // Non-stream: no byte came back, so it is retried. Stream: text reached the client, so the stream ends with an error event.
    case "reset_mid_stream": return stream ? { http: 200, audit: ["stream_error"], charge: "partial" } : { http: 502, audit: ["error", "error"], charge: "none" }
  }
}

const cells: ReadonlyArray<readonly [Scenario, boolean]> = (["success", "tool_call", "throttle_once", "server_error", "bad_request", "hang", "reset_mid_stream"] as const)
  .flatMap((s) => [[s, false], [s, true]] as const)

const globalScope = (limit: number): BudgetLedger.Scope => ({ key: "global", period: "day", limit: Money.fromUsd(limit) })

const eventually = <A>(self: Effect.Effect<A>, ok: (a: A) => boolean, tries = 50): Effect.Effect<A> =>
  Effect.flatMap(self, (a) => (ok(a) || tries <= 0 ? Effect.succeed(a) : Effect.zipRight(Effect.sleep("20 millis"), eventually(self, ok, tries - 1))))

for (const t of targets) {
  layer(serverFor(t), { timeout: 60_000, excludeTestServices: true })(`provider ${t.provider}`, (it) => {
    describe.each(cells)("%s, stream %s", (scenario, stream) => {
      it.effect("client outcome, audit rows and settled cost", () =>
        Effect.gen(function*() {
          const url = yield* Testing.ServerUrl
          const stub = yield* Stub
          const audit = yield* AuditLog.AuditLog
          const ledger = yield* BudgetLedger.BudgetLedger
          const catalog = yield* ModelCatalog.ModelCatalog
          const model = Option.getOrThrow(catalog.resolve(t.model))
          const want = expected(scenario, stream)
          stub.setScenario(scenario)
          const abortedBefore = stub.aborted()
          const [before] = yield* Effect.orDie(ledger.status([globalScope(100)]))
          const requestId = `matrix-${t.provider}-${scenario}-${stream ? "s" : "n"}-${Date.now()}`
          const client = new OpenAI({
            baseURL: `${url}/v1`, apiKey: "x", maxRetries: 0, timeout: 20_000,
            defaultHeaders: { "x-tidyllm-reason": "provider matrix", "x-request-id": requestId }
          })
          const params = {
            model: t.model,
            messages: [{ role: "user" as const, content: "Say hello" }],
            max_tokens: 64,
            ...(scenario === "tool_call"
              ? { tools: [{ type: "function" as const, function: { name: fixture.tool.name, parameters: { type: "object", properties: { city: { type: "string" } } } } }] }
              : {})
          }
          const outcome = yield* Effect.promise(async () => {
            let text = ""
            let usage: OpenAI.CompletionUsage | undefined
            let toolCall: { name?: string | undefined; arguments: string } | undefined
            try {
              if (stream) {
                const s = await client.chat.completions.create({ ...params, stream: true, stream_options: { include_usage: true } })
                for await (const chunk of s) {
                  text += chunk.choices[0]?.delta.content ?? ""
                  for (const d of chunk.choices[0]?.delta.tool_calls ?? []) {
                    toolCall = { name: toolCall?.name ?? d.function?.name, arguments: (toolCall?.arguments ?? "") + (d.function?.arguments ?? "") }
                  }
                  if (chunk.usage) usage = chunk.usage
                }
              } else {
                const r = await client.chat.completions.create(params)
                text = r.choices[0]?.message.content ?? ""
                usage = r.usage
                const call = r.choices[0]?.message.tool_calls?.[0]
                if (call?.type === "function") toolCall = { name: call.function.name, arguments: call.function.arguments }
              }
              return { ok: true as const, text, usage, toolCall }
            } catch (e) {
              return { ok: false as const, text, error: e }
            }
          })

          // What the client saw.
          if (want.http === 200 && want.audit.at(-1) === "success") {
            expect(outcome.ok, String(outcome.ok ? "" : outcome.error)).toBe(true)
            if (!outcome.ok) return
            if (scenario === "tool_call") {
              expect(outcome.toolCall?.name).toBe(fixture.tool.name)
              expect(JSON.parse(outcome.toolCall?.arguments ?? "null")).toEqual(JSON.parse(fixture.tool.arguments))
            } else {
              expect(outcome.text).toBe(fixture.text)
            }
            expect(outcome.usage).toMatchObject({ prompt_tokens: fixture.usage.input_tokens, completion_tokens: fixture.usage.output_tokens })
          } else if (want.audit.includes("stream_error")) {
            // A cut stream: the text that arrived, then the client library raises on the error event.
            expect(outcome.ok).toBe(false)
            expect(outcome.text).toBe(fixture.textChunks.slice(0, fixture.cutAfterChunks).join(""))
            if (!outcome.ok) {
              expect(outcome.error).toBeInstanceOf(OpenAI.APIError)
              expect(String((outcome.error as Error).message)).toMatch(/upstream|stream|connection|terminated|reset/i)
            }
          } else {
            expect(outcome.ok).toBe(false)
            if (!outcome.ok) {
              expect(outcome.error).toBeInstanceOf(OpenAI.APIError)
              expect((outcome.error as InstanceType<typeof OpenAI.APIError>).status).toBe(want.http)
              expect(String(outcome.error)).not.toContain(SECRET)
            }
          }

          // The audit rows of this request, oldest first.
          const rows = [...yield* Effect.orDie(audit.list({ limit: 10, request_id: requestId }))].sort((a, b) => a.attempt - b.attempt)
          expect(rows.map((r) => r.status)).toEqual(want.audit)
          for (const r of rows) {
            expect(r.provider).toBe(t.provider)
            expect(JSON.stringify(r)).not.toContain(SECRET)
          }
          const charged = rows.reduce((n, r) => Money.add(n, r.cost), Money.zero)
          const full = ModelCatalog.cost(model, fixture.usage)
          switch (want.charge) {
            case "full":
              expect(charged).toBe(full)
              expect(rows.at(-1)).toMatchObject({ input_tokens: fixture.usage.input_tokens, output_tokens: fixture.usage.output_tokens })
              break
            case "partial": {
              const last = rows.at(-1)
              expect(last?.output_tokens).toBeGreaterThan(0)
              expect(charged).toBeGreaterThan(0)
              expect(charged).toBeLessThanOrEqual(ModelCatalog.cost(model, { input_tokens: 1000, output_tokens: 64 }))
              break
            }
            case "none":
              expect(charged).toBe(Money.zero)
          }
          // The ledger moved by exactly what was audited, and holds no reservation.
          const [after] = yield* Effect.orDie(ledger.status([globalScope(100)]))
          expect((after?.spent ?? 0) - (before?.spent ?? 0)).toBe(charged)
          expect(after?.reserved).toBe(0)
          expect(yield* Effect.orDie(ledger.openReservations)).toBe(0)
          // A timed-out call was aborted upstream, not left running.
          if (scenario === "hang") {
            const aborted = yield* eventually(Effect.sync(() => stub.aborted() - abortedBefore), (n) => n >= 2)
            expect(aborted).toBe(2)
          }
        }))
    })
  })
}

/** A client that goes away mid-stream: the upstream request is cancelled, the row says `cancelled`, the reservation is settled. */
const slowAnthropic: Target = {
  provider: "anthropic", model: "claude-3-haiku",
  start: () => startAnthropicStub({ eventDelayMs: 150 }),
  providers: (url) => ({ anthropic: { api_key: SECRET, base_url: url } })
}

layer(serverFor(slowAnthropic), { timeout: 30_000, excludeTestServices: true })("a client gone mid-stream", (it) => {
  it.effect("cancels the upstream call, audits `cancelled` with the delivered tokens and leaves nothing reserved", () =>
    Effect.gen(function*() {
      const url = yield* Testing.ServerUrl
      const stub = yield* Stub
      const audit = yield* AuditLog.AuditLog
      const ledger = yield* BudgetLedger.BudgetLedger
      stub.setScenario("success")
      const requestId = `matrix-disconnect-${Date.now()}`
      const controller = new AbortController()
      const received = yield* Effect.promise(async () => {
        const response = await fetch(`${url}/v1/chat/completions`, {
          method: "POST",
          signal: controller.signal,
          headers: { "content-type": "application/json", "x-tidyllm-reason": "disconnect", "x-request-id": requestId },
          body: JSON.stringify({ model: "claude-3-haiku", stream: true, max_tokens: 64, messages: [{ role: "user", content: "Say hello" }] })
        })
        if (response.body === null) throw new Error("no response body")
        const reader: ReadableStreamDefaultReader<Uint8Array> = response.body.getReader()
        const decoder = new TextDecoder()
        let text = ""
        // Read until the first piece of the answer has arrived, then hang up.
        while (!text.includes("Hello")) {
          const chunk = await reader.read()
          if (chunk.done) break
          text += decoder.decode(chunk.value, { stream: true })
        }
        controller.abort()
        return text
      })
      expect(received).toContain("Hello")
      // The server noticed, interrupted the stream and the adapter aborted its upstream request.
      const aborted = yield* eventually(Effect.sync(() => stub.aborted()), (n) => n >= 1, 100)
      expect(aborted).toBe(1)
      const rows = yield* eventually(Effect.orDie(audit.list({ limit: 10, request_id: requestId })), (r) => r.length > 0, 100)
      expect(rows.map((r) => r.status)).toEqual(["cancelled"])
      expect(rows[0]?.output_tokens).toBeGreaterThan(0)
      expect(rows[0]?.cost).toBeGreaterThan(0)
      expect(yield* Effect.orDie(ledger.openReservations)).toBe(0)
      const [status] = yield* Effect.orDie(ledger.status([globalScope(100)]))
      expect(status?.reserved).toBe(0)
      expect(status?.spent).toBe(rows[0]?.cost)
    }))
})

/**
 * Tool calls and embeddings through the real server (mock provider, embedded PGlite), driven by
 * the official `openai` client: what an application written against OpenAI sees.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Layer } from "effect"
import OpenAI from "openai"
import { AuditLog } from "@tidyllm/corporate-llm"
import * as Testing from "../src/Testing.js"

const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "tidyllm-tools-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

const ServerLive = Layer.unwrapScoped(Effect.map(tempDir, (dir) => Testing.layer(Testing.config(dir))))

const client = (url: string) =>
  new OpenAI({ baseURL: `${url}/v1`, apiKey: "x", maxRetries: 0, defaultHeaders: { "x-tidyllm-reason": "tools test" } })

const weather: OpenAI.Chat.ChatCompletionTool = {
  type: "function",
  function: { name: "get_weather", description: "Weather for a city", parameters: { type: "object", properties: { city: { type: "string" } } } }
}

const auditRows = Effect.flatMap(AuditLog.AuditLog, (audit) => Effect.orDie(audit.list({ limit: 100 })))

layer(ServerLive, { timeout: 60_000 })("tools and embeddings over HTTP", (it) => {
  describe("tool calls", () => {
    it.effect("non-stream: the client gets tool_calls with content null, then the follow-up with the result answers in text", () =>
      Effect.gen(function*() {
        const url = yield* Testing.ServerUrl
        const openai = client(url)
        const first = yield* Effect.promise(() =>
          openai.chat.completions.create({
            model: "claude-3-haiku",
            messages: [{ role: "user", content: "What is the weather in Paris?" }],
            tools: [weather],
            tool_choice: "required"
          }))
        const choice = first.choices[0]
        expect(choice?.finish_reason).toBe("tool_calls")
        expect(choice?.message.content).toBeNull()
        const call = choice?.message.tool_calls?.[0]
        expect(call?.type).toBe("function")
        if (call?.type !== "function") throw new Error("expected a function call")
        expect(call.function.name).toBe("get_weather")
        expect(JSON.parse(call.function.arguments)).toEqual({})
        const second = yield* Effect.promise(() =>
          openai.chat.completions.create({
            model: "claude-3-haiku",
            messages: [
              { role: "user", content: "What is the weather in Paris?" },
              { role: "assistant", content: null, tool_calls: [call] },
              { role: "tool", tool_call_id: call.id, content: "sunny, 21 C" }
            ],
            tools: [weather]
          }))
        expect(second.choices[0]?.finish_reason).toBe("stop")
        expect(second.choices[0]?.message.content).toContain("sunny, 21 C")
      }))

    it.effect("stream: tool-call deltas arrive in OpenAI's shape and the client's stream helper assembles them", () =>
      Effect.gen(function*() {
        const url = yield* Testing.ServerUrl
        const openai = client(url)
        const final = yield* Effect.promise(async () => {
          const runner = openai.chat.completions.stream({
            model: "claude-3-haiku",
            messages: [{ role: "user", content: "Use get_weather for Oslo" }],
            tools: [weather],
            stream_options: { include_usage: true }
          })
          return runner.finalChatCompletion()
        })
        const call = final.choices[0]?.message.tool_calls?.[0]
        expect(final.choices[0]?.finish_reason).toBe("tool_calls")
        expect(call?.type === "function" ? call.function.name : undefined).toBe("get_weather")
        expect(final.usage?.completion_tokens).toBeGreaterThan(0)
      }))

    it.effect("a bad tool definition or an orphan tool message is a 400 naming the field", () =>
      Effect.gen(function*() {
        const url = yield* Testing.ServerUrl
        const openai = client(url)
        const badName = yield* Effect.flip(Effect.tryPromise(() =>
          openai.chat.completions.create({
            model: "claude-3-haiku",
            messages: [{ role: "user", content: "x" }],
            tools: [{ type: "function", function: { name: "has space" } }]
          })))
        expect(badName.cause).toBeInstanceOf(OpenAI.BadRequestError)
        expect((badName.cause as InstanceType<typeof OpenAI.BadRequestError>).param).toBe("tools[0].function.name")
        const orphan = yield* Effect.flip(Effect.tryPromise(() =>
          openai.chat.completions.create({
            model: "claude-3-haiku",
            messages: [{ role: "user", content: "x" }, { role: "tool", content: "r" } as unknown as OpenAI.Chat.ChatCompletionMessageParam]
          })))
        expect((orphan.cause as InstanceType<typeof OpenAI.BadRequestError>).param).toBe("messages[1].tool_call_id")
      }))
  })

  describe("providers in /health", () => {
    it.effect("providers without credentials are listed as unconfigured with what is missing, and the server still serves", () =>
      Effect.gen(function*() {
        const url = yield* Testing.ServerUrl
        const health = yield* Effect.promise(async () => (await (await fetch(`${url}/health`)).json()) as {
          services: { corporate_llm: { providers: Record<string, { configured: boolean; detail: string }> } }
        })
        const providers = health.services.corporate_llm.providers
        expect(providers["mock"]?.configured).toBe(true)
        expect(providers["openai"]?.configured).toBe(false)
        expect(providers["openai"]?.detail).toMatch(/OPENAI_API_KEY/)
        expect(providers["anthropic"]?.configured).toBe(false)
        expect(providers["anthropic"]?.detail).toMatch(/ANTHROPIC_API_KEY/)
        expect(providers["bedrock"]?.configured).toBe(false)
      }))
  })

  describe("POST /v1/embeddings", () => {
    it.effect("the openai client (base64 by default) and float both decode to the same vectors; usage, cost and audit row", () =>
      Effect.gen(function*() {
        const url = yield* Testing.ServerUrl
        const openai = client(url)
        const viaClient = yield* Effect.promise(() => openai.embeddings.create({ model: "titan-embed", input: ["first text", "second text"], dimensions: 6 }))
        expect(viaClient.data).toHaveLength(2)
        expect(viaClient.data[1]?.index).toBe(1)
        expect(viaClient.data[0]?.embedding).toHaveLength(6)
        expect(viaClient.usage.prompt_tokens).toBeGreaterThan(0)
        const floats = yield* Effect.promise(() => openai.embeddings.create({ model: "titan-embed", input: ["first text", "second text"], dimensions: 6, encoding_format: "float" }))
        // base64 carries float32: equal to float precision.
        for (const [i, d] of floats.data.entries()) {
          const b = viaClient.data[i]?.embedding ?? []
          d.embedding.forEach((x, j) => expect(b[j]).toBeCloseTo(x, 6))
        }
        const rows = (yield* auditRows).filter((r) => r.model === "titan-embed")
        expect(rows.length).toBe(2)
        expect(rows.every((r) => r.status === "success" && r.output_tokens === 0 && r.cost > 0)).toBe(true)
      }))

    it.effect("refusals: a chat model, token-array input, empty input, no reason", () =>
      Effect.gen(function*() {
        const url = yield* Testing.ServerUrl
        const post = (body: unknown, headers: Record<string, string> = { "x-tidyllm-reason": "r" }) =>
          Effect.promise(async () => {
            const r = await fetch(`${url}/v1/embeddings`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) })
            return { status: r.status, json: (await r.json()) as { error: { param?: string; type: string } } }
          })
        const chat = yield* post({ model: "claude-3-haiku", input: "x" })
        expect(chat.status).toBe(400)
        expect(chat.json.error.param).toBe("model")
        const tokens = yield* post({ model: "titan-embed", input: [[1, 2, 3]] })
        expect(tokens.json.error.param).toBe("input[0]")
        const empty = yield* post({ model: "titan-embed", input: "" })
        expect(empty.json.error.param).toBe("input")
        const noReason = yield* post({ model: "titan-embed", input: "x" }, {})
        expect(noReason.status).toBe(400)
        expect(noReason.json.error.type).toBe("policy_rejected")
      }))
  })
})

import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Option, Ref, Stream } from "effect"
import { ModelCatalog, Money } from "@tidyllm/core"
import type { LlmRequest } from "@tidyllm/core"
import type { CorporateLlmGateway, LlmProvider } from "@tidyllm/corporate-llm"
import { ctx, make, ok, providerError, scripted } from "./harness.js"

const catalog = ModelCatalog.make(ModelCatalog.defaultModels)
const haiku = Option.getOrThrow(catalog.resolve("claude-3-haiku"))
const titan = Option.getOrThrow(catalog.resolve("titan-embed"))

const weather: LlmRequest.ToolDefinition = {
  type: "function",
  function: { name: "get_weather", description: "Weather for a city", parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } }
}

const toolCall: LlmRequest.ToolCall = { id: "call_1", type: "function", function: { name: "get_weather", arguments: "{\"city\":\"Paris\"}" } }

describe("gateway #1: tool calls", () => {
  it.effect("passes tools, tool_choice, response_format and seed to the provider and returns its tool calls", () =>
    Effect.gen(function*() {
      const seen = yield* Ref.make<Array<LlmProvider.ProviderCall>>([])
      const base = yield* scripted("p1", () => Effect.succeed({ ...ok("", 50, 9), finish_reason: "tool_calls", tool_calls: [toolCall] }))
      const provider: LlmProvider.LlmProvider = { ...base.provider, complete: (call) => Ref.update(seen, (a) => [...a, call]).pipe(Effect.zipRight(base.provider.complete(call))) }
      const { gateway, rows } = yield* make({}, [provider])
      const { response } = yield* gateway.process({
        provider: "p1", model: "claude-3-haiku", reason: "tools", tools: [weather], tool_choice: "required",
        response_format: { type: "json_object" }, seed: 7,
        messages: [{ role: "user", content: "Weather in Paris?" }]
      }, ctx())
      const [call] = yield* Ref.get(seen)
      expect(call?.tools).toEqual([weather])
      expect(call?.tool_choice).toBe("required")
      expect(call?.response_format).toEqual({ type: "json_object" })
      expect(call?.seed).toBe(7)
      expect(response.data?.tool_calls).toEqual([toolCall])
      expect(response.data?.finish_reason).toBe("tool_calls")
      expect((yield* Ref.get(rows))[0]).toMatchObject({ status: "success", input_tokens: 50, output_tokens: 9 })
    }))

  it.effect("a conversation with a tool call and its result reaches the provider unchanged", () =>
    Effect.gen(function*() {
      const seen = yield* Ref.make<Array<LlmProvider.ProviderCall>>([])
      const base = yield* scripted("p1", () => Effect.succeed(ok("It is sunny.")))
      const provider: LlmProvider.LlmProvider = { ...base.provider, complete: (call) => Ref.update(seen, (a) => [...a, call]).pipe(Effect.zipRight(base.provider.complete(call))) }
      const { gateway } = yield* make({}, [provider])
      const messages: ReadonlyArray<LlmRequest.ChatMessage> = [
        { role: "user", content: "Weather in Paris?" },
        { role: "assistant", content: "", tool_calls: [toolCall] },
        { role: "tool", content: "{\"sky\":\"sunny\"}", tool_call_id: "call_1" }
      ]
      yield* gateway.process({ provider: "p1", model: "claude-3-haiku", reason: "tools", tools: [weather], messages }, ctx())
      expect((yield* Ref.get(seen))[0]?.messages).toEqual(messages)
    }))

  it.effect("streams tool-call pieces to the client and assembles them in Done", () =>
    Effect.gen(function*() {
      const { provider } = yield* scripted("p1", () => Effect.succeed(ok()), () =>
        Stream.make<Array<LlmProvider.StreamEvent>>(
          { _tag: "ToolCallDelta", index: 0, id: "call_1", name: "get_weather", arguments: "" },
          { _tag: "ToolCallDelta", index: 0, arguments: "{\"city\":" },
          { _tag: "ToolCallDelta", index: 0, arguments: "\"Paris\"}" },
          { _tag: "Usage", usage: { input_tokens: 40, output_tokens: 12 } },
          { _tag: "Finish", finish_reason: "tool_calls" }
        ))
      const { gateway, rows, ledger } = yield* make({}, [provider])
      const events = Chunk.toReadonlyArray(yield* Stream.runCollect(gateway.processStream({
        provider: "p1", model: "claude-3-haiku", reason: "tools", tools: [weather], prompt: "Weather in Paris?"
      }, ctx())))
      expect(events.filter((e) => e._tag === "ToolCallDelta")).toHaveLength(3)
      const done = events.at(-1) as Extract<CorporateLlmGateway.StreamEvent, { _tag: "Done" }>
      expect(done._tag).toBe("Done")
      expect(done.response.data?.tool_calls).toEqual([toolCall])
      expect(done.response.data?.finish_reason).toBe("tool_calls")
      expect((yield* Ref.get(rows))[0]).toMatchObject({ status: "success", input_tokens: 40, output_tokens: 12 })
      expect(yield* ledger.openReservations).toBe(0)
    }))

  it.effect("the mock calls a tool when asked to, deterministically, streamed and not", () =>
    Effect.gen(function*() {
      const { gateway } = yield* make()
      const request: LlmRequest.LLMRequest = { reason: "demo", tools: [weather], tool_choice: { type: "function", function: { name: "get_weather" } }, prompt: "Weather?" }
      const a = yield* gateway.process(request, ctx())
      const b = yield* gateway.process(request, ctx("req-2"))
      expect(a.response.data?.tool_calls?.[0]?.function.name).toBe("get_weather")
      expect(a.response.data?.tool_calls).toEqual(b.response.data?.tool_calls)
      const events = Chunk.toReadonlyArray(yield* Stream.runCollect(gateway.processStream(request, ctx("req-3"))))
      const done = events.at(-1) as Extract<CorporateLlmGateway.StreamEvent, { _tag: "Done" }>
      expect(done.response.data?.tool_calls).toEqual(a.response.data?.tool_calls)
      // No tool is called after the tool's result came back.
      const after = yield* gateway.process({
        reason: "demo", tools: [weather],
        messages: [{ role: "user", content: "get_weather please" }, { role: "assistant", content: "", tool_calls: a.response.data?.tool_calls ?? [] }, { role: "tool", content: "sunny", tool_call_id: "x" }]
      }, ctx("req-4"))
      expect(after.response.data?.tool_calls).toBeUndefined()
      expect(after.response.data?.response).toContain("sunny")
    }))

  it.effect("misused tool messages and choices are typed 400s naming the field, and audited", () =>
    Effect.gen(function*() {
      const { gateway, rows } = yield* make()
      const noId = yield* Effect.flip(gateway.process({ reason: "r", messages: [{ role: "user", content: "x" }, { role: "tool", content: "r" }] }, ctx()))
      expect(noId).toMatchObject({ _tag: "InvalidRequest", field: "messages[1].tool_call_id" })
      const userCalls = yield* Effect.flip(gateway.process({ reason: "r", messages: [{ role: "user", content: "x", tool_calls: [toolCall] }] }, ctx()))
      expect(userCalls).toMatchObject({ _tag: "InvalidRequest", field: "messages[0].tool_calls" })
      const choiceWithoutTools = yield* Effect.flip(gateway.process({ reason: "r", prompt: "x", tool_choice: "required" }, ctx()))
      expect(choiceWithoutTools).toMatchObject({ _tag: "InvalidRequest", field: "tool_choice" })
      const unknownChoice = yield* Effect.flip(gateway.process({ reason: "r", prompt: "x", tools: [weather], tool_choice: { type: "function", function: { name: "nope" } } }, ctx()))
      expect(unknownChoice).toMatchObject({ _tag: "InvalidRequest", field: "tool_choice.function.name" })
      const duplicate = yield* Effect.flip(gateway.process({ reason: "r", prompt: "x", tools: [weather, weather] }, ctx()))
      expect(duplicate).toMatchObject({ _tag: "InvalidRequest", field: "tools" })
      expect((yield* Ref.get(rows)).map((r) => r.status)).toEqual(Array(5).fill("rejected_policy"))
    }))

  it.effect("tool definitions count in the worst case reserved: a cap that fits the prompt alone refuses the tools", () =>
    Effect.gen(function*() {
      const big: LlmRequest.ToolDefinition = { type: "function", function: { name: "big", description: "d".repeat(4000) } }
      const prompt = { reason: "r", prompt: "hi", model: "claude-3-haiku", max_tokens: 10 }
      const bare = ModelCatalog.cost(haiku, { input_tokens: 16 + 8 + 2, output_tokens: 10 })
      // A cap just above the bare request's worst case.
      const { gateway } = yield* make({ max_cost_per_request_usd: Number(Money.toUsdString(bare)) * 2 })
      yield* gateway.process(prompt, ctx())
      const refused = yield* Effect.flip(gateway.process({ ...prompt, tools: [big] }, ctx()))
      expect(refused._tag).toBe("CostCapExceeded")
    }))
})

describe("gateway #1: embeddings", () => {
  it.effect("embeds through the provider, reserves the worst case, settles the real tokens and audits the inputs", () =>
    Effect.gen(function*() {
      const { gateway, rows, ledger } = yield* make()
      const answer = yield* gateway.embed({ model: "titan-embed", input: ["alpha", "beta gamma"], reason: "search index", dimensions: 4 }, ctx())
      expect(answer.vectors).toHaveLength(2)
      expect(answer.vectors[0]).toHaveLength(4)
      expect(Math.hypot(...(answer.vectors[0] ?? []))).toBeCloseTo(1, 6)
      const again = yield* gateway.embed({ model: "titan-embed", input: "alpha", reason: "search index", dimensions: 4 }, ctx("req-2"))
      expect(again.vectors[0]).toEqual(answer.vectors[0])
      const cost = ModelCatalog.cost(titan, { input_tokens: answer.usage.input_tokens, output_tokens: 0 })
      expect(answer.metadata.cost_usd).toBe(Money.toUsdString(cost))
      const audit = yield* Ref.get(rows)
      expect(audit[0]).toMatchObject({ status: "success", model: "titan-embed", input_tokens: answer.usage.input_tokens, output_tokens: 0, cost, reason: "search index" })
      expect(audit[0]?.prompt).toContain("beta gamma")
      expect(yield* ledger.openReservations).toBe(0)
      const [global] = yield* ledger.status([{ key: "global", period: "day", limit: Money.fromUsd(100) }])
      expect(global?.spent).toBe(Money.add(cost, ModelCatalog.cost(titan, { input_tokens: again.usage.input_tokens, output_tokens: 0 })))
    }))

  it.effect("a chat model, a provider without embeddings, a missing reason and a budget without room are refused and audited", () =>
    Effect.gen(function*() {
      const { provider } = yield* scripted("p1", () => Effect.succeed(ok()))
      const { gateway, rows, ledger } = yield* make({ budget_limit_daily_usd: 0 }, [provider])
      const chat = yield* Effect.flip(gateway.embed({ model: "claude-3-haiku", input: "x", reason: "r" }, ctx()))
      expect(chat).toMatchObject({ _tag: "InvalidRequest", field: "model" })
      const noEmbed = yield* Effect.flip(gateway.embed({ model: "titan-embed", input: "x", reason: "r", provider: "p1" }, ctx()))
      expect(noEmbed).toMatchObject({ _tag: "InvalidRequest", field: "provider" })
      const noReason = yield* Effect.flip(gateway.embed({ model: "titan-embed", input: "x" }, ctx()))
      expect(noReason._tag).toBe("PolicyRejected")
      const broke = yield* Effect.flip(gateway.embed({ model: "titan-embed", input: "x", reason: "r" }, ctx()))
      expect(broke._tag).toBe("BudgetExceeded")
      expect((yield* Ref.get(rows)).map((r) => r.status)).toEqual(["rejected_policy", "rejected_policy", "rejected_policy", "rejected_budget"])
      expect(yield* ledger.openReservations).toBe(0)
    }))

  it.effect("a failing embedding call releases its reservation and is audited as an error", () =>
    Effect.gen(function*() {
      const { provider } = yield* scripted("p1", () => Effect.succeed(ok()))
      const failing: LlmProvider.LlmProvider = {
        ...provider,
        embed: () => Effect.fail(providerError("server"))
      }
      const { gateway, rows, ledger } = yield* make({}, [failing])
      const e = yield* Effect.flip(gateway.embed({ model: "titan-embed", input: "x", reason: "r", provider: "p1" }, ctx()))
      expect(e._tag).toBe("ProviderError")
      expect((yield* Ref.get(rows))[0]).toMatchObject({ status: "error", cost: 0 })
      expect(yield* ledger.openReservations).toBe(0)
    }))
})

describe("gateway #1: audit redaction", () => {
  it.effect("redacted audit rows mask built-in PII and configured national-id patterns, tool-call arguments included", () =>
    Effect.gen(function*() {
      const { gateway, rows } = yield* make({
        audit_level: "redacted",
        redaction_patterns: [{ name: "uk_nino", pattern: "\\b[A-CEGHJ-PR-TW-Z]{2} ?\\d{2} ?\\d{2} ?\\d{2} ?[A-D]\\b", flags: "i" }]
      })
      yield* gateway.process({
        reason: "r",
        messages: [
          { role: "user", content: "Mail jane.doe@example.com, card 4111 1111 1111 1111, NINO AB 12 34 56 C" },
          { role: "assistant", content: "", tool_calls: [{ id: "c1", type: "function", function: { name: "lookup", arguments: "{\"iban\":\"DE89 3704 0044 0532 0130 00\"}" } }] },
          { role: "tool", content: "ok", tool_call_id: "c1" }
        ]
      }, ctx())
      const prompt = (yield* Ref.get(rows))[0]?.prompt ?? ""
      expect(prompt).toContain("[EMAIL]")
      expect(prompt).toContain("[CARD]")
      expect(prompt).toContain("[UK_NINO]")
      expect(prompt).toContain("[IBAN]")
      expect(prompt).toContain("tool call lookup")
      for (const secret of ["jane.doe", "4111 1111", "AB 12 34", "DE89"]) expect(prompt).not.toContain(secret)
    }))
})

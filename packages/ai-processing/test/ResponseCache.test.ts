import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Option, Ref, Stream } from "effect"
import { AiProcessingGateway, ResponseCache } from "@tidyllm/ai-processing"
import type { LlmRequest } from "@tidyllm/core"
import type { LlmProvider } from "@tidyllm/corporate-llm"
import { ctx, ok, providerError, scripted } from "../../corporate-llm/test/harness.js"
import { make, req, runWithClock } from "./harness.js"

const weather: LlmRequest.ToolDefinition = {
  type: "function",
  function: {
    name: "get_weather",
    description: "Weather in a city",
    parameters: { type: "object", properties: { city: { type: "string" }, unit: { type: "string", enum: ["C", "F"] } }, required: ["city"] }
  }
}

const call: LlmRequest.ToolCall = { id: "call_1", type: "function", function: { name: "get_weather", arguments: "{\"city\":\"Zurich\"}" } }

/** A conversation that already went through one tool call. */
const base: LlmRequest.AIRequest = {
  messages: [
    { role: "system", content: "You are terse." },
    { role: "user", content: "Weather in Zurich?" },
    { role: "assistant", content: "", tool_calls: [call] },
    { role: "tool", content: "{\"temp\":21}", tool_call_id: "call_1", name: "get_weather" }
  ],
  model: "claude-3-haiku",
  tools: [weather],
  tool_choice: "auto",
  response_format: { type: "text" },
  seed: 7,
  temperature: 0.2,
  top_p: 0.9,
  stop: ["END"],
  reason: "weather report"
}
const key = (r: LlmRequest.AIRequest, model = "claude-3-haiku", maxTokens = 256, backends: ReadonlyArray<string> = ["p1"]) =>
  AiProcessingGateway.cacheKey(backends, model, r, maxTokens)

const withMessage = (i: number, f: (m: LlmRequest.ChatMessage) => LlmRequest.ChatMessage): LlmRequest.AIRequest => ({
  ...base,
  messages: (base.messages ?? []).map((m, j) => (j === i ? f(m) : m))
})

describe("cacheKey", () => {
  it("ignores what does not change the answer: user, metadata, reason, use_cache, key order of tool schemas", () => {
    const k = key(base)
    expect(key({ ...base, user_id: "bob" })).toBe(k)
    expect(key({ ...base, metadata: { ticket: "R-1" } })).toBe(k)
    expect(key({ ...base, reason: "another reason" })).toBe(k)
    expect(key({ ...base, use_cache: true })).toBe(k)
    const reordered: LlmRequest.ToolDefinition = {
      function: {
        parameters: { required: ["city"], properties: { unit: { enum: ["C", "F"], type: "string" }, city: { type: "string" } }, type: "object" },
        description: "Weather in a city",
        name: "get_weather"
      },
      type: "function"
    }
    expect(key({ ...base, tools: [reordered] })).toBe(k)
  })

  it("changes with every field that changes the answer", () => {
    const k = key(base)
    const variants: ReadonlyArray<readonly [string, string]> = [
      ["model", key(base, "claude-3-sonnet")],
      ["backends", key(base, "claude-3-haiku", 256, ["p1", "p2"])],
      ["team", AiProcessingGateway.cacheKey(["p1"], "claude-3-haiku", base, 256, "alpha")],
      ["another team", AiProcessingGateway.cacheKey(["p1"], "claude-3-haiku", base, 256, "beta")],
      ["max_tokens", key(base, "claude-3-haiku", 100)],
      ["message content", key(withMessage(1, (m) => ({ ...m, content: "Weather in Basel?" })))],
      ["message role", key(withMessage(0, (m) => ({ ...m, role: "user" })))],
      ["tool_calls in history", key(withMessage(2, (m) => ({ ...m, tool_calls: [{ ...call, function: { ...call.function, arguments: "{\"city\":\"Bern\"}" } }] })))],
      ["tool_call_id", key(withMessage(3, (m) => ({ ...m, tool_call_id: "call_2" })))],
      ["message name", key(withMessage(3, (m) => ({ ...m, name: "get_forecast" })))],
      ["tools", key({ ...base, tools: [{ ...weather, function: { ...weather.function, description: "Forecast" } }] })],
      ["tool schema", key({ ...base, tools: [{ ...weather, function: { ...weather.function, parameters: { type: "object" } } }] })],
      ["no tools", key({ ...base, tools: undefined })],
      ["tool_choice", key({ ...base, tool_choice: "required" })],
      ["response_format", key({ ...base, response_format: { type: "json_object" } })],
      ["seed", key({ ...base, seed: 8 })],
      ["temperature", key({ ...base, temperature: 0.3 })],
      ["top_p", key({ ...base, top_p: 0.5 })],
      ["stop", key({ ...base, stop: ["STOP"] })]
    ]
    for (const [field, other] of variants) expect(other, field).not.toBe(k)
    expect(new Set(variants.map(([, v]) => v)).size).toBe(variants.length)
  })

  it("a prompt and the same single user message are one request", () => {
    expect(key({ prompt: "Hi", model: "m" })).toBe(key({ messages: [{ role: "user", content: "Hi" }], model: "m" }))
  })
})

const toolAnswer = (): LlmProvider.Completion => ({ text: "", usage: { input_tokens: 12, output_tokens: 6 }, finish_reason: "tool_calls", tool_calls: [call] })

const toolStream = (): Stream.Stream<LlmProvider.StreamEvent, never> =>
  Stream.make(
    { _tag: "TextDelta" as const, text: "Let me check." },
    { _tag: "ToolCallDelta" as const, index: 0, id: "call_1", name: "get_weather", arguments: "{\"ci" },
    { _tag: "ToolCallDelta" as const, index: 0, arguments: "ty\":\"Zurich\"}" },
    { _tag: "ToolCallDelta" as const, index: 1, id: "call_2", name: "get_time", arguments: "{}" },
    { _tag: "Usage" as const, usage: { input_tokens: 12, output_tokens: 9 } },
    { _tag: "Finish" as const, finish_reason: "tool_calls" }
  )

const toolReq: LlmRequest.AIRequest = { prompt: "Weather in Zurich?", reason: "weather", model: "claude-3-haiku", tools: [weather] }

describe("tool-call answers in the cache", () => {
  it.effect("a non-stream tool-call answer is cached and served back with its tool_calls", () =>
    Effect.gen(function*() {
      const p1 = yield* scripted("p1", () => Effect.succeed(toolAnswer()))
      const { gateway } = yield* make([p1.provider])
      const first = yield* gateway.process(toolReq, ctx())
      expect(first.data?.tool_calls).toEqual([call])
      const second = yield* gateway.process(toolReq, ctx())
      expect(second.metadata.cache_hit).toBe(true)
      expect(second.data).toMatchObject({ response: "", finish_reason: "tool_calls", tool_calls: [call] })
      // A stream of the same request replays the calls whole.
      const events = Chunk.toReadonlyArray(yield* Stream.runCollect(gateway.processStream(toolReq, ctx())))
      expect(events.map((e) => e._tag)).toEqual(["ToolCallDelta", "Done"])
      expect(events[0]).toEqual({ _tag: "ToolCallDelta", index: 0, id: "call_1", name: "get_weather", arguments: "{\"city\":\"Zurich\"}" })
      expect(yield* Ref.get(p1.calls)).toBe(1)
    }))

  it.effect("a streamed tool-call answer is assembled, cached, and replayed as text, whole calls, then Done", () =>
    Effect.gen(function*() {
      const p1 = yield* scripted("p1", () => Effect.succeed(ok()), toolStream)
      const { gateway } = yield* make([p1.provider])
      const first = Chunk.toReadonlyArray(yield* Stream.runCollect(gateway.processStream(toolReq, ctx())))
      expect(first.filter((e) => e._tag === "ToolCallDelta")).toHaveLength(3)
      const again = Chunk.toReadonlyArray(yield* Stream.runCollect(gateway.processStream(toolReq, ctx())))
      expect(again.slice(0, 3)).toEqual([
        { _tag: "Delta", text: "Let me check." },
        { _tag: "ToolCallDelta", index: 0, id: "call_1", name: "get_weather", arguments: "{\"city\":\"Zurich\"}" },
        { _tag: "ToolCallDelta", index: 1, id: "call_2", name: "get_time", arguments: "{}" }
      ])
      const done = again[3]
      expect(done?._tag).toBe("Done")
      if (done?._tag !== "Done") return
      expect(done.response.metadata.cache_hit).toBe(true)
      expect(done.response.data?.tool_calls?.map((c) => c.function.name)).toEqual(["get_weather", "get_time"])
      // The non-stream path reads the same entry.
      const plain = yield* gateway.process(toolReq, ctx())
      expect(plain.metadata.cache_hit).toBe(true)
      expect(plain.data?.response).toBe("Let me check.")
      expect(plain.data?.tool_calls?.[0]?.function.arguments).toBe("{\"city\":\"Zurich\"}")
      expect(yield* Ref.get(p1.calls)).toBe(1)
    }))

  it.effect("answers that did not finish cleanly are not cached", () =>
    Effect.gen(function*() {
      const p1 = yield* scripted("p1", () => Effect.succeed({ ...ok("partial"), finish_reason: "content_filter" }))
      const { gateway } = yield* make([p1.provider])
      yield* gateway.process(req, ctx())
      expect((yield* gateway.process(req, ctx())).metadata.cache_hit).toBe(false)
      // A tool-call finish without calls is not an answer either.
      const p2 = yield* scripted("p1", () => Effect.succeed({ ...ok(""), finish_reason: "tool_calls" }))
      const other = yield* make([p2.provider])
      yield* other.gateway.process(req, ctx())
      expect((yield* other.gateway.process(req, ctx())).metadata.cache_hit).toBe(false)
      expect(yield* Ref.get(p1.calls)).toBe(2)
    }))

  it.effect("a stream that fails after its first token is not cached", () =>
    Effect.gen(function*() {
      const p1 = yield* scripted("p1", () => Effect.succeed(ok()), () =>
        Stream.concat(Stream.make({ _tag: "TextDelta" as const, text: "half an ans" }), Stream.fail(providerError("stream"))))
      const { gateway } = yield* make([p1.provider], { max_retries: 0 })
      const error = yield* Effect.flip(Stream.runDrain(gateway.processStream(req, ctx())))
      expect(error._tag).toBe("ProviderError")
      yield* Effect.flip(Stream.runDrain(gateway.processStream(req, ctx())))
      expect(yield* Ref.get(p1.calls)).toBe(2)
    }))

  it.effect("an entry that lost its tool calls (an adapter that dropped them) is a miss, not a wrong answer", () =>
    Effect.gen(function*() {
      const p1 = yield* scripted("p1", () => Effect.succeed(toolAnswer()))
      const store = yield* ResponseCache.makeMemory
      const lossy: ResponseCache.Service = {
        get: store.get,
        set: (k, v, ttl) => store.set(k, { ...v, tool_calls: undefined }, ttl)
      }
      const { gateway } = yield* make([p1.provider], {}, {}, lossy)
      yield* gateway.process(toolReq, ctx())
      const second = yield* gateway.process(toolReq, ctx())
      expect(second.metadata.cache_hit).toBe(false)
      expect(second.data?.tool_calls).toEqual([call])
    }))
})

describe("a failing cache is a miss, never a failed request", () => {
  const broken: ReadonlyArray<readonly [string, ResponseCache.Service]> = [
    ["get and set fail", { get: () => Effect.fail(new ResponseCache.CacheError({ message: "down" })), set: () => Effect.fail(new ResponseCache.CacheError({ message: "down" })) }],
    ["get and set die", { get: () => Effect.die(new Error("bug")), set: () => Effect.die(new Error("bug")) }],
    ["get and set throw", { get: () => { throw new Error("sync bug") }, set: () => { throw new Error("sync bug") } }],
    ["get and set hang", { get: () => Effect.never, set: () => Effect.never }],
    ["get and set hang uninterruptibly", { get: () => Effect.uninterruptible(Effect.never), set: () => Effect.uninterruptible(Effect.never) }],
    ["get returns garbage", { get: () => Effect.succeed(Option.some({ text: 42 } as unknown as ResponseCache.CachedResponse)), set: () => Effect.void }]
  ]
  for (const [name, cache] of broken) {
    it.effect(`${name}: process and processStream still answer, cache_hit false`, () =>
      Effect.gen(function*() {
        const p1 = yield* scripted("p1", () => Effect.succeed(ok("fresh")), () => Stream.make(
          { _tag: "TextDelta" as const, text: "fresh" }, { _tag: "Finish" as const, finish_reason: "stop" }
        ))
        const { gateway } = yield* make([p1.provider], {}, {}, cache)
        for (let i = 0; i < 2; i++) {
          const response = yield* runWithClock(gateway.process(req, ctx()), 5)
          expect(response.metadata.cache_hit).toBe(false)
          expect(response.data?.response).toBe("fresh")
        }
        const events = Chunk.toReadonlyArray(yield* runWithClock(Stream.runCollect(gateway.processStream(req, ctx())), 5))
        expect(events[0]).toEqual({ _tag: "Delta", text: "fresh" })
        expect(events.at(-1)?._tag === "Done" && events.at(-1)).toMatchObject({ response: { metadata: { cache_hit: false } } })
        expect(yield* Ref.get(p1.calls)).toBe(3)
      }))
  }

  it.effect("a slow write does not hold the response longer than the write wait", () =>
    Effect.gen(function*() {
      const p1 = yield* scripted("p1", () => Effect.succeed(ok("fresh")))
      const writes = yield* Ref.make(0)
      const slow: ResponseCache.Service = {
        get: () => Effect.succeedNone,
        set: () => Effect.never.pipe(Effect.onInterrupt(() => Ref.update(writes, (n) => n + 1)))
      }
      const { gateway } = yield* make([p1.provider], {}, {}, slow)
      // 1 s in 50 ms steps: the response arrives after the 250 ms wait, well before the write's own 10 s limit.
      const response = yield* runWithClock(gateway.process(req, ctx()), 20, "50 millis")
      expect(response.metadata.cache_hit).toBe(false)
      expect(yield* Ref.get(writes)).toBe(0)
    }))
})

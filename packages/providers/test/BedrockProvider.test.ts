import { assert, describe, expect, it } from "@effect/vitest"
import { Errors, type Config, type LlmRequest, type ModelCatalog } from "@tidyllm/core"
import type { LlmProvider } from "@tidyllm/corporate-llm"
import { Chunk, Deferred, Duration, Effect, Either, Fiber, Option, Redacted, Schedule, Stream } from "effect"
import * as Http2 from "node:http2"
import type { AddressInfo } from "node:net"
import * as BedrockProvider from "../src/BedrockProvider.js"
import * as BedrockStub from "./BedrockStub.js"
import { startBedrockStub } from "./stubs/BedrockScenarioStub.js"
import { fixture, scenarios, type Scenario } from "./stubs/Scenario.js"

const modelId = "anthropic.claude-3-haiku-20240307-v1:0"

const model: ModelCatalog.ModelEntry = {
  id: "claude-3-haiku",
  aliases: [],
  provider_ids: { bedrock: modelId },
  kind: "chat",
  input_usd_per_million: 0.25,
  output_usd_per_million: 1.25,
  context_window: 200_000,
  max_output_tokens: 4096
}

const call: LlmProvider.ProviderCall = {
  model,
  model_id: modelId,
  messages: [
    { role: "system", content: "You are terse." },
    { role: "user", content: "Say hi" }
  ],
  max_tokens: 64,
  temperature: 0.2,
  top_p: 0.9,
  stop: ["END"]
}

const settingsFor = (endpoint: string): Config.BedrockSettings => ({
  region: "us-east-1",
  endpoint,
  access_key_id: Redacted.make("AKIDEXAMPLE"),
  secret_access_key: Redacted.make("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
})

/** A stub and a provider whose client talks to it; both closed with the test's scope. */
const setup = Effect.gen(function*() {
  const stub = yield* BedrockStub.make
  const provider = yield* BedrockProvider.make(settingsFor(stub.url))
  return { stub, provider }
})

const textOf = (events: Chunk.Chunk<LlmProvider.StreamEvent>) =>
  Chunk.toReadonlyArray(events).flatMap((e) => (e._tag === "TextDelta" ? [e.text] : [])).join("")

/** The provider's `embed`, which the Bedrock provider has. */
const embedOf = (provider: LlmProvider.LlmProvider) => {
  const embed = provider.embed
  assert(embed !== undefined, "the Bedrock provider embeds")
  return embed
}

/** The tool calls that a stream's `ToolCallDelta`s add up to, as a client assembles them. */
const assembleToolCalls = (events: ReadonlyArray<LlmProvider.StreamEvent>): ReadonlyArray<LlmRequest.ToolCall> => {
  const calls: Array<{ id: string; name: string; arguments: string }> = []
  for (const e of events) {
    if (e._tag !== "ToolCallDelta") continue
    const current = calls[e.index] ?? { id: "", name: "", arguments: "" }
    calls[e.index] = {
      id: e.id ?? current.id,
      name: e.name ?? current.name,
      arguments: current.arguments + e.arguments
    }
  }
  return calls.map((c) => ({ id: c.id, type: "function", function: { name: c.name, arguments: c.arguments } }))
}

/** Waits for a promise the stub resolves, failing the test instead of hanging past `ms`. */
const within = <A>(ms: number, promise: () => Promise<A>) =>
  Effect.promise(promise).pipe(Effect.timeoutFail({ duration: Duration.millis(ms), onTimeout: () => new Error(`nothing within ${ms} ms`) }))

describe("BedrockProvider", () => {
  describe("complete", () => {
    it.scoped("sends a signed Converse request and maps the answer", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup
        stub.reply(BedrockStub.converse(["Hi", " there."], { inputTokens: 12, outputTokens: 3 }))

        const completion = yield* provider.complete(call)

        expect(completion).toEqual({ text: "Hi there.", usage: { input_tokens: 12, output_tokens: 3 }, finish_reason: "stop" })
        expect(stub.requests).toHaveLength(1)
        const req = stub.requests[0]
        assert(req !== undefined)
        expect(req.method).toBe("POST")
        expect(req.path).toBe("/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse")
        expect(req.headers.authorization).toMatch(
          /^AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE\/\d{8}\/us-east-1\/bedrock\/aws4_request, SignedHeaders=.*, Signature=[0-9a-f]{64}$/
        )
        // The SDK's own retries are off: the gateway's policy is the only one.
        expect(req.headers["amz-sdk-request"]).toBe("attempt=1; max=1")
        expect(req.body).toEqual({
          messages: [{ role: "user", content: [{ text: "Say hi" }] }],
          system: [{ text: "You are terse." }],
          inferenceConfig: { maxTokens: 64, temperature: 0.2, topP: 0.9, stopSequences: ["END"] }
        })
      }))

    it.scoped("maps max_tokens to length and omits what the call leaves out", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup
        stub.reply(BedrockStub.converse(["Hel"], { inputTokens: 5, outputTokens: 1 }, "max_tokens"))

        const completion = yield* provider.complete({
          model,
          model_id: modelId,
          messages: [{ role: "user", content: "Say hello" }],
          max_tokens: 1
        })

        expect(completion.finish_reason).toBe("length")
        expect(stub.requests[0]?.body).toEqual({
          messages: [{ role: "user", content: [{ text: "Say hello" }] }],
          inferenceConfig: { maxTokens: 1 }
        })
      }))
  })

  describe("stream", () => {
    it.scoped("streams deltas, then usage and finish", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup
        stub.reply(BedrockStub.eventStream(
          ...BedrockStub.textFrames(["Hel", "lo, ", "world"], { inputTokens: 12, outputTokens: 4 }),
          // Bedrock may add event types; the SDK drops unknown ones.
          BedrockStub.event("somethingNew", { x: 1 })
        ))

        const events = yield* Stream.runCollect(provider.stream(call))

        expect(textOf(events)).toBe("Hello, world")
        expect(Chunk.toReadonlyArray(events).slice(-2)).toEqual([
          { _tag: "Finish", finish_reason: "stop" },
          { _tag: "Usage", usage: { input_tokens: 12, output_tokens: 4 } }
        ])
        const req = stub.requests[0]
        expect(req?.path).toBe("/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse-stream")
        expect(req?.headers.authorization).toMatch(/^AWS4-HMAC-SHA256 /)
        expect(req?.body).toMatchObject({ system: [{ text: "You are terse." }], inferenceConfig: { maxTokens: 64 } })
      }))

    it.scoped("fails with a ProviderError after the deltas sent before a mid-stream exception", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup
        stub.reply(BedrockStub.eventStream(
          BedrockStub.event("messageStart", { role: "assistant" }),
          BedrockStub.event("contentBlockDelta", { contentBlockIndex: 0, delta: { text: "Hel" } }),
          BedrockStub.event("contentBlockDelta", { contentBlockIndex: 0, delta: { text: "lo" } }),
          BedrockStub.exception("throttlingException", "Too many tokens, please wait")
        ))

        const items = Chunk.toReadonlyArray(yield* Stream.runCollect(Stream.either(provider.stream(call))))

        expect(items.flatMap((i) => (Either.isRight(i) ? [i.right] : []))).toEqual([
          { _tag: "TextDelta", text: "Hel" },
          { _tag: "TextDelta", text: "lo" }
        ])
        const last = items.at(-1)
        assert(last !== undefined && Either.isLeft(last))
        expect(last.left).toBeInstanceOf(Errors.ProviderError)
        expect(last.left).toMatchObject({ kind: "throttled", retryable: true, provider: "bedrock", model: modelId })
        expect(last.left.message).toContain("Too many tokens")
      }))
  })

  describe("errors", () => {
    const cases = [
      { status: 429, type: "ThrottlingException", kind: "throttled", retryable: true },
      { status: 400, type: "ValidationException", kind: "validation", retryable: false },
      { status: 500, type: "InternalServerException", kind: "server", retryable: true },
      { status: 503, type: "ServiceUnavailableException", kind: "server", retryable: true },
      { status: 408, type: "ModelTimeoutException", kind: "timeout", retryable: true },
      { status: 403, type: "AccessDeniedException", kind: "auth", retryable: false },
      { status: 424, type: "ModelErrorException", kind: "model", retryable: false },
      { status: 404, type: "ResourceNotFoundException", kind: "not_found", retryable: false }
    ] as const

    for (const c of cases) {
      it.scoped(`${c.status} ${c.type} → ${c.kind}, retryable=${c.retryable}, one request`, () =>
        Effect.gen(function*() {
          const { stub, provider } = yield* setup
          stub.reply(BedrockStub.error(c.status, c.type, "upstream says no"))

          const error = yield* Effect.flip(provider.complete(call))

          expect(error).toBeInstanceOf(Errors.ProviderError)
          expect(error).toMatchObject({
            kind: c.kind,
            retryable: c.retryable,
            upstream_status: c.status,
            upstream_type: c.type,
            provider: "bedrock",
            model: modelId
          })
          expect(error.message).toContain("upstream says no")
          expect(stub.requests).toHaveLength(1)
        }))
    }

    it.scoped("an error on ConverseStream fails the stream before any event", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup
        stub.reply(BedrockStub.error(429, "ThrottlingException"))

        const error = yield* Effect.flip(Stream.runCollect(provider.stream(call)))

        expect(error).toMatchObject({ kind: "throttled", retryable: true, upstream_status: 429 })
        expect(stub.requests).toHaveLength(1)
      }))

    it.scoped("a throttled call succeeds when the caller retries it", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup
        stub.reply(
          BedrockStub.error(429, "ThrottlingException"),
          BedrockStub.converse(["ok"], { inputTokens: 3, outputTokens: 1 })
        )

        const completion = yield* provider.complete(call).pipe(Effect.retry({ times: 2, while: (e) => e.retryable }))

        expect(completion.text).toBe("ok")
        expect(stub.requests).toHaveLength(2)
      }))

    it.scoped("a validation error is not retried by a retryable-only policy", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup
        stub.reply(
          BedrockStub.error(400, "ValidationException"),
          BedrockStub.converse(["never"], { inputTokens: 3, outputTokens: 1 })
        )

        const error = yield* Effect.flip(provider.complete(call).pipe(Effect.retry({ times: 2, while: (e) => e.retryable })))

        expect(error.kind).toBe("validation")
        expect(stub.requests).toHaveLength(1)
      }))

    it.scoped("a refused connection is a retryable connection error", () =>
      Effect.gen(function*() {
        // A port that was free a moment ago: nothing listens there.
        const port = yield* Effect.async<number>((resume) => {
          const server = Http2.createServer()
          server.listen(0, "127.0.0.1", () => {
            const { port } = server.address() as AddressInfo
            server.close(() => resume(Effect.succeed(port)))
          })
        })
        const provider = yield* BedrockProvider.make(settingsFor(`http://127.0.0.1:${port}`))

        const error = yield* Effect.flip(provider.complete(call))

        expect(error).toMatchObject({ kind: "connection", retryable: true })
      }))
  })

  describe("interruption", () => {
    it.scopedLive("interrupting complete resets the HTTP/2 stream", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup
        stub.reply({ ...BedrockStub.converse(["late"], { inputTokens: 1, outputTokens: 1 }), delayMs: 2000 })

        const fiber = yield* Effect.fork(provider.complete(call))
        const req = yield* within(5000, () => stub.request(1))
        yield* Fiber.interrupt(fiber)

        // The stub would answer after 2 s; the reset arrives long before. The SDK resets the
        // request's stream only (RST_STREAM), not the connection other calls share.
        const closure = yield* within(1000, () => req.closed)
        expect(closure.replyComplete).toBe(false)
      }), 10_000)

    it.scoped("Converse calls share one HTTP/2 connection (the client's default opens one per request); each stream gets its own", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup
        for (let i = 0; i < 5; i++) stub.reply(BedrockStub.converse(["Hi"], { inputTokens: 1, outputTokens: 1 }))
        yield* provider.complete(call)
        yield* Effect.all(Array.from({ length: 4 }, () => provider.complete(call)), { concurrency: "unbounded" })
        expect(stub.requests).toHaveLength(5)
        expect(stub.connections()).toBe(1)

        stub.reply(
          BedrockStub.eventStream(...BedrockStub.textFrames(["a"], { inputTokens: 1, outputTokens: 1 })),
          BedrockStub.eventStream(...BedrockStub.textFrames(["b"], { inputTokens: 1, outputTokens: 1 }))
        )
        yield* Stream.runDrain(provider.stream(call))
        yield* Stream.runDrain(provider.stream(call))
        expect(stub.connections()).toBe(3)
      }))

    it.scopedLive("a pooled connection the server closes is not used again: a call that races the close (REFUSED_STREAM) is sent again at once, on a new connection", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup
        stub.reply(...Array.from({ length: 4 }, () => BedrockStub.converse(["Hi"], { inputTokens: 1, outputTokens: 1 })))
        yield* provider.complete(call)
        // The next call starts before the client has seen the GOAWAY: the server refuses its stream.
        stub.dropConnections()
        expect((yield* provider.complete(call)).text).toBe("Hi")
        stub.dropConnections()
        yield* Effect.sleep("50 millis")
        expect((yield* provider.complete(call)).text).toBe("Hi")
        expect(stub.connections()).toBe(3)
      }))

    it.scopedLive("interrupting a stream mid-answer resets the HTTP/2 stream", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup
        stub.reply(BedrockStub.eventStream(
          BedrockStub.event("messageStart", { role: "assistant" }),
          BedrockStub.event("contentBlockDelta", { contentBlockIndex: 0, delta: { text: "first" } }),
          BedrockStub.event("contentBlockDelta", { contentBlockIndex: 0, delta: { text: "second" } }, 2000),
          BedrockStub.event("messageStop", { stopReason: "end_turn" })
        ))
        const first = yield* Deferred.make<LlmProvider.StreamEvent>()

        const fiber = yield* provider.stream(call).pipe(
          Stream.runForEach((e) => Deferred.succeed(first, e)),
          Effect.fork
        )
        const event = yield* Deferred.await(first).pipe(Effect.timeout("5 seconds"))
        expect(event).toEqual({ _tag: "TextDelta", text: "first" })
        const req = yield* within(1000, () => stub.request(1))
        yield* Fiber.interrupt(fiber).pipe(Effect.timeout("1 second"))

        const closure = yield* within(1000, () => req.closed)
        expect(closure.replyComplete).toBe(false)
      }), 10_000)

    it.scopedLive("a consumer that stops early closes the upstream stream", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup
        stub.reply(BedrockStub.eventStream(
          BedrockStub.event("contentBlockDelta", { contentBlockIndex: 0, delta: { text: "enough" } }),
          BedrockStub.event("contentBlockDelta", { contentBlockIndex: 0, delta: { text: "more" } }, 2000)
        ))

        const events = yield* provider.stream(call).pipe(Stream.take(1), Stream.runCollect, Effect.timeout("1 second"))

        expect(textOf(events)).toBe("enough")
        const req = yield* within(1000, () => stub.request(1))
        const closure = yield* within(1000, () => req.closed)
        expect(closure.replyComplete).toBe(false)
      }), 10_000)

    it.scopedLive("the call's timeout_ms (the adapter is timed): complete, a stream that does not start, and one gone silent fail as timeouts and reset their HTTP/2 streams", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup
        expect(provider.timed).toBe(true)
        const open = provider.open
        assert(open !== undefined, "the Bedrock adapter opens its streams")
        const never = new Promise<void>(() => {})
        stub.reply(
          { ...BedrockStub.converse(["late"], { inputTokens: 1, outputTokens: 1 }), after: never },
          { ...BedrockStub.converse(["late"], { inputTokens: 1, outputTokens: 1 }), after: never },
          // The first delta at once, then 2 s of silence against a 250 ms wait.
          BedrockStub.eventStream(
            BedrockStub.event("messageStart", { role: "assistant" }),
            BedrockStub.event("contentBlockDelta", { contentBlockIndex: 0, delta: { text: "Hello" } }),
            BedrockStub.event("contentBlockDelta", { contentBlockIndex: 0, delta: { text: "late" } }, 2000),
            BedrockStub.event("messageStop", { stopReason: "end_turn" })
          )
        )

        expect(yield* Effect.flip(provider.complete({ ...call, timeout_ms: 150 }))).toMatchObject({
          _tag: "ProviderError", kind: "timeout", retryable: true, message: `no answer from 'bedrock' within 150 ms`
        })
        expect(yield* Effect.flip(Effect.scoped(open({ ...call, timeout_ms: 150 })))).toMatchObject({ kind: "timeout", retryable: true })
        const silent = yield* Effect.scoped(Effect.gen(function*() {
          const pull = yield* open({ ...call, timeout_ms: 250 })
          const first = yield* pull
          return { first, next: yield* Effect.flip(pull) }
        }))
        expect(textOf(silent.first)).toBe("Hello")
        expect(silent.next).toEqual(Option.some(expect.objectContaining({ kind: "timeout", message: `no answer from 'bedrock' within 250 ms` })))

        for (const n of [1, 2, 3]) {
          const req = yield* within(1000, () => stub.request(n))
          const closure = yield* within(1000, () => req.closed)
          expect(closure.replyComplete).toBe(false)
        }
      }), 10_000)
  })

  describe("tools", () => {
    const weather: LlmRequest.ToolDefinition = {
      type: "function",
      function: {
        name: "get_weather",
        description: "Current weather in a city",
        parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] }
      }
    }
    const clock: LlmRequest.ToolDefinition = { type: "function", function: { name: "now" } }
    const toolCall = (id: string, name: string, args: string): LlmRequest.ToolCall => ({
      id,
      type: "function",
      function: { name, arguments: args }
    })
    const withTools = (over: Partial<LlmProvider.ProviderCall>): LlmProvider.ProviderCall => ({
      model,
      model_id: modelId,
      messages: [{ role: "user", content: "Weather in Paris?" }],
      max_tokens: 64,
      tools: [weather, clock],
      ...over
    })

    it.scoped("sends the tools in toolConfig and maps toolUse blocks to tool calls", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup
        stub.reply(BedrockStub.converseToolUse(
          [{ toolUseId: "tu_1", name: "get_weather", input: { city: "Paris" } }],
          { inputTokens: 30, outputTokens: 9 },
          "Let me check."
        ))

        const completion = yield* provider.complete(withTools({ tool_choice: "required" }))

        expect(completion).toEqual({
          text: "Let me check.",
          usage: { input_tokens: 30, output_tokens: 9 },
          finish_reason: "tool_calls",
          tool_calls: [toolCall("tu_1", "get_weather", "{\"city\":\"Paris\"}")]
        })
        expect(stub.requests[0]?.body).toEqual({
          messages: [{ role: "user", content: [{ text: "Weather in Paris?" }] }],
          inferenceConfig: { maxTokens: 64 },
          toolConfig: {
            tools: [
              { toolSpec: { name: "get_weather", description: "Current weather in a city", inputSchema: { json: weather.function.parameters } } },
              // A function without parameters still needs an input schema.
              { toolSpec: { name: "now", inputSchema: { json: { type: "object", properties: {} } } } }
            ],
            toolChoice: { any: {} }
          }
        })
      }))

    it("maps tool_choice; none shows the model no tools at all", () => {
      const toolConfigOf = (tool_choice: LlmRequest.ToolChoice | undefined) =>
        Either.getOrThrow(BedrockProvider.toConverseInput(withTools({ tool_choice }))).toolConfig
      expect(toolConfigOf("auto")?.toolChoice).toEqual({ auto: {} })
      expect(toolConfigOf("required")?.toolChoice).toEqual({ any: {} })
      expect(toolConfigOf({ type: "function", function: { name: "now" } })?.toolChoice).toEqual({ tool: { name: "now" } })
      // No choice given: Bedrock's default (auto) applies.
      expect(Object.keys(toolConfigOf(undefined) ?? {})).toEqual(["tools"])
      expect(toolConfigOf(undefined)?.tools).toHaveLength(2)
      expect(toolConfigOf("none")).toBeUndefined()
      expect(Either.getOrThrow(BedrockProvider.toConverseInput(withTools({ tools: [] }))).toolConfig).toBeUndefined()
    })

    it("with no toolConfig (tool_choice none, or no tools) earlier tool calls and results go as text: Converse refuses tool blocks then", () => {
      const history: ReadonlyArray<LlmRequest.ChatMessage> = [
        { role: "user", content: "Weather in Paris?" },
        { role: "assistant", content: "", tool_calls: [toolCall("tu_1", "get_weather", "{\"city\":\"Paris\"}")] },
        { role: "tool", content: "{\"temp\":18}", tool_call_id: "tu_1", name: "get_weather" },
        { role: "user", content: "Now answer without tools." }
      ]
      for (const over of [{ tool_choice: "none" as const }, { tools: [] }]) {
        const input = Either.getOrThrow(BedrockProvider.toConverseInput(withTools({ ...over, messages: history })))
        expect(input.toolConfig).toBeUndefined()
        expect(input.messages).toEqual([
          { role: "user", content: [{ text: "Weather in Paris?" }] },
          { role: "assistant", content: [{ text: "[tool call tu_1: get_weather({\"city\":\"Paris\"})]" }] },
          { role: "user", content: [{ text: "[result of tool call tu_1 (get_weather)]: {\"temp\":18}" }, { text: "Now answer without tools." }] }
        ])
        expect(JSON.stringify(input.messages)).not.toMatch(/toolUse|toolResult/)
      }
      // With tools shown, the same history keeps its tool blocks.
      const shown = Either.getOrThrow(BedrockProvider.toConverseInput(withTools({ messages: history })))
      expect(JSON.stringify(shown.messages)).toMatch(/toolUse/)
    })

    it.scoped("sends earlier tool calls as toolUse blocks and their results as one user turn", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup
        stub.reply(BedrockStub.converse(["Paris 18°C, Rome 21°C."], { inputTokens: 80, outputTokens: 9 }))

        const completion = yield* provider.complete(withTools({
          messages: [
            { role: "system", content: "Use the tools." },
            { role: "user", content: "Weather in Paris and Rome?" },
            {
              role: "assistant",
              content: "",
              tool_calls: [
                toolCall("tu_1", "get_weather", "{\"city\":\"Paris\"}"),
                toolCall("tu_2", "get_weather", "{\"city\":\"Rome\"}")
              ]
            },
            { role: "tool", tool_call_id: "tu_1", content: "18°C" },
            { role: "tool", tool_call_id: "tu_2", content: "21°C" },
            { role: "user", content: "Both, please." },
            { role: "assistant", content: "One moment.", tool_calls: [toolCall("tu_3", "now", "")] },
            { role: "tool", tool_call_id: "tu_3", content: "12:00" }
          ],
          tool_choice: "auto"
        }))

        expect(completion.text).toBe("Paris 18°C, Rome 21°C.")
        expect(completion.tool_calls).toBeUndefined()
        const body = stub.requests[0]?.body
        expect(body).toMatchObject({ system: [{ text: "Use the tools." }], toolConfig: { toolChoice: { auto: {} } } })
        expect(body).toHaveProperty("messages", [
          { role: "user", content: [{ text: "Weather in Paris and Rome?" }] },
          {
            role: "assistant",
            content: [
              { toolUse: { toolUseId: "tu_1", name: "get_weather", input: { city: "Paris" } } },
              { toolUse: { toolUseId: "tu_2", name: "get_weather", input: { city: "Rome" } } }
            ]
          },
          {
            role: "user",
            content: [
              { toolResult: { toolUseId: "tu_1", content: [{ text: "18°C" }] } },
              { toolResult: { toolUseId: "tu_2", content: [{ text: "21°C" }] } },
              { text: "Both, please." }
            ]
          },
          { role: "assistant", content: [{ text: "One moment." }, { toolUse: { toolUseId: "tu_3", name: "now", input: {} } }] },
          { role: "user", content: [{ toolResult: { toolUseId: "tu_3", content: [{ text: "12:00" }] } }] }
        ])
      }))

    it.scoped("refuses tool calls whose arguments are not a JSON object, naming the call, before any request", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup
        const history = (args: string) =>
          withTools({
            messages: [
              { role: "user", content: "Weather?" },
              { role: "assistant", content: "", tool_calls: [toolCall("tu_9", "get_weather", args)] },
              { role: "tool", tool_call_id: "tu_9", content: "?" }
            ]
          })

        const notJson = yield* Effect.flip(provider.complete(history("{\"city\":")))
        const notObject = yield* Effect.flip(Stream.runDrain(provider.stream(history("[1,2]"))))
        const noId = yield* Effect.flip(provider.complete(withTools({
          messages: [{ role: "user", content: "x" }, { role: "tool", content: "orphan" }]
        })))

        for (const e of [notJson, notObject, noId]) {
          expect(e).toMatchObject({ kind: "validation", retryable: false, provider: "bedrock", model: modelId })
        }
        expect(notJson.message).toContain("tu_9 (get_weather)")
        expect(notJson.message).toContain("not valid JSON")
        expect(notObject.message).toContain("not a JSON object")
        expect(noId.message).toContain("tool_call_id")
        expect(stub.requests).toHaveLength(0)
      }))

    it.scoped("streams tool calls as ToolCallDeltas that assemble to the calls", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup
        stub.reply(BedrockStub.eventStream(
          BedrockStub.event("messageStart", { role: "assistant" }),
          BedrockStub.event("contentBlockDelta", { contentBlockIndex: 0, delta: { text: "Checking." } }),
          BedrockStub.event("contentBlockStop", { contentBlockIndex: 0 }),
          ...BedrockStub.toolUseFrames(1, { toolUseId: "tu_1", name: "get_weather" }, ["{\"ci", "ty\":", "\"Paris\"}"]),
          ...BedrockStub.toolUseFrames(2, { toolUseId: "tu_2", name: "now" }, ["{}"]),
          BedrockStub.event("messageStop", { stopReason: "tool_use" }),
          BedrockStub.event("metadata", { usage: { inputTokens: 30, outputTokens: 20, totalTokens: 50 } })
        ))

        const events = Chunk.toReadonlyArray(yield* Stream.runCollect(provider.stream(withTools({ tool_choice: "auto" }))))

        expect(events).toEqual([
          { _tag: "TextDelta", text: "Checking." },
          { _tag: "ToolCallDelta", index: 0, id: "tu_1", name: "get_weather", arguments: "" },
          { _tag: "ToolCallDelta", index: 0, arguments: "{\"ci" },
          { _tag: "ToolCallDelta", index: 0, arguments: "ty\":" },
          { _tag: "ToolCallDelta", index: 0, arguments: "\"Paris\"}" },
          { _tag: "ToolCallDelta", index: 1, id: "tu_2", name: "now", arguments: "" },
          { _tag: "ToolCallDelta", index: 1, arguments: "{}" },
          { _tag: "Finish", finish_reason: "tool_calls" },
          { _tag: "Usage", usage: { input_tokens: 30, output_tokens: 20 } }
        ])
        expect(assembleToolCalls(events)).toEqual([
          toolCall("tu_1", "get_weather", "{\"city\":\"Paris\"}"),
          toolCall("tu_2", "now", "{}")
        ])
        expect(stub.requests[0]?.body).toMatchObject({ toolConfig: { toolChoice: { auto: {} }, tools: [{}, {}] } })
      }))
  })

  describe("response format and seed", () => {
    for (const response_format of [
      { type: "json_object" },
      { type: "json_schema", json_schema: { name: "answer", schema: { type: "object" } } }
    ] as const) {
      it.scoped(`refuses response_format ${response_format.type} clearly, without a request`, () =>
        Effect.gen(function*() {
          const { stub, provider } = yield* setup

          const viaComplete = yield* Effect.flip(provider.complete({ ...call, response_format }))
          const viaStream = yield* Effect.flip(Stream.runDrain(provider.stream({ ...call, response_format })))

          for (const e of [viaComplete, viaStream]) {
            expect(e).toMatchObject({ kind: "validation", retryable: false, provider: "bedrock", model: modelId })
            expect(e.message).toContain(`response_format ${response_format.type} is not supported`)
            expect(e.message).toContain("no JSON mode")
          }
          expect(stub.requests).toHaveLength(0)
        }))
    }

    it.scoped("accepts response_format text and leaves seed out (Converse has none)", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup
        stub.reply(BedrockStub.converse(["ok"], { inputTokens: 3, outputTokens: 1 }))

        yield* provider.complete({ ...call, response_format: { type: "text" }, seed: 7 })

        expect(Object.keys(stub.requests[0]?.body as object).sort()).toEqual(["inferenceConfig", "messages", "system"])
      }))
  })

  describe("a stream that breaks off", () => {
    const partial = [
      BedrockStub.event("messageStart", { role: "assistant" }),
      BedrockStub.event("contentBlockDelta", { contentBlockIndex: 0, delta: { text: "Hel" } }),
      BedrockStub.event("contentBlockDelta", { contentBlockIndex: 0, delta: { text: "lo" } })
    ]

    const itFailsRetryably = (title: string, reply: BedrockStub.Reply) =>
      it.scoped(title, () =>
        Effect.gen(function*() {
          const { stub, provider } = yield* setup
          stub.reply(reply)

          const items = Chunk.toReadonlyArray(yield* Stream.runCollect(Stream.either(provider.stream(call))))

          expect(items.flatMap((i) => (Either.isRight(i) ? [i.right] : []))).toEqual([
            { _tag: "TextDelta", text: "Hel" },
            { _tag: "TextDelta", text: "lo" }
          ])
          const last = items.at(-1)
          assert(last !== undefined && Either.isLeft(last))
          expect(last.left).toMatchObject({ retryable: true, provider: "bedrock", model: modelId })
          expect(["stream", "connection"]).toContain(last.left.kind)
        }))

    itFailsRetryably("fails retryably when the event stream ends without messageStop", BedrockStub.eventStream(...partial))
    itFailsRetryably("fails retryably when the HTTP/2 stream is reset mid-answer", BedrockStub.eventStream(...partial, BedrockStub.reset))

    it.scoped("ends normally once messageStop came, even without metadata after it", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup
        stub.reply(BedrockStub.eventStream(...partial, BedrockStub.event("messageStop", { stopReason: "end_turn" })))

        const events = yield* Stream.runCollect(provider.stream(call))

        expect(Chunk.toReadonlyArray(events).at(-1)).toEqual({ _tag: "Finish", finish_reason: "stop" })
      }))
  })

  describe("embed (Titan)", () => {
    const embedModel: ModelCatalog.ModelEntry = {
      ...model,
      id: "titan-embed",
      provider_ids: { bedrock: "amazon.titan-embed-text-v1" },
      kind: "embedding",
      output_usd_per_million: 0
    }
    const embedCall = (input: ReadonlyArray<string>, over?: Partial<LlmProvider.EmbedCall>): LlmProvider.EmbedCall => ({
      model: embedModel,
      model_id: "amazon.titan-embed-text-v1",
      input,
      ...over
    })
    const inputTextOf = (r: BedrockStub.RecordedRequest): string => {
      const body = r.body as { readonly inputText?: unknown }
      return typeof body.inputText === "string" ? body.inputText : ""
    }

    it.scoped("v1: one InvokeModel per input, vectors in input order, tokens summed", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup
        const input = ["alpha", "beta gamma", "delta"]
        // Later inputs answer sooner, so arrival order and answer order differ.
        const answer = BedrockStub.respond((r) => {
          const i = input.indexOf(inputTextOf(r))
          return BedrockStub.titanEmbedding([i, i / 2], 10 + i, (input.length - i) * 40)
        })
        stub.reply(answer, answer, answer)

        const embeddings = yield* embedOf(provider)(embedCall(input))

        expect(embeddings).toEqual({ vectors: [[0, 0], [1, 0.5], [2, 1]], input_tokens: 10 + 11 + 12 })
        expect(stub.requests).toHaveLength(3)
        expect(stub.requests.map((r) => r.body).sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b))))
          .toEqual([{ inputText: "alpha" }, { inputText: "beta gamma" }, { inputText: "delta" }])
        for (const r of stub.requests) {
          expect(r.path).toBe("/model/amazon.titan-embed-text-v1/invoke")
          expect(r.headers["content-type"]).toBe("application/json")
          expect(r.headers.authorization).toMatch(/^AWS4-HMAC-SHA256 .*\/bedrock\/aws4_request/)
        }
      }))

    it.scopedLive(`keeps at most ${BedrockProvider.embedConcurrency} calls in flight`, () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup
        const gate = yield* Deferred.make<void>()
        const released = Effect.runPromise(Deferred.await(gate))
        const input = ["a", "b", "c", "d", "e", "f"]
        stub.reply(...input.map((_, i) => ({ ...BedrockStub.titanEmbedding([i], 1), after: released })))

        const fiber = yield* Effect.fork(embedOf(provider)(embedCall(input)))
        yield* within(5000, () => stub.request(BedrockProvider.embedConcurrency))
        // Time for a call over the limit to show up, if the provider made one.
        yield* Effect.sleep("100 millis")
        expect(stub.requests).toHaveLength(BedrockProvider.embedConcurrency)
        yield* Deferred.succeed(gate, undefined)

        const embeddings = yield* Fiber.join(fiber)
        expect(embeddings.vectors).toHaveLength(6)
        expect(embeddings.input_tokens).toBe(6)
        expect(stub.requests).toHaveLength(6)
      }), 10_000)

    it.scoped("v2: sends dimensions; v1 refuses them before any request", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup
        stub.reply(BedrockStub.titanEmbedding([0.1, 0.2], 4))

        const v2 = yield* embedOf(provider)(embedCall(["hello"], { model_id: "amazon.titan-embed-text-v2:0", dimensions: 256 }))
        const v1 = yield* Effect.flip(embedOf(provider)(embedCall(["hello"], { dimensions: 256 })))

        expect(v2).toEqual({ vectors: [[0.1, 0.2]], input_tokens: 4 })
        expect(stub.requests).toHaveLength(1)
        expect(stub.requests[0]?.path).toBe("/model/amazon.titan-embed-text-v2%3A0/invoke")
        expect(stub.requests[0]?.body).toEqual({ inputText: "hello", dimensions: 256 })
        expect(v1).toMatchObject({ kind: "validation", retryable: false, model: "amazon.titan-embed-text-v1" })
        expect(v1.message).toContain("dimensions")
      }))

    it.scoped("maps throttling to a retryable throttled error", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup
        stub.reply(BedrockStub.error(429, "ThrottlingException", "Too many requests"))

        const error = yield* Effect.flip(embedOf(provider)(embedCall(["hello"])))

        expect(error).toBeInstanceOf(Errors.ProviderError)
        expect(error).toMatchObject({
          kind: "throttled",
          retryable: true,
          upstream_status: 429,
          upstream_type: "ThrottlingException",
          model: "amazon.titan-embed-text-v1"
        })
      }))

    it.scoped("an answer that is not a Titan embedding is an error, not a vector", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup
        stub.reply({ _tag: "Json", body: { embeddings: [[1]] } })

        const error = yield* Effect.flip(embedOf(provider)(embedCall(["hello"])))

        expect(error).toMatchObject({ kind: "unknown", retryable: false })
        expect(error.message).toContain("no Titan embedding")
      }))

    it.scopedLive("interrupting embed resets the HTTP/2 streams of the calls in flight", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup
        const slow = BedrockStub.titanEmbedding([1], 1, 2000)
        stub.reply(slow, slow)

        const fiber = yield* Effect.fork(embedOf(provider)(embedCall(["a", "b"])))
        const requests = yield* within(5000, () => Promise.all([stub.request(1), stub.request(2)]))
        yield* Fiber.interrupt(fiber).pipe(Effect.timeout("1 second"))

        for (const req of requests) {
          const closure = yield* within(1000, () => req.closed)
          expect(closure.replyComplete).toBe(false)
        }
      }), 10_000)

    it.scoped("no inputs, no calls", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup
        expect(yield* embedOf(provider)(embedCall([]))).toEqual({ vectors: [], input_tokens: 0 })
        expect(stub.requests).toHaveLength(0)
      }))
  })

  describe("Scenario stub", () => {
    type Outcome = "ok" | Errors.ProviderErrorKind | "timed out"
    /** What became of a call; `hang` is given a short while only, the others all the time a loaded machine needs. */
    const outcomeOf = <A>(scenario: Scenario, effect: Effect.Effect<A, Errors.ProviderError>) =>
      effect.pipe(
        Effect.timeout(scenario === "hang" ? "200 millis" : "5 seconds"),
        Effect.match({
          onFailure: (e): { readonly outcome: Outcome; readonly retryable?: boolean } =>
            e._tag === "TimeoutException" ? { outcome: "timed out" } : { outcome: e.kind, retryable: e.retryable },
          onSuccess: () => ({ outcome: "ok" as const })
        })
      )

    const expected: Record<Scenario, { readonly outcome: Outcome; readonly retryable?: boolean }> = {
      success: { outcome: "ok" },
      tool_call: { outcome: "ok" },
      throttle_once: { outcome: "throttled", retryable: true },
      server_error: { outcome: "server", retryable: true },
      bad_request: { outcome: "validation", retryable: false },
      hang: { outcome: "timed out" },
      reset_mid_stream: { outcome: "connection", retryable: true }
    }

    const scenarioStub = Effect.acquireRelease(Effect.promise(() => startBedrockStub()), (stub) => Effect.promise(() => stub.close()))

    for (const scenario of scenarios) {
      it.scopedLive(`${scenario}: complete, stream and embed through the real SDK`, () =>
        Effect.gen(function*() {
          const stub = yield* scenarioStub
          const provider = yield* BedrockProvider.make(settingsFor(stub.url))
          const chat = { ...call, tools: [{ type: "function" as const, function: { name: fixture.tool.name } }] }

          stub.setScenario(scenario)
          const completion = yield* outcomeOf(scenario, provider.complete(chat))
          stub.setScenario(scenario)
          const collected: Array<LlmProvider.StreamEvent> = []
          const streamed = yield* outcomeOf(scenario, provider.stream(chat).pipe(Stream.runForEach((e) => Effect.sync(() => collected.push(e)))))
          stub.setScenario(scenario)
          const embedded = yield* outcomeOf(scenario, embedOf(provider)({ model, model_id: "amazon.titan-embed-text-v1", input: ["hi"] }))

          expect(completion).toEqual(expected[scenario])
          // A cut stream is a broken stream: whatever the transport made of it, a retry may cure it.
          expect(streamed).toEqual(scenario === "reset_mid_stream" ? { outcome: "stream", retryable: true } : expected[scenario])
          expect(embedded).toEqual(expected[scenario])
          expect(stub.requests()).toHaveLength(3)
          expect(stub.headers().every((h) => String(h.authorization).startsWith("AWS4-HMAC-SHA256 "))).toBe(true)

          const text = collected.flatMap((e) => (e._tag === "TextDelta" ? [e.text] : [])).join("")
          switch (scenario) {
            case "success":
              expect(text).toBe(fixture.text)
              expect(collected.slice(-2)).toEqual([
                { _tag: "Finish", finish_reason: "stop" },
                { _tag: "Usage", usage: fixture.usage }
              ])
              break
            case "tool_call":
              expect(assembleToolCalls(collected)).toEqual([{ id: fixture.tool.id, type: "function", function: { name: fixture.tool.name, arguments: fixture.tool.arguments } }])
              expect(collected).toContainEqual({ _tag: "Finish", finish_reason: "tool_calls" })
              break
            case "reset_mid_stream":
              expect(text).toBe(fixture.textChunks.slice(0, fixture.cutAfterChunks).join(""))
              break
            case "hang": {
              // The client's abort reaches the stub as a cancelled HTTP/2 stream, one per exchange.
              yield* Effect.suspend(() => (stub.aborted() >= 3 ? Effect.void : Effect.fail("not yet"))).pipe(
                Effect.retry(Schedule.spaced("20 millis").pipe(Schedule.upTo("2 seconds")))
              )
              expect(stub.aborted()).toBe(3)
              break
            }
            default:
              expect(collected).toEqual([])
          }

          // After the scenario, the same client gets whole answers again (a dropped connection is redialled).
          stub.setScenario(scenario === "tool_call" ? "tool_call" : "success")
          const after = yield* provider.complete(chat)
          if (scenario === "tool_call") {
            expect(after).toEqual({
              text: "",
              usage: fixture.usage,
              finish_reason: "tool_calls",
              tool_calls: [{ id: fixture.tool.id, type: "function", function: { name: fixture.tool.name, arguments: fixture.tool.arguments } }]
            })
          } else {
            expect(after).toEqual({ text: fixture.text, usage: fixture.usage, finish_reason: "stop" })
          }
          const embeddings = yield* embedOf(provider)({ model, model_id: "amazon.titan-embed-text-v1", input: ["a", "b"] })
          expect(embeddings).toEqual({ vectors: [fixture.embedding, fixture.embedding], input_tokens: 2 * fixture.embeddingTokens })
          if (scenario !== "hang") expect(stub.aborted()).toBe(0)
        }), 10_000)
    }

    it.scopedLive("throttle_once throttles only the first request after setScenario", () =>
      Effect.gen(function*() {
        const stub = yield* scenarioStub
        const provider = yield* BedrockProvider.make(settingsFor(stub.url))
        stub.setScenario("throttle_once")

        const completion = yield* provider.complete(call).pipe(Effect.retry({ times: 1, while: (e) => e.retryable }))

        expect(completion.text).toBe(fixture.text)
        expect(stub.requests()).toHaveLength(2)
      }))
  })

  describe("toProviderError", () => {
    const ctx = { provider: "bedrock", model: modelId }
    const errno = (code: string, message: string) => Object.assign(new Error(message), { code })

    it("maps socket failures to retryable connection errors", () => {
      for (const e of [
        errno("ECONNRESET", "read ECONNRESET"),
        errno("ECONNREFUSED", "connect ECONNREFUSED 127.0.0.1:1"),
        new Error("socket hang up"),
        new Error("Protocol error")
      ]) {
        expect(BedrockProvider.toProviderError(e, ctx)).toMatchObject({ kind: "connection", retryable: true })
      }
      expect(BedrockProvider.toProviderError(errno("ECONNRESET", "read ECONNRESET"), ctx).upstream_type).toBe("ECONNRESET")
    })

    it("maps a session that died before the response to a connection error, though the handler calls it TimeoutError", () => {
      const e = Object.assign(new Error("Unexpected error: http2 request did not get a response"), { name: "TimeoutError" })
      expect(BedrockProvider.toProviderError(e, ctx)).toMatchObject({ kind: "connection", retryable: true })
    })

    it("maps the handler's TimeoutError to a retryable timeout", () => {
      const e = Object.assign(new Error("Stream timed out because of no activity"), { name: "TimeoutError" })
      expect(BedrockProvider.toProviderError(e, ctx)).toMatchObject({ kind: "timeout", retryable: true, upstream_type: "TimeoutError" })
    })

    it("falls back to the HTTP status, then to unknown", () => {
      const withStatus = (name: string, status: number) => Object.assign(new Error("x"), { name, $metadata: { httpStatusCode: status } })
      expect(BedrockProvider.toProviderError(withStatus("SomethingNew", 502), ctx)).toMatchObject({ kind: "server", retryable: true })
      expect(BedrockProvider.toProviderError(withStatus("SomethingNew", 401), ctx)).toMatchObject({ kind: "auth", retryable: false })
      expect(BedrockProvider.toProviderError(withStatus("SomethingNew", 418), ctx)).toMatchObject({ kind: "unknown", retryable: false, upstream_status: 418 })
      expect(BedrockProvider.toProviderError("weird", ctx)).toMatchObject({ kind: "unknown", retryable: false })
    })
  })

  describe("request mapping", () => {
    it("moves every system message to system and merges consecutive turns of one role", () => {
      const input = Either.getOrThrow(BedrockProvider.toConverseInput({
        ...call,
        messages: [
          { role: "system", content: "a" },
          { role: "user", content: "q1" },
          { role: "user", content: "q2" },
          { role: "assistant", content: "r1" },
          { role: "system", content: "b" },
          { role: "user", content: "q3" }
        ]
      }))
      expect(input.system).toEqual([{ text: "a" }, { text: "b" }])
      expect(input.messages).toEqual([
        { role: "user", content: [{ text: "q1" }, { text: "q2" }] },
        { role: "assistant", content: [{ text: "r1" }] },
        { role: "user", content: [{ text: "q3" }] }
      ])
    })

    it("maps stop reasons", () => {
      expect(["end_turn", "max_tokens", "stop_sequence", "tool_use", "content_filtered"].map(BedrockProvider.finishReason))
        .toEqual(["stop", "length", "stop", "tool_calls", "content_filtered"])
    })
  })

  describe("health", () => {
    it.scoped("names region and endpoint, never a secret", () =>
      Effect.gen(function*() {
        const provider = yield* BedrockProvider.make(settingsFor("http://127.0.0.1:9"))
        const health = yield* provider.health
        expect(health.configured).toBe(true)
        expect(health.detail).toContain("us-east-1")
        expect(health.detail).toContain("http://127.0.0.1:9")
        expect(health.detail).not.toContain("AKIDEXAMPLE")
        expect(health.detail).not.toContain("EXAMPLEKEY")
        expect(provider).toMatchObject({ name: "bedrock", mock: false })
      }))

    it.scoped("without keys it is configured only when the app says the default chain is", () =>
      Effect.gen(function*() {
        const bare = yield* BedrockProvider.make({ region: "eu-west-1" }, { name: "bedrock-eu" })
        const hinted = yield* BedrockProvider.make({ region: "eu-west-1" }, { configured: true })
        expect(bare.name).toBe("bedrock-eu")
        expect((yield* bare.health).configured).toBe(false)
        expect((yield* hinted.health).configured).toBe(true)
        expect((yield* hinted.health).detail).toContain("eu-west-1")
      }))
  })
})

import { assert, describe, expect, it } from "@effect/vitest"
import { Errors, Pulls, type LlmRequest, type ModelCatalog } from "@tidyllm/core"
import type { LlmProvider } from "@tidyllm/corporate-llm"
import { Chunk, Duration, Effect, Either, Fiber, Option, Redacted, Stream } from "effect"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import * as AnthropicProvider from "../src/AnthropicProvider.js"
import { startAnthropicStub, type AnthropicStubOptions } from "./stubs/AnthropicStub.js"
import { fixture, type StubHandle } from "./stubs/Scenario.js"

const modelId = "claude-3-5-haiku-20241022"
const apiKey = "sk-ant-api03-SECRET-test-key-0123456789"

const model: ModelCatalog.ModelEntry = {
  id: "claude-3-5-haiku",
  aliases: [],
  provider_ids: { anthropic: modelId },
  kind: "chat",
  input_usd_per_million: 0.8,
  output_usd_per_million: 4,
  context_window: 200_000,
  max_output_tokens: 8192
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

const weatherTool: LlmRequest.ToolDefinition = {
  type: "function",
  function: {
    name: fixture.tool.name,
    description: "Current weather in a city",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] }
  }
}

const toolCall: LlmProvider.ProviderCall = {
  ...call,
  messages: [{ role: "user", content: "Weather in Paris?" }],
  tools: [weatherTool],
  tool_choice: "required"
}

/** The stub, closed with the test's scope. */
const stubFor = (options?: AnthropicStubOptions) =>
  Effect.acquireRelease(
    Effect.promise(() => startAnthropicStub(options)),
    (stub) => Effect.promise(() => stub.close())
  )

/** A stub and a provider whose SDK client talks to it. */
const setup = (options?: AnthropicStubOptions) =>
  Effect.gen(function*() {
    const stub = yield* stubFor(options)
    const provider = yield* AnthropicProvider.make({ apiKey: Redacted.make(apiKey), baseUrl: stub.url })
    return { stub, provider }
  })

const textOf = (events: ReadonlyArray<LlmProvider.StreamEvent>) =>
  events.flatMap((e) => (e._tag === "TextDelta" ? [e.text] : [])).join("")

/** Assembles OpenAI-style tool call deltas into whole calls, by index. */
const assemble = (events: ReadonlyArray<LlmProvider.StreamEvent>) => {
  const calls: Array<{ id?: string; name?: string; arguments: string }> = []
  for (const e of events) {
    if (e._tag !== "ToolCallDelta") continue
    const current = calls[e.index] ?? { arguments: "" }
    if (e.id !== undefined) current.id = e.id
    if (e.name !== undefined) current.name = e.name
    current.arguments += e.arguments
    calls[e.index] = current
  }
  return calls
}

/** Polls `predicate` until it holds, failing the test after `ms`. */
const eventually = (predicate: () => boolean, ms = 2000) =>
  Effect.gen(function*() {
    while (!predicate()) yield* Effect.sleep("10 millis")
  }).pipe(Effect.timeoutFail({ duration: Duration.millis(ms), onTimeout: () => new Error(`condition not met within ${ms} ms`) }))

const lastRequest = (stub: StubHandle) => stub.requests().at(-1) as Record<string, unknown> | undefined

describe("AnthropicProvider", () => {
  describe("complete", () => {
    it.scoped("sends a Messages request and maps the answer", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup()

        const completion = yield* provider.complete(call)

        expect(completion).toEqual({ text: fixture.text, usage: fixture.usage, finish_reason: "stop" })
        expect(stub.requests()).toHaveLength(1)
        expect(stub.requests()[0]).toEqual({
          model: modelId,
          max_tokens: 64,
          system: [{ type: "text", text: "You are terse." }],
          messages: [{ role: "user", content: [{ type: "text", text: "Say hi" }] }],
          temperature: 0.2,
          top_p: 0.9,
          stop_sequences: ["END"],
          stream: false
        })
        const headers = stub.headers()[0]
        // SDK 1.x sends the key as a bearer token (0.x sent `x-api-key`).
        expect(headers?.authorization).toBe(`Bearer ${apiKey}`)
        expect(headers?.["anthropic-version"]).toBeTypeOf("string")
        // The SDK's retries are off: the gateway's policy is the only one.
        expect(headers?.["x-stainless-retry-count"]).toBe("0")
      }))

    it.scoped("answers a tool call with the model's tool_use as OpenAI-style tool_calls", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup()
        stub.setScenario("tool_call")

        const completion = yield* provider.complete(toolCall)

        expect(completion).toEqual({
          text: "",
          usage: fixture.usage,
          finish_reason: "tool_calls",
          tool_calls: [{ id: fixture.tool.id, type: "function", function: { name: fixture.tool.name, arguments: fixture.tool.arguments } }]
        })
        expect(lastRequest(stub)).toMatchObject({
          tools: [{
            name: fixture.tool.name,
            description: "Current weather in a city",
            input_schema: { type: "object", properties: { city: { type: "string" } }, required: ["city"] }
          }],
          tool_choice: { type: "any" }
        })
      }))

    it.scoped("maps a follow-up turn: assistant tool calls to tool_use, tool results to the user's tool_result", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup()

        yield* provider.complete({
          ...toolCall,
          tool_choice: "auto",
          messages: [
            { role: "system", content: "Use tools." },
            { role: "user", content: "Weather in Paris?" },
            {
              role: "assistant",
              content: "",
              tool_calls: [{ id: fixture.tool.id, type: "function", function: { name: fixture.tool.name, arguments: fixture.tool.arguments } }]
            },
            { role: "tool", tool_call_id: fixture.tool.id, content: "18°C, sunny" },
            { role: "user", content: "And tomorrow?" }
          ]
        })

        expect(lastRequest(stub)).toMatchObject({
          system: [{ type: "text", text: "Use tools." }],
          messages: [
            { role: "user", content: [{ type: "text", text: "Weather in Paris?" }] },
            { role: "assistant", content: [{ type: "tool_use", id: fixture.tool.id, name: fixture.tool.name, input: { city: "Paris" } }] },
            {
              role: "user",
              content: [
                { type: "tool_result", tool_use_id: fixture.tool.id, content: "18°C, sunny" },
                { type: "text", text: "And tomorrow?" }
              ]
            }
          ],
          tool_choice: { type: "auto" }
        })
      }))

    it.scoped("refuses tool-call arguments that are not JSON before any request", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup()

        const error = yield* Effect.flip(provider.complete({
          ...call,
          messages: [
            { role: "user", content: "q" },
            { role: "assistant", content: "", tool_calls: [{ id: "c1", type: "function", function: { name: "f", arguments: "{not json" } }] }
          ]
        }))

        expect(error).toMatchObject({ kind: "validation", retryable: false, provider: "anthropic", model: modelId })
        expect(error.message).toContain("messages[1].tool_calls[0].function.arguments")
        expect(stub.requests()).toHaveLength(0)
      }))

    it.scoped("sends json_schema as output_config.format and refuses json_object", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup()
        const schema = { type: "object", properties: { answer: { type: "string" } }, required: ["answer"], additionalProperties: false }

        yield* provider.complete({ ...call, seed: 42, response_format: { type: "json_schema", json_schema: { name: "answer", schema } } })
        const refused = yield* Effect.flip(provider.complete({ ...call, response_format: { type: "json_object" } }))

        const body = lastRequest(stub)
        expect(body?.output_config).toEqual({ format: { type: "json_schema", schema } })
        // Anthropic has no seed; it is dropped rather than sent to be refused.
        expect(body).not.toHaveProperty("seed")
        expect(refused).toMatchObject({ kind: "validation", retryable: false })
        expect(refused.message).toContain("json_object")
        expect(stub.requests()).toHaveLength(1)
      }))
  })

  describe("stream", () => {
    it.scoped("streams text deltas, then usage and finish", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup()

        const events = Chunk.toReadonlyArray(yield* Stream.runCollect(provider.stream(call)))

        expect(events.filter((e) => e._tag === "TextDelta")).toEqual(fixture.textChunks.map((text) => ({ _tag: "TextDelta", text })))
        expect(events.slice(-2)).toEqual([
          { _tag: "Usage", usage: fixture.usage },
          { _tag: "Finish", finish_reason: "stop" }
        ])
        expect(lastRequest(stub)).toMatchObject({ stream: true, system: [{ type: "text", text: "You are terse." }], stop_sequences: ["END"] })
      }))

    it.scoped("streams a tool call as deltas that assemble to the call", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup()
        stub.setScenario("tool_call")

        const events = Chunk.toReadonlyArray(yield* Stream.runCollect(provider.stream(toolCall)))

        expect(assemble(events)).toEqual([{ id: fixture.tool.id, name: fixture.tool.name, arguments: fixture.tool.arguments }])
        expect(events.at(-1)).toEqual({ _tag: "Finish", finish_reason: "tool_calls" })
        expect(events).toContainEqual({ _tag: "Usage", usage: fixture.usage })
        expect(lastRequest(stub)).toMatchObject({ stream: true, tools: [{ name: fixture.tool.name }], tool_choice: { type: "any" } })
      }))

    it.scoped("numbers tool calls among tool blocks only, after a text block", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup({ toolPreamble: "Let me check." })
        stub.setScenario("tool_call")

        const events = Chunk.toReadonlyArray(yield* Stream.runCollect(provider.stream(toolCall)))
        const completion = yield* provider.complete(toolCall)

        expect(textOf(events)).toBe("Let me check.")
        const deltas = events.filter((e) => e._tag === "ToolCallDelta")
        expect(deltas.every((d) => d._tag === "ToolCallDelta" && d.index === 0)).toBe(true)
        expect(assemble(events)).toEqual([{ id: fixture.tool.id, name: fixture.tool.name, arguments: fixture.tool.arguments }])
        expect(completion.text).toBe("Let me check.")
        expect(completion.tool_calls).toHaveLength(1)
      }))

    it.scoped("an error event mid-stream fails the stream after the deltas before it", () =>
      Effect.gen(function*() {
        const { provider } = yield* setup({ midStreamError: { type: "overloaded_error", message: "Overloaded" } })

        const items = Chunk.toReadonlyArray(yield* Stream.runCollect(Stream.either(provider.stream(call))))

        expect(items.flatMap((i) => (Either.isRight(i) ? [i.right] : []))).toEqual([{ _tag: "TextDelta", text: "Hello" }])
        const last = items.at(-1)
        assert(last !== undefined && Either.isLeft(last))
        expect(last.left).toBeInstanceOf(Errors.ProviderError)
        expect(last.left).toMatchObject({ kind: "server", retryable: true, upstream_type: "overloaded_error", provider: "anthropic" })
        expect(last.left.message).toContain("Overloaded")
      }))

    it.scoped("a stream that ends before message_stop fails, retryable, instead of ending quietly", () =>
      Effect.gen(function*() {
        const { provider } = yield* setup({ truncateBeforeStop: true })

        const items = Chunk.toReadonlyArray(yield* Stream.runCollect(Stream.either(provider.stream(call))))

        expect(textOf(items.flatMap((i) => (Either.isRight(i) ? [i.right] : [])))).toBe(fixture.text)
        const last = items.at(-1)
        assert(last !== undefined && Either.isLeft(last))
        expect(last.left).toMatchObject({ kind: "stream", retryable: true })
      }))

    it.scoped("a reset mid-stream gives the first deltas, then a retryable failure", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup()
        stub.setScenario("reset_mid_stream")

        const items = Chunk.toReadonlyArray(yield* Stream.runCollect(Stream.either(provider.stream(call))))

        expect(items.flatMap((i) => (Either.isRight(i) && i.right._tag === "TextDelta" ? [i.right.text] : [])))
          .toEqual(fixture.textChunks.slice(0, fixture.cutAfterChunks))
        const last = items.at(-1)
        assert(last !== undefined && Either.isLeft(last))
        expect(last.left).toMatchObject({ kind: "connection", retryable: true, provider: "anthropic" })
        expect(last.left.message).not.toContain(apiKey)
      }))

    it.scoped("an HTTP error fails the stream before any event", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup()
        stub.setScenario("throttle_once")

        const error = yield* Effect.flip(Stream.runCollect(provider.stream(call)))
        const retried = yield* Stream.runCollect(provider.stream(call))

        expect(error).toMatchObject({ kind: "throttled", retryable: true, upstream_status: 429, upstream_type: "rate_limit_error" })
        expect(textOf(Chunk.toReadonlyArray(retried))).toBe(fixture.text)
      }))
  })

  describe("errors", () => {
    const cases = [
      { scenario: "throttle_once", status: 429, type: "rate_limit_error", kind: "throttled", retryable: true },
      { scenario: "server_error", status: 500, type: "api_error", kind: "server", retryable: true },
      { scenario: "bad_request", status: 400, type: "invalid_request_error", kind: "validation", retryable: false }
    ] as const

    for (const c of cases) {
      it.scoped(`${c.status} ${c.type} → ${c.kind}, retryable=${c.retryable}, one request`, () =>
        Effect.gen(function*() {
          const { stub, provider } = yield* setup()
          stub.setScenario(c.scenario)

          const error = yield* Effect.flip(provider.complete(call))

          expect(error).toBeInstanceOf(Errors.ProviderError)
          expect(error).toMatchObject({
            kind: c.kind,
            retryable: c.retryable,
            upstream_status: c.status,
            upstream_type: c.type,
            provider: "anthropic",
            model: modelId
          })
          // Anthropic's words, not the SDK's dump of the JSON body.
          expect(error.message).toMatch(/^Anthropic: \w/)
          expect(error.message).not.toContain("\"type\"")
          expect(error.message).not.toContain(apiKey)
          expect(stub.requests()).toHaveLength(1)
        }))
    }

    it.scoped("a throttled call succeeds when the caller retries it; a validation error is not retried", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup()
        stub.setScenario("throttle_once")
        const completion = yield* provider.complete(call).pipe(Effect.retry({ times: 2, while: (e) => e.retryable }))
        expect(completion.text).toBe(fixture.text)
        expect(stub.requests()).toHaveLength(2)

        stub.setScenario("bad_request")
        const error = yield* Effect.flip(provider.complete(call).pipe(Effect.retry({ times: 2, while: (e) => e.retryable })))
        expect(error.kind).toBe("validation")
        expect(stub.requests()).toHaveLength(3)
      }))

    it.scoped("a socket reset before the answer is a retryable connection error", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup()
        stub.setScenario("reset_mid_stream")

        const error = yield* Effect.flip(provider.complete(call))

        expect(error).toMatchObject({ kind: "connection", retryable: true, upstream_type: "APIConnectionError" })
        expect(error.message).not.toContain(apiKey)
      }))

    it.scoped("a refused connection is a retryable connection error", () =>
      Effect.gen(function*() {
        const stub = yield* Effect.promise(() => startAnthropicStub())
        yield* Effect.promise(() => stub.close())
        const provider = yield* AnthropicProvider.make({ apiKey: Redacted.make(apiKey), baseUrl: stub.url })

        const error = yield* Effect.flip(provider.complete(call))

        expect(error).toMatchObject({ kind: "connection", retryable: true })
        expect(error.message).toContain("ECONNREFUSED")
      }))

    /** The adapter against a bare server that answers every request with `status`, `headers` and the JSON `body(request)`; closed with the scope. */
    const against = (status: number, headers: Http.OutgoingHttpHeaders, body: (req: Http.IncomingMessage) => unknown) =>
      Effect.gen(function*() {
        const server = yield* Effect.acquireRelease(
          Effect.async<Http.Server>((resume) => {
            const server = Http.createServer((req, res) => {
              req.resume()
              req.on("end", () => {
                res.writeHead(status, { "content-type": "application/json", ...headers })
                res.end(JSON.stringify(body(req)))
              })
            })
            server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
          }),
          (server) => Effect.async<void>((resume) => {
            server.close(() => resume(Effect.void))
            server.closeAllConnections()
          })
        )
        const { port } = server.address() as AddressInfo
        return yield* AnthropicProvider.make({ apiKey: Redacted.make(apiKey), baseUrl: `http://127.0.0.1:${port}` })
      })

    it.scoped("a 429 with Retry-After carries the wait the upstream asked for", () =>
      Effect.gen(function*() {
        const provider = yield* against(429, { "retry-after": "3" }, () => ({
          type: "error",
          error: { type: "rate_limit_error", message: "Number of requests has exceeded your rate limit" }
        }))
        expect(yield* Effect.flip(provider.complete(call))).toMatchObject({ kind: "throttled", upstream_status: 429, retry_after_ms: 3000 })
      }))

    it.scoped("never repeats the API key, even when the upstream echoes it", () =>
      Effect.gen(function*() {
        // An upstream (or a proxy in front of it) that quotes the key it got back in its error.
        const provider = yield* against(401, {}, (req) => ({
          type: "error",
          error: { type: "authentication_error", message: `invalid credentials: ${String(req.headers.authorization)}` }
        }))

        const error = yield* Effect.flip(provider.complete(call))

        expect(error).toMatchObject({ kind: "auth", retryable: false, upstream_status: 401, upstream_type: "authentication_error" })
        expect(error.message).toContain("invalid credentials: Bearer [REDACTED]")
        expect(error.message).not.toContain(apiKey)
      }))
  })

  describe("interruption", () => {
    it.scopedLive("interrupting complete aborts the request", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup()
        stub.setScenario("hang")

        const fiber = yield* Effect.fork(provider.complete(call))
        yield* eventually(() => stub.requests().length === 1)
        yield* Fiber.interrupt(fiber).pipe(Effect.timeout("1 second"))

        yield* eventually(() => stub.aborted() === 1, 1000)
      }))

    it.scopedLive("a timeout around complete aborts the request", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup()
        stub.setScenario("hang")

        const result = yield* provider.complete(call).pipe(Effect.timeout("200 millis"), Effect.either)

        expect(Either.isLeft(result)).toBe(true)
        yield* eventually(() => stub.aborted() === 1, 1000)
      }))

    it.scopedLive("interrupting a stream that waits for its headers aborts the request", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup()
        stub.setScenario("hang")

        const fiber = yield* Effect.fork(Stream.runDrain(provider.stream(call)))
        yield* eventually(() => stub.requests().length === 1)
        yield* Fiber.interrupt(fiber).pipe(Effect.timeout("1 second"))

        yield* eventually(() => stub.aborted() === 1, 1000)
      }))

    it.scopedLive("a consumer that stops early closes the upstream stream", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup({ eventDelayMs: 300 })

        const events = yield* provider.stream(call).pipe(
          Stream.filter((e) => e._tag === "TextDelta"),
          Stream.take(1),
          Stream.runCollect,
          Effect.timeout("3 seconds")
        )

        expect(textOf(Chunk.toReadonlyArray(events))).toBe("Hello")
        yield* eventually(() => stub.aborted() === 1, 1000)
      }))

    it.scopedLive("the call's timeout_ms (the adapter is timed): complete and a stream that do not start fail as timeouts and abort the request", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup()
        expect(provider.timed).toBe(true)
        const open = provider.open
        assert(open !== undefined, "the Anthropic adapter opens its streams")
        stub.setScenario("hang")

        expect(yield* Effect.flip(provider.complete({ ...call, timeout_ms: 150 }))).toMatchObject({
          _tag: "ProviderError", kind: "timeout", retryable: true, message: `no answer from 'anthropic' within 150 ms`
        })
        yield* eventually(() => stub.aborted() === 1, 1000)
        expect(yield* Effect.flip(Effect.scoped(open({ ...call, timeout_ms: 150 })))).toMatchObject({ kind: "timeout", retryable: true })
        yield* eventually(() => stub.aborted() === 2, 1000)
      }))

    it.scopedLive("a stream's timeout_ms is a wait per event: events 300 ms apart fail a 150 ms wait once started, pass a 1 s one though the whole stream takes longer", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup({ eventDelayMs: 300 })
        const open = provider.open
        assert(open !== undefined, "the Anthropic adapter opens its streams")

        const silent = yield* Effect.scoped(Effect.flatMap(open({ ...call, timeout_ms: 150 }), (pull) => Effect.flip(pull)))
        expect(silent).toEqual(Option.some(expect.objectContaining({ kind: "timeout", message: `no answer from 'anthropic' within 150 ms` })))
        yield* eventually(() => stub.aborted() === 1, 1000)

        const started = Date.now()
        const events = yield* Stream.runCollect(Pulls.toStream(open({ ...call, timeout_ms: 1000 })))
        expect(Date.now() - started).toBeGreaterThan(1000)
        expect(textOf(Chunk.toReadonlyArray(events))).toBe(fixture.text)
      }), 10_000)
  })

  describe("request mapping", () => {
    const ctx = { provider: "anthropic", model: modelId }

    it("merges consecutive turns of one role and keeps every system message", () => {
      const request = AnthropicProvider.toMessagesRequest({
        ...call,
        messages: [
          { role: "system", content: "a" },
          { role: "user", content: "q1" },
          { role: "user", content: "q2" },
          { role: "assistant", content: "r1" },
          { role: "system", content: "b" },
          { role: "user", content: "q3" }
        ]
      }, ctx)
      assert(Either.isRight(request))
      expect(request.right.system).toEqual([{ type: "text", text: "a" }, { type: "text", text: "b" }])
      expect(request.right.messages).toEqual([
        { role: "user", content: [{ type: "text", text: "q1" }, { type: "text", text: "q2" }] },
        { role: "assistant", content: [{ type: "text", text: "r1" }] },
        { role: "user", content: [{ type: "text", text: "q3" }] }
      ])
    })

    it("maps every tool choice and defaults a tool's schema to an empty object schema", () => {
      const choices: ReadonlyArray<LlmRequest.ToolChoice> = ["auto", "required", "none", { type: "function", function: { name: "f" } }]
      const mapped = choices.map((tool_choice) => {
        const r = AnthropicProvider.toMessagesRequest({ ...call, tools: [{ type: "function", function: { name: "f" } }], tool_choice }, ctx)
        assert(Either.isRight(r))
        return r.right.tool_choice
      })
      expect(mapped).toEqual([{ type: "auto" }, { type: "any" }, { type: "none" }, { type: "tool", name: "f" }])
      const r = AnthropicProvider.toMessagesRequest({ ...call, tools: [{ type: "function", function: { name: "f" } }] }, ctx)
      assert(Either.isRight(r))
      expect(r.right.tools).toEqual([{ name: "f", input_schema: { type: "object" } }])
    })

    it("refuses a tool message without tool_call_id", () => {
      const r = AnthropicProvider.toMessagesRequest({ ...call, messages: [{ role: "tool", content: "x" }] }, ctx)
      assert(Either.isLeft(r))
      expect(r.left).toMatchObject({ kind: "validation", retryable: false })
    })

    it("maps stop reasons", () => {
      expect(["end_turn", "stop_sequence", "max_tokens", "tool_use", "refusal", "pause_turn", null].map(AnthropicProvider.finishReason))
        .toEqual(["stop", "stop", "length", "tool_calls", "content_filter", "pause_turn", "unknown"])
    })
  })

  describe("toProviderError", () => {
    const ctx = { provider: "anthropic", model: modelId }

    it("maps undici's cut body and socket codes to connection, timeouts to timeout", () => {
      const terminated = Object.assign(new TypeError("terminated"), {
        cause: Object.assign(new Error("other side closed"), { code: "UND_ERR_SOCKET" })
      })
      expect(AnthropicProvider.toProviderError(terminated, ctx)).toMatchObject({ kind: "connection", retryable: true, upstream_type: "UND_ERR_SOCKET" })
      const headersTimeout = Object.assign(new TypeError("fetch failed"), {
        cause: Object.assign(new Error("Headers Timeout Error"), { code: "UND_ERR_HEADERS_TIMEOUT" })
      })
      expect(AnthropicProvider.toProviderError(headersTimeout, ctx)).toMatchObject({ kind: "timeout", retryable: true })
      expect(AnthropicProvider.toProviderError("weird", ctx)).toMatchObject({ kind: "unknown", retryable: false })
    })
  })

  describe("health", () => {
    it.scoped("is configured with a key, names the base URL and never the key", () =>
      Effect.gen(function*() {
        const provider = yield* AnthropicProvider.make({ apiKey: Redacted.make(apiKey), baseUrl: "https://api.anthropic.com" })
        const health = yield* provider.health
        expect(health.configured).toBe(true)
        expect(health.detail).toContain("https://api.anthropic.com")
        expect(health.detail).not.toContain(apiKey)
        expect(provider).toMatchObject({ name: "anthropic", mock: false })
        expect(provider.embed).toBeUndefined()
      }))

    it.scoped("without a key it says what is missing, and a call still fails as Anthropic answers", () =>
      Effect.gen(function*() {
        const stub = yield* stubFor()
        const provider = yield* AnthropicProvider.make({ name: "claude", baseUrl: stub.url })
        const health = yield* provider.health
        expect(provider.name).toBe("claude")
        expect(health.configured).toBe(false)
        expect(health.detail).toContain("ANTHROPIC_API_KEY")
        expect(health.detail).toContain("providers.anthropic.api_key")

        stub.setScenario("bad_request")
        const error = yield* Effect.flip(provider.complete(call))
        expect(error).toMatchObject({ provider: "claude", kind: "validation" })
      }))
  })
})

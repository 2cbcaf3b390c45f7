import { assert, describe, expect, it } from "@effect/vitest"
import { Errors, type LlmRequest, type ModelCatalog } from "@tidyllm/core"
import type { LlmProvider } from "@tidyllm/corporate-llm"
import { Chunk, Deferred, Effect, Either, Fiber, Option, Redacted, Schedule, Stream } from "effect"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import { APIConnectionError, APIConnectionTimeoutError, APIError } from "openai"
import * as Providers from "../src/index.js"
import * as OpenAiProvider from "../src/OpenAiProvider.js"
import { startOpenAiStub } from "./stubs/OpenAiStub.js"
import { fixture, type Scenario } from "./stubs/Scenario.js"

const apiKey = "sk-test-5b1f0e9a7c3d4e2f8a6b"
const modelId = "gpt-4o-mini"

const model: ModelCatalog.ModelEntry = {
  id: "gpt-4o-mini",
  aliases: [],
  provider_ids: { openai: modelId },
  kind: "chat",
  input_usd_per_million: 0.15,
  output_usd_per_million: 0.6,
  context_window: 128_000,
  max_output_tokens: 16_384
}

const call: LlmProvider.ProviderCall = {
  model,
  model_id: modelId,
  messages: [
    { role: "system", content: "You are terse." },
    { role: "user", content: "Say hi" }
  ],
  max_tokens: 64
}

const tools: ReadonlyArray<LlmRequest.ToolDefinition> = [{
  type: "function",
  function: {
    name: "get_weather",
    description: "The weather in a city",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] }
  }
}]

const stubResource = Effect.acquireRelease(
  Effect.promise(() => startOpenAiStub()),
  (stub) => Effect.promise(() => stub.close())
)

/** A stub and a provider whose client talks to it; both closed with the test's scope. */
const setup = (options?: Partial<OpenAiProvider.Options>, scenario: Scenario = "success") =>
  Effect.gen(function*() {
    const stub = yield* stubResource
    stub.setScenario(scenario)
    const provider = yield* OpenAiProvider.make({
      name: "openai",
      baseUrl: stub.url,
      apiKey: Redacted.make(apiKey),
      flavour: "openai",
      ...options
    })
    return { stub, provider }
  })

const compatible = (scenario: Scenario = "success") =>
  setup({ name: "ollama", flavour: "compatible", apiKey: undefined }, scenario)

const eventsOf = (chunk: Chunk.Chunk<LlmProvider.StreamEvent>) => Chunk.toReadonlyArray(chunk)
const textOf = (events: ReadonlyArray<LlmProvider.StreamEvent>) =>
  events.flatMap((e) => (e._tag === "TextDelta" ? [e.text] : [])).join("")

/** Tool calls as a client assembles them from `ToolCallDelta`s. */
const assembleToolCalls = (events: ReadonlyArray<LlmProvider.StreamEvent>) => {
  const calls = new Map<number, { id: string; name: string; arguments: string }>()
  for (const e of events) {
    if (e._tag !== "ToolCallDelta") continue
    const current = calls.get(e.index) ?? { id: "", name: "", arguments: "" }
    calls.set(e.index, {
      id: e.id ?? current.id,
      name: e.name ?? current.name,
      arguments: current.arguments + e.arguments
    })
  }
  return [...calls.values()]
}

/** Polls `check` until it holds (real time; the stub learns of a closed socket asynchronously). */
const eventually = (check: () => boolean) =>
  Effect.suspend(() => (check() ? Effect.void : Effect.fail("not yet"))).pipe(
    Effect.retry(Schedule.spaced("5 millis")),
    Effect.timeoutFail({ duration: "2 seconds", onTimeout: () => new Error("condition not met within 2 s") })
  )

/** A bare HTTP server on loopback for answers the scenario stub does not give; closed with the scope. */
const rawServer = (handler: Http.RequestListener) =>
  Effect.acquireRelease(
    Effect.async<Http.Server>((resume) => {
      const server = Http.createServer(handler)
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
    }),
    (server) =>
      Effect.async<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
  ).pipe(Effect.map((server) => `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`))

const sse = (frames: ReadonlyArray<unknown>) => frames.map((f) => `data: ${JSON.stringify(f)}\n\n`).join("")
const chunkFrame = (delta: Record<string, unknown>, finish_reason: string | null = null) => ({
  id: "chatcmpl-raw",
  object: "chat.completion.chunk",
  created: 1,
  model: modelId,
  choices: [{ index: 0, delta, finish_reason }]
})

describe("OpenAiProvider", () => {
  describe("complete", () => {
    it.scoped("sends a chat completion with the key and maps the answer", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup({ organization: "org-acme", project: "proj_gw" })

        const completion = yield* provider.complete({
          ...call,
          temperature: 0.2,
          top_p: 0.9,
          stop: ["END"],
          seed: 42,
          response_format: {
            type: "json_schema",
            json_schema: { name: "answer", schema: { type: "object" }, strict: true }
          }
        })

        expect(completion).toEqual({
          text: fixture.text,
          usage: fixture.usage,
          finish_reason: "stop"
        })
        expect(stub.requests()).toEqual([{
          model: modelId,
          messages: [
            { role: "system", content: "You are terse." },
            { role: "user", content: "Say hi" }
          ],
          // OpenAI itself: the field its reasoning models accept.
          max_completion_tokens: 64,
          temperature: 0.2,
          top_p: 0.9,
          stop: ["END"],
          seed: 42,
          response_format: { type: "json_schema", json_schema: { name: "answer", schema: { type: "object" }, strict: true } }
        }])
        const headers = stub.headers()[0]
        expect(headers?.authorization).toBe(`Bearer ${apiKey}`)
        expect(headers?.["openai-organization"]).toBe("org-acme")
        expect(headers?.["openai-project"]).toBe("proj_gw")
        expect(headers?.["user-agent"]).toBe("tidyllm-gateway")
        // One request: the gateway's retry policy is the only one.
        expect(stub.requests()).toHaveLength(1)
      }))

    it.scoped("a compatible server gets max_tokens, and no Authorization header without a key", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* compatible()

        const completion = yield* provider.complete(call)

        expect(completion.text).toBe(fixture.text)
        expect(provider).toMatchObject({ name: "ollama", mock: false })
        expect(stub.requests()[0]).toMatchObject({ model: modelId, max_tokens: 64 })
        expect(stub.requests()[0]).not.toHaveProperty("max_completion_tokens")
        expect(stub.headers()[0]).not.toHaveProperty("authorization")
      }))

    it.scoped("a compatible server with a key gets it as a bearer token", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup({ name: "vllm", flavour: "compatible", apiKey: Redacted.make("vllm-token") })

        yield* provider.complete(call)

        expect(stub.headers()[0]?.authorization).toBe("Bearer vllm-token")
        expect(stub.requests()[0]).toMatchObject({ max_tokens: 64 })
      }))

    it.scoped("returns the tool call and sends tools and a tool conversation in OpenAI's form", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup({}, "tool_call")

        const completion = yield* provider.complete({
          ...call,
          messages: [
            { role: "user", content: "Weather in Paris?" },
            {
              role: "assistant",
              content: "",
              tool_calls: [{ id: "call_0", type: "function", function: { name: "get_weather", arguments: "{\"city\":\"Paris\"}" } }]
            },
            { role: "tool", content: "{\"temp_c\":21}", tool_call_id: "call_0" },
            { role: "user", content: "And again?" }
          ],
          tools,
          tool_choice: { type: "function", function: { name: "get_weather" } }
        })

        expect(completion).toEqual({
          text: "",
          usage: fixture.usage,
          finish_reason: "tool_calls",
          tool_calls: [{
            id: fixture.tool.id,
            type: "function",
            function: { name: fixture.tool.name, arguments: fixture.tool.arguments }
          }]
        })
        expect(stub.requests()[0]).toMatchObject({
          messages: [
            { role: "user", content: "Weather in Paris?" },
            {
              role: "assistant",
              content: null,
              tool_calls: [{ id: "call_0", type: "function", function: { name: "get_weather", arguments: "{\"city\":\"Paris\"}" } }]
            },
            { role: "tool", content: "{\"temp_c\":21}", tool_call_id: "call_0" },
            { role: "user", content: "And again?" }
          ],
          tools: [{
            type: "function",
            function: {
              name: "get_weather",
              description: "The weather in a city",
              parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] }
            }
          }],
          tool_choice: { type: "function", function: { name: "get_weather" } }
        })
      }))

    it.scoped("a tool message without tool_call_id fails as validation before any request", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup()

        const error = yield* Effect.flip(provider.complete({ ...call, messages: [{ role: "tool", content: "42" }] }))

        expect(error).toMatchObject({ kind: "validation", retryable: false, provider: "openai" })
        expect(error.message).toMatch(/^OpenAI: messages\[0\]/)
        expect(stub.requests()).toHaveLength(0)
      }))
  })

  describe("stream", () => {
    it.scoped("streams text deltas, then finish and usage, asking for usage", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup()

        const events = eventsOf(yield* Stream.runCollect(provider.stream(call)))

        expect(events.filter((e) => e._tag === "TextDelta")).toEqual(
          fixture.textChunks.map((text) => ({ _tag: "TextDelta", text }))
        )
        expect(events.slice(-2)).toEqual([
          { _tag: "Finish", finish_reason: "stop" },
          { _tag: "Usage", usage: fixture.usage }
        ])
        expect(stub.requests()[0]).toMatchObject({
          model: modelId,
          stream: true,
          stream_options: { include_usage: true },
          max_completion_tokens: 64
        })
      }))

    it.scoped("streams tool call deltas that assemble to the call", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup({}, "tool_call")

        const events = eventsOf(yield* Stream.runCollect(provider.stream({ ...call, tools, tool_choice: "required" })))

        expect(assembleToolCalls(events)).toEqual([fixture.tool])
        // The arguments come in more than one piece, as a model streams them.
        expect(events.filter((e) => e._tag === "ToolCallDelta").length).toBeGreaterThan(2)
        expect(textOf(events)).toBe("")
        expect(events.slice(-2)).toEqual([
          { _tag: "Finish", finish_reason: "tool_calls" },
          { _tag: "Usage", usage: fixture.usage }
        ])
        expect(stub.requests()[0]).toMatchObject({ tools: [{ type: "function", function: { name: "get_weather" } }], tool_choice: "required" })
      }))

    it.scoped("a connection cut mid-stream fails after the deltas sent before it", () =>
      Effect.gen(function*() {
        const { provider } = yield* setup({}, "reset_mid_stream")

        const items = Chunk.toReadonlyArray(yield* Stream.runCollect(Stream.either(provider.stream(call))))

        expect(items.flatMap((i) => (Either.isRight(i) ? [i.right] : []))).toEqual(
          fixture.textChunks.slice(0, fixture.cutAfterChunks).map((text) => ({ _tag: "TextDelta", text }))
        )
        const last = items.at(-1)
        assert(last !== undefined && Either.isLeft(last))
        expect(last.left).toBeInstanceOf(Errors.ProviderError)
        // undici's socket error, read off the pool's response body.
        expect(last.left).toMatchObject({ kind: "connection", retryable: true, provider: "openai", model: modelId, upstream_type: "UND_ERR_SOCKET" })
        expect(last.left.message).toBe("OpenAI: the stream was cut: other side closed")
      }))

    it.scoped("a stream whose body ends without a finish reason fails as truncated", () =>
      Effect.gen(function*() {
        const url = yield* rawServer((_req, res) => {
          res.writeHead(200, { "content-type": "text/event-stream" })
          // Ends cleanly at the HTTP level, but with no finish reason and no `[DONE]`.
          res.end(sse([chunkFrame({ role: "assistant", content: "" }), chunkFrame({ content: "Hal" })]))
        })
        const provider = yield* OpenAiProvider.make({ name: "lmstudio", baseUrl: url, flavour: "compatible" })

        const items = Chunk.toReadonlyArray(yield* Stream.runCollect(Stream.either(provider.stream(call))))

        expect(items[0]).toEqual(Either.right({ _tag: "TextDelta", text: "Hal" }))
        const last = items.at(-1)
        assert(last !== undefined && Either.isLeft(last))
        expect(last.left).toMatchObject({ kind: "stream", retryable: true, provider: "lmstudio" })
        expect(last.left.message).toMatch(/^lmstudio: .*truncated/)
      }))

    it.scoped("a stream without a usage chunk still finishes (a server that ignores include_usage)", () =>
      Effect.gen(function*() {
        const url = yield* rawServer((_req, res) => {
          res.writeHead(200, { "content-type": "text/event-stream" })
          res.end(sse([chunkFrame({ content: "ok" }), chunkFrame({}, "length")]) + "data: [DONE]\n\n")
        })
        const provider = yield* OpenAiProvider.make({ name: "llamacpp", baseUrl: url, flavour: "compatible" })

        const events = eventsOf(yield* Stream.runCollect(provider.stream(call)))

        expect(events).toEqual([{ _tag: "TextDelta", text: "ok" }, { _tag: "Finish", finish_reason: "length" }])
      }))

    it.scoped("tolerates a usage chunk without choices and a finish chunk without delta", () =>
      Effect.gen(function*() {
        const url = yield* rawServer((_req, res) => {
          res.writeHead(200, { "content-type": "text/event-stream" })
          res.end(sse([
            chunkFrame({ content: "ok" }),
            { id: "x", object: "chat.completion.chunk", created: 1, model: modelId, choices: [{ index: 0, finish_reason: "stop" }] },
            { id: "x", object: "chat.completion.chunk", created: 1, model: modelId, usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 } }
          ]) + "data: [DONE]\n\n")
        })
        const provider = yield* OpenAiProvider.make({ name: "llamacpp", baseUrl: url, flavour: "compatible" })

        const events = eventsOf(yield* Stream.runCollect(provider.stream(call)))

        expect(events).toEqual([
          { _tag: "TextDelta", text: "ok" },
          { _tag: "Finish", finish_reason: "stop" },
          { _tag: "Usage", usage: { input_tokens: 3, output_tokens: 1 } }
        ])
      }))

    it.scoped("a 200 that is not a chat completion is a retryable server error, not a defect", () =>
      Effect.gen(function*() {
        const url = yield* rawServer((req, res) => {
          req.resume()
          res.writeHead(200, { "content-type": "application/json" })
          res.end(JSON.stringify({ object: "something.else" }))
        })
        const provider = yield* OpenAiProvider.make({ name: "proxy", baseUrl: url, flavour: "compatible" })

        const error = yield* Effect.flip(provider.complete(call))

        expect(error).toMatchObject({ kind: "server", retryable: true, provider: "proxy" })
        expect(error.message).toMatch(/^proxy: the answer is not a chat completion/)
      }))

    it.scoped("an error event inside the stream fails it with the upstream type", () =>
      Effect.gen(function*() {
        const url = yield* rawServer((_req, res) => {
          res.writeHead(200, { "content-type": "text/event-stream" })
          res.end(sse([chunkFrame({ content: "a" }), { error: { message: "overloaded", type: "server_error", param: null, code: null } }]))
        })
        const provider = yield* OpenAiProvider.make({ name: "vllm", baseUrl: url, flavour: "compatible" })

        const error = yield* Effect.flip(Stream.runCollect(provider.stream(call)))

        expect(error).toMatchObject({ kind: "server", retryable: true, upstream_type: "server_error" })
        expect(error.message).toContain("overloaded")
      }))
  })

  describe("errors", () => {
    const cases = [
      { scenario: "throttle_once", status: 429, kind: "throttled", retryable: true, type: "rate_limit_exceeded" },
      { scenario: "server_error", status: 500, kind: "server", retryable: true, type: "server_error" },
      { scenario: "bad_request", status: 400, kind: "validation", retryable: false, type: "string_above_max_length" }
    ] as const

    for (const c of cases) {
      it.scoped(`${c.scenario}: ${c.status} → ${c.kind}, retryable=${c.retryable}, on complete and stream`, () =>
        Effect.gen(function*() {
          const { stub, provider } = yield* setup({}, c.scenario)

          const error = yield* Effect.flip(provider.complete(call))
          stub.setScenario(c.scenario)
          const streamError = yield* Effect.flip(Stream.runCollect(provider.stream(call)))

          for (const e of [error, streamError]) {
            expect(e).toBeInstanceOf(Errors.ProviderError)
            expect(e).toMatchObject({
              kind: c.kind,
              retryable: c.retryable,
              upstream_status: c.status,
              upstream_type: c.type,
              provider: "openai",
              model: modelId
            })
            expect(e.message).toMatch(new RegExp(`^OpenAI: ${c.status} `))
            expect(e.message).not.toContain(apiKey)
          }
          // One request each: the client does not retry on its own.
          expect(stub.requests()).toHaveLength(2)
        }))
    }

    it.scoped("a 429 with Retry-After carries the wait the upstream asked for, plain and streamed", () =>
      Effect.gen(function*() {
        const url = yield* rawServer((req, res) => {
          req.resume()
          req.on("end", () => {
            res.writeHead(429, { "content-type": "application/json", "retry-after": "2", "retry-after-ms": "1750" })
            res.end(JSON.stringify({ error: { message: "Rate limit reached", type: "requests", code: "rate_limit_exceeded" } }))
          })
        })
        const provider = yield* OpenAiProvider.make({ name: "vllm", baseUrl: url, flavour: "compatible" })
        expect(yield* Effect.flip(provider.complete(call))).toMatchObject({ kind: "throttled", upstream_status: 429, retry_after_ms: 1750 })
        expect(yield* Effect.flip(Stream.runDrain(provider.stream(call)))).toMatchObject({ kind: "throttled", retry_after_ms: 1750 })
      }))

    it.scoped("a throttled call succeeds when the caller retries it", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup({}, "throttle_once")

        const completion = yield* provider.complete(call).pipe(Effect.retry({ times: 2, while: (e) => e.retryable }))

        expect(completion.text).toBe(fixture.text)
        expect(stub.requests()).toHaveLength(2)
      }))

    it.scoped("a validation error is not retried by a retryable-only policy", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup({}, "bad_request")

        const error = yield* Effect.flip(provider.complete(call).pipe(Effect.retry({ times: 2, while: (e) => e.retryable })))

        expect(error.kind).toBe("validation")
        expect(stub.requests()).toHaveLength(1)
      }))

    it.scoped("a connection reset before the answer is a retryable connection error", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup({}, "reset_mid_stream")

        const error = yield* Effect.flip(provider.complete(call))

        expect(error).toMatchObject({ kind: "connection", retryable: true, upstream_type: "UND_ERR_SOCKET" })
        expect(error.message).toBe("OpenAI: other side closed")
        expect(stub.requests()).toHaveLength(1)
      }))

    it.scoped("a refused connection is a retryable connection error naming the socket's code", () =>
      Effect.gen(function*() {
        // A port that was free a moment ago: nothing listens there.
        const url = yield* rawServer(() => {}).pipe(Effect.scoped)
        const provider = yield* OpenAiProvider.make({ name: "openai", baseUrl: url, apiKey: Redacted.make(apiKey), flavour: "openai" })

        const error = yield* Effect.flip(provider.complete(call))

        expect(error).toMatchObject({ kind: "connection", retryable: true, upstream_type: "ECONNREFUSED" })
        expect(error.message).not.toContain(apiKey)
      }))

    it.scoped("the key never appears in a message, even when the server echoes it", () =>
      Effect.gen(function*() {
        const url = yield* rawServer((req, res) => {
          req.resume()
          res.writeHead(401, { "content-type": "application/json" })
          res.end(JSON.stringify({
            error: { message: `Incorrect API key provided: ${String(req.headers.authorization)}.`, type: "invalid_request_error", param: null, code: "invalid_api_key" }
          }))
        })
        const provider = yield* OpenAiProvider.make({ name: "openai", baseUrl: url, apiKey: Redacted.make(apiKey), flavour: "openai" })

        const error = yield* Effect.flip(provider.complete(call))
        const streamError = yield* Effect.flip(Stream.runCollect(provider.stream(call)))

        for (const e of [error, streamError]) {
          expect(e).toMatchObject({ kind: "auth", retryable: false, upstream_status: 401, upstream_type: "invalid_api_key" })
          expect(e.message).toContain("Incorrect API key provided: Bearer [REDACTED]")
          expect(e.message).not.toContain(apiKey)
          expect(JSON.stringify(e)).not.toContain(apiKey)
        }
      }))
  })

  describe("interruption", () => {
    it.scopedLive("a timeout on a hanging call aborts the request", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup()
        // Warm the client up first, so the 50 ms go to the hanging request and not to module loading.
        yield* provider.complete(call)
        stub.setScenario("hang")

        const result = yield* provider.complete(call).pipe(Effect.timeout("50 millis"), Effect.either)

        expect(Either.isLeft(result) && result.left._tag === "TimeoutException").toBe(true)
        yield* eventually(() => stub.aborted() === 1)
        expect(stub.requests()).toHaveLength(2)
      }))

    const interruptedOnceArrived = <A, E>(run: (provider: LlmProvider.LlmProvider) => Effect.Effect<A, E>) =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup({}, "hang")

        const fiber = yield* Effect.fork(run(provider))
        yield* eventually(() => stub.requests().length === 1)
        expect(stub.aborted()).toBe(0)
        // Returns at once: nothing waits for the hanging upstream.
        yield* Fiber.interrupt(fiber).pipe(Effect.timeout("1 second"))

        yield* eventually(() => stub.aborted() === 1)
      })

    it.scopedLive("interrupting a hanging call aborts the request", () => interruptedOnceArrived((p) => p.complete(call)))

    it.scopedLive("interrupting a hanging stream aborts the request", () =>
      interruptedOnceArrived((p) => Stream.runCollect(p.stream(call))))

    it.scopedLive("interrupting hanging embeddings aborts the request", () =>
      interruptedOnceArrived((p) => p.embed?.({ model, model_id: "text-embedding-3-small", input: ["x"] }) ?? Effect.void))

    /** A server that sends one text chunk and then waits; `closed` resolves when the client goes. */
    const slowStream = Effect.gen(function*() {
      const closed = yield* Deferred.make<boolean>()
      const url = yield* rawServer((req, res) => {
        req.resume()
        res.on("close", () => Deferred.unsafeDone(closed, Effect.succeed(res.writableFinished)))
        res.writeHead(200, { "content-type": "text/event-stream" })
        res.write(sse([chunkFrame({ role: "assistant", content: "" }), chunkFrame({ content: "first" })]))
      })
      const provider = yield* OpenAiProvider.make({ name: "vllm", baseUrl: url, flavour: "compatible" })
      return { closed, provider }
    })

    it.scopedLive("interrupting a stream mid-answer closes the upstream connection", () =>
      Effect.gen(function*() {
        const { closed, provider } = yield* slowStream
        const first = yield* Deferred.make<LlmProvider.StreamEvent>()

        const fiber = yield* provider.stream(call).pipe(
          Stream.runForEach((e) => Deferred.succeed(first, e)),
          Effect.fork
        )
        expect(yield* Deferred.await(first).pipe(Effect.timeout("2 seconds"))).toEqual({ _tag: "TextDelta", text: "first" })
        yield* Fiber.interrupt(fiber).pipe(Effect.timeout("1 second"))

        expect(yield* Deferred.await(closed).pipe(Effect.timeout("1 second"))).toBe(false)
      }))

    it.scopedLive("complete with timeout_ms (the adapter is timed): fails as a timeout and aborts the request", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup()
        expect(provider.timed).toBe(true)
        yield* provider.complete(call)
        stub.setScenario("hang")
        const started = Date.now()
        const error = yield* Effect.flip(provider.complete({ ...call, timeout_ms: 150 }))
        expect(error).toMatchObject({ _tag: "ProviderError", kind: "timeout", retryable: true, message: `no answer from 'openai' within 150 ms` })
        expect(Date.now() - started).toBeGreaterThanOrEqual(140)
        yield* eventually(() => stub.aborted() === 1)
      }))

    it.scopedLive("open with timeout_ms: a response that does not start, and a stream gone silent, fail as timeouts and close the connection", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup({}, "hang")
        const open = provider.open
        if (open === undefined) return expect.unreachable("the adapter opens its streams")
        const started = Date.now()
        const notStarted = yield* Effect.flip(Effect.scoped(open({ ...call, timeout_ms: 150 })))
        expect(notStarted).toMatchObject({ _tag: "ProviderError", kind: "timeout", retryable: true, message: `no answer from 'openai' within 150 ms` })
        expect(Date.now() - started).toBeGreaterThanOrEqual(140)
        yield* eventually(() => stub.aborted() === 1)

        const { closed, provider: slow } = yield* slowStream
        const silent = yield* Effect.scoped(Effect.gen(function*() {
          const pull = yield* (slow.open ?? (() => Effect.die("no open")))({ ...call, timeout_ms: 150 })
          expect(textOf(eventsOf(yield* pull))).toBe("first")
          return yield* Effect.flip(pull)
        }))
        expect(silent).toEqual(Option.some(expect.objectContaining({ _tag: "ProviderError", kind: "timeout", message: `no answer from 'vllm' within 150 ms` })))
        expect(yield* Deferred.await(closed).pipe(Effect.timeout("1 second"))).toBe(false)
      }))

    it.scopedLive("a consumer that stops early closes the upstream connection", () =>
      Effect.gen(function*() {
        const { closed, provider } = yield* slowStream

        const events = yield* provider.stream(call).pipe(Stream.take(1), Stream.runCollect, Effect.timeout("2 seconds"))

        expect(textOf(eventsOf(events))).toBe("first")
        expect(yield* Deferred.await(closed).pipe(Effect.timeout("1 second"))).toBe(false)
      }))
  })

  describe("embed", () => {
    it.scoped("returns vectors in input order with the tokens, passing dimensions", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup()
        assert(provider.embed !== undefined)
        const embeddingModel: ModelCatalog.ModelEntry = { ...model, id: "text-embedding-3-small", kind: "embedding" }

        const plain = yield* provider.embed({ model: embeddingModel, model_id: "text-embedding-3-small", input: ["a", "b"] })
        const shortened = yield* provider.embed({
          model: embeddingModel,
          model_id: "text-embedding-3-small",
          input: ["a"],
          dimensions: 2
        })

        expect(plain).toEqual({ vectors: [fixture.embedding, fixture.embedding], input_tokens: fixture.embeddingTokens })
        expect(shortened.vectors).toEqual([fixture.embedding.slice(0, 2)])
        expect(stub.requests()).toEqual([
          { model: "text-embedding-3-small", input: ["a", "b"], encoding_format: "float" },
          { model: "text-embedding-3-small", input: ["a"], encoding_format: "float", dimensions: 2 }
        ])
      }))

    it.scoped("maps embedding failures like chat failures", () =>
      Effect.gen(function*() {
        const { provider } = yield* setup({}, "server_error")
        assert(provider.embed !== undefined)

        const error = yield* Effect.flip(provider.embed({ model, model_id: "text-embedding-3-small", input: ["a"] }))

        expect(error).toMatchObject({ kind: "server", retryable: true, upstream_status: 500 })
      }))
  })

  describe("health", () => {
    it.scoped("names base URL and flavour, never the key or the URL's password", () =>
      Effect.gen(function*() {
        const provider = yield* OpenAiProvider.make({
          name: "openai",
          baseUrl: "https://gw-user:gw-pass-123@llm-proxy.example.com/v1",
          apiKey: Redacted.make(apiKey),
          flavour: "openai"
        })
        const health = yield* provider.health
        expect(health.configured).toBe(true)
        expect(health.detail).toContain("https://llm-proxy.example.com/v1")
        expect(health.detail).toContain("openai")
        expect(health.detail).not.toContain(apiKey)
        expect(health.detail).not.toContain("gw-pass-123")
        expect(health.detail).not.toContain("gw-user")
      }))

    it.scoped("OpenAI without a key is unconfigured and says which setting is missing; calls fail without a request", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup({ apiKey: undefined })

        const health = yield* provider.health
        expect(health.configured).toBe(false)
        expect(health.detail).toContain("OPENAI_API_KEY")
        expect(health.detail).toContain("providers.openai.api_key")

        const error = yield* Effect.flip(provider.complete(call))
        expect(error).toMatchObject({ kind: "auth", retryable: false })
        expect(stub.requests()).toHaveLength(0)
      }))

    it.scoped("a compatible server is configured by its base URL alone", () =>
      Effect.gen(function*() {
        const provider = yield* OpenAiProvider.make({ name: "ollama", baseUrl: "http://127.0.0.1:11434/v1", flavour: "compatible" })
        const health = yield* provider.health
        expect(health.configured).toBe(true)
        expect(health.detail).toContain("http://127.0.0.1:11434/v1")
        expect(health.detail).toContain("compatible")
      }))
  })

  describe("toProviderError", () => {
    const ctx = { provider: "openai", model: modelId }

    it("maps the client's timeout to a retryable timeout", () => {
      expect(OpenAiProvider.toProviderError(new APIConnectionTimeoutError(), ctx))
        .toMatchObject({ kind: "timeout", retryable: true })
    })

    it("maps undici's cut body to a retryable connection error", () => {
      const socket = Object.assign(new Error("other side closed"), { code: "UND_ERR_SOCKET" })
      const error = OpenAiProvider.toProviderError(new TypeError("terminated", { cause: socket }), ctx)
      expect(error).toMatchObject({ kind: "connection", retryable: true, upstream_type: "UND_ERR_SOCKET" })
      expect(error.message).toBe("OpenAI: terminated: other side closed")
      expect(OpenAiProvider.toProviderError(new Error("socket hang up"), ctx)).toMatchObject({ kind: "connection" })
    })

    it("names the client's error class when the upstream names no type (by class, not by constructor name)", () => {
      expect(OpenAiProvider.toProviderError(new APIConnectionTimeoutError(), ctx)).toMatchObject({ upstream_type: "APIConnectionTimeoutError" })
      expect(OpenAiProvider.toProviderError(new APIConnectionError({ message: "refused" }), ctx))
        .toMatchObject({ kind: "connection", upstream_type: "APIConnectionError" })
      expect(OpenAiProvider.toProviderError(APIError.generate(429, { message: "slow down" }, undefined, new Headers()), ctx))
        .toMatchObject({ kind: "throttled", upstream_status: 429, upstream_type: "RateLimitError" })
      expect(OpenAiProvider.toProviderError(APIError.generate(418, { message: "teapot" }, undefined, new Headers()), ctx))
        .toMatchObject({ upstream_status: 418, upstream_type: "APIError" })
    })

    it("uses the upstream type when there is no status, then the status, then unknown", () => {
      expect(OpenAiProvider.toProviderError(new APIError(undefined, { type: "server_error", message: "x" }, undefined, undefined), ctx))
        .toMatchObject({ kind: "server", retryable: true, upstream_type: "server_error" })
      expect(OpenAiProvider.toProviderError(new APIError(503, { message: "busy" }, undefined, new Headers()), ctx))
        .toMatchObject({ kind: "server", upstream_status: 503 })
      expect(OpenAiProvider.toProviderError(new APIError(404, { message: "no", code: "model_not_found" }, undefined, new Headers()), ctx))
        .toMatchObject({ kind: "not_found", retryable: false, upstream_type: "model_not_found" })
      expect(OpenAiProvider.toProviderError(new APIError(429, { message: "pay", code: "insufficient_quota" }, undefined, new Headers()), ctx))
        .toMatchObject({ kind: "auth", retryable: false, upstream_status: 429 })
      expect(OpenAiProvider.toProviderError("weird", { provider: "ollama", model: "llama3" }))
        .toMatchObject({ kind: "unknown", retryable: false, message: "ollama: weird" })
    })
  })

  it("is exported from the package index", () => {
    expect(Providers.OpenAiProvider.make).toBe(OpenAiProvider.make)
  })
})

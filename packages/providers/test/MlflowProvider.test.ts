import { assert, describe, expect, it } from "@effect/vitest"
import { Errors, type LlmRequest, type ModelCatalog } from "@tidyllm/core"
import type { LlmProvider } from "@tidyllm/corporate-llm"
import { Chunk, Duration, Effect, Either, Fiber, Option, Redacted, Stream } from "effect"
import * as MlflowProvider from "../src/MlflowProvider.js"
import { startMlflowStub, type MlflowStubOptions } from "./stubs/MlflowStub.js"
import { fixture, type StubHandle } from "./stubs/Scenario.js"

const endpoint = "chat-gpt4o"
const token = "mlflow-token-SECRET-0123456789"

const model: ModelCatalog.ModelEntry = {
  id: "gpt-4o-via-mlflow",
  aliases: [],
  provider_ids: { mlflow: endpoint },
  kind: "chat",
  input_usd_per_million: 2.5,
  output_usd_per_million: 10,
  context_window: 128_000,
  max_output_tokens: 4096
}

const call: LlmProvider.ProviderCall = {
  model,
  model_id: endpoint,
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

const stubFor = (options?: MlflowStubOptions) =>
  Effect.acquireRelease(
    Effect.promise(() => startMlflowStub(options)),
    (stub) => Effect.promise(() => stub.close())
  )

const setup = (options?: MlflowStubOptions) =>
  Effect.gen(function*() {
    const stub = yield* stubFor(options)
    const provider = yield* MlflowProvider.make({ gatewayUrl: `${stub.url}/`, token: Redacted.make(token) })
    return { stub, provider }
  })

const textOf = (events: ReadonlyArray<LlmProvider.StreamEvent>) =>
  events.flatMap((e) => (e._tag === "TextDelta" ? [e.text] : [])).join("")

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

const eventually = (predicate: () => boolean, ms = 2000) =>
  Effect.gen(function*() {
    while (!predicate()) yield* Effect.sleep("10 millis")
  }).pipe(Effect.timeoutFail({ duration: Duration.millis(ms), onTimeout: () => new Error(`condition not met within ${ms} ms`) }))

const lastRequest = (stub: StubHandle) => stub.requests().at(-1) as Record<string, unknown> | undefined

const collectEither = (stream: Stream.Stream<LlmProvider.StreamEvent, Errors.ProviderError>) =>
  Effect.map(Stream.runCollect(Stream.either(stream)), (items) => {
    const all = Chunk.toReadonlyArray(items)
    return { events: all.flatMap((i) => (Either.isRight(i) ? [i.right] : [])), last: all.at(-1) }
  })

describe("MlflowProvider", () => {
  describe("complete", () => {
    it.scoped("invokes the endpoint with OpenAI's chat shape and maps the answer", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup()

        const completion = yield* provider.complete({ ...call, seed: 7 })

        expect(completion).toEqual({ text: fixture.text, usage: fixture.usage, finish_reason: "stop" })
        expect(stub.requests()).toEqual([{
          messages: [{ role: "system", content: "You are terse." }, { role: "user", content: "Say hi" }],
          max_tokens: 64,
          temperature: 0.2,
          top_p: 0.9,
          stop: ["END"]
        }])
        expect(stub.headers()[0]?.authorization).toBe(`Bearer ${token}`)
      }))

    it.scoped("answers a tool call with the endpoint's tool_calls; sends tools, tool_choice and response_format as given", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup()
        stub.setScenario("tool_call")

        const completion = yield* provider.complete({ ...toolCall, response_format: { type: "json_object" } })

        expect(completion).toEqual({
          text: "",
          usage: fixture.usage,
          finish_reason: "tool_calls",
          tool_calls: [{ id: fixture.tool.id, type: "function", function: { name: fixture.tool.name, arguments: fixture.tool.arguments } }]
        })
        expect(lastRequest(stub)).toMatchObject({ tools: [weatherTool], tool_choice: "required", response_format: { type: "json_object" } })
      }))

    it.scoped("maps a follow-up turn with the tool's result", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup()
        const assistantCall = { id: fixture.tool.id, type: "function" as const, function: { name: fixture.tool.name, arguments: fixture.tool.arguments } }

        yield* provider.complete({
          ...toolCall,
          tool_choice: "auto",
          messages: [
            { role: "user", content: "Weather in Paris?" },
            { role: "assistant", content: "", tool_calls: [assistantCall] },
            { role: "tool", tool_call_id: fixture.tool.id, content: "18°C, sunny" }
          ]
        })

        expect(lastRequest(stub)?.messages).toEqual([
          { role: "user", content: "Weather in Paris?" },
          { role: "assistant", content: null, tool_calls: [assistantCall] },
          { role: "tool", tool_call_id: fixture.tool.id, content: "18°C, sunny" }
        ])
      }))
  })

  describe("stream", () => {
    it.scoped("streams text deltas, then usage and finish at [DONE]", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup()

        const events = Chunk.toReadonlyArray(yield* Stream.runCollect(provider.stream(call)))

        expect(events.filter((e) => e._tag === "TextDelta")).toEqual(fixture.textChunks.map((text) => ({ _tag: "TextDelta", text })))
        expect(events.slice(-2)).toEqual([
          { _tag: "Usage", usage: fixture.usage },
          { _tag: "Finish", finish_reason: "stop" }
        ])
        expect(lastRequest(stub)).toMatchObject({ stream: true, stop: ["END"], messages: [{ role: "system" }, { role: "user" }] })
        expect(stub.headers()[0]?.accept).toBe("text/event-stream")
      }))

    it.scoped("reassembles events split across arbitrary byte boundaries", () =>
      Effect.gen(function*() {
        const { provider } = yield* setup({ writeBytes: 7 })

        const events = Chunk.toReadonlyArray(yield* Stream.runCollect(provider.stream(call)))

        expect(textOf(events)).toBe(fixture.text)
        expect(events.at(-1)).toEqual({ _tag: "Finish", finish_reason: "stop" })
      }))

    it.scoped("a stream without usage gives no Usage event", () =>
      Effect.gen(function*() {
        const { provider } = yield* setup({ streamUsage: false })

        const events = Chunk.toReadonlyArray(yield* Stream.runCollect(provider.stream(call)))

        expect(textOf(events)).toBe(fixture.text)
        expect(events.some((e) => e._tag === "Usage")).toBe(false)
        expect(events.at(-1)).toEqual({ _tag: "Finish", finish_reason: "stop" })
      }))

    it.scoped("streams a tool call as deltas that assemble to the call", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup()
        stub.setScenario("tool_call")

        const events = Chunk.toReadonlyArray(yield* Stream.runCollect(provider.stream(toolCall)))

        expect(assemble(events)).toEqual([{ id: fixture.tool.id, name: fixture.tool.name, arguments: fixture.tool.arguments }])
        expect(events.at(-1)).toEqual({ _tag: "Finish", finish_reason: "tool_calls" })
        expect(lastRequest(stub)).toMatchObject({ stream: true, tools: [weatherTool], tool_choice: "required" })
      }))

    it.scoped("a stream that ends without [DONE] fails, retryable", () =>
      Effect.gen(function*() {
        const { provider } = yield* setup({ omitDone: true })

        const { events, last } = yield* collectEither(provider.stream(call))

        expect(textOf(events)).toBe(fixture.text)
        expect(events.some((e) => e._tag === "Finish")).toBe(false)
        assert(last !== undefined && Either.isLeft(last))
        expect(last.left).toMatchObject({ kind: "stream", retryable: true })
      }))

    it.scoped("an error relayed mid-stream fails the stream with its code and message", () =>
      Effect.gen(function*() {
        const { provider } = yield* setup({ midStreamError: { error_code: "RESOURCE_EXHAUSTED", message: "Upstream quota used up" } })

        const { events, last } = yield* collectEither(provider.stream(call))

        expect(events).toEqual([{ _tag: "TextDelta", text: "Hello" }])
        assert(last !== undefined && Either.isLeft(last))
        expect(last.left).toMatchObject({ kind: "throttled", retryable: true, upstream_type: "RESOURCE_EXHAUSTED" })
        expect(last.left.message).toContain("Upstream quota used up")
      }))

    it.scoped("a reset mid-stream gives the first deltas, then a retryable failure", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup()
        stub.setScenario("reset_mid_stream")

        const { events, last } = yield* collectEither(provider.stream(call))

        expect(events.flatMap((e) => (e._tag === "TextDelta" ? [e.text] : []))).toEqual(fixture.textChunks.slice(0, fixture.cutAfterChunks))
        assert(last !== undefined && Either.isLeft(last))
        expect(last.left).toMatchObject({ kind: "connection", retryable: true, provider: "mlflow", model: endpoint })
        expect(last.left.message).not.toContain(token)
      }))

    it.scoped("an HTTP error fails the stream before any event", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup()
        stub.setScenario("server_error")

        const error = yield* Effect.flip(Stream.runCollect(provider.stream(call)))

        expect(error).toMatchObject({ kind: "server", retryable: true, upstream_status: 500, upstream_type: "INTERNAL_ERROR" })
      }))
  })

  describe("errors", () => {
    const cases = [
      { scenario: "throttle_once", status: 429, kind: "throttled", retryable: true, words: "Rate limit exceeded", type: undefined },
      { scenario: "server_error", status: 500, kind: "server", retryable: true, words: "Upstream provider failed", type: "INTERNAL_ERROR" },
      { scenario: "bad_request", status: 400, kind: "validation", retryable: false, words: "Invalid value for max_tokens", type: "INVALID_PARAMETER_VALUE" }
    ] as const

    for (const c of cases) {
      it.scoped(`HTTP ${c.status} → ${c.kind}, retryable=${c.retryable}, the gateway's message kept`, () =>
        Effect.gen(function*() {
          const { stub, provider } = yield* setup()
          stub.setScenario(c.scenario)

          const error = yield* Effect.flip(provider.complete(call))

          expect(error).toBeInstanceOf(Errors.ProviderError)
          expect(error).toMatchObject({ kind: c.kind, retryable: c.retryable, upstream_status: c.status, provider: "mlflow", model: endpoint })
          expect(error.upstream_type).toBe(c.type)
          expect(error.message).toContain(c.words)
          expect(error.message).not.toContain(token)
          expect(stub.requests()).toHaveLength(1)
        }))
    }

    it.scoped("a throttled call succeeds when the caller retries it", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup()
        stub.setScenario("throttle_once")

        const completion = yield* provider.complete(call).pipe(Effect.retry({ times: 2, while: (e) => e.retryable }))

        expect(completion.text).toBe(fixture.text)
        expect(stub.requests()).toHaveLength(2)
      }))

    it.scoped("FastAPI's 422 with a detail list is a validation error", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup({ badRequestAs422: true })
        stub.setScenario("bad_request")

        const error = yield* Effect.flip(provider.complete(call))

        expect(error).toMatchObject({ kind: "validation", retryable: false, upstream_status: 422 })
        expect(error.message).toContain("ensure this value is greater than 0")
      }))

    it.scoped("a socket reset before the answer is a retryable connection error", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup()
        stub.setScenario("reset_mid_stream")

        const error = yield* Effect.flip(provider.complete(call))

        expect(error).toMatchObject({ kind: "connection", retryable: true })
        expect(error.message).not.toContain(token)
      }))

    it.scoped("a refused connection is a retryable connection error", () =>
      Effect.gen(function*() {
        const stub = yield* Effect.promise(() => startMlflowStub())
        yield* Effect.promise(() => stub.close())
        const provider = yield* MlflowProvider.make({ gatewayUrl: stub.url, token: Redacted.make(token) })

        const error = yield* Effect.flip(provider.complete(call))

        expect(error).toMatchObject({ kind: "connection", retryable: true, upstream_type: "ECONNREFUSED" })
        expect(error.message).not.toContain(token)
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

    it.scopedLive("the call's timeout_ms (the adapter is timed): complete, a stream that does not start, and one gone silent fail as timeouts and stop the upstream", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup()
        expect(provider.timed).toBe(true)
        stub.setScenario("hang")
        expect(yield* Effect.flip(provider.complete({ ...call, timeout_ms: 150 }))).toMatchObject({
          _tag: "ProviderError", kind: "timeout", retryable: true, message: `no answer from 'mlflow' within 150 ms`
        })
        yield* eventually(() => stub.aborted() === 1, 1000)
        const open = provider.open ?? (() => Effect.die("the adapter opens its streams"))
        expect(yield* Effect.flip(Effect.scoped(open({ ...call, timeout_ms: 150 })))).toMatchObject({ kind: "timeout" })
        yield* eventually(() => stub.aborted() === 2, 1000)

        // Chunks 300 ms apart against a 250 ms wait: the first (sent at once) arrives in time, the silence after it does not pass.
        const slow = yield* setup({ chunkDelayMs: 300 })
        const silent = yield* Effect.scoped(Effect.gen(function*() {
          const pull = yield* (slow.provider.open ?? (() => Effect.die("no open")))({ ...call, timeout_ms: 250 })
          const first = yield* pull
          return { first: Chunk.toReadonlyArray(first), next: yield* Effect.flip(pull) }
        }))
        expect(textOf(silent.first)).toBe("Hello")
        expect(silent.next).toEqual(Option.some(expect.objectContaining({ kind: "timeout", message: `no answer from 'mlflow' within 250 ms` })))
        yield* eventually(() => slow.stub.aborted() === 1, 1000)
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
        const { stub, provider } = yield* setup({ chunkDelayMs: 300 })

        const events = yield* provider.stream(call).pipe(Stream.take(1), Stream.runCollect, Effect.timeout("3 seconds"))

        expect(textOf(Chunk.toReadonlyArray(events))).toBe("Hello")
        yield* eventually(() => stub.aborted() === 1, 1000)
      }))

    it.scopedLive("interrupting embed aborts the request", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup()
        stub.setScenario("hang")
        assert(provider.embed !== undefined)

        const result = yield* provider.embed({ model, model_id: "embeddings", input: ["a"] }).pipe(Effect.timeout("200 millis"), Effect.either)

        expect(Either.isLeft(result)).toBe(true)
        yield* eventually(() => stub.aborted() === 1, 1000)
      }))
  })

  describe("embed", () => {
    const embedModel: ModelCatalog.ModelEntry = { ...model, id: "embed-via-mlflow", kind: "embedding" }

    it.scoped("invokes an embeddings endpoint with {input} and returns vectors in input order", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup()
        assert(provider.embed !== undefined)

        const result = yield* provider.embed({ model: embedModel, model_id: "text-embeddings", input: ["one", "two"] })

        expect(result).toEqual({ vectors: [fixture.embedding, fixture.embedding], input_tokens: fixture.embeddingTokens })
        expect(stub.requests()).toEqual([{ input: ["one", "two"] }])
        expect(stub.headers()[0]?.authorization).toBe(`Bearer ${token}`)
      }))

    it.scoped("refuses vectors of another size than the dimensions asked for", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup()
        assert(provider.embed !== undefined)

        const error = yield* Effect.flip(provider.embed({ model: embedModel, model_id: "text-embeddings", input: ["one"], dimensions: 8 }))

        expect(error).toMatchObject({ kind: "validation", retryable: false })
        expect(lastRequest(stub)).toEqual({ input: ["one"], dimensions: 8 })
      }))

    it.scoped("maps the gateway's errors as chat does", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup()
        assert(provider.embed !== undefined)
        stub.setScenario("throttle_once")

        const error = yield* Effect.flip(provider.embed({ model: embedModel, model_id: "text-embeddings", input: ["one"] }))

        expect(error).toMatchObject({ kind: "throttled", retryable: true, upstream_status: 429 })
      }))
  })

  describe("health", () => {
    it.scopedLive("asks the gateway's /health and reports it, without the token", () =>
      Effect.gen(function*() {
        const { stub, provider } = yield* setup()

        const health = yield* provider.health

        expect(health.configured).toBe(true)
        expect(health.reachable).toBe(true)
        expect(health.detail).toBe(`MLflow AI Gateway at ${stub.url}: reachable, status OK`)
        expect(stub.headers().at(-1)?.authorization).toBe(`Bearer ${token}`)
        expect(provider).toMatchObject({ name: "mlflow", mock: false })
      }))

    it.scopedLive("an unreachable gateway is configured but says it is unreachable", () =>
      Effect.gen(function*() {
        const stub = yield* Effect.promise(() => startMlflowStub())
        yield* Effect.promise(() => stub.close())
        const provider = yield* MlflowProvider.make({ name: "mlflow-eu", gatewayUrl: stub.url, token: Redacted.make(token) })

        const health = yield* provider.health

        expect(provider.name).toBe("mlflow-eu")
        expect(health.configured).toBe(true)
        expect(health.reachable).toBe(false)
        expect(health.detail).toContain("unreachable")
        expect(health.detail).toContain("ECONNREFUSED")
        expect(health.detail).not.toContain(token)
      }))
  })

  describe("toProviderError", () => {
    const ctx = { provider: "mlflow", model: endpoint }

    it("maps undici's failures by the codes in their causes", () => {
      const cause = (message: string, code: string) => Object.assign(new Error(message), { code })
      expect(MlflowProvider.toProviderError(Object.assign(new TypeError("terminated"), { cause: cause("other side closed", "UND_ERR_SOCKET") }), ctx))
        .toMatchObject({ kind: "connection", retryable: true, upstream_type: "UND_ERR_SOCKET" })
      expect(MlflowProvider.toProviderError(Object.assign(new TypeError("fetch failed"), { cause: cause("Connect Timeout Error", "UND_ERR_CONNECT_TIMEOUT") }), ctx))
        .toMatchObject({ kind: "timeout", retryable: true })
      expect(MlflowProvider.toProviderError(new Error("something else"), ctx)).toMatchObject({ kind: "unknown", retryable: false })
    })
  })
})

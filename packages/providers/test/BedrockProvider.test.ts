import { assert, describe, expect, it } from "@effect/vitest"
import { Errors, type Config, type ModelCatalog } from "@tidyllm/core"
import type { LlmProvider } from "@tidyllm/corporate-llm"
import { Chunk, Deferred, Duration, Effect, Either, Fiber, Redacted, Stream } from "effect"
import * as Http2 from "node:http2"
import type { AddressInfo } from "node:net"
import * as BedrockProvider from "../src/BedrockProvider.js"
import * as BedrockStub from "./BedrockStub.js"

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

        // The stub would answer after 2 s; the reset arrives long before.
        const closure = yield* within(1000, () => req.closed)
        expect(closure.replyComplete).toBe(false)
        expect(closure.rstCode).not.toBe(Http2.constants.NGHTTP2_NO_ERROR)
      }), 10_000)

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
      const input = BedrockProvider.toConverseInput({
        ...call,
        messages: [
          { role: "system", content: "a" },
          { role: "user", content: "q1" },
          { role: "user", content: "q2" },
          { role: "assistant", content: "r1" },
          { role: "system", content: "b" },
          { role: "user", content: "q3" }
        ]
      })
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

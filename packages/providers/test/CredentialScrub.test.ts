/**
 * No adapter lets its own credential out through a `ProviderError`: upstreams that echo the
 * credential they were sent (in an error body, an SSE error event, a stream exception, a health
 * answer) get it replaced by `[REDACTED]` before the error leaves the adapter. The stubs'
 * `echo_credentials` scenario echoes every credential header the request carried.
 */
import { assert, describe, expect, it } from "@effect/vitest"
import { Errors, type Config, type ModelCatalog } from "@tidyllm/core"
import type { LlmProvider } from "@tidyllm/corporate-llm"
import { Effect, Redacted, Stream } from "effect"
import { randomBytes } from "node:crypto"
import * as AnthropicProvider from "../src/AnthropicProvider.js"
import * as BedrockProvider from "../src/BedrockProvider.js"
import { redactedMark, scrubber, scrubError } from "../src/internal/errors.js"
import * as MlflowProvider from "../src/MlflowProvider.js"
import * as OpenAiProvider from "../src/OpenAiProvider.js"
import * as BedrockStub from "./BedrockStub.js"
import { startAnthropicStub, type AnthropicStubOptions } from "./stubs/AnthropicStub.js"
import { startBedrockStub } from "./stubs/BedrockScenarioStub.js"
import { startMlflowStub, type MlflowStubOptions } from "./stubs/MlflowStub.js"
import { startOpenAiStub } from "./stubs/OpenAiStub.js"
import type { StubHandle } from "./stubs/Scenario.js"

/** A fresh secret per run, so no fixture string can pass for it. */
const secret = (prefix: string) => `${prefix}${randomBytes(18).toString("base64url")}`

const modelOf = (provider: string, modelId: string): ModelCatalog.ModelEntry => ({
  id: modelId,
  aliases: [],
  provider_ids: { [provider]: modelId },
  kind: "chat",
  input_usd_per_million: 1,
  output_usd_per_million: 1,
  context_window: 8192,
  max_output_tokens: 1024
})

const callOf = (provider: string, modelId: string): LlmProvider.ProviderCall => ({
  model: modelOf(provider, modelId),
  model_id: modelId,
  messages: [{ role: "user", content: "Say hi" }],
  max_tokens: 64
})

const embedCallOf = (provider: string, modelId: string): LlmProvider.EmbedCall => ({
  model: modelOf(provider, modelId),
  model_id: modelId,
  input: ["hi"]
})

const stubOf = (start: () => Promise<StubHandle>) =>
  Effect.acquireRelease(Effect.promise(start), (stub) => Effect.promise(() => stub.close()))

/** The failures of complete, stream and (where the provider has it) embed. */
const failuresOf = (provider: LlmProvider.LlmProvider, call: LlmProvider.ProviderCall, embedCall?: LlmProvider.EmbedCall) =>
  Effect.gen(function*() {
    const failures: Array<Errors.ProviderError> = [
      yield* Effect.flip(provider.complete(call)),
      yield* Effect.flip(Stream.runDrain(provider.stream(call)))
    ]
    if (embedCall !== undefined && provider.embed !== undefined) failures.push(yield* Effect.flip(provider.embed(embedCall)))
    return failures
  })

/** The error in every form it travels in (message, JSON body, `String`) is free of every secret. */
const expectScrubbed = (error: Errors.ProviderError, secrets: ReadonlyArray<string>) => {
  expect(error).toBeInstanceOf(Errors.ProviderError)
  // Not vacuous: the upstream's words are there, with the mark where the credential was.
  expect(error.message).toContain(redactedMark)
  for (const s of secrets) {
    expect(error.message).not.toContain(s)
    expect(JSON.stringify(error)).not.toContain(s)
    expect(String(error)).not.toContain(s)
  }
}

/** The stub did receive the credential: the echo had something to leak. */
const received = (stub: StubHandle, value: string) =>
  stub.headers().some((h) => Object.values(h).some((v) => (Array.isArray(v) ? v.join(",") : String(v)).includes(value)))

describe("scrubber", () => {
  it("replaces every occurrence of each secret and keeps the rest of the text", () => {
    const key = secret("plain-")
    const scrub = scrubber([key, undefined])
    expect(scrub(`got ${key}, expected another; ${key}!`)).toBe(`got ${redactedMark}, expected another; ${redactedMark}!`)
  })

  it("catches a secret URL-encoded and inside a JSON string, with or without escaped slashes", () => {
    const awsSecret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
    const scrub = scrubber([awsSecret])
    for (const echo of [awsSecret, encodeURIComponent(awsSecret), awsSecret.replaceAll("/", "\\/")]) {
      expect(scrub(`{"message":"bad key ${echo}"}`)).toBe(`{"message":"bad key ${redactedMark}"}`)
    }
  })

  it("replaces a secret before a shorter one it contains", () => {
    const long = "abcdefgh-0123456789"
    expect(scrubber(["abcdefgh", long])(`x ${long} y abcdefgh`)).toBe(`x ${redactedMark} y ${redactedMark}`)
  })

  it("masks bearer tokens and sk- keys it was not told about, masked ones included", () => {
    const scrub = scrubber([])
    expect(scrub("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig")).toBe(`Authorization: Bearer ${redactedMark}`)
    expect(scrub("authorization: bearer tlk_0123456789abcdef_xyz")).toBe(`authorization: bearer ${redactedMark}`)
    expect(scrub("Incorrect API key provided: sk-proj-****************abcd.")).toBe(`Incorrect API key provided: ${redactedMark}.`)
    expect(scrub("key sk-ant-api03-AbCdEf123456 rejected")).toBe(`key ${redactedMark} rejected`)
  })

  it("leaves ordinary text alone, and ignores missing, empty and short secrets", () => {
    const scrub = scrubber([undefined, "", "short", "1234567"])
    const text = "Rate limit reached for gpt-4o on tokens: a short wait of 1234567 ms (task-force disk-cache bearer of news)"
    expect(scrub(text)).toBe(text)
  })

  it("scrubError scrubs message and upstream_type, keeps the rest, and returns a clean error as is", () => {
    const key = secret("k-")
    const scrub = scrubError(scrubber([key]))
    const dirty = new Errors.ProviderError({
      message: `OpenAI: 401 bad key ${key}`,
      provider: "openai",
      model: "m",
      kind: "auth",
      retryable: false,
      upstream_status: 401,
      upstream_type: `invalid_key_${key}`
    })
    const clean = scrub(dirty)
    expect(clean).toMatchObject({
      message: `OpenAI: 401 bad key ${redactedMark}`,
      provider: "openai",
      model: "m",
      kind: "auth",
      retryable: false,
      upstream_status: 401,
      upstream_type: `invalid_key_${redactedMark}`
    })
    expect(clean).toBeInstanceOf(Errors.ProviderError)
    const already = scrub(clean)
    expect(already).toBe(clean)
  })
})

describe("adapters scrub their own credential", () => {
  it.scoped("OpenAI: an upstream echoing the Authorization header", () =>
    Effect.gen(function*() {
      const apiKey = secret("sk-scrub-")
      const stub = yield* stubOf(startOpenAiStub)
      stub.setScenario("echo_credentials")
      const provider = yield* OpenAiProvider.make({ name: "openai", baseUrl: stub.url, apiKey: Redacted.make(apiKey), flavour: "openai" })

      const failures = yield* failuresOf(provider, callOf("openai", "gpt-4o-mini"), embedCallOf("openai", "text-embedding-3-small"))

      expect(failures).toHaveLength(3)
      for (const e of failures) {
        expect(e).toMatchObject({ kind: "auth", upstream_status: 401, upstream_type: "invalid_api_key" })
        expectScrubbed(e, [apiKey])
      }
      expect(received(stub, apiKey)).toBe(true)
    }))

  it.scoped("OpenAI-compatible: a key that looks like nothing in particular", () =>
    Effect.gen(function*() {
      const apiKey = secret("local-")
      const stub = yield* stubOf(startOpenAiStub)
      stub.setScenario("echo_credentials")
      const provider = yield* OpenAiProvider.make({ name: "ollama", baseUrl: stub.url, apiKey: Redacted.make(apiKey), flavour: "compatible" })

      const failures = yield* failuresOf(provider, callOf("ollama", "llama3"), embedCallOf("ollama", "nomic-embed-text"))

      expect(failures).toHaveLength(3)
      for (const e of failures) expectScrubbed(e, [apiKey])
      expect(received(stub, apiKey)).toBe(true)
    }))

  it.scoped("OpenAI-compatible: a base URL with a password, which fetch refuses naming the URL", () =>
    Effect.gen(function*() {
      const password = secret("pw")
      const url = new URL("http://127.0.0.1:9/v1")
      url.username = "gateway"
      url.password = password
      const provider = yield* OpenAiProvider.make({ name: "ollama", baseUrl: url.toString(), flavour: "compatible" })

      const failures = yield* failuresOf(provider, callOf("ollama", "llama3"), embedCallOf("ollama", "nomic-embed-text"))

      for (const e of failures) {
        expect(e.message).toContain(`gateway:${redactedMark}@127.0.0.1:9`)
        expectScrubbed(e, [password])
      }
    }))

  it.scoped("Anthropic: an upstream echoing x-api-key, in the error body and in a stream's error event", () =>
    Effect.gen(function*() {
      const apiKey = secret("ant-")
      const echoing = yield* stubOf(() => startAnthropicStub())
      echoing.setScenario("echo_credentials")
      const provider = yield* AnthropicProvider.make({ apiKey: Redacted.make(apiKey), baseUrl: echoing.url })

      const failures = yield* failuresOf(provider, callOf("anthropic", "claude-3-5-haiku-20241022"))

      expect(failures).toHaveLength(2)
      for (const e of failures) {
        expect(e).toMatchObject({ kind: "auth", upstream_status: 401 })
        expectScrubbed(e, [apiKey])
      }
      expect(received(echoing, apiKey)).toBe(true)

      // Mid-stream: the error event arrives after text, without a status.
      const options: AnthropicStubOptions = { midStreamError: { type: "overloaded_error", message: `overloaded for key ${apiKey}` } }
      const midStream = yield* stubOf(() => startAnthropicStub(options))
      const streaming = yield* AnthropicProvider.make({ apiKey: Redacted.make(apiKey), baseUrl: midStream.url })
      const streamError = yield* Effect.flip(Stream.runDrain(streaming.stream(callOf("anthropic", "claude-3-5-haiku-20241022"))))
      expectScrubbed(streamError, [apiKey])
    }))

  it.scoped("MLflow: an upstream echoing the token, in the error body, an SSE error event and the health answer", () =>
    Effect.gen(function*() {
      const token = secret("dapi")
      const echoing = yield* stubOf(() => startMlflowStub())
      echoing.setScenario("echo_credentials")
      const provider = yield* MlflowProvider.make({ gatewayUrl: echoing.url, token: Redacted.make(token) })

      const failures = yield* failuresOf(provider, callOf("mlflow", "chat"), embedCallOf("mlflow", "embeddings"))

      expect(failures).toHaveLength(3)
      for (const e of failures) {
        expect(e).toMatchObject({ kind: "auth", upstream_status: 401 })
        expectScrubbed(e, [token])
      }
      expect(received(echoing, token)).toBe(true)
      const health = yield* provider.health
      expect(health.detail).toContain(`OK for authorization: Bearer ${redactedMark}`)
      expect(health.detail).not.toContain(token)

      const options: MlflowStubOptions = { midStreamError: { error_code: "RESOURCE_EXHAUSTED", message: `quota of ${token} used up` } }
      const midStream = yield* stubOf(() => startMlflowStub(options))
      const streaming = yield* MlflowProvider.make({ gatewayUrl: midStream.url, token: Redacted.make(token) })
      const streamError = yield* Effect.flip(Stream.runDrain(streaming.stream(callOf("mlflow", "chat"))))
      expectScrubbed(streamError, [token])
    }))

  it.scoped("Bedrock: an endpoint echoing the session token and the signed Authorization header", () =>
    Effect.gen(function*() {
      const secretAccessKey = secret("aws/")
      const sessionToken = secret("IQoJb3JpZ2luX2Vj")
      const stub = yield* stubOf(startBedrockStub)
      stub.setScenario("echo_credentials")
      const settings: Config.BedrockSettings = {
        region: "us-east-1",
        endpoint: stub.url,
        access_key_id: Redacted.make("AKIDSCRUBEXAMPLE"),
        secret_access_key: Redacted.make(secretAccessKey),
        session_token: Redacted.make(sessionToken)
      }
      const provider = yield* BedrockProvider.make(settings)

      const failures = yield* failuresOf(provider, callOf("bedrock", "anthropic.claude-3-haiku-20240307-v1:0"), embedCallOf("bedrock", "amazon.titan-embed-text-v2:0"))

      expect(failures).toHaveLength(3)
      for (const e of failures) {
        expect(e).toMatchObject({ kind: "auth", upstream_type: "UnrecognizedClientException" })
        expectScrubbed(e, [secretAccessKey, sessionToken])
      }
      expect(received(stub, sessionToken)).toBe(true)
      // SigV4 signs with the secret and never sends it.
      expect(received(stub, secretAccessKey)).toBe(false)
    }))

  it.scoped("Bedrock: an endpoint that knows the secret access key, in an error and a stream exception", () =>
    Effect.gen(function*() {
      const secretAccessKey = secret("wJalr/")
      const stub = yield* BedrockStub.make
      const provider = yield* BedrockProvider.make({
        region: "us-east-1",
        endpoint: stub.url,
        access_key_id: Redacted.make("AKIDSCRUBEXAMPLE"),
        secret_access_key: Redacted.make(secretAccessKey)
      })
      const call = callOf("bedrock", "anthropic.claude-3-haiku-20240307-v1:0")
      stub.reply(
        BedrockStub.error(403, "InvalidSignatureException", `Signature computed with ${secretAccessKey} does not match`),
        BedrockStub.eventStream(
          BedrockStub.event("messageStart", { role: "assistant" }),
          BedrockStub.exception("modelStreamErrorException", `the model saw ${encodeURIComponent(secretAccessKey)}`)
        )
      )

      const completeError = yield* Effect.flip(provider.complete(call))
      const streamError = yield* Effect.flip(Stream.runDrain(provider.stream(call)))

      expect(completeError).toMatchObject({ kind: "auth", upstream_status: 403 })
      expectScrubbed(completeError, [secretAccessKey])
      expect(streamError).toMatchObject({ kind: "stream" })
      expectScrubbed(streamError, [secretAccessKey, encodeURIComponent(secretAccessKey)])
      assert(stub.requests.length === 2)
    }))
})

/** The event stream of a chat completion, including an error after the first bytes were sent. */
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Option, Stream } from "effect"
import { Errors, Pulls, type LlmRequest } from "@tidyllm/core"
import type { AiProcessingGateway } from "@tidyllm/ai-processing"
import * as Sse from "../src/chat/Sse.js"

const decoder = new TextDecoder()
const header = { id: "chatcmpl-1", created: 1, model: "claude-3-haiku", includeUsage: false }

const done: LlmRequest.LLMResponse = {
  status: "success",
  data: { response: "", model: "claude-3-haiku", provider: "mock", finish_reason: "max_tokens", usage: { input_tokens: 3, output_tokens: 2 } },
  metadata: { request_id: "r1", audit_id: "a1", provider: "mock", model: "claude-3-haiku", model_id: "claude-3-haiku", cost_usd: "0.000000001", latency_ms: 1, mock: true }
}

/** The pieces written (each one write to the socket) and the events in them, as the handler opens the answer. */
const pieces = (events: Stream.Stream<AiProcessingGateway.StreamEvent, Errors.GatewayError>) =>
  Effect.scoped(Effect.gen(function*() {
    const pull = yield* Pulls.fromStream(events)
    const first = yield* Effect.catchAll(pull, Option.match({ onNone: () => Effect.succeed(Chunk.empty<AiProcessingGateway.StreamEvent>()), onSome: Effect.fail }))
    const written = yield* Stream.runCollect(Sse.toStream({ header, first, pull, requestId: "r1" }))
    return Chunk.toReadonlyArray(written).map((bytes) => decoder.decode(bytes))
  }))
const run = (events: Stream.Stream<AiProcessingGateway.StreamEvent, Errors.GatewayError>) =>
  Effect.map(pieces(events), (written) => written.join("").split(/(?<=\n\n)/))

describe("Sse.bytes", () => {
  it.effect("role, deltas, finish with usage and metadata, [DONE]", () =>
    Effect.gen(function*() {
      const events: ReadonlyArray<AiProcessingGateway.StreamEvent> = [
        { _tag: "Delta", text: "Hel" }, { _tag: "Delta", text: "" }, { _tag: "Delta", text: "lo" }, { _tag: "Done", response: done }
      ]
      const out = yield* run(Stream.fromIterable(events))
      expect(out).toHaveLength(5)
      expect(out.every((e) => e.startsWith("data: ") && e.endsWith("\n\n"))).toBe(true)
      expect(out[out.length - 1]).toBe("data: [DONE]\n\n")
      const finish = JSON.parse((out[3] ?? "").slice(6)) as { choices: Array<{ finish_reason: string }>; usage: { total_tokens: number }; tidyllm: { audit_id: string } }
      expect(finish.choices[0]?.finish_reason).toBe("length")
      expect(finish.usage.total_tokens).toBe(5)
      expect(finish.tidyllm.audit_id).toBe("a1")
    }))

  it.effect("a piece per chunk of events: the role chunk goes out with the first events, in one write", () =>
    Effect.gen(function*() {
      const chunks = Stream.fromChunks(
        Chunk.fromIterable<AiProcessingGateway.StreamEvent>([{ _tag: "Delta", text: "Hel" }, { _tag: "Delta", text: "lo" }]),
        Chunk.fromIterable<AiProcessingGateway.StreamEvent>([{ _tag: "Delta", text: "!" }]),
        Chunk.fromIterable<AiProcessingGateway.StreamEvent>([{ _tag: "Done", response: done }])
      )
      const written = yield* pieces(chunks)
      expect(written.map((p) => p.split(/(?<=\n\n)/).length)).toEqual([3, 1, 1, 1])
      expect(written[0]).toMatch(/"role":"assistant"/)
      expect(written[3]).toBe("data: [DONE]\n\n")
    }))

  it.effect("an error after streaming started ends with an error event and no [DONE]", () =>
    Effect.gen(function*() {
      const failing = Stream.concat(
        Stream.make<Array<AiProcessingGateway.StreamEvent>>({ _tag: "Delta", text: "partial" }),
        Stream.fail(new Errors.ProviderError({ message: "the model stream broke", provider: "bedrock", model: "m", kind: "stream", retryable: true }))
      )
      const out = yield* run(failing)
      expect(out).toHaveLength(3)
      expect(out.some((e) => e.includes("[DONE]"))).toBe(false)
      const last = JSON.parse((out[2] ?? "").slice(6)) as { error: { type: string; message: string; request_id: string; code: string } }
      expect(last.error).toMatchObject({ type: "upstream_error", message: "the model stream broke", request_id: "r1", code: "stream" })
    }))
})

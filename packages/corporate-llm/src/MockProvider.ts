/**
 * The offline `mock` provider: deterministic answers for any catalog model, with token usage, so
 * budgets, cost and audit behave offline as they do against a real provider.
 */
import { Duration, Effect, Stream } from "effect"
import type { Completion, LlmProvider, ProviderCall, StreamEvent } from "./LlmProvider.js"
import { inputTokensTypical } from "./internal/tokens.js"

/** Mock behaviour. */
export interface Options {
  /** Simulated latency of each call. */
  readonly latency_ms?: number | undefined
  /** Pause between streamed chunks. */
  readonly stream_chunk_delay_ms?: number | undefined
  /** Provider name to register under (default `mock`). */
  readonly name?: string | undefined
}

/** The answer the mock gives to a call: a pure function of the call. */
export const answer = (call: ProviderCall): Completion => {
  const last = [...call.messages].reverse().find((m) => m.role === "user")?.content ?? ""
  const gist = last.length > 120 ? `${last.slice(0, 117)}...` : last
  const full = `[mock ${call.model.id}] This is a mock response to: ${gist}`
  // One output token per 4 characters, never more than max_tokens.
  const text = full.slice(0, call.max_tokens * 4)
  const output_tokens = Math.min(call.max_tokens, Math.ceil(text.length / 4))
  return {
    text,
    usage: { input_tokens: inputTokensTypical(call.messages), output_tokens },
    finish_reason: text.length < full.length ? "length" : "stop"
  }
}

/** Builds the mock provider. */
export const make = (options?: Options): LlmProvider => {
  const latency = Duration.millis(options?.latency_ms ?? 0)
  const delay = <A, E, R>(self: Effect.Effect<A, E, R>) => (Duration.toMillis(latency) > 0 ? Effect.delay(self, latency) : self)
  return {
    name: options?.name ?? "mock",
    mock: true,
    complete: (call) => delay(Effect.sync(() => answer(call))),
    stream: (call) =>
      Stream.unwrap(delay(Effect.sync(() => {
        const a = answer(call)
        const pieces = a.text.match(/\S+\s*/g) ?? []
        const events: Array<StreamEvent> = pieces.map((text) => ({ _tag: "TextDelta", text }))
        events.push({ _tag: "Usage", usage: a.usage }, { _tag: "Finish", finish_reason: a.finish_reason })
        const chunkDelay = options?.stream_chunk_delay_ms ?? 0
        return chunkDelay > 0
          ? Stream.fromIterable(events).pipe(Stream.tap(() => Effect.sleep(Duration.millis(chunkDelay))))
          : Stream.fromIterable(events)
      }))),
    health: Effect.succeed({ configured: true, detail: "offline mock provider: answers are not from a model" })
  }
}

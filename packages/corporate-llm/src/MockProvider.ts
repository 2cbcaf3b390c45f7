/**
 * The offline `mock` provider: deterministic answers for any catalog model, with token usage, so
 * budgets, cost and audit behave offline as they do against a real provider.
 */
import { createHash } from "node:crypto"
import { Duration, Effect, Stream, type Tracer } from "effect"
import { Spans, type LlmRequest } from "@tidyllm/core"
import type { Completion, EmbedCall, Embeddings, LlmProvider, ProviderCall, StreamEvent } from "./LlmProvider.js"
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

/**
 * The tool the mock calls, if any: the named one, the first one when a call is `required`, or
 * (`auto`) the first tool whose name the last user message mentions — never after a tool result.
 */
const toolToCall = (call: ProviderCall): LlmRequest.ToolDefinition | undefined => {
  const tools = call.tools ?? []
  const lastMessage = call.messages.at(-1)
  if (tools.length === 0 || call.tool_choice === "none" || lastMessage?.role !== "user") return undefined
  const choice = call.tool_choice
  if (typeof choice === "object") return tools.find((t) => t.function.name === choice.function.name)
  if (choice === "required") return tools[0]
  return tools.find((t) => lastMessage.content.includes(t.function.name))
}

/** The answer the mock gives to a call: a pure function of the call. */
export const answer = (call: ProviderCall): Completion => {
  const tool = toolToCall(call)
  if (tool !== undefined) {
    const id = `call_mock_${createHash("sha256").update(JSON.stringify(call.messages)).digest("hex").slice(0, 12)}`
    const args = "{}"
    return {
      text: "",
      usage: { input_tokens: inputTokensTypical(call.messages, call), output_tokens: Math.min(call.max_tokens, Math.ceil((tool.function.name.length + args.length) / 4) + 2) },
      finish_reason: "tool_calls",
      tool_calls: [{ id, type: "function", function: { name: tool.function.name, arguments: args } }]
    }
  }
  const last = [...call.messages].reverse().find((m) => m.role === "user" || m.role === "tool")?.content ?? ""
  const gist = last.length > 120 ? `${last.slice(0, 117)}...` : last
  const full = `[mock ${call.model.id}] This is a mock response to: ${gist}`
  // One output token per 4 characters, never more than max_tokens.
  const text = full.slice(0, call.max_tokens * 4)
  const output_tokens = Math.min(call.max_tokens, Math.ceil(text.length / 4))
  return {
    text,
    usage: { input_tokens: inputTokensTypical(call.messages, call), output_tokens },
    finish_reason: text.length < full.length ? "length" : "stop"
  }
}

/** Deterministic unit vectors (a hash of each text), `dimensions` long (default 8). */
export const embeddings = (call: EmbedCall): Embeddings => ({
  vectors: call.input.map((text) => {
    const size = call.dimensions ?? 8
    const raw = Array.from({ length: size }, (_, i) => {
      const h = createHash("sha256").update(`${i}:${text}`).digest()
      return h.readInt32BE(0) / 2 ** 31
    })
    const norm = Math.hypot(...raw) || 1
    return raw.map((x) => x / norm)
  }),
  input_tokens: call.input.reduce((n, t) => n + Math.ceil(t.length / 4), 0)
})

/** Builds the mock provider. */
export const make = (options?: Options): LlmProvider => {
  const latency = Duration.millis(options?.latency_ms ?? 0)
  const delay = <A, E, R>(self: Effect.Effect<A, E, R>) => (Duration.toMillis(latency) > 0 ? Effect.delay(self, latency) : self)
  const name = options?.name ?? "mock"
  // A provider call's span, as the real adapters make it (OpenTelemetry GenAI conventions).
  const span = (operation: string, model: string): Tracer.SpanOptions => ({
    kind: "client",
    attributes: { "gen_ai.operation.name": operation, "gen_ai.system": name, "gen_ai.provider.name": name, "gen_ai.request.model": model }
  })
  return {
    name,
    mock: true,
    complete: (call) => delay(Effect.sync(() => answer(call))).pipe(Spans.span("MockProvider.complete", span("chat", call.model_id))),
    stream: (call) =>
      Stream.unwrap(delay(Effect.sync(() => {
        const a = answer(call)
        const pieces = a.text.match(/\S+\s*/g) ?? []
        const events: Array<StreamEvent> = pieces.map((text) => ({ _tag: "TextDelta", text }))
        for (const [index, t] of (a.tool_calls ?? []).entries()) {
          events.push({ _tag: "ToolCallDelta", index, id: t.id, name: t.function.name, arguments: "" }, { _tag: "ToolCallDelta", index, arguments: t.function.arguments })
        }
        events.push({ _tag: "Usage", usage: a.usage }, { _tag: "Finish", finish_reason: a.finish_reason })
        const chunkDelay = options?.stream_chunk_delay_ms ?? 0
        return chunkDelay > 0
          ? Stream.fromIterable(events).pipe(Stream.tap(() => Effect.sleep(Duration.millis(chunkDelay))))
          : Stream.fromIterable(events)
      }))).pipe(Spans.streamSpan("MockProvider.stream", span("chat", call.model_id))),
    embed: (call) => delay(Effect.sync(() => embeddings(call))).pipe(Spans.span("MockProvider.embed", span("embeddings", call.model_id))),
    health: Effect.succeed({ configured: true, detail: "offline mock provider: answers are not from a model" })
  }
}

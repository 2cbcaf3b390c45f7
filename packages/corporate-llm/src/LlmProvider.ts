/** The port every model provider implements (Bedrock, OpenAI, …, mock). */
import type { Effect, Stream } from "effect"
import { Errors } from "@tidyllm/core"
import type { LlmRequest, ModelCatalog, Pulls, Usage } from "@tidyllm/core"

/** One call as a provider receives it: the model already resolved, limits already applied. */
export interface ProviderCall {
  readonly model: ModelCatalog.ModelEntry
  /** The id this provider knows the model by. */
  readonly model_id: string
  /** The conversation, `system` messages included (adapters move them where their API wants them). */
  readonly messages: ReadonlyArray<LlmRequest.ChatMessage>
  readonly max_tokens: number
  readonly temperature?: number | undefined
  readonly top_p?: number | undefined
  readonly stop?: ReadonlyArray<string> | undefined
  /** Functions the model may call (providers without tools fail with a `validation` error). */
  readonly tools?: ReadonlyArray<LlmRequest.ToolDefinition> | undefined
  readonly tool_choice?: LlmRequest.ToolChoice | undefined
  readonly response_format?: LlmRequest.ResponseFormat | undefined
  readonly seed?: number | undefined
  /**
   * How long the answer may take before the call fails with {@link timedOut}: for `complete`
   * (of a provider that says it is `timed`), the whole answer; for `open`, the stream's start,
   * then each wait for its next events. Gateway #1 times the other calls itself.
   */
  readonly timeout_ms?: number | undefined
}

/** The failure of a call (or a stream's wait for its next events) that outlasted `ms`: retryable. */
export const timedOut = (provider: string, model: string, ms: number): Errors.ProviderError =>
  new Errors.ProviderError({ message: `no answer from '${provider}' within ${ms} ms`, provider, model, kind: "timeout", retryable: true })

/** One embedding call: inputs already counted against the budget. */
export interface EmbedCall {
  readonly model: ModelCatalog.ModelEntry
  readonly model_id: string
  readonly input: ReadonlyArray<string>
  readonly dimensions?: number | undefined
}

/** Vectors in input order, with the tokens the provider counted. */
export interface Embeddings {
  readonly vectors: ReadonlyArray<ReadonlyArray<number>>
  readonly input_tokens: number
}

/** A whole answer. */
export interface Completion {
  readonly text: string
  readonly usage: Usage.TokenUsage
  readonly finish_reason: string
  /** The tool calls the model made (finish reason `tool_calls`). */
  readonly tool_calls?: ReadonlyArray<LlmRequest.ToolCall> | undefined
}

/** A piece of a streamed answer. */
export type StreamEvent =
  | { readonly _tag: "TextDelta"; readonly text: string }
  | { readonly _tag: "Usage"; readonly usage: Usage.TokenUsage }
  | { readonly _tag: "Finish"; readonly finish_reason: string }
  /**
   * A piece of tool call number `index` (OpenAI's delta shape): the first piece of a call carries
   * its `id` and `name`, every piece may carry a fragment of the JSON `arguments`.
   */
  | {
    readonly _tag: "ToolCallDelta"
    readonly index: number
    readonly id?: string | undefined
    readonly name?: string | undefined
    readonly arguments: string
  }

/** What `/health` reports for a provider. */
export interface ProviderHealth {
  readonly configured: boolean
  readonly detail: string
  /** Whether the provider's endpoint answered a probe just now; absent when `health` looks at the configuration only (no network). */
  readonly reachable?: boolean | undefined
}

/** A model provider. */
export interface LlmProvider {
  /** The name requests use (`bedrock`, `mock`, …). */
  readonly name: string
  /** `true` for the offline mock: responses say so. */
  readonly mock: boolean
  /**
   * `true` when `complete` honours `call.timeout_ms` itself (a plain timer that aborts the request);
   * otherwise gateway #1 times it with a child fiber.
   */
  readonly timed?: boolean | undefined
  readonly complete: (call: ProviderCall) => Effect.Effect<Completion, Errors.ProviderError>
  /** Streams `TextDelta`s and `ToolCallDelta`s, then `Usage` and `Finish` (each at most once, in any order at the end). */
  readonly stream: (call: ProviderCall) => Stream.Stream<StreamEvent, Errors.ProviderError>
  /**
   * The same stream opened for pulling, if the provider has it (gateway #1 then pulls it directly
   * instead of through a `Stream` stage, `Pulls`); `stream` is then `Pulls.toStream` of it. It
   * honours `call.timeout_ms` itself, with plain timers (the gateway's own timing of a pull forks a
   * fiber for each).
   */
  readonly open?: ((call: ProviderCall) => Pulls.Open<StreamEvent, Errors.ProviderError>) | undefined
  /** Embeddings, for providers that serve embedding models. */
  readonly embed?: ((call: EmbedCall) => Effect.Effect<Embeddings, Errors.ProviderError>) | undefined
  readonly health: Effect.Effect<ProviderHealth>
}

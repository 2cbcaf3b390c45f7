/** The port every model provider implements (Bedrock, OpenAI, …, mock). */
import type { Effect, Stream } from "effect"
import type { Errors, LlmRequest, ModelCatalog, Usage } from "@tidyllm/core"

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
}

/** A whole answer. */
export interface Completion {
  readonly text: string
  readonly usage: Usage.TokenUsage
  readonly finish_reason: string
}

/** A piece of a streamed answer. */
export type StreamEvent =
  | { readonly _tag: "TextDelta"; readonly text: string }
  | { readonly _tag: "Usage"; readonly usage: Usage.TokenUsage }
  | { readonly _tag: "Finish"; readonly finish_reason: string }

/** What `/health` reports for a provider. */
export interface ProviderHealth {
  readonly configured: boolean
  readonly detail: string
}

/** A model provider. */
export interface LlmProvider {
  /** The name requests use (`bedrock`, `mock`, …). */
  readonly name: string
  /** `true` for the offline mock: responses say so. */
  readonly mock: boolean
  readonly complete: (call: ProviderCall) => Effect.Effect<Completion, Errors.ProviderError>
  /** Streams `TextDelta`s, then `Usage` and `Finish` (each at most once, in any order at the end). */
  readonly stream: (call: ProviderCall) => Stream.Stream<StreamEvent, Errors.ProviderError>
  readonly health: Effect.Effect<ProviderHealth>
}

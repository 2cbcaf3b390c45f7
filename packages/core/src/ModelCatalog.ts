/** The model catalog: aliases → provider model ids, prices and limits, loaded from config. */
import { Context, Layer, Option, Schema } from "effect"
import * as Money from "./Money.js"
import type { TokenUsage } from "./Usage.js"

/** One model as configured. Prices are USD per million tokens, as providers publish them. */
export const ModelEntry = Schema.Struct({
  /** The canonical alias clients use, e.g. `claude-3-sonnet`. */
  id: Schema.String.pipe(Schema.minLength(1)),
  /** Other names that resolve to this entry. */
  aliases: Schema.optionalWith(Schema.Array(Schema.String), { default: () => [] }),
  /** The model id each provider knows it by, e.g. `{ bedrock: "anthropic.claude-3-sonnet-20240229-v1:0" }`. */
  provider_ids: Schema.Record({ key: Schema.String, value: Schema.String }),
  /** `chat` (completions) or `embedding` (`/v1/embeddings`). */
  kind: Schema.optionalWith(Schema.Literal("chat", "embedding"), { default: () => "chat" as const }),
  /** Price of a million input tokens, US dollars. */
  input_usd_per_million: Schema.Number.pipe(Schema.finite(), Schema.nonNegative()),
  /** Price of a million output tokens, US dollars. */
  output_usd_per_million: Schema.optionalWith(Schema.Number.pipe(Schema.finite(), Schema.nonNegative()), { default: () => 0 }),
  /** Tokens of prompt plus answer the model takes. */
  context_window: Schema.Int.pipe(Schema.positive()),
  /** Largest `max_tokens` a request may ask of it. */
  max_output_tokens: Schema.Int.pipe(Schema.positive())
})
export type ModelEntry = typeof ModelEntry.Type
export type ModelEntryInput = typeof ModelEntry.Encoded

const m = (
  id: string, bedrock: string, inp: number, out: number, context_window: number, max_output_tokens: number,
  kind: "chat" | "embedding" = "chat", aliases: ReadonlyArray<string> = []
): ModelEntry => ({ id, aliases, provider_ids: { bedrock }, kind, input_usd_per_million: inp, output_usd_per_million: out, context_window, max_output_tokens })

/** The same model under another provider's id (Anthropic's direct API sells Claude at Bedrock's list price). */
const also = (e: ModelEntry, ids: Record<string, string>): ModelEntry => ({ ...e, provider_ids: { ...e.provider_ids, ...ids } })

const direct = (
  id: string, provider: string, providerId: string, inp: number, out: number, context_window: number, max_output_tokens: number,
  kind: "chat" | "embedding" = "chat"
): ModelEntry => ({ id, aliases: [], provider_ids: { [provider]: providerId }, kind, input_usd_per_million: inp, output_usd_per_million: out, context_window, max_output_tokens })

/**
 * List prices (USD per million tokens) of the Bedrock models (on-demand, us-east-1), the same
 * Claude models on Anthropic's API, and OpenAI's models; override them in `tidyllm.yaml` under `models`.
 */
export const defaultModels: ReadonlyArray<ModelEntry> = [
  also(m("claude-3-sonnet", "anthropic.claude-3-sonnet-20240229-v1:0", 3, 15, 200_000, 4096), { anthropic: "claude-3-sonnet-20240229" }),
  also(m("claude-3-haiku", "anthropic.claude-3-haiku-20240307-v1:0", 0.25, 1.25, 200_000, 4096), { anthropic: "claude-3-haiku-20240307" }),
  also(m("claude-3-opus", "anthropic.claude-3-opus-20240229-v1:0", 15, 75, 200_000, 4096), { anthropic: "claude-3-opus-20240229" }),
  also(m("claude-3-5-sonnet", "anthropic.claude-3-5-sonnet-20240620-v1:0", 3, 15, 200_000, 8192), { anthropic: "claude-3-5-sonnet-20240620" }),
  m("gpt-oss-120b", "openai.gpt-oss-120b-1:0", 0.15, 0.6, 128_000, 8192),
  m("gpt-oss-20b", "openai.gpt-oss-20b-1:0", 0.07, 0.3, 128_000, 8192),
  m("titan-express", "amazon.titan-text-express-v1", 0.2, 0.6, 8_000, 8192),
  m("titan-lite", "amazon.titan-text-lite-v1", 0.15, 0.2, 4_000, 4096),
  m("titan-embed", "amazon.titan-embed-text-v1", 0.1, 0, 8_000, 1, "embedding"),
  m("titan-embed-v2", "amazon.titan-embed-text-v2:0", 0.02, 0, 8_000, 1, "embedding"),
  m("llama2-13b", "meta.llama2-13b-chat-v1", 0.75, 1, 4_096, 2048),
  m("llama2-70b", "meta.llama2-70b-chat-v1", 1.95, 2.56, 4_096, 2048),
  direct("gpt-4o", "openai", "gpt-4o", 2.5, 10, 128_000, 16_384),
  direct("gpt-4o-mini", "openai", "gpt-4o-mini", 0.15, 0.6, 128_000, 16_384),
  direct("text-embedding-3-small", "openai", "text-embedding-3-small", 0.02, 0, 8_191, 1, "embedding"),
  direct("text-embedding-3-large", "openai", "text-embedding-3-large", 0.13, 0, 8_191, 1, "embedding")
]

/** The catalog service: resolves names and prices usage. */
export interface Service {
  readonly models: ReadonlyArray<ModelEntry>
  /** The entry named by alias, canonical id or any provider model id. */
  readonly resolve: (name: string) => Option.Option<ModelEntry>
}

/** The model catalog in use. */
export class ModelCatalog extends Context.Tag("@tidyllm/core/ModelCatalog")<ModelCatalog, Service>() {}

/** Builds a catalog; later entries with the same id replace earlier ones. */
export const make = (models: ReadonlyArray<ModelEntry>): Service => {
  const byId = new Map<string, ModelEntry>()
  for (const e of models) byId.set(e.id, e)
  const index = new Map<string, ModelEntry>()
  for (const e of byId.values()) {
    index.set(e.id, e)
    for (const a of e.aliases) index.set(a, e)
    for (const id of Object.values(e.provider_ids)) if (!index.has(id)) index.set(id, e)
  }
  return { models: [...byId.values()], resolve: (name) => Option.fromNullable(index.get(name)) }
}

/** A layer holding the given catalog (default: {@link defaultModels}). */
export const layer = (models: ReadonlyArray<ModelEntry> = defaultModels) => Layer.succeed(ModelCatalog, make(models))

/** Price per token in nano-dollars (1 USD per million tokens = 1000 nanos per token). */
export const nanosPerInputToken = (e: ModelEntry): number => e.input_usd_per_million * 1000
export const nanosPerOutputToken = (e: ModelEntry): number => e.output_usd_per_million * 1000

/** The cost of the given usage on this model. */
export const cost = (e: ModelEntry, u: TokenUsage): Money.Nanos =>
  Money.add(Money.forTokens(u.input_tokens, nanosPerInputToken(e)), Money.forTokens(u.output_tokens, nanosPerOutputToken(e)))

/** The requests gateways #1 and #2 take, and the response they give. */
import { Schema } from "effect"
import { Caller } from "./Caller.js"
import { TokenUsage } from "./Usage.js"

/** A chat message. */
export const ChatMessage = Schema.Struct({
  role: Schema.Literal("system", "user", "assistant"),
  content: Schema.String
})
export type ChatMessage = typeof ChatMessage.Type

/** Sampling parameters and model choice shared by every request shape. */
const requestFields = {
  /** A single user prompt (the build guide's shape); give this or `messages`. */
  prompt: Schema.optional(Schema.String),
  /** A chat conversation; give this or `prompt`. */
  messages: Schema.optional(Schema.Array(ChatMessage)),
  /** Provider name (`bedrock`, `mock`, …); the configured default when absent. */
  provider: Schema.optional(Schema.String.pipe(Schema.minLength(1))),
  /** Catalog alias or provider model id; the provider's default model when absent. */
  model: Schema.optional(Schema.String.pipe(Schema.minLength(1))),
  max_tokens: Schema.optional(Schema.Int.pipe(Schema.greaterThanOrEqualTo(1), Schema.lessThanOrEqualTo(1_000_000))),
  temperature: Schema.optional(Schema.Number.pipe(Schema.finite(), Schema.between(0, 2))),
  top_p: Schema.optional(Schema.Number.pipe(Schema.finite(), Schema.between(0, 1))),
  stop: Schema.optional(Schema.Array(Schema.String).pipe(Schema.maxItems(8))),
  /** Why the call is made: required by policy, stored in the audit row. */
  reason: Schema.optional(Schema.String),
  /** Who the call is made for (free text from the caller; the authenticated identity is separate). */
  user_id: Schema.optional(Schema.String),
  /** Caller metadata, kept as given (not part of the cache key). */
  metadata: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.Unknown }))
}

/** A request to gateway #1 (CorporateLlmGateway). */
export const LLMRequest = Schema.Struct(requestFields)
export type LLMRequest = typeof LLMRequest.Type

/** A request to gateway #2 (AiProcessingGateway). */
export const AIRequest = Schema.Struct({
  ...requestFields,
  /** `auto` (default provider, then the configured fallbacks) or one backend's name. */
  backend: Schema.optional(Schema.String.pipe(Schema.minLength(1))),
  /** Backends to try, in order, after `backend` fails. */
  fallback_backends: Schema.optional(Schema.Array(Schema.String.pipe(Schema.minLength(1)))),
  /** `false` skips the response cache for this request. */
  use_cache: Schema.optional(Schema.Boolean)
})
export type AIRequest = typeof AIRequest.Type

/** Context of one call that is not part of the request body. */
export interface CallContext {
  readonly request_id: string
  readonly caller: Caller
  /** `x-tidyllm-reason` or another out-of-band reason, used when the body has none. */
  readonly reason?: string | undefined
}

/** Metadata attached to every successful response. */
export const ResponseMetadata = Schema.Struct({
  request_id: Schema.String,
  audit_id: Schema.String,
  provider: Schema.String,
  model: Schema.String,
  model_id: Schema.String,
  cost_usd: Schema.String,
  latency_ms: Schema.Number,
  /** `true` when the answer came from the offline mock provider. */
  mock: Schema.Boolean,
  cache_hit: Schema.optional(Schema.Boolean),
  backend_used: Schema.optional(Schema.String),
  attempts: Schema.optional(Schema.Number)
})
export type ResponseMetadata = typeof ResponseMetadata.Type

/** The response of gateways #1 and #2. */
export const LLMResponse = Schema.Struct({
  status: Schema.Literal("success", "error"),
  data: Schema.optional(Schema.Struct({
    response: Schema.String,
    model: Schema.String,
    provider: Schema.String,
    finish_reason: Schema.String,
    usage: TokenUsage
  })),
  error: Schema.optional(Schema.Struct({ type: Schema.String, message: Schema.String })),
  metadata: ResponseMetadata
})
export type LLMResponse = typeof LLMResponse.Type

/** The messages of a request, whether it was given as `prompt` or `messages`. */
export const messagesOf = (r: Pick<LLMRequest, "prompt" | "messages">): ReadonlyArray<ChatMessage> =>
  r.messages ?? (r.prompt === undefined ? [] : [{ role: "user", content: r.prompt }])

/** The requests gateways #1 and #2 take, and the response they give. */
import { Schema } from "effect"
import { Caller } from "./Caller.js"
import { TokenUsage } from "./Usage.js"

/** A tool (function) call the model asked for, in OpenAI's shape; `arguments` is JSON text. */
export const ToolCall = Schema.Struct({
  id: Schema.String.pipe(Schema.minLength(1), Schema.maxLength(256)),
  type: Schema.Literal("function"),
  function: Schema.Struct({
    name: Schema.String.pipe(Schema.minLength(1), Schema.maxLength(128)),
    arguments: Schema.String
  })
})
export type ToolCall = typeof ToolCall.Type

/**
 * A chat message. `tool` messages carry the result of the call named by `tool_call_id`; an
 * `assistant` message may carry the `tool_calls` the model made (its `content` may then be empty).
 */
export const ChatMessage = Schema.Struct({
  role: Schema.Literal("system", "user", "assistant", "tool"),
  content: Schema.String,
  tool_calls: Schema.optional(Schema.Array(ToolCall).pipe(Schema.maxItems(128))),
  tool_call_id: Schema.optional(Schema.String.pipe(Schema.minLength(1), Schema.maxLength(256))),
  name: Schema.optional(Schema.String.pipe(Schema.minLength(1), Schema.maxLength(128)))
})
export type ChatMessage = typeof ChatMessage.Type

/** A function the model may call: name, description and JSON Schema of its arguments. */
export const ToolDefinition = Schema.Struct({
  type: Schema.Literal("function"),
  function: Schema.Struct({
    name: Schema.String.pipe(Schema.pattern(/^[a-zA-Z0-9_-]{1,64}$/, { message: () => "a tool name is 1-64 letters, digits, '_' or '-'" })),
    description: Schema.optional(Schema.String.pipe(Schema.maxLength(4096))),
    parameters: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.Unknown }))
  })
})
export type ToolDefinition = typeof ToolDefinition.Type

/** Whether (and which) tool the model must call. */
export const ToolChoice = Schema.Union(
  Schema.Literal("auto", "none", "required"),
  Schema.Struct({ type: Schema.Literal("function"), function: Schema.Struct({ name: Schema.String.pipe(Schema.minLength(1)) }) })
)
export type ToolChoice = typeof ToolChoice.Type

/** The shape the answer must take: free text, any JSON object, or JSON matching a schema. */
export const ResponseFormat = Schema.Union(
  Schema.Struct({ type: Schema.Literal("text") }),
  Schema.Struct({ type: Schema.Literal("json_object") }),
  Schema.Struct({
    type: Schema.Literal("json_schema"),
    json_schema: Schema.Struct({
      name: Schema.String.pipe(Schema.minLength(1), Schema.maxLength(64)),
      description: Schema.optional(Schema.String),
      schema: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.Unknown })),
      strict: Schema.optional(Schema.Boolean)
    })
  })
)
export type ResponseFormat = typeof ResponseFormat.Type

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
  /** Functions the model may call. */
  tools: Schema.optional(Schema.Array(ToolDefinition).pipe(Schema.maxItems(128))),
  tool_choice: Schema.optional(ToolChoice),
  response_format: Schema.optional(ResponseFormat),
  /** Sampling seed, for providers that honour one. */
  seed: Schema.optional(Schema.Int),
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
    usage: TokenUsage,
    /** The tool calls the model made, when it made any. */
    tool_calls: Schema.optional(Schema.Array(ToolCall))
  })),
  error: Schema.optional(Schema.Struct({ type: Schema.String, message: Schema.String })),
  metadata: ResponseMetadata
})
export type LLMResponse = typeof LLMResponse.Type

/** The messages of a request, whether it was given as `prompt` or `messages`. */
export const messagesOf = (r: Pick<LLMRequest, "prompt" | "messages">): ReadonlyArray<ChatMessage> =>
  r.messages ?? (r.prompt === undefined ? [] : [{ role: "user", content: r.prompt }])

/** A request for embeddings (gateway #1's `embed`, `POST /v1/embeddings`). */
export const EmbeddingRequest = Schema.Struct({
  /** The text(s) to embed. */
  input: Schema.Union(
    Schema.String.pipe(Schema.minLength(1)),
    Schema.Array(Schema.String.pipe(Schema.minLength(1))).pipe(Schema.minItems(1), Schema.maxItems(2048))
  ),
  /** Catalog alias or provider model id of an embedding model. */
  model: Schema.String.pipe(Schema.minLength(1)),
  provider: Schema.optional(Schema.String.pipe(Schema.minLength(1))),
  /** Size of the vectors, for models that can shorten them. */
  dimensions: Schema.optional(Schema.Int.pipe(Schema.between(1, 65_536))),
  encoding_format: Schema.optional(Schema.Literal("float", "base64")),
  reason: Schema.optional(Schema.String),
  user_id: Schema.optional(Schema.String),
  /** OpenAI's name for `user_id`. */
  user: Schema.optional(Schema.String)
})
export type EmbeddingRequest = typeof EmbeddingRequest.Type

/** The inputs of an embedding request, as a list. */
export const inputsOf = (r: Pick<EmbeddingRequest, "input">): ReadonlyArray<string> =>
  typeof r.input === "string" ? [r.input] : r.input

/** The answer to an embedding request. */
export interface EmbeddingResponse {
  readonly vectors: ReadonlyArray<ReadonlyArray<number>>
  readonly usage: { readonly input_tokens: number }
  readonly metadata: ResponseMetadata
}

/** The OpenAI-compatible chat completions contract: `POST /v1/chat/completions`. */
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as OpenApi from "@effect/platform/OpenApi"
import { Schema } from "effect"
import { LlmRequest } from "@tidyllm/core"
import { ErrorBody } from "../http/Errors.js"

/** A part of a message's content; only `text` parts are supported. */
export const ContentPart = Schema.Struct({
  type: Schema.String,
  text: Schema.optional(Schema.String)
})

const optionalNullableField = <A, I>(s: Schema.Schema<A, I>) => Schema.optional(Schema.NullOr(s))

/** A chat message as OpenAI clients send it. */
export const ChatMessage = Schema.Struct({
  role: Schema.Literal("system", "developer", "user", "assistant", "tool", "function"),
  content: Schema.optional(Schema.NullOr(Schema.Union(Schema.String, Schema.Array(ContentPart)))),
  name: Schema.optional(Schema.String),
  tool_calls: optionalNullableField(Schema.Array(LlmRequest.ToolCall)),
  tool_call_id: Schema.optional(Schema.String)
})

const Tokens = Schema.Int.pipe(Schema.greaterThanOrEqualTo(1), Schema.lessThanOrEqualTo(1_000_000)).annotations({ description: "a whole number from 1 to 1000000" })
const optionalNullable = <A, I>(s: Schema.Schema<A, I>) => Schema.optional(Schema.NullOr(s))

/**
 * The request body. Tools, `tool_choice`, `response_format` and `seed` are passed to the
 * provider (one that cannot honour them answers 400). Fields that would change what a client
 * gets back but are not supported (`n` > 1, the legacy `functions`, logprobs, audio) are refused
 * with a 400; harmless ones (penalties, `logit_bias`, `store`, `service_tier`, …) are accepted and ignored.
 */
export const ChatCompletionRequest = Schema.Struct({
  model: Schema.String.pipe(Schema.minLength(1)),
  messages: Schema.Array(ChatMessage).pipe(Schema.minItems(1)),
  max_tokens: optionalNullable(Tokens),
  max_completion_tokens: optionalNullable(Tokens),
  temperature: optionalNullable(Schema.Number.pipe(Schema.finite(), Schema.between(0, 2))),
  top_p: optionalNullable(Schema.Number.pipe(Schema.finite(), Schema.between(0, 1))),
  stop: optionalNullable(Schema.Union(Schema.String, Schema.Array(Schema.String).pipe(Schema.maxItems(8)))),
  stream: optionalNullable(Schema.Boolean),
  stream_options: optionalNullable(Schema.Struct({ include_usage: Schema.optional(Schema.Boolean) })),
  n: optionalNullable(Schema.Int),
  user: Schema.optional(Schema.String),
  /** Caller metadata; `metadata.reason` is the request's reason (or send the `x-tidyllm-reason` header). */
  metadata: optionalNullable(Schema.Record({ key: Schema.String, value: Schema.Unknown })),
  tools: optionalNullable(Schema.Array(LlmRequest.ToolDefinition).pipe(Schema.maxItems(128))),
  tool_choice: optionalNullable(LlmRequest.ToolChoice),
  parallel_tool_calls: optionalNullable(Schema.Boolean),
  functions: optionalNullable(Schema.Array(Schema.Unknown)),
  function_call: Schema.optional(Schema.Unknown),
  response_format: optionalNullable(LlmRequest.ResponseFormat),
  seed: optionalNullable(Schema.Int),
  logprobs: optionalNullable(Schema.Boolean),
  top_logprobs: optionalNullable(Schema.Int),
  modalities: optionalNullable(Schema.Array(Schema.String)),
  audio: Schema.optional(Schema.Unknown)
}).annotations({ identifier: "ChatCompletionRequest" })
export type ChatCompletionRequest = typeof ChatCompletionRequest.Type

/** Token counts, OpenAI style. */
export const CompletionUsage = Schema.Struct({
  prompt_tokens: Schema.Int,
  completion_tokens: Schema.Int,
  total_tokens: Schema.Int
})
export type CompletionUsage = typeof CompletionUsage.Type

/** A whole answer (`stream` off). `tidyllm` carries the gateway's metadata (audit id, cost, cache hit, …). */
export const ChatCompletion = Schema.Struct({
  id: Schema.String,
  object: Schema.Literal("chat.completion"),
  created: Schema.Int,
  model: Schema.String,
  choices: Schema.Array(Schema.Struct({
    index: Schema.Int,
    message: Schema.Struct({
      role: Schema.Literal("assistant"),
      /** `null` when the model only called tools. */
      content: Schema.NullOr(Schema.String),
      refusal: Schema.Null,
      tool_calls: Schema.optional(Schema.Array(LlmRequest.ToolCall))
    }),
    finish_reason: Schema.String,
    logprobs: Schema.Null
  })),
  usage: CompletionUsage,
  system_fingerprint: Schema.Null,
  tidyllm: LlmRequest.ResponseMetadata
}).annotations({ identifier: "ChatCompletion" })
export type ChatCompletion = typeof ChatCompletion.Type

/** One server-sent event of a streamed answer (`stream: true`), sent as `data: <json>`; the stream ends with `data: [DONE]`. */
export const ChatCompletionChunk = Schema.Struct({
  id: Schema.String,
  object: Schema.Literal("chat.completion.chunk"),
  created: Schema.Int,
  model: Schema.String,
  choices: Schema.Array(Schema.Struct({
    index: Schema.Int,
    delta: Schema.Struct({
      role: Schema.optional(Schema.Literal("assistant")),
      content: Schema.optional(Schema.String),
      tool_calls: Schema.optional(Schema.Array(Schema.Struct({
        index: Schema.Int,
        id: Schema.optional(Schema.String),
        type: Schema.optional(Schema.Literal("function")),
        function: Schema.Struct({ name: Schema.optional(Schema.String), arguments: Schema.String })
      })))
    }),
    finish_reason: Schema.NullOr(Schema.String),
    logprobs: Schema.Null
  })),
  usage: Schema.optional(Schema.NullOr(CompletionUsage)),
  system_fingerprint: Schema.Null,
  tidyllm: Schema.optional(LlmRequest.ResponseMetadata)
}).annotations({ identifier: "ChatCompletionChunk" })
export type ChatCompletionChunk = typeof ChatCompletionChunk.Type

/** The chat group. */
export class ChatApi extends HttpApiGroup.make("chat")
  .add(
    HttpApiEndpoint.post("completions", "/v1/chat/completions")
      .setPayload(ChatCompletionRequest)
      .addSuccess(ChatCompletion)
      .addError(ErrorBody, { status: 400 })
      .addError(ErrorBody, { status: 402 })
      .addError(ErrorBody, { status: 413 })
      .addError(ErrorBody, { status: 429 })
      .addError(ErrorBody, { status: 502 })
      .addError(ErrorBody, { status: 503 })
      .annotate(OpenApi.Summary, "OpenAI-compatible chat completion")
      .annotate(
        OpenApi.Description,
        "Runs through gateway #2 (cache, retries, failover) and #1 (policy, budget, audit). A reason is required: `metadata.reason` or the `x-tidyllm-reason` header. " +
          "With `stream: true` the answer is `text/event-stream`: `chat.completion.chunk` events, the last one with `finish_reason` and the `tidyllm` metadata, a usage chunk when `stream_options.include_usage`, then `data: [DONE]`; " +
          "an error after the stream started is sent as `data: {\"error\": {...}}` with no `[DONE]`."
      )
  )
  .annotate(OpenApi.Title, "Chat (OpenAI-compatible)") {}

/** The OpenAI-compatible embeddings contract: `POST /v1/embeddings`. */
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as OpenApi from "@effect/platform/OpenApi"
import { Schema } from "effect"
import { LlmRequest } from "@tidyllm/core"
import { ErrorBody } from "../http/Errors.js"

/**
 * The request body as OpenAI clients send it. Token-array inputs are refused (the gateway counts
 * and audits text); `encoding_format: base64` (the `openai` client's default) is honoured.
 */
export const EmbeddingsRequest = Schema.Struct({
  model: Schema.String.pipe(Schema.minLength(1)),
  input: Schema.Union(Schema.String, Schema.Array(Schema.Unknown)),
  encoding_format: Schema.optional(Schema.NullOr(Schema.Literal("float", "base64"))),
  dimensions: Schema.optional(Schema.NullOr(Schema.Int.pipe(Schema.between(1, 65_536)))),
  user: Schema.optional(Schema.String),
  /** Gateway extension: the provider to use (default: the configured default provider). */
  provider: Schema.optional(Schema.String.pipe(Schema.minLength(1))),
  /** Gateway extension: the reason for the call (or send the `x-tidyllm-reason` header). */
  reason: Schema.optional(Schema.String)
}).annotations({ identifier: "EmbeddingsRequest" })
export type EmbeddingsRequest = typeof EmbeddingsRequest.Type

/** The answer: one vector per input, in input order (floats, or base64 of little-endian float32). */
export const EmbeddingsResponse = Schema.Struct({
  object: Schema.Literal("list"),
  data: Schema.Array(Schema.Struct({
    object: Schema.Literal("embedding"),
    index: Schema.Int,
    embedding: Schema.Union(Schema.Array(Schema.Number), Schema.String)
  })),
  model: Schema.String,
  usage: Schema.Struct({ prompt_tokens: Schema.Int, total_tokens: Schema.Int }),
  tidyllm: LlmRequest.ResponseMetadata
}).annotations({ identifier: "EmbeddingsResponse" })
export type EmbeddingsResponse = typeof EmbeddingsResponse.Type

/** The embeddings group. */
export class EmbeddingsApi extends HttpApiGroup.make("embeddings")
  .add(
    HttpApiEndpoint.post("create", "/v1/embeddings")
      .setPayload(EmbeddingsRequest)
      .addSuccess(EmbeddingsResponse)
      .addError(ErrorBody, { status: 400 })
      .addError(ErrorBody, { status: 402 })
      .addError(ErrorBody, { status: 413 })
      .addError(ErrorBody, { status: 502 })
      .addError(ErrorBody, { status: 503 })
      .annotate(OpenApi.Summary, "OpenAI-compatible embeddings")
      .annotate(
        OpenApi.Description,
        "Runs through gateway #1: the inputs' worst-case cost is reserved against the budgets, the call is audited (inputs stored per audit_level) and settled with the provider's token count. " +
          "Embedding models: Titan on Bedrock, OpenAI's text-embedding-3-*, or any OpenAI-compatible server's (add them under `models` with kind `embedding`)."
      )
  )
  .annotate(OpenApi.Title, "Embeddings (OpenAI-compatible)") {}

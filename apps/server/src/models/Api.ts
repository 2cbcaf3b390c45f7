/** `GET /v1/models`: the model catalog as an OpenAI model list. */
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as OpenApi from "@effect/platform/OpenApi"
import { Schema } from "effect"

/** One model, OpenAI style, with the catalog's details under `tidyllm`. */
export const Model = Schema.Struct({
  id: Schema.String,
  object: Schema.Literal("model"),
  created: Schema.Int,
  owned_by: Schema.String,
  tidyllm: Schema.Struct({
    kind: Schema.Literal("chat", "embedding"),
    aliases: Schema.Array(Schema.String),
    provider_ids: Schema.Record({ key: Schema.String, value: Schema.String }),
    input_usd_per_million: Schema.Number,
    output_usd_per_million: Schema.Number,
    context_window: Schema.Int,
    max_output_tokens: Schema.Int
  })
})
export type Model = typeof Model.Type

/** The list. */
export const ModelList = Schema.Struct({
  object: Schema.Literal("list"),
  data: Schema.Array(Model)
}).annotations({ identifier: "ModelList" })
export type ModelList = typeof ModelList.Type

/** The models group. */
export class ModelsApi extends HttpApiGroup.make("models")
  .add(
    HttpApiEndpoint.get("list", "/v1/models")
      .addSuccess(ModelList)
      .annotate(OpenApi.Summary, "The model catalog (OpenAI list shape)")
  )
  .annotate(OpenApi.Title, "Models") {}

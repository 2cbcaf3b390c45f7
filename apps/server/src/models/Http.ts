/** Handler of `GET /v1/models`. */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { Effect } from "effect"
import { ModelCatalog } from "@tidyllm/core"
import { Api } from "../Api.js"
import type { ModelList } from "./Api.js"

/** The catalog as an OpenAI model list (built once: the catalog does not change while serving). */
export const ModelsHttp = HttpApiBuilder.group(Api, "models", (handlers) =>
  Effect.gen(function*() {
    const catalog = yield* ModelCatalog.ModelCatalog
    const list: ModelList = {
      object: "list",
      data: catalog.models.map((m) => ({
        id: m.id,
        object: "model",
        created: 0,
        owned_by: Object.keys(m.provider_ids)[0] ?? "tidyllm",
        tidyllm: {
          kind: m.kind,
          aliases: m.aliases,
          provider_ids: m.provider_ids,
          input_usd_per_million: m.input_usd_per_million,
          output_usd_per_million: m.output_usd_per_million,
          context_window: m.context_window,
          max_output_tokens: m.max_output_tokens
        }
      }))
    }
    return handlers.handle("list", () => Effect.succeed(list))
  })
)

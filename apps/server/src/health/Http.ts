/** Handlers of `/health`, `/health/live` and `/health/ready`. */
import { HttpApiBuilder, HttpServerResponse } from "@effect/platform"
import { Effect } from "effect"
import { AiProcessingGateway } from "@tidyllm/ai-processing"
import { CorporateLlmGateway } from "@tidyllm/corporate-llm"
import { Api } from "../Api.js"
import { Readiness } from "../Layers.js"

const live = HttpServerResponse.unsafeJson({ status: "alive" })

/** The health handlers. */
export const HealthHttp = HttpApiBuilder.group(Api, "health", (handlers) =>
  Effect.gen(function*() {
    const gw1 = yield* CorporateLlmGateway.CorporateLlmGateway
    const gw2 = yield* AiProcessingGateway.AiProcessingGateway
    const readiness = yield* Readiness

    return handlers
      .handleRaw("health", () =>
        Effect.gen(function*() {
          const [corporate, ai, store] = yield* Effect.all([gw1.health, gw2.health, readiness.check], { concurrency: "unbounded" })
          const storage = { healthy: store.ready, ...store }
          const healthy = corporate.healthy && ai.healthy && storage.healthy
          return HttpServerResponse.unsafeJson(
            { status: healthy ? "healthy" : "degraded", services: { corporate_llm: corporate, ai_processing: ai, storage } },
            { status: healthy ? 200 : 503 }
          )
        }))
      .handleRaw("live", () => Effect.succeed(live))
      .handleRaw("ready", () =>
        Effect.map(readiness.check, (r) => {
          const { ready, ...rest } = r
          return HttpServerResponse.unsafeJson({ status: ready ? "ready" : "not_ready", ...rest }, { status: ready ? 200 : 503 })
        }))
  })
)

/** Handlers of `/health`, `/health/live` and `/health/ready`. */
import { HttpApiBuilder, HttpServerResponse } from "@effect/platform"
import { Effect } from "effect"
import { AiProcessingGateway } from "@tidyllm/ai-processing"
import { CorporateLlmGateway } from "@tidyllm/corporate-llm"
import { UnifiedSessionManager } from "@tidyllm/session-manager"
import { WorkflowOptimizerGateway } from "@tidyllm/workflow-optimizer"
import { Api } from "../Api.js"
import { Readiness } from "../Layers.js"

const live = HttpServerResponse.unsafeJson({ status: "alive" })

/** The health handlers. */
export const HealthHttp = HttpApiBuilder.group(Api, "health", (handlers) =>
  Effect.gen(function*() {
    const gw1 = yield* CorporateLlmGateway.CorporateLlmGateway
    const gw2 = yield* AiProcessingGateway.AiProcessingGateway
    const readiness = yield* Readiness
    const gw3 = yield* WorkflowOptimizerGateway.WorkflowOptimizerGateway
    const sessions = yield* UnifiedSessionManager.UnifiedSessionManager

    return handlers
      .handleRaw("health", () =>
        Effect.gen(function*() {
          const [corporate, ai, store, workflow_optimizer, session_manager] = yield* Effect.all(
            [gw1.health, gw2.health, readiness.check, gw3.health, sessions.health],
            { concurrency: "unbounded" }
          )
          const storage = { healthy: store.ready, ...store }
          const healthy = corporate.healthy && ai.healthy && storage.healthy && workflow_optimizer.healthy && session_manager.healthy
          return HttpServerResponse.unsafeJson(
            { status: healthy ? "healthy" : "degraded", services: { corporate_llm: corporate, ai_processing: ai, storage, workflow_optimizer, session_manager } },
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

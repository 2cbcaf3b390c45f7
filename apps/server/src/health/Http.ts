/** Handlers of `/health`, `/health/live` and `/health/ready`. */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { Effect } from "effect"
import { AiProcessingGateway, ResponseCache } from "@tidyllm/ai-processing"
import { CorporateLlmGateway, LlmProviders } from "@tidyllm/corporate-llm"
import { ObjectStore, UnifiedSessionManager } from "@tidyllm/session-manager"
import { WorkflowOptimizerGateway } from "@tidyllm/workflow-optimizer"
import { Api } from "../Api.js"
import { AppConfig, Readiness } from "../Layers.js"
import * as Checks from "./Checks.js"

const live = HttpServerResponse.unsafeJson({ status: "alive" })

/** The health handlers. */
export const HealthHttp = HttpApiBuilder.group(Api, "health", (handlers) =>
  Effect.gen(function*() {
    const gw1 = yield* CorporateLlmGateway.CorporateLlmGateway
    const gw2 = yield* AiProcessingGateway.AiProcessingGateway
    const readiness = yield* Readiness
    const gw3 = yield* WorkflowOptimizerGateway.WorkflowOptimizerGateway
    const sessions = yield* UnifiedSessionManager.UnifiedSessionManager
    const config = yield* AppConfig
    const objects = yield* ObjectStore.ObjectStore
    const registry = yield* LlmProviders.LlmProviders
    const cache = yield* ResponseCache.ResponseCache

    // Every dependency but the database (whose check also gives `services.storage`).
    const probes: ReadonlyArray<Checks.Probe> = [
      Checks.objectStore(objects, Checks.describeObjectStore(config)),
      Checks.cache(config, cache),
      ...registry.all.map((p) => Checks.provider(p, config))
    ]

    return handlers
      .handleRaw("health", () =>
        Effect.gen(function*() {
          const [corporate, ai, [databaseCheck, store], workflow_optimizer, session_manager, others] = yield* Effect.all(
            [
              gw1.health,
              gw2.health,
              Checks.database(readiness),
              gw3.health,
              sessions.health,
              Effect.forEach(probes, (p) => Checks.run(p), { concurrency: "unbounded" })
            ],
            { concurrency: "unbounded" }
          )
          const storage = { healthy: store.ready, ...store }
          const servicesHealthy = corporate.healthy && ai.healthy && storage.healthy && workflow_optimizer.healthy && session_manager.healthy
          const checks = [databaseCheck, ...others].filter((c) => c.skipped !== true).map(({ skipped: _, ...c }) => c)
          const verdict = Checks.verdict(checks)
          const status = servicesHealthy ? verdict : "unhealthy"
          return HttpServerResponse.unsafeJson(
            { status, services: { corporate_llm: corporate, ai_processing: ai, storage, workflow_optimizer, session_manager }, checks },
            { status: status === "unhealthy" ? 503 : 200 }
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

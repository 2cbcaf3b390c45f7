/** Health endpoints: per-gateway health, liveness, readiness. */
import { HttpApiEndpoint, HttpApiGroup, OpenApi } from "@effect/platform"
import { Schema } from "effect"

/** `GET /health`: each service's own report (`healthy` plus details). 503 when one is unhealthy. */
export const HealthReport = Schema.Struct({
  status: Schema.Literal("healthy", "degraded"),
  services: Schema.Struct({
    corporate_llm: Schema.Struct({ healthy: Schema.Boolean }, { key: Schema.String, value: Schema.Unknown }),
    ai_processing: Schema.Struct({ healthy: Schema.Boolean }, { key: Schema.String, value: Schema.Unknown }),
    storage: Schema.Struct({ healthy: Schema.Boolean }, { key: Schema.String, value: Schema.Unknown }),
    workflow_optimizer: Schema.Struct({ healthy: Schema.Boolean }, { key: Schema.String, value: Schema.Unknown }),
    session_manager: Schema.Struct({ healthy: Schema.Boolean }, { key: Schema.String, value: Schema.Unknown })
  })
}).annotations({ identifier: "HealthReport" })

/** `GET /health/live`. */
export const Liveness = Schema.Struct({ status: Schema.Literal("alive") })

/** `GET /health/ready`: 200 when migrated and the database answers, else 503. */
export const Readiness = Schema.Struct({
  status: Schema.Literal("ready", "not_ready"),
  engine: Schema.String,
  migrated: Schema.Boolean,
  database: Schema.Boolean,
  detail: Schema.optional(Schema.String)
}).annotations({ identifier: "Readiness" })

/** The health group. */
export class HealthApi extends HttpApiGroup.make("health")
  .add(HttpApiEndpoint.get("health", "/health").addSuccess(HealthReport).addError(HealthReport, { status: 503 }).annotate(OpenApi.Summary, "Per-gateway health"))
  .add(HttpApiEndpoint.get("live", "/health/live").addSuccess(Liveness).annotate(OpenApi.Summary, "Liveness: the process serves HTTP"))
  .add(HttpApiEndpoint.get("ready", "/health/ready").addSuccess(Readiness).addError(Readiness, { status: 503 }).annotate(OpenApi.Summary, "Readiness: migrated and the database answers"))
  .annotate(OpenApi.Title, "Health") {}

/** Health endpoints: per-gateway health with dependency checks, liveness, readiness. */
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as OpenApi from "@effect/platform/OpenApi"
import { Schema } from "effect"

/** One dependency check of `GET /health`. */
export const DependencyCheck = Schema.Struct({
  /** `database`, `object store`, `cache`, `provider <name>`. */
  name: Schema.String,
  ok: Schema.Boolean,
  /** A failed required dependency makes `/health` answer 503; a failed optional one, 200 `degraded`. */
  required: Schema.Boolean,
  latency_ms: Schema.Number,
  /** What answered, or why not (`no answer within 2000 ms` on a timeout). */
  detail: Schema.String
}).annotations({ identifier: "DependencyCheck" })

/**
 * `GET /health`: each service's own report (`healthy` plus details) and a check of each
 * dependency (database, object store, cache, each configured provider), each under its own
 * timeout. `healthy`/`degraded` (an optional dependency failed) answer 200; `unhealthy` (a
 * required dependency failed, or a service reports itself unhealthy) answers 503.
 */
export const HealthReport = Schema.Struct({
  status: Schema.Literal("healthy", "degraded", "unhealthy"),
  services: Schema.Struct({
    corporate_llm: Schema.Struct({ healthy: Schema.Boolean }, { key: Schema.String, value: Schema.Unknown }),
    ai_processing: Schema.Struct({ healthy: Schema.Boolean }, { key: Schema.String, value: Schema.Unknown }),
    storage: Schema.Struct({ healthy: Schema.Boolean }, { key: Schema.String, value: Schema.Unknown }),
    workflow_optimizer: Schema.Struct({ healthy: Schema.Boolean }, { key: Schema.String, value: Schema.Unknown }),
    session_manager: Schema.Struct({ healthy: Schema.Boolean }, { key: Schema.String, value: Schema.Unknown })
  }),
  checks: Schema.Array(DependencyCheck)
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
  .add(
    HttpApiEndpoint.get("health", "/health").addSuccess(HealthReport).addError(HealthReport, { status: 503 })
      .annotate(OpenApi.Summary, "Per-gateway health and dependency checks")
  )
  .add(HttpApiEndpoint.get("live", "/health/live").addSuccess(Liveness).annotate(OpenApi.Summary, "Liveness: the process serves HTTP"))
  .add(HttpApiEndpoint.get("ready", "/health/ready").addSuccess(Readiness).addError(Readiness, { status: 503 }).annotate(OpenApi.Summary, "Readiness: migrated and the database answers"))
  .annotate(OpenApi.Title, "Health") {}

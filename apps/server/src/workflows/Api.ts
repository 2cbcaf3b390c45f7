/**
 * The workflow contract (gateway #3): `POST /v1/workflows/validate|analyze|optimize`, and the
 * versioned store: `PUT /v1/workflows/{id}`, `GET /v1/workflows/{id}[?version=n]`, `GET /v1/workflows`.
 */
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as OpenApi from "@effect/platform/OpenApi"
import { Schema } from "effect"
import { UnifiedSessionManager } from "@tidyllm/session-manager"
import { WorkflowOptimizerGateway } from "@tidyllm/workflow-optimizer"
import { ErrorBody } from "../http/Errors.js"

/** The body of validate/analyze/optimize: a request of gateway #3 without `operation` (the path names it). */
export const WorkflowBody = WorkflowOptimizerGateway.WorkflowRequest.pipe(Schema.omit("operation")).annotations({ identifier: "WorkflowRequest" })

/** The response of gateway #3. */
export const WorkflowResponse = Schema.Struct({
  status: Schema.Literal("success"),
  data: Schema.Record({ key: Schema.String, value: Schema.Unknown }),
  metadata: Schema.Struct({
    request_id: Schema.String,
    operation: WorkflowOptimizerGateway.Operation,
    optimization_level: Schema.NullOr(Schema.String),
    workflow_id: Schema.NullOr(Schema.String),
    version: Schema.NullOr(Schema.Number),
    corporate_audit_id: Schema.NullOr(Schema.String),
    processing_metrics: Schema.Record({ key: Schema.String, value: Schema.Number }),
    optimization_applied: Schema.Boolean
  })
}).annotations({ identifier: "WorkflowResponse" })

/** `PUT /v1/workflows/{id}`: the definition itself, or `{workflow, reason}`. */
export const StoreBody = Schema.Union(
  Schema.Struct({ workflow: Schema.Unknown, reason: Schema.optional(Schema.String) }),
  Schema.Record({ key: Schema.String, value: Schema.Unknown })
).annotations({ identifier: "StoreWorkflow" })

/** A version just stored. */
export const Stored = Schema.Struct({ workflow_id: Schema.String, version: Schema.Number, key: Schema.String, current: Schema.Boolean })

/** A stored version. */
export const StoredWorkflow = Schema.Struct({ workflow_id: Schema.String, version: Schema.Number, current: Schema.Boolean, definition: Schema.Unknown })

/** The stored workflows. */
export const WorkflowList = Schema.Struct({
  workflows: Schema.Array(Schema.Struct({
    workflow_id: Schema.String,
    /** The team the workflow belongs to (listed to team-less callers, who see every team's). */
    team: Schema.optional(Schema.String),
    versions: Schema.Array(Schema.Number),
    current: Schema.NullOr(Schema.Number)
  }))
})

/**
 * A workflow id in a path or a query, checked before any handler: an id the store would refuse
 * anyway, and a NUL (`%00`) never reaches an audit row the database cannot take.
 */
export const WorkflowId = Schema.String.pipe(Schema.pattern(UnifiedSessionManager.WORKFLOW_ID, {
  message: () => "a workflow id is 1-128 letters, digits, '.', '_' or '-', not starting with '.'"
}))

const IdPath = Schema.Struct({ id: WorkflowId })

const operation = <N extends "validate" | "analyze" | "optimize">(name: N, summary: string) =>
  HttpApiEndpoint.post(name, `/v1/workflows/${name}`)
    .setPayload(WorkflowBody)
    .addSuccess(WorkflowResponse)
    .addError(ErrorBody, { status: 400 })
    .addError(ErrorBody, { status: 404 })
    .addError(ErrorBody, { status: 409 })
    .addError(ErrorBody, { status: 413 })
    .addError(ErrorBody, { status: 503 })
    .annotate(OpenApi.Summary, summary)

/** The workflows group. */
export class WorkflowsApi extends HttpApiGroup.make("workflows")
  .add(operation("validate", "VALIDATE a definition: schema and structural issues with codes, severities and step paths"))
  .add(operation("analyze", "ANALYZE a definition: metrics, critical path, bottlenecks, compliance verdicts, risk, suggestions"))
  .add(operation("optimize", "OPTIMIZE a definition; with a workflow_id the result is stored, or proposed under a flow agreement when it changes behaviour"))
  .add(
    HttpApiEndpoint.put("store", "/v1/workflows/:id")
      .setPath(IdPath)
      .setPayload(StoreBody)
      .addSuccess(Stored)
      .addError(ErrorBody, { status: 400 })
      .addError(ErrorBody, { status: 409 })
      .addError(ErrorBody, { status: 413 })
      .addError(ErrorBody, { status: 503 })
      .annotate(OpenApi.Summary, "Validate and store a definition as the workflow's next version, made current")
  )
  .add(
    HttpApiEndpoint.get("get", "/v1/workflows/:id")
      .setPath(IdPath)
      .setUrlParams(Schema.Struct({
        version: Schema.optional(Schema.NumberFromString.pipe(Schema.int(), Schema.greaterThanOrEqualTo(1))),
        /** A team-less caller reads a team's workflow by naming the team. */
        team: Schema.optional(Schema.String)
      }))
      .addSuccess(StoredWorkflow)
      .addError(ErrorBody, { status: 400 })
      .addError(ErrorBody, { status: 404 })
      .addError(ErrorBody, { status: 503 })
      .annotate(OpenApi.Summary, "A stored version of a workflow (default: the current one)")
  )
  .add(
    HttpApiEndpoint.get("list", "/v1/workflows")
      .addSuccess(WorkflowList)
      .addError(ErrorBody, { status: 503 })
      .annotate(OpenApi.Summary, "The stored workflows, their versions and the current one")
  )
  .annotate(OpenApi.Title, "Workflows") {}

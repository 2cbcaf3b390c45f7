/** The flow-agreement contract: `GET /v1/agreements[/{id}]`, `POST /v1/agreements/{id}/approve|reject`. */
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as OpenApi from "@effect/platform/OpenApi"
import { Schema } from "effect"
import { FlowAgreement } from "@tidyllm/heiros"
import { ErrorBody } from "../http/Errors.js"
import { WorkflowId } from "../workflows/Api.js"

/** An agreement as JSON. */
export const Agreement = Schema.encodedSchema(FlowAgreement.Agreement).annotations({ identifier: "Agreement" })

/** `GET /v1/agreements`. */
export const AgreementList = Schema.Struct({ agreements: Schema.Array(Agreement) })

/** The body of approve and reject (a rejection needs the comment). */
export const DecisionBody = Schema.Struct({ comment: Schema.optional(Schema.String) }).annotations({ identifier: "Decision" })

/** The outcome of a decision. */
export const DecisionResult = Schema.Struct({
  agreement: Agreement,
  from: FlowAgreement.Status,
  to: FlowAgreement.Status,
  current_version: Schema.NullOr(Schema.Number)
})

const IdPath = Schema.Struct({ id: Schema.String })

const decision = <N extends "approve" | "reject">(name: N, summary: string) =>
  HttpApiEndpoint.post(name, `/v1/agreements/:id/${name}`)
    .setPath(IdPath)
    .setPayload(DecisionBody)
    .addSuccess(DecisionResult)
    .addError(ErrorBody, { status: 400 })
    .addError(ErrorBody, { status: 401 })
    .addError(ErrorBody, { status: 403 })
    .addError(ErrorBody, { status: 404 })
    .addError(ErrorBody, { status: 409 })
    .addError(ErrorBody, { status: 503 })
    .annotate(OpenApi.Summary, summary)

/** The agreements group. */
export class AgreementsApi extends HttpApiGroup.make("agreements")
  .add(
    HttpApiEndpoint.get("list", "/v1/agreements")
      .setUrlParams(Schema.Struct({
        // Checked like the ids it filters on: a NUL (`%00`) would otherwise reach the database, which cannot take it.
        workflow_id: Schema.optional(WorkflowId),
        status: Schema.optional(FlowAgreement.Status),
        limit: Schema.optional(Schema.NumberFromString.pipe(Schema.int(), Schema.between(1, 1000)))
      }))
      .addSuccess(AgreementList)
      .addError(ErrorBody, { status: 400 })
      .addError(ErrorBody, { status: 503 })
      .annotate(OpenApi.Summary, "Flow agreements, newest first")
  )
  .add(
    HttpApiEndpoint.get("get", "/v1/agreements/:id")
      .setPath(IdPath)
      .addSuccess(Agreement)
      .addError(ErrorBody, { status: 404 })
      .addError(ErrorBody, { status: 503 })
      .annotate(OpenApi.Summary, "One flow agreement with its decisions")
  )
  .add(decision("approve", "Approve as the caller (x-tidyllm-user, role from x-tidyllm-role); the approval that completes makes the proposed version current"))
  .add(decision("reject", "Reject as the caller, with a comment saying why"))
  .annotate(OpenApi.Title, "Flow agreements") {}

/** Handlers of the flow-agreement API. */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import type * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import { Effect } from "effect"
import { WorkflowOptimizerGateway } from "@tidyllm/workflow-optimizer"
import { Api } from "../Api.js"
import { decoder, readJson } from "../http/Body.js"
import { workflowContext } from "../http/RequestContext.js"
import { AppConfig } from "../Layers.js"
import { respond } from "../workflows/Http.js"
import { DecisionBody } from "./Api.js"

const decodeDecision = decoder(DecisionBody, { exact: true })

/** The agreement handlers. */
export const AgreementsHttp = HttpApiBuilder.group(Api, "agreements", (handlers) =>
  Effect.gen(function*() {
    const gw3 = yield* WorkflowOptimizerGateway.WorkflowOptimizerGateway
    const maxBody = (yield* AppConfig).server.max_body_bytes

    /** The decision body; an approval may come with no body at all. */
    const body = (request: HttpServerRequest.HttpServerRequest) =>
      request.headers["content-length"] === "0" ? Effect.succeed<typeof DecisionBody.Type>({}) : Effect.flatMap(readJson(request, maxBody), decodeDecision)

    return handlers
      .handleRaw("list", ({ request, urlParams }) =>
        respond((requestId) =>
          Effect.flatMap(workflowContext(request, requestId), (context) =>
            Effect.map(gw3.listAgreements(urlParams, context), (agreements) => ({ agreements })))))
      .handleRaw("get", ({ path, request }) =>
        respond((requestId) => Effect.flatMap(workflowContext(request, requestId), (context) => gw3.getAgreement(path.id, context))))
      .handleRaw("approve", ({ path, request }) =>
        respond((requestId) =>
          Effect.flatMap(workflowContext(request, requestId), (context) => Effect.flatMap(body(request), (b) => gw3.approve(path.id, b.comment, context)))))
      .handleRaw("reject", ({ path, request }) =>
        respond((requestId) =>
          Effect.flatMap(workflowContext(request, requestId), (context) => Effect.flatMap(body(request), (b) => gw3.reject(path.id, b.comment, context)))))
  })
)

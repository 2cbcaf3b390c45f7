/** Handlers of the workflow API (gateway #3 and the versioned workflow store). */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import type * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import { Effect, FiberRef } from "effect"
import { WorkflowOptimizerGateway } from "@tidyllm/workflow-optimizer"
import { Api } from "../Api.js"
import { decoder, readJson } from "../http/Body.js"
import { errorResponse, type ApiFailure } from "../http/Errors.js"
import { currentRequestId, workflowContext } from "../http/RequestContext.js"
import { AppConfig } from "../Layers.js"
import { WorkflowBody } from "./Api.js"

// Strict like the gateway API: an unknown field is more likely a typo than something to ignore.
const decodeBody = decoder(WorkflowBody, { exact: true })

const isRecord = (u: unknown): u is Readonly<Record<string, unknown>> => typeof u === "object" && u !== null && !Array.isArray(u)

/** `PUT` takes the definition itself, or `{workflow, reason}`; the envelope has `workflow` and no `steps`. */
export const storeBodyOf = (body: unknown): { readonly definition: unknown; readonly reason: string | undefined } =>
  isRecord(body) && "workflow" in body && !("steps" in body)
    ? { definition: body["workflow"], reason: typeof body["reason"] === "string" ? body["reason"] : undefined }
    : { definition: body, reason: undefined }

/** Runs a handler body with the request id, rendering its value as JSON and its failure as the error envelope. */
export const respond = <A>(run: (requestId: string) => Effect.Effect<A, ApiFailure>, status = 200) =>
  Effect.flatMap(FiberRef.get(currentRequestId), (requestId) =>
    run(requestId).pipe(
      Effect.map((a) => HttpServerResponse.unsafeJson(a, { status })),
      Effect.catchAll((e) => Effect.succeed(errorResponse(e, requestId)))
    ))

/** The workflow handlers. */
export const WorkflowsHttp = HttpApiBuilder.group(Api, "workflows", (handlers) =>
  Effect.gen(function*() {
    const gw3 = yield* WorkflowOptimizerGateway.WorkflowOptimizerGateway
    const maxBody = (yield* AppConfig).server.max_body_bytes

    const operation = (op: WorkflowOptimizerGateway.Operation) =>
      ({ request }: { readonly request: HttpServerRequest.HttpServerRequest }) =>
        respond((requestId) =>
          readJson(request, maxBody).pipe(
            Effect.flatMap(decodeBody),
            Effect.flatMap((body) => Effect.flatMap(workflowContext(request, requestId), (context) => gw3.process({ ...body, operation: op }, context)))
          ))

    return handlers
      .handleRaw("validate", operation("VALIDATE"))
      .handleRaw("analyze", operation("ANALYZE"))
      .handleRaw("optimize", operation("OPTIMIZE"))
      .handleRaw("store", ({ path, request }) =>
        respond((requestId) =>
          Effect.gen(function*() {
            const { definition, reason } = storeBodyOf(yield* readJson(request, maxBody))
            const context = yield* workflowContext(request, requestId)
            return yield* gw3.storeWorkflow(path.id, definition, { ...context, reason: context.reason ?? reason })
          }), 201))
      .handleRaw("get", ({ path, request, urlParams }) =>
        respond((requestId) => Effect.flatMap(workflowContext(request, requestId), (context) => gw3.getWorkflow(path.id, urlParams.version, context, urlParams.team === undefined ? undefined : { team: urlParams.team }))))
      .handleRaw("list", ({ request }) =>
        respond((requestId) =>
          Effect.flatMap(workflowContext(request, requestId), (context) => Effect.map(gw3.listWorkflows(context), (workflows) => ({ workflows })))))
  })
)

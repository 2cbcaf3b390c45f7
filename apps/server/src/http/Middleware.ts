/**
 * The API-level middleware: a request id for every request (the client's `x-request-id` or a new
 * UUID, echoed in the response), and the JSON error envelope for what no handler answered
 * (unknown routes, defects).
 */
import { HttpApiBuilder, HttpApp, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Cause, Effect, FiberRef, Option, Predicate } from "effect"
import { Errors } from "@tidyllm/core"
import * as CorporateLlmMetrics from "@tidyllm/corporate-llm/Metrics"
import { Api } from "../Api.js"
import * as HttpMetrics from "../metrics/HttpMetrics.js"
import { errorResponse, InternalError, NotFound } from "./Errors.js"
import { currentRequestId, requestIdFrom } from "./RequestContext.js"

const failureResponse = (cause: Cause.Cause<unknown>, request: HttpServerRequest.HttpServerRequest, requestId: string) => {
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure) && Predicate.isTagged(failure.value, "RouteNotFound")) {
    return Effect.succeed(errorResponse(new NotFound({ message: `no route for ${request.method} ${request.url.split("?")[0] ?? ""}` }), requestId))
  }
  if (Option.isSome(failure) && Predicate.isTagged(failure.value, "HttpApiDecodeError")) {
    const message = Predicate.hasProperty(failure.value, "message") && typeof failure.value.message === "string" ? failure.value.message : "invalid request"
    return Effect.succeed(errorResponse(new Errors.InvalidRequest({ message }), requestId))
  }
  return Effect.logError(`unhandled failure serving ${request.method} ${request.url}`, cause).pipe(
    Effect.annotateLogs("request_id", requestId),
    Effect.as(errorResponse(new InternalError({ message: `internal error (request ${requestId}); the details are in the server log` }), requestId))
  )
}

/** The route templates the HTTP metrics label requests with: the API's endpoints and the docs. */
const routes = HttpMetrics.make(Api, [["GET", "/docs"], ["GET", "/docs/openapi.json"]])

/** The middleware as a layer for `HttpApiBuilder.serve`. */
export const ApiMiddleware = HttpApiBuilder.middleware(Api, (app) =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const started = performance.now()
    const route = routes.match(request.method, request.url)
    // Provider calls add their time here, so the metrics can tell the gateway's time from theirs.
    // Set, not `locally`: the fiber serves this one request (and `locally` costs ~5 µs).
    const upstream: CorporateLlmMetrics.UpstreamTimer = { seconds: 0, calls: 0 }
    yield* FiberRef.set(CorporateLlmMetrics.currentUpstreamTimer, upstream)
    const requestId = requestIdFrom(request.headers["x-request-id"])
    // The metrics are recorded as the response head goes out (a request whose client left before is
    // not counted here; gateway #1 counts it as `cancelled`).
    yield* HttpApp.appendPreResponseHandler((_req, response) =>
      Effect.sync(() => {
        routes.record(route, response.status, (performance.now() - started) / 1000, upstream)
        return HttpServerResponse.setHeader(response, "x-request-id", requestId)
      }))
    return yield* app.pipe(
      Effect.locally(currentRequestId, requestId),
      Effect.catchAllCause((cause) => (Cause.isInterruptedOnly(cause) ? Effect.failCause(cause) : failureResponse(cause, request, requestId)))
    )
  }))

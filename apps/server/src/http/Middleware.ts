/**
 * The API-level middleware: a request id for every request (the client's `x-request-id` or a new
 * UUID, echoed in the response), and the JSON error envelope for what no handler answered
 * (unknown routes, defects).
 */
import { HttpApiBuilder, HttpApp, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Cause, Effect, Option, Predicate } from "effect"
import { Errors } from "@tidyllm/core"
import { Api } from "../Api.js"
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

/** The middleware as a layer for `HttpApiBuilder.serve`. */
export const ApiMiddleware = HttpApiBuilder.middleware(Api, (app) =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const requestId = requestIdFrom(request.headers["x-request-id"])
    yield* HttpApp.appendPreResponseHandler((_req, response) => Effect.succeed(HttpServerResponse.setHeader(response, "x-request-id", requestId)))
    return yield* app.pipe(
      Effect.locally(currentRequestId, requestId),
      Effect.catchAllCause((cause) => (Cause.isInterruptedOnly(cause) ? Effect.failCause(cause) : failureResponse(cause, request, requestId)))
    )
  }))

/**
 * The API-level middleware: a request id for every request (the client's `x-request-id` or a new
 * UUID, echoed in the response); authentication and the role check of the route (see
 * `auth/Policy.ts`) before any body is read; and the JSON error envelope for what no handler
 * answered (unknown routes, defects).
 */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpApp from "@effect/platform/HttpApp"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { Cause, Effect, Either, FiberRef, HashMap, List, LogLevel, Option, Predicate } from "effect"
import { Errors, Spans } from "@tidyllm/core"
import * as CorporateLlmMetrics from "@tidyllm/corporate-llm/Metrics"
import { Api } from "../Api.js"
import * as Auth from "../auth/Auth.js"
import type { Principal, Unauthorized } from "../auth/Auth.js"
import * as Policy from "../auth/Policy.js"
import * as Docs from "./Docs.js"
import { AppConfig } from "../Layers.js"
import * as HttpMetrics from "../metrics/HttpMetrics.js"
import * as Logging from "../observability/Logging.js"
import { errorResponse, InternalError, NotFound } from "./Errors.js"
import { currentPrincipal, currentRequestId, type HasHeaders, openPrincipal, requestIdFrom, userHeader } from "./RequestContext.js"

const failureResponse = (cause: Cause.Cause<unknown>, request: HttpServerRequest.HttpServerRequest, requestId: string) => {
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure) && Predicate.isTagged(failure.value, "RouteNotFound")) {
    return Effect.succeed(errorResponse(new NotFound({ message: `no route for ${request.method} ${request.url.split("?")[0] ?? ""}` }), requestId))
  }
  if (Option.isSome(failure) && Predicate.isTagged(failure.value, "HttpApiDecodeError")) {
    const message = Predicate.hasProperty(failure.value, "message") && typeof failure.value.message === "string" ? failure.value.message : "invalid request"
    return Effect.succeed(errorResponse(new Errors.InvalidRequest({ message }), requestId))
  }
  // The path only: a query string may hold what a client should not have put there.
  return Effect.logError(`unhandled failure serving ${request.method} ${request.url.split("?")[0] ?? ""}`, cause).pipe(
    Effect.annotateLogs("request_id", requestId),
    Effect.as(errorResponse(new InternalError({ message: `internal error (request ${requestId}); the details are in the server log` }), requestId))
  )
}

/** The route templates the HTTP metrics label requests with: the API's endpoints and the docs. */
export const routes = HttpMetrics.make(Api, Docs.routes)

/** The 403 of a key whose role the route does not allow. */
const forbidden = (principal: Principal, method: string, template: string, rule: Policy.Rule | undefined) =>
  new Errors.Forbidden({
    rule: "role",
    message: rule === undefined || rule === "public"
      ? `${method} ${template} has no role rule; it is refused to every key`
      : `${method} ${template} needs role ${rule.join(" or ")}; key ${principal.caller.key_id ?? "?"} has role ${principal.role}`
  })

/** The caller of a request to `route`: undefined on a public route; refused without a usable key (401) or when the key store is down (503). */
export const authenticate = (
  auth: Auth.Service,
  request: HasHeaders,
  route: HttpMetrics.Route
): Effect.Effect<Principal | undefined, Unauthorized | Errors.StoreUnavailable> =>
  Policy.ruleOf(route.method, route.template) === "public"
    ? Effect.succeed(undefined)
    : Effect.flatMap(auth.mode, (mode) => (mode === "open" ? Effect.succeed(openPrincipal(request)) : auth.authenticate(request, userHeader(request))))

/** The role check of `route` (open mode passes every check; an unknown path is left to its 404). */
export const checkRole = (principal: Principal, route: HttpMetrics.Route, requestId: string): Effect.Effect<void, Errors.Forbidden> => {
  const rule = Policy.ruleOf(route.method, route.template)
  if (principal.open || route.template === HttpMetrics.OTHER || (rule !== undefined && Policy.allows(rule, principal.role))) return Effect.void
  return Effect.logWarning(`refused ${route.method} ${route.template} to key ${principal.caller.key_id ?? "?"} (role ${principal.role})`).pipe(
    Effect.annotateLogs("request_id", requestId),
    Effect.zipRight(Effect.fail(forbidden(principal, route.method, route.template, rule)))
  )
}

/**
 * The access-log line of a request, as its response head goes out: `http request` at level info,
 * with the fiber's annotations (the request id) and the request's as annotations, to the fiber's
 * loggers, as `Effect.logInfo(…).pipe(Effect.annotateLogs(…))` would write it. Handed to the
 * loggers in one step: through `annotateLogs` and `logInfo` it took ~26 Effect operations, on
 * every request. With the server's own loggers the line is written without Effect's logger
 * (`Logging.plainWriter`): the annotations in a `HashMap`, read back into an object by the logger,
 * made ~10 KiB of garbage per request (docs/performance.md).
 */
export const accessLine = (
  method: string,
  url: string,
  route: HttpMetrics.Route,
  status: number,
  seconds: number,
  upstream: CorporateLlmMetrics.UpstreamTimer,
  principal: Principal | undefined
): Effect.Effect<void> =>
  Effect.withFiberRuntime((fiber) => {
    if (LogLevel.greaterThan(fiber.getFiberRef(FiberRef.currentMinimumLogLevel), LogLevel.Info)) return Effect.void
    const fields: Record<string, string | number | boolean> = {
      method,
      route: route.template,
      path: url.split("?")[0] ?? "",
      status,
      duration_ms: Math.round(seconds * 1e6) / 1e3
    }
    if (upstream.calls > 0) fields["upstream_ms"] = Math.round(upstream.seconds * 1e6) / 1e3
    const caller = principal?.caller
    if (caller?.key_id !== undefined) fields["key_id"] = caller.key_id
    if (caller?.team !== undefined) fields["team"] = caller.team
    if (caller?.user_id !== undefined) fields["user"] = caller.user_id
    if (principal !== undefined) fields["role"] = principal.role
    const base = fiber.getFiberRef(FiberRef.currentLogAnnotations)
    const spans = fiber.getFiberRef(FiberRef.currentLogSpan)
    const date = new Date()
    // The server's own loggers take the line as it is (Logging.plainWriter); any other set of
    // loggers gets it as `Effect.logInfo` would hand it over.
    const plain = List.isNil(spans) ? Logging.plainWriter(fiber.getFiberRef(FiberRef.currentLoggers)) : undefined
    if (plain !== undefined) {
      const annotations: Record<string, string | number | boolean> = {}
      let primitive = true
      for (const [key, value] of base) {
        if (typeof value === "string" || typeof value === "number" || typeof value === "boolean") annotations[key] = value
        else primitive = false
      }
      if (primitive) {
        Object.assign(annotations, fields)
        if (plain({ level: LogLevel.Info, message: "http request", date, fiberId: fiber.id(), annotations }, Spans.spanOf(fiber) !== undefined)) return Effect.void
      }
    }
    let annotations = base
    for (const key in fields) annotations = HashMap.set(annotations, key, fields[key])
    const line = {
      fiberId: fiber.id(),
      logLevel: LogLevel.Info,
      message: "http request",
      cause: Cause.empty,
      context: fiber.getFiberRefs(),
      spans,
      annotations,
      date
    }
    for (const logger of fiber.getFiberRef(FiberRef.currentLoggers)) logger.log(line)
    return Effect.void
  })

/** The middleware as a layer for `HttpApiBuilder.serve`; needs `Auth` and the configuration. */
export const ApiMiddleware = HttpApiBuilder.middleware(Api, Effect.map(Effect.all([Auth.Auth, AppConfig]), ([auth, config]) => {
  const accessLog = config.observability.access_log
  return (app) => Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const started = performance.now()
    const route = routes.match(request.method, request.url)
    // Provider calls add their time here, so the metrics can tell the gateway's time from theirs.
    // Set, not `locally`: the fiber serves this one request (and `locally` costs ~5 µs).
    const upstream: CorporateLlmMetrics.UpstreamTimer = { seconds: 0, calls: 0 }
    yield* FiberRef.set(CorporateLlmMetrics.currentUpstreamTimer, upstream)
    const requestId = requestIdFrom(request.headers["x-request-id"])
    // The caller, once authenticated (the access log names it).
    const seen: { caller?: Principal | undefined } = {}
    // The metrics (and the access log) are recorded as the response head goes out (a request whose
    // client left before is not counted here; gateway #1 counts it as `cancelled`).
    yield* HttpApp.appendPreResponseHandler((_req, response) => {
      const seconds = (performance.now() - started) / 1000
      routes.record(route, response.status, seconds, upstream)
      const withId = HttpServerResponse.setHeader(response, "x-request-id", requestId)
      return accessLog ? Effect.as(accessLine(request.method, request.url, route, response.status, seconds, upstream, seen.caller), withId) : Effect.succeed(withId)
    })
    yield* FiberRef.set(currentRequestId, requestId)
    // Every log line of the request names it (set, not `annotateLogs`: this fiber serves one request).
    yield* FiberRef.update(FiberRef.currentLogAnnotations, HashMap.set("request_id", requestId as unknown))
    const principal = yield* Effect.either(authenticate(auth, request, route))
    if (Either.isLeft(principal)) return errorResponse(principal.left, requestId)
    const caller = seen.caller = principal.right
    if (caller !== undefined) {
      const allowed = yield* Effect.either(checkRole(caller, route, requestId))
      if (Either.isLeft(allowed)) return errorResponse(allowed.left, requestId)
      yield* FiberRef.set(currentPrincipal, caller)
    }
    return yield* app.pipe(
      Effect.catchAllCause((cause) => (Cause.isInterruptedOnly(cause) ? Effect.failCause(cause) : failureResponse(cause, request, requestId)))
    )
  })
}))

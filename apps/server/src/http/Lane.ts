/**
 * The fast lane: `POST /v1/chat/completions`, the route that carries the traffic, served straight
 * on Node's HTTP server in one fiber per request, beside the `HttpApi` app that serves every other
 * route (and this one too while the lane is off: with tracing on, which wants the platform's HTTP
 * span, and during start-up and shutdown).
 *
 * It runs the same code as the middleware and the handler — authentication, the role check, the
 * request id, the audit of refused bodies, gateway #2, the error bodies, the HTTP metrics and the
 * access log — and skips only the platform's per-request machinery (request scope, context and
 * fiber-ref copies, pre-response handlers, the router), which cost about as much CPU as the
 * gateways themselves (docs/performance.md).
 */
import type { IncomingMessage, ServerResponse } from "node:http"
import { clientAbortFiberId } from "@effect/platform/HttpServerError"
import { Cause, type Chunk, Context, Effect, FiberRef, FiberRefs, HashMap, Runtime } from "effect"
import * as CorporateLlmMetrics from "@tidyllm/corporate-llm/Metrics"
import type { Principal } from "../auth/Auth.js"
import * as Auth from "../auth/Auth.js"
import * as Chat from "../chat/Http.js"
import * as Sse from "../chat/Sse.js"
import { AppConfig } from "../Layers.js"
import { type ApiFailure, errorBody, errorHeaders, InternalError } from "./Errors.js"
import { accessLine, authenticate, checkRole, routes } from "./Middleware.js"
import { contextOf, currentRequestId, headerValue, openPrincipal, requestIdFrom } from "./RequestContext.js"

/** Serves `request` if it is the lane's (and returns `true`); otherwise leaves it to the app. */
export type Lane = (request: IncomingMessage, response: ServerResponse) => boolean

/** The path the lane serves. */
export const PATH = "/v1/chat/completions"

const isLanes = (request: IncomingMessage): boolean => {
  if (request.method !== "POST") return false
  const url = request.url ?? ""
  return url === PATH || (url.startsWith(PATH) && url.charCodeAt(PATH.length) === 63 /* ? */)
}

/** The lane over the server's services; runs its requests on the runtime it is made in. */
export const make = Effect.gen(function*() {
  const auth = yield* Auth.Auth
  const config = yield* AppConfig
  const serve = yield* Chat.makeServe
  // The lane's fibers start with an empty context: the handler holds every service it uses (its
  // type asks for nothing but the scope it is given), and each span and provided service copies
  // the context it is given — the server's has 29 services.
  const runtime = yield* Effect.runtime<never>()
  const runFork = Runtime.runFork(Runtime.make({ context: Context.empty(), fiberRefs: runtime.fiberRefs, runtimeFlags: runtime.runtimeFlags }))
  const accessLog = config.observability.access_log
  const route = routes.match("POST", PATH)

  const lane: Lane = (request, response) => {
    if (!isLanes(request)) return false
    const started = performance.now()
    const url = request.url ?? PATH
    // Provider calls add their time here (see the middleware).
    const upstream: CorporateLlmMetrics.UpstreamTimer = { seconds: 0, calls: 0 }
    const requestId = requestIdFrom(headerValue(request, "x-request-id"))
    let principal: Principal | undefined

    /** As the response head goes out (at `at`): the metrics, and the access-log line. */
    const heading = (status: number, at = performance.now()) =>
      Effect.suspend(() => {
        const seconds = (at - started) / 1000
        routes.record(route, status, seconds, upstream)
        return accessLog ? accessLine("POST", url, route, status, seconds, upstream, principal) : Effect.void
      })

    /** Sends the answer, then records the metrics and the access-log line (not in the answer's way). */
    const sendJson = (status: number, body: unknown, headers: Readonly<Record<string, string>>) =>
      Effect.suspend(() => {
        const at = performance.now()
        if (!response.headersSent) {
          const text = JSON.stringify(body)
          response.writeHead(status, { ...headers, "content-type": "application/json", "content-length": Buffer.byteLength(text), "x-request-id": requestId })
          response.end(text)
        }
        return heading(status, at)
      })

    const sendError = (e: ApiFailure) => sendJson(e.status, errorBody(e, requestId), errorHeaders(e))

    /** Writes the events as they come, waiting for the socket to drain when its buffer is full. */
    const sendEvents = (events: Sse.Events) =>
      Effect.suspend(() => {
        const headed = performance.now()
        response.writeHead(200, { ...Sse.headers, "content-type": "text/event-stream", "x-request-id": requestId })
        const next = Sse.bytes(events)
        const drained = Effect.async<void>((resume) => {
          const off = () => {
            response.off("drain", resumed)
            response.off("close", resumed)
          }
          const resumed = () => {
            off()
            resume(Effect.void)
          }
          response.on("drain", resumed)
          response.on("close", resumed)
          return Effect.sync(off)
        })
        // Pulled and written a piece at a time; the pull fails only at its end.
        const write = (chunk: Chunk.Chunk<Uint8Array>, then: Effect.Effect<void>) => {
          let flowing = true
          for (const bytes of chunk) flowing = response.write(bytes)
          return flowing ? then : Effect.zipRight(drained, then)
        }
        const end = Effect.sync(() => response.end())
        const loop: Effect.Effect<void> = Effect.matchEffect(next, { onFailure: () => end, onSuccess: (chunk) => write(chunk, loop) })
        // The metrics and the access-log line once the first piece is out, not in its way.
        return Effect.matchEffect(next, {
          onFailure: () => Effect.zipRight(heading(200, headed), end),
          onSuccess: (chunk) => write(chunk, Effect.zipRight(heading(200, headed), loop))
        })
      })

    // Plain steps rather than a generator: this runs for every request (docs/performance.md).
    const answered = Effect.flatMap(authenticate(auth, request, route), (found) => {
      principal = found
      const caller = found ?? openPrincipal(request)
      return Effect.zipRight(checkRole(caller, route, requestId), serve(request, contextOf(request, requestId, caller)))
    })
    const program = Effect.matchEffect(answered, {
      onFailure: sendError,
      // A stream's upstream call lives in a scope of its own, open until its events are sent;
      // a JSON answer needs none (a scope costs ~40 Effect operations).
      onSuccess: (answer) =>
        answer._tag === "Json"
          ? sendJson(200, answer.body, {})
          : Effect.scoped(Effect.matchEffect(answer.open, { onFailure: sendError, onSuccess: sendEvents }))
    }).pipe(
      // No tracer to turn off here: the lane serves only while tracing is off, and then the whole
      // server runs with Effect's tracer disabled (Server.layerWith), these fibers included.
      Effect.catchAllCause((cause) => {
        if (Cause.isInterruptedOnly(cause)) return Effect.void
        return Effect.logError(`unhandled failure serving POST ${PATH}`, cause).pipe(
          Effect.annotateLogs("request_id", requestId),
          Effect.zipRight(Effect.suspend(() => {
            if (!response.headersSent) return sendError(new InternalError({ message: `internal error (request ${requestId}); the details are in the server log` }))
            // Part of a stream went out: the cut connection tells the client.
            response.destroy()
            return Effect.void
          }))
        )
      })
    )

    // The request's fiber refs are set as its fiber is made, in one copy of its refs (each
    // `FiberRef.set` would copy them all, in an Effect operation of its own). The fiber starts
    // once Node has parsed the rest of what came with the head (not at once, in the middle of
    // the parse): a body that came with it is then read whole, without waiting for its events.
    const fiber = runFork(program, {
      immediate: false,
      updateRefs: (refs, id) =>
        FiberRefs.updateManyAs(refs, {
          entries: [
            [CorporateLlmMetrics.currentUpstreamTimer, [[id, upstream]]],
            [currentRequestId, [[id, requestId]]],
            [FiberRef.currentLogAnnotations, [[id, HashMap.set(FiberRefs.getOrDefault(refs, FiberRef.currentLogAnnotations), "request_id", requestId as unknown)]]]
          ]
        })
    })
    // A client that leaves before its answer is complete cancels the request (gateway #1 audits it `cancelled`).
    response.on("close", () => {
      if (!response.writableEnded) fiber.unsafeInterruptAsFork(clientAbortFiberId)
    })
    return true
  }
  return lane
})

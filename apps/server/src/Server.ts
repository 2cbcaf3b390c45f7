/**
 * The HTTP server: the `HttpApi` handlers, OpenAPI at `/docs` (Swagger UI) and
 * `/docs/openapi.json`, on `@effect/platform-node`, over the services of `Layers`. `tidyllm serve`
 * and `main.ts` both run {@link serve}.
 */
import { type IncomingMessage, Server as NodeServer, type ServerResponse } from "node:http"
import { setFlagsFromString } from "node:v8"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpMiddleware from "@effect/platform/HttpMiddleware"
import * as HttpServer from "@effect/platform/HttpServer"
import type { ServeError } from "@effect/platform/HttpServerError"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import { Effect, Layer } from "effect"
import { Ids } from "@tidyllm/core"
import type { Config } from "@tidyllm/core"
import { AgreementsHttp } from "./agreements/Http.js"
import { Api } from "./Api.js"
import { AuditHttp } from "./audit/Http.js"
import { BudgetHttp } from "./budget/Http.js"
import * as Auth from "./auth/Auth.js"
import type { ConfigError } from "./config/Load.js"
import { ChatHttp } from "./chat/Http.js"
import { EmbeddingsHttp } from "./embeddings/Http.js"
import { GatewayHttp } from "./gateway/Http.js"
import { HealthHttp } from "./health/Http.js"
import { KeysHttp } from "./keys/Http.js"
import * as Docs from "./http/Docs.js"
import { onClientError } from "./http/Errors.js"
import * as Lane from "./http/Lane.js"
import { ApiMiddleware } from "./http/Middleware.js"
import * as Layers from "./Layers.js"
import * as Tracing from "./observability/Tracing.js"
import { MetricsHttp } from "./metrics/Http.js"
import { ModelsHttp } from "./models/Http.js"
import { WorkflowsHttp } from "./workflows/Http.js"

/** Options of the server. */
export interface Options extends Layers.Options {
  /**
   * Make spans (default: on when `observability.otlp_endpoint` is set, which also installs the OTLP
   * exporter): an HTTP span per request, and the gateways', providers' and stores' spans under it,
   * for whatever tracer is installed. Off, no span is made at all — Effect's tracer is disabled for
   * the server and its services (Effect would otherwise still make spans, for no one to receive,
   * at a cost on every request), and chat completions take the fast lane. An embedder that
   * installs a tracer of its own (`Layer.setTracer`) sets this to `true`.
   */
  readonly tracing?: boolean | undefined
  /** On shutdown, how long in-flight requests may finish before their connections are cut (default `server.shutdown_grace_seconds`). */
  readonly shutdownGraceMs?: number | undefined
  /** Lines to log once the server listens (e.g. the config loader's notes). */
  readonly notes?: ReadonlyArray<string> | undefined
}

/** The API's handlers, OpenAPI document and middleware: an HTTP app needing the gateway services. */
export const ApiLive = HttpApiBuilder.api(Api).pipe(Layer.provide([ChatHttp, EmbeddingsHttp, GatewayHttp, ModelsHttp, WorkflowsHttp, AgreementsHttp, AuditHttp, BudgetHttp, KeysHttp, HealthHttp, MetricsHttp]))

/** The routes served on an `HttpServer`. */
export const HttpLive = HttpApiBuilder.serve().pipe(
  Layer.provide(Docs.layer),
  Layer.provide(HttpApiBuilder.middlewareOpenApi({ path: "/docs/openapi.json" })),
  Layer.provide(ApiMiddleware),
  Layer.provide(ApiLive)
)

/**
 * The whole server for `config`: services first (store opened and migrated), then the listener
 * on `server.host`:`server.port`. Shutting down stops accepting, lets in-flight requests finish
 * (cutting them after the grace period), then closes the store.
 */
export const layer = (
  config: Config.GatewayConfig,
  options: Options = {}
): Layer.Layer<Layers.Services | HttpServer.HttpServer, Layers.BuildError | ServeError> => layerWith(config, Layers.layer(config, options), options)

/** The server over services built elsewhere (e.g. `Layers.gateways(config, Layers.storeMemory)` in tests). */
export const layerWith = <E>(
  config: Config.GatewayConfig,
  servicesLayer: Layer.Layer<Layers.Services, E>,
  options: Options = {}
): Layer.Layer<Layers.Services | HttpServer.HttpServer, E | ServeError | ConfigError> => {
  const tracing = options.tracing ?? Tracing.enabled(config)
  // With tracing off, the services' own fibers (the audit writer, the budget-slice sweeper…) make
  // no spans either: Effect would still make them, for no one to receive.
  const built = tracing ? servicesLayer : Layer.provide(servicesLayer, Layer.setTracerEnabled(false))
  return Layer.flatMap(built, (services) => {
    let nodeServer: LaneServer | undefined
    const listener = NodeHttpServer.layer(() => (nodeServer = new LaneServer().on("clientError", onClientError)), { host: config.server.host, port: config.server.port })
    // The fast lane (chat completions straight on Node's server) once the app serves; with tracing
    // on, the platform serves that route too, with its HTTP span.
    const lane = Layer.scopedDiscard(Effect.gen(function*() {
      yield* HttpServer.HttpServer
      if (tracing || nodeServer === undefined) return
      const server = nodeServer
      server.lane = yield* Lane.make
      yield* Effect.addFinalizer(() => Effect.sync(() => (server.lane = undefined)))
    }))
    // Released before the listener's own finalizer (which waits for open connections to end).
    const grace = Layer.scopedDiscard(Effect.gen(function*() {
      yield* HttpServer.HttpServer
      yield* Effect.addFinalizer(() =>
        Effect.logInfo("shutting down: no new connections; waiting for in-flight requests").pipe(Effect.zipRight(Effect.sync(() => {
          if (nodeServer !== undefined) nodeServer.lane = undefined
          const timer = setTimeout(() => nodeServer?.closeAllConnections(), options.shutdownGraceMs ?? config.server.shutdown_grace_seconds * 1000)
          timer.unref()
          // Once the app stops serving, a request that still arrives on an open connection (keep-alive,
          // or accepted just before the listener closed) would find no handler and hang until the
          // grace period cuts it: it is answered 503 at once, and its connection closed.
          nodeServer?.on("request", onRequestWhileStopping)
        })))
      )
    }))
    const auth = Auth.layer(config.server)
    const announce = Layer.effectDiscard(Effect.gen(function*() {
      const server = yield* HttpServer.HttpServer
      const mode = yield* (yield* Auth.Auth).mode
      const address = server.address._tag === "TcpAddress" ? `http://${server.address.hostname}:${server.address.port}` : server.address.path
      yield* Effect.logInfo(`TidyLLM Gateway listening on ${address} (OpenAPI docs at ${address}/docs)`)
      const provider = config.corporate_llm.default_provider
      if (provider === "mock") {
        yield* Effect.logWarning("default provider: mock — the offline MOCK provider answers; responses are not from a model (provider \"mock\")")
      } else {
        yield* Effect.logInfo(`default provider: ${provider}${config.corporate_llm.fallback_provider === undefined ? "" : `, fallback: ${config.corporate_llm.fallback_provider}`}`)
      }
      yield* Effect.logInfo(`store: ${Layers.describeStore(config)}; response cache: ${config.ai_processing.enable_caching ? config.storage.cache : "off"}`)
      if (mode === "open") {
        yield* Effect.logWarning(
          `OPEN MODE: no API keys exist, so requests are not authenticated and x-tidyllm-user/team/role are taken as given. ` +
            `Allowed only on a loopback address (${config.server.host}). Create a key (POST /v1/keys or \`tidyllm keys create --role admin\`) or set TIDYLLM_ADMIN_KEY to require keys.`
        )
      } else {
        yield* Effect.logInfo(`authentication: API keys (Authorization: Bearer)${config.server.admin_key === undefined ? "" : "; bootstrap admin key from server.admin_key / TIDYLLM_ADMIN_KEY"}`)
      }
      for (const note of options.notes ?? []) yield* Effect.logInfo(note)
    })).pipe(Layer.provide(auth))
    const http = HttpLive.pipe(Layer.provide(auth))
    const routes = tracing ? http : HttpMiddleware.withTracerDisabledWhen(http, () => true)
    return Layer.mergeAll(routes, grace, announce, lane.pipe(Layer.provide(auth))).pipe(
      Layer.provideMerge(listener),
      Layer.provideMerge(Layer.succeedContext(services))
    )
  }).pipe(Layer.provide(Tracing.layer(config)))
}

/** Node's HTTP server, offering each request to the fast lane (when one is installed) before the app. */
class LaneServer extends NodeServer {
  lane: Lane.Lane | undefined = undefined
  override emit(event: string | symbol, ...args: Array<unknown>): boolean {
    if (event === "request" && this.lane !== undefined && this.lane(args[0] as IncomingMessage, args[1] as ServerResponse)) return true
    return super.emit(event as string, ...args)
  }
}

/** Answers a request that arrives after the app stopped serving (the app's own listener is gone). */
const onRequestWhileStopping = function(this: NodeServer, request: IncomingMessage, response: ServerResponse): void {
  if (this.listenerCount("request") > 1) return
  request.resume()
  const body = JSON.stringify({
    error: { type: "service_unavailable", message: "the server is shutting down; send the request again (to another replica)", request_id: Ids.randomUuid(), param: null, code: "shutting_down" }
  })
  response.writeHead(503, { "content-type": "application/json", "content-length": Buffer.byteLength(body), "retry-after": "1", connection: "close" })
  response.end(body)
}

/**
 * Sets how far V8 lets the old heap grow between full collections (`server.heap_growth_percent`),
 * for the whole process: V8 reads it each time a full collection sets the heap's next limit, so
 * it holds from the next one on. `0` leaves V8's own heuristic.
 */
export const tuneHeap = (percent: number): Effect.Effect<void> =>
  percent === 0 ? Effect.void : Effect.sync(() => setFlagsFromString(`--heap-growing-percent=${percent}`))

/**
 * Runs the server until interrupted (SIGINT/SIGTERM under `NodeRuntime.runMain`). It owns the
 * process: it also sets the heap's growth ({@link tuneHeap}).
 */
export const serve = (config: Config.GatewayConfig, options: Options = {}): Effect.Effect<never, Layers.BuildError | ServeError> =>
  Effect.zipRight(tuneHeap(config.server.heap_growth_percent), Layer.launch(layer(config, options)))

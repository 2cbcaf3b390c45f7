/** Helpers for tests that run the real server on loopback: a port-0 listener and its URL. */
import * as HttpServer from "@effect/platform/HttpServer"
import type { ServeError } from "@effect/platform/HttpServerError"
import { Context, Effect, Layer, Schema } from "effect"
import type { Scope } from "effect"
import { Config } from "@tidyllm/core"
import type * as Layers from "./Layers.js"
import type { ConfigError } from "./config/Load.js"
import * as Server from "./Server.js"

/** The base URL of the server under test, e.g. `http://127.0.0.1:41234`. */
export class ServerUrl extends Context.Tag("@tidyllm/server/Testing/ServerUrl")<ServerUrl, string>() {}

type DeepPartialInput = { readonly [K in keyof Config.GatewayConfigInput]?: Partial<NonNullable<Config.GatewayConfigInput[K]>> }

/**
 * A configuration for tests: embedded defaults, the mock provider, data under `dataDir`, the
 * response cache in memory, no access log, plus `overrides` section by section.
 */
export const config = (dataDir: string, overrides: DeepPartialInput = {}): Config.GatewayConfig => {
  const input: Record<string, unknown> = {
    ...overrides,
    corporate_llm: { default_provider: "mock", ...overrides.corporate_llm },
    storage: { data_dir: dataDir, cache: "memory", ...overrides.storage },
    server: { host: "127.0.0.1", port: 0, ...overrides.server },
    // No access-log line per request in tests unless a test asks for it.
    observability: { access_log: false, ...overrides.observability }
  }
  return Schema.decodeUnknownSync(Config.GatewayConfig, { onExcessProperty: "error" })(input)
}

/** The server on 127.0.0.1, port 0 (a free port), with its URL and every gateway service. */
export const layer = (
  cfg: Config.GatewayConfig,
  options: Server.Options = {}
): Layer.Layer<ServerUrl | Layers.Services | HttpServer.HttpServer, Layers.BuildError | ServeError> =>
  Layer.effect(ServerUrl, HttpServer.addressFormattedWith(Effect.succeed)).pipe(
    Layer.provideMerge(Server.layer({ ...cfg, server: { ...cfg.server, host: "127.0.0.1", port: 0 } }, options))
  )

/** The server on 127.0.0.1, port 0, over services built elsewhere (e.g. on the in-memory store). */
export const layerWith = <E>(
  cfg: Config.GatewayConfig,
  services: Layer.Layer<Layers.Services, E>,
  options: Server.Options = {}
): Layer.Layer<ServerUrl | Layers.Services | HttpServer.HttpServer, E | ServeError | ConfigError> =>
  Layer.effect(ServerUrl, HttpServer.addressFormattedWith(Effect.succeed)).pipe(
    Layer.provideMerge(Server.layerWith({ ...cfg, server: { ...cfg.server, host: "127.0.0.1", port: 0 } }, services, options))
  )

/** Starts the server for the life of the scope and returns its URL. */
export const start = (
  cfg: Config.GatewayConfig,
  options: Server.Options = {}
): Effect.Effect<string, Layers.BuildError | ServeError, Scope.Scope> =>
  Effect.map(Layer.build(layer(cfg, options)), (ctx) => Context.get(ctx, ServerUrl))

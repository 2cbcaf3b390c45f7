/** `tidyllm serve [--no-migrate] [--host H] [--port N]`: runs the HTTP server until SIGINT/SIGTERM. */
import { Command, Options } from "@effect/cli"
import { Effect, Option } from "effect"
import * as Logging from "@tidyllm/server/observability/Logging"
import * as Server from "@tidyllm/server/Server"
import { loadConfig } from "../Root.js"

const noMigrate = Options.boolean("no-migrate").pipe(
  Options.withDescription("do not apply pending migrations at start-up (readiness waits until `tidyllm migrate` ran)")
)
const host = Options.text("host").pipe(Options.withDescription("listen address (default: server.host, $HOST, 127.0.0.1)"), Options.optional)
const port = Options.integer("port").pipe(Options.withDescription("listen port (default: server.port, $PORT, 8080)"), Options.optional)

/** `tidyllm serve`. */
export const command = Command.make("serve", { noMigrate, host, port }, (args) =>
  Effect.gen(function*() {
    const loaded = yield* loadConfig
    if (loaded.file !== undefined) yield* Effect.logInfo(`configuration: ${loaded.file}`)
    if (loaded.dotenv !== undefined) yield* Effect.logInfo(`environment file: ${loaded.dotenv}`)
    const server = {
      ...loaded.config.server,
      host: Option.getOrElse(args.host, () => loaded.config.server.host),
      port: Option.getOrElse(args.port, () => loaded.config.server.port)
    }
    // A server logs as `observability` says (JSON lines by default, from `log_level` up), even
    // where the other commands stay quiet.
    return yield* Server.serve({ ...loaded.config, server }, {
      migrate: !args.noMigrate,
      awsCredentials: loaded.awsCredentials,
      notes: loaded.notes
    }).pipe(Effect.provide(Logging.layer(loaded.config.observability)))
  })
).pipe(Command.withDescription("run the HTTP server (OpenAI-compatible and native APIs)"))

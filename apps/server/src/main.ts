/**
 * `node apps/server/dist/main.js [--config tidyllm.yaml] [--no-migrate]`: loads the configuration
 * from the file and the environment and serves until SIGINT/SIGTERM, then drains and exits.
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as NodePath from "@effect/platform-node/NodePath"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Cause, Effect, Layer } from "effect"
import * as Load from "./config/Load.js"
import * as Logging from "./observability/Logging.js"
import * as Server from "./Server.js"

const argv = process.argv.slice(2)

const program = Effect.gen(function*() {
  const loaded = yield* Load.load({ configPath: Load.configPathFromArgv(argv), env: process.env })
  return yield* Effect.gen(function*() {
    if (loaded.file !== undefined) yield* Effect.logInfo(`configuration: ${loaded.file}`)
    if (loaded.dotenv !== undefined) yield* Effect.logInfo(`environment file: ${loaded.dotenv}`)
    return yield* Server.serve(loaded.config, {
      migrate: !argv.includes("--no-migrate"),
      awsCredentials: loaded.awsCredentials,
      notes: loaded.notes
    })
  }).pipe(Effect.provide(Logging.layer(loaded.config.observability)))
}).pipe(
  Effect.provide(Layer.merge(NodeFileSystem.layer, NodePath.layer)),
  // Start-up failures are printed as they are, without a stack: they are the operator's to fix.
  Effect.tapErrorCause((cause) =>
    Effect.sync(() => {
      const failure = Cause.failureOption(cause)
      const message = failure._tag === "Some" ? describe(failure.value) : Cause.pretty(cause)
      process.stderr.write(`tidyllm server: cannot start: ${message}\n`)
    })
  )
)

/** The message of a failure, or of its cause when it has none of its own (e.g. `ServeError` wrapping EADDRINUSE). */
function describe(u: unknown, depth = 0): string {
  if (typeof u !== "object" || u === null) return String(u)
  const message = "message" in u && typeof u.message === "string" ? u.message : ""
  const cause = "cause" in u ? u.cause : undefined
  if (message !== "" && (cause === undefined || depth > 2)) return message
  const inner = cause === undefined ? "" : describe(cause, depth + 1)
  const tag = "_tag" in u && typeof u._tag === "string" ? u._tag : "error"
  return message === "" ? `${tag}: ${inner}` : inner === "" || message.includes(inner) ? message : `${message}: ${inner}`
}

NodeRuntime.runMain(program, { disableErrorReporting: true })

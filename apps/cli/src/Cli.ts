/**
 * The `tidyllm` command tree and {@link run}, which runs it on an argv and turns the outcome into
 * an exit code (0, 1 for failures, 2 for usage errors). In-process and testable: everything the
 * commands print goes through Effect's `Console`, and the process they run in is the
 * `CliEnvironment` service.
 */
import { Command } from "@effect/cli"
import type { CliApp } from "@effect/cli"
import { Cause, Console, Effect, Logger, LogLevel } from "effect"
import type { CliEnvironment } from "./CliEnvironment.js"
import { EXIT_FAILURE, report, UsageError } from "./CliError.js"
import * as Agreements from "./commands/Agreements.js"
import * as Ask from "./commands/Ask.js"
import * as Audit from "./commands/Audit.js"
import * as Budget from "./commands/Budget.js"
import * as Diagnose from "./commands/Diagnose.js"
import * as Keys from "./commands/Keys.js"
import * as Migrate from "./commands/Migrate.js"
import * as Serve from "./commands/Serve.js"
import * as Workflow from "./commands/Workflow.js"
import { root } from "./Root.js"

/** The version `tidyllm --version` prints. */
export const version = "0.1.0"

/** The command tree. */
export const command = root.pipe(
  Command.withHandler(() => new UsageError({ message: "no command given: tidyllm [--config <file>] <serve|ask|migrate|diagnose|budget|keys create|list|revoke|audit tail|query|purge|workflow|agreements> … (tidyllm --help lists them)" })),
  Command.withDescription("TidyLLM Gateway: a corporate LLM gateway with budgets, audit, caching and failover"),
  Command.withSubcommands([Serve.command, Ask.command, Migrate.command, Diagnose.command, Budget.command, Keys.command, Audit.command, Workflow.command, Agreements.command])
)

const cli = Command.run(command, { name: "tidyllm", version })

/**
 * `--config` (`-c`) is an option of the root command, and @effect/cli reads a parent's options
 * only before the subcommand's name. Users put it anywhere (`tidyllm ask "…" --config x.yaml`),
 * so it is moved to the front; nothing after `--` is touched.
 */
export const hoistGlobalOptions = (args: ReadonlyArray<string>): ReadonlyArray<string> => {
  const hoisted: Array<string> = []
  const rest: Array<string> = []
  for (let i = 0; i < args.length; i++) {
    const a = args[i] ?? ""
    if (a === "--") {
      rest.push(...args.slice(i))
      break
    }
    if ((a === "--config" || a === "-c") && i + 1 < args.length) {
      hoisted.push("--config", args[i + 1] ?? "")
      i++
    } else if (a.startsWith("--config=")) {
      hoisted.push("--config", a.slice("--config=".length))
    } else {
      rest.push(a)
    }
  }
  return [...hoisted, ...rest]
}

/**
 * `tidyllm workflow get <id> --version N`: @effect/cli reads `--version` anywhere as its built-in
 * (print the CLI's version), so after `workflow get` it is passed on as `--revision`.
 */
export const renameVersionOption = (args: ReadonlyArray<string>): ReadonlyArray<string> => {
  const at = args.findIndex((a, i) => a === "workflow" && args[i + 1] === "get")
  if (at < 0) return args
  return args.map((a, i) => {
    if (i <= at + 1) return a
    if (a === "--version") return "--revision"
    if (a.startsWith("--version=")) return `--revision=${a.slice("--version=".length)}`
    return a
  })
}

/**
 * Runs the CLI on `args` (the arguments after the executable, as in `process.argv.slice(2)`)
 * and returns the exit code. Failures are reported on stderr as `error: <type>: <message>`.
 */
export const run = (args: ReadonlyArray<string>): Effect.Effect<number, never, CliApp.CliApp.Environment | CliEnvironment> =>
  // @effect/cli expects a whole argv: it drops the first two entries (runtime and script).
  cli(["node", "tidyllm", ...renameVersionOption(hoistGlobalOptions(args))]).pipe(
    Effect.as(0),
    Effect.catchAll((error: unknown) => {
      const r = report(error)
      return Effect.as(Effect.forEach(r.lines, (line) => Console.error(line), { discard: true }), r.code)
    }),
    Effect.catchAllCause((cause) =>
      Cause.isInterruptedOnly(cause)
        ? Effect.failCause(cause)
        : Effect.as(Console.error(`error: internal: ${Cause.pretty(cause)}`), EXIT_FAILURE)
    ),
    // Library logs (migrations applied, cache warnings) stay out of the answer; `serve` and `--log-level` lower this.
    Logger.withMinimumLogLevel(LogLevel.Warning)
  )

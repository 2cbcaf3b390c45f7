#!/usr/bin/env node
/**
 * `tidyllm <command>` (`node apps/cli/dist/main.js`, `pnpm tidyllm`): runs the command tree on
 * the process's arguments and exits with its code (0, 1 on failure, 2 on a usage error).
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Cause, Effect, Exit, Layer } from "effect"
import * as Cli from "./Cli.js"
import * as CliEnvironment from "./CliEnvironment.js"
import { processConsole } from "./internal/console.js"

const environment = CliEnvironment.fromProcess()

// `tidyllm audit tail | head`: the reader went away. The rest of the output is dropped, but the
// command still finishes and closes the database cleanly (exiting here could cut a write short).
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (error: NodeJS.ErrnoException) => {
    if (error.code !== "EPIPE") throw error
  })
}

const program = Cli.run(process.argv.slice(2)).pipe(
  Effect.withConsole(processConsole(environment.color)),
  Effect.provide(Layer.merge(NodeContext.layer, Layer.succeed(CliEnvironment.CliEnvironment, environment)))
)

NodeRuntime.runMain(program, {
  disableErrorReporting: true,
  teardown: (exit, onExit) => {
    // The command's own exit code; 130 after Ctrl-C (`serve`), as shells expect.
    const code = Exit.isSuccess(exit) && typeof exit.value === "number"
      ? exit.value
      : Exit.isFailure(exit) && Cause.isInterruptedOnly(exit.cause) ? 130 : 1
    process.exitCode = code
    onExit(code)
  }
})

/**
 * What the CLI takes from the process it runs in — the environment, the working directory, and
 * whether its output is a colour terminal — as a service, so tests run the commands in-process
 * with an environment of their own.
 */
import { Context, Layer } from "effect"
import type { Env } from "@tidyllm/server/config/Load"

/** The process as the commands see it. */
export interface Service {
  /** Environment variables (`process.env` at the edge). */
  readonly env: Env
  /** Directory holding `.env` and the default `tidyllm.yaml`. */
  readonly cwd: string
  /** Whether to style output with ANSI escapes (dim, bold, colour). */
  readonly color: boolean
  /** Whether long commands (diagnose, migrate, several workflow files) report progress on stderr. */
  readonly progress: boolean
}

/** The process the CLI runs in. */
export class CliEnvironment extends Context.Tag("@tidyllm/cli/CliEnvironment")<CliEnvironment, Service>() {}

/**
 * The real process: `process.env`, `process.cwd()`, colour when stdout is a TTY and `NO_COLOR` is
 * unset, progress when stderr is a TTY (a log file or a pipe gets the results only).
 */
export const fromProcess = (): Service => ({
  env: process.env,
  cwd: process.cwd(),
  color: process.stdout.isTTY === true && (process.env["NO_COLOR"] ?? "") === "" && process.env["TERM"] !== "dumb",
  progress: process.stderr.isTTY === true && process.env["TERM"] !== "dumb"
})

/** The real process as a layer. */
export const layerProcess: Layer.Layer<CliEnvironment> = Layer.sync(CliEnvironment, fromProcess)

/** A given environment (tests): no colour and no progress unless asked for. */
export const layer = (service: Partial<Service> & { readonly env: Env }): Layer.Layer<CliEnvironment> =>
  Layer.succeed(CliEnvironment, { cwd: process.cwd(), color: false, progress: false, ...service })

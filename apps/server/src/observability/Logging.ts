/**
 * The server's logs: one JSON object a line (`observability.log_format: json`, the default — what
 * log shippers read) or logfmt lines for people (`text`), from `observability.log_level` up. Every
 * line of a request carries its `request_id` annotation; the access log adds one line per request.
 */
import { Inspectable, Layer, Logger, LogLevel } from "effect"
import type { Config } from "@tidyllm/core"

const levels: Readonly<Record<Config.ObservabilitySettings["log_level"], LogLevel.LogLevel>> = {
  debug: LogLevel.Debug,
  info: LogLevel.Info,
  warning: LogLevel.Warning,
  error: LogLevel.Error
}

/** An error as a message: its own fields, its name and message (which `JSON.stringify` would drop). */
const errorToJson = (u: unknown): unknown =>
  u instanceof Error && !("toJSON" in u) ? { ...u, name: u.name, message: u.message } : u

/**
 * The line of `Logger.jsonLogger` (the same fields from `Logger.structuredLogger`), through
 * `JSON.stringify`, falling back to Effect's cycle-safe `stringifyCircular` only when that throws.
 */
const jsonLine = Logger.map(Logger.structuredLogger, (log) => {
  const line = { ...log, message: Array.isArray(log.message) ? log.message.map(errorToJson) : errorToJson(log.message) }
  try {
    return JSON.stringify(line)
  } catch {
    return Inspectable.stringifyCircular(line)
  }
})

/**
 * Writes each line to stdout with `process.stdout.write` (synchronous for files and pipes on
 * Linux, as `console.log` is), not through `console.log`: with an inspector in the build, each
 * `console.log` also passes V8's console hook (~2 % of the server's CPU under load, one line per
 * request; docs/performance.md).
 */
const toStdout = <A>(self: Logger.Logger<A, string>): Logger.Logger<A, void> =>
  Logger.map(self, (line) => {
    process.stdout.write(`${line}\n`)
  })

// One instance of each, as Effect's own `Logger.json` has: the set of loggers holds each once.
const jsonToStdout = toStdout(jsonLine)
const logfmtToStdout = toStdout(Logger.logfmtLogger)

/**
 * The logger and minimum level of the configuration. It takes the place of Effect's default logger
 * and of the pretty one `NodeRuntime.runMain` puts there instead, so each line is written once.
 */
export const layer = (o: Config.ObservabilitySettings): Layer.Layer<never> =>
  Layer.mergeAll(
    Logger.remove(Logger.prettyLoggerDefault),
    Logger.replace(Logger.defaultLogger, o.log_format === "json" ? jsonToStdout : logfmtToStdout),
    Logger.minimumLogLevel(levels[o.log_level])
  )

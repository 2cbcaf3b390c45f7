/**
 * The server's logs: one JSON object a line (`observability.log_format: json`, the default — what
 * log shippers read) or logfmt lines for people (`text`), from `observability.log_level` up. Every
 * line of a request carries its `request_id` annotation; the access log adds one line per request.
 */
import { FiberId, HashSet, Inspectable, Layer, Logger, LogLevel } from "effect"
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
 * A line with plain annotations (strings, numbers, booleans, in order), no spans and no cause: what
 * {@link plainWriter} writes.
 */
export interface PlainLine {
  readonly level: LogLevel.LogLevel
  readonly message: string
  readonly date: Date
  readonly fiberId: FiberId.FiberId
  readonly annotations: Readonly<Record<string, string | number | boolean>>
}

/** The line `jsonToStdout` writes for `line`: `Logger.structuredLogger`'s fields, through `JSON.stringify`. */
const plainJson = (line: PlainLine): string =>
  JSON.stringify({
    message: line.message,
    logLevel: line.level.label,
    timestamp: line.date.toISOString(),
    annotations: line.annotations,
    spans: {},
    fiberId: FiberId.threadName(line.fiberId)
  })

// `Logger.logfmtLogger`'s rules: a value with white space, a quote or `=` is quoted as JSON, and
// those characters in a label become `_`.
const bare = /^[^\s"=]*$/
const logfmtValue = (value: string) => (bare.test(value) ? value : JSON.stringify(value))

/** The line `logfmtToStdout` writes for `line`. */
const plainLogfmt = (line: PlainLine): string => {
  let out = `timestamp=${line.date.toISOString()} level=${line.level.label} fiber=${FiberId.threadName(line.fiberId)} message=${logfmtValue(line.message)}`
  for (const key in line.annotations) out += ` ${key.replace(/[\s="]/g, "_")}=${logfmtValue(String(line.annotations[key]))}`
  return out
}

const plainWriters = new Map<Logger.Logger<unknown, unknown>, (line: PlainLine) => string>([
  [jsonToStdout, plainJson],
  [logfmtToStdout, plainLogfmt]
])

let lastLoggers: HashSet.HashSet<Logger.Logger<unknown, unknown>> | undefined
let lastWriter: ((line: PlainLine, traced: boolean) => boolean) | undefined

/**
 * Writes a plain line as the set of loggers `loggers` would, without Effect's logger: when the set
 * is one of this module's loggers (with, or without, Effect's `tracerLogger`, which does nothing
 * while the line has no span to go to). Undefined for any other set; the writer returns false,
 * having written nothing, when `traced` (the fiber has a span) and the set has the tracer's logger.
 * Effect's logger takes the annotations as a `HashMap` and reads them back into an object: for the
 * access log's ten annotations that made ~10 KiB of garbage per request (docs/performance.md).
 */
export const plainWriter = (
  loggers: HashSet.HashSet<Logger.Logger<unknown, unknown>>
): ((line: PlainLine, traced: boolean) => boolean) | undefined => {
  if (loggers === lastLoggers) return lastWriter
  let format: ((line: PlainLine) => string) | undefined
  let tracer = false
  let others = 0
  for (const logger of loggers) {
    const f = plainWriters.get(logger)
    if (f !== undefined && format === undefined) format = f
    else if (logger === Logger.tracerLogger) tracer = true
    else others++
  }
  const write = format
  const writer = write === undefined || others > 0 ? undefined : (line: PlainLine, traced: boolean) => {
    if (traced && tracer) return false
    process.stdout.write(`${write(line)}\n`)
    return true
  }
  lastLoggers = loggers
  lastWriter = writer
  return writer
}

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

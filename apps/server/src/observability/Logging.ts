/**
 * The server's logs: one JSON object a line (`observability.log_format: json`, the default — what
 * log shippers read) or logfmt lines for people (`text`), from `observability.log_level` up. Every
 * line of a request carries its `request_id` annotation; the access log adds one line per request.
 */
import { Layer, Logger, LogLevel } from "effect"
import type { Config } from "@tidyllm/core"

const levels: Readonly<Record<Config.ObservabilitySettings["log_level"], LogLevel.LogLevel>> = {
  debug: LogLevel.Debug,
  info: LogLevel.Info,
  warning: LogLevel.Warning,
  error: LogLevel.Error
}

/**
 * The logger and minimum level of the configuration. It takes the place of Effect's default logger
 * and of the pretty one `NodeRuntime.runMain` puts there instead, so each line is written once.
 */
export const layer = (o: Config.ObservabilitySettings): Layer.Layer<never> =>
  Layer.mergeAll(
    Logger.remove(Logger.prettyLoggerDefault),
    o.log_format === "json" ? Logger.json : Logger.logFmt,
    Logger.minimumLogLevel(levels[o.log_level])
  )

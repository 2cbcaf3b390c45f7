/**
 * The errors the CLI itself raises, and how every error a command can end with is reported:
 * one `error: <type>: <message>` line on stderr and an exit code — 2 for usage errors (bad or
 * missing arguments), 1 for everything else.
 */
import { ValidationError } from "@effect/cli"
import { Data, Predicate } from "effect"

/** The command line is wrong in a way the parser cannot see (it depends on the configuration). */
export class UsageError extends Data.TaggedError("UsageError")<{ readonly message: string }> {}

/** Some checks of `diagnose` failed; the command printed them already. */
export class ChecksFailed extends Data.TaggedError("ChecksFailed")<{ readonly failed: number; readonly total: number }> {}

/** Exit code of a usage error. */
export const EXIT_USAGE = 2
/** Exit code of any other failure. */
export const EXIT_FAILURE = 1

/** What to print for an error, and the exit code. */
export interface Report {
  readonly lines: ReadonlyArray<string>
  readonly code: number
}

const causeMessage = (cause: unknown): string | undefined =>
  cause instanceof Error ? cause.message : Predicate.hasProperty(cause, "message") && typeof cause.message === "string" ? cause.message : undefined

/** The `<type>` of an error that has no `type` of its own. */
const typeByTag: Record<string, string> = {
  ConfigError: "config",
  SqlError: "database",
  MigrationError: "migration",
  CacheError: "cache",
  SystemError: "system",
  BadArgument: "system",
  ServeError: "server",
  ObjectStoreError: "storage",
  InvalidWorkflowKey: "invalid_request_error",
  InvalidWorkflowData: "invalid_request_error",
  WorkflowNotFound: "not_found",
  VersionNotFound: "not_found",
  VersionConflict: "conflict",
  CorruptWorkflowObject: "storage"
}

/** How `error` is reported. */
export const report = (error: unknown): Report => {
  // @effect/cli has printed its own message (with the usage) already.
  if (ValidationError.isValidationError(error)) return { lines: [], code: EXIT_USAGE }
  if (error instanceof UsageError) return { lines: [`error: usage: ${error.message}`], code: EXIT_USAGE }
  if (error instanceof ChecksFailed) return { lines: [], code: EXIT_FAILURE }
  const message = Predicate.hasProperty(error, "message") && typeof error.message === "string" && error.message !== ""
    ? error.message
    : String(error)
  const tag = Predicate.hasProperty(error, "_tag") && typeof error._tag === "string" ? error._tag : undefined
  // Gateway errors carry the stable `type` a client of the HTTP API sees.
  const type = Predicate.hasProperty(error, "type") && typeof error.type === "string"
    ? error.type
    : (tag !== undefined ? typeByTag[tag] : undefined) ?? "internal"
  const detail = tag === "SqlError" && Predicate.hasProperty(error, "cause") ? causeMessage(error.cause) : undefined
  const lines = [`error: ${type}: ${message}${detail !== undefined && detail !== message ? ` (${detail})` : ""}`]
  // Every attempt of a request that failed on every backend.
  if (Predicate.hasProperty(error, "attempts") && Array.isArray(error.attempts)) {
    for (const a of error.attempts as ReadonlyArray<unknown>) {
      if (Predicate.hasProperty(a, "backend") && Predicate.hasProperty(a, "attempt") && Predicate.hasProperty(a, "message")) {
        lines.push(`  attempt ${String(a.attempt)} on ${String(a.backend)}: ${String(a.message)}`)
      }
    }
  }
  // The issues of a workflow that cannot be analysed or optimised.
  if (Predicate.hasProperty(error, "issues") && Array.isArray(error.issues)) {
    for (const i of error.issues as ReadonlyArray<unknown>) {
      if (Predicate.hasProperty(i, "code") && Predicate.hasProperty(i, "message")) {
        const path = Predicate.hasProperty(i, "path") && typeof i.path === "string" && i.path !== "" ? ` ${i.path}` : ""
        const severity = Predicate.hasProperty(i, "severity") ? String(i.severity) : "error"
        lines.push(`  ${severity} ${String(i.code)}${path} — ${String(i.message)}`)
      }
    }
  }
  return { lines, code: EXIT_FAILURE }
}

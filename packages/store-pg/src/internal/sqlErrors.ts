/** Turning driver failures into the errors the ports promise. */
import { SqlError } from "@effect/sql/SqlError"
import { Errors, ThrottledLog } from "@tidyllm/core"
import { Effect, Option } from "effect"

/** The SQLSTATE of a failed statement (node-postgres and PGlite errors both carry `code`). */
export const sqlState = (error: SqlError): string | undefined => {
  const cause: unknown = error.cause
  if (typeof cause === "object" && cause !== null && "code" in cause && typeof cause.code === "string") return cause.code
  return undefined
}

/** A one-line description of a failed statement: the driver's message and SQLSTATE, no parameters. */
export const describe = (error: SqlError): string => {
  const cause: unknown = error.cause
  const detail = cause instanceof Error ? cause.message : undefined
  const code = sqlState(error)
  return [error.message, detail, code === undefined ? undefined : `(SQLSTATE ${code})`].filter((s) => s !== undefined).join(": ")
}

/**
 * True when retrying cannot help: the rows themselves are wrong (data exception, integrity
 * violation), as opposed to the database being down, restarting or missing a table.
 */
export const isDataError = (error: SqlError): boolean => {
  const code = sqlState(error)
  return code !== undefined && (code.startsWith("22") || code.startsWith("23"))
}

/**
 * What went wrong, in words fit for a client: the SQLSTATE, or the socket's error code
 * (`ECONNREFUSED`, `ETIMEDOUT`…). The driver's own message names the database's address, tables
 * and statements; that goes to the server log (`orUnavailable`), not to callers.
 */
export const reasonOf = (error: SqlError): string => {
  const code = sqlState(error)
  if (code !== undefined) return /^[0-9A-Z]{5}$/.test(code) ? `SQLSTATE ${code}` : code
  return "the database did not answer"
}

/** `StoreUnavailable` for the store `store`, from a failed statement: no address, table or statement in its message. */
export const unavailable = (store: string, error: SqlError): Errors.StoreUnavailable =>
  new Errors.StoreUnavailable({ message: `${store} is unavailable (${reasonOf(error)}); the details are in the server log`, store })

/** An outage fails every request: its details are logged once per 10 s and store, with the count held back. */
const warn = ThrottledLog.make(10_000)
const failWith = (store: string, error: SqlError) =>
  Effect.zipRight(warn(store, `${store} is unavailable: ${describe(error)}`), Effect.fail(unavailable(store, error)))

/**
 * Maps `SqlError` failures to `StoreUnavailable`, including the ones `sql.withTransaction` turns
 * into defects (a failed COMMIT or ROLLBACK): for the caller both mean the database let it down.
 */
export const orUnavailable = (store: string) =>
<A, E, R>(self: Effect.Effect<A, E | SqlError, R>): Effect.Effect<A, Exclude<E, SqlError> | Errors.StoreUnavailable, R> =>
  self.pipe(
    Effect.catchIf((e): e is SqlError => e instanceof SqlError, (e) => failWith(store, e)),
    Effect.catchSomeDefect((defect) =>
      defect instanceof SqlError ? Option.some(failWith(store, defect)) : Option.none()
    )
  )

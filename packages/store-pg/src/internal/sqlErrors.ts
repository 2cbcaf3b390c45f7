/** Turning driver failures into the errors the ports promise. */
import { SqlError } from "@effect/sql/SqlError"
import { Errors } from "@tidyllm/core"
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

/** `StoreUnavailable` for the store `store`, from a failed statement. */
export const unavailable = (store: string, error: SqlError): Errors.StoreUnavailable =>
  new Errors.StoreUnavailable({ message: `${store} is unavailable: ${describe(error)}`, store })

/**
 * Maps `SqlError` failures to `StoreUnavailable`, including the ones `sql.withTransaction` turns
 * into defects (a failed COMMIT or ROLLBACK): for the caller both mean the database let it down.
 */
export const orUnavailable = (store: string) =>
<A, E, R>(self: Effect.Effect<A, E | SqlError, R>): Effect.Effect<A, Exclude<E, SqlError> | Errors.StoreUnavailable, R> =>
  self.pipe(
    Effect.catchIf((e): e is SqlError => e instanceof SqlError, (e) => Effect.fail(unavailable(store, e))),
    Effect.catchSomeDefect((defect) =>
      defect instanceof SqlError ? Option.some(Effect.fail(unavailable(store, defect))) : Option.none()
    )
  )

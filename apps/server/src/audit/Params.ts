/**
 * The query parameters of `GET /v1/audit` (and the same filters of `tidyllm audit query`), parsed
 * strictly: an unknown, repeated or malformed parameter is a 400 that names it.
 */
import { Effect, Either, Schema } from "effect"
import { Errors } from "@tidyllm/core"
import { AuditLog } from "@tidyllm/corporate-llm"

/** Rows of a JSON page when `limit` is not given. */
export const DEFAULT_LIMIT = 100
/** Most rows of one CSV export (and its default). */
export const EXPORT_MAX_ROWS = 100_000

/** The parameters, in the order the documentation lists them. */
export const names = ["from", "to", "team", "key_id", "model", "provider", "status", "reason", "request_id", "limit", "cursor", "format"] as const
export type Name = typeof names[number]

/** The response formats. */
export type Format = "json" | "csv"

/** A parsed query. */
export interface Parsed {
  readonly filter: AuditLog.AuditFilter
  /** Rows of the page (JSON) or of the whole export (CSV). */
  readonly limit: number
  readonly cursor: string | undefined
  readonly format: Format
}

const invalid = (field: string, message: string) => new Errors.InvalidRequest({ message, field })

const DATE = /^\d{4}-\d{2}-\d{2}$/
const DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$/

/** An ISO 8601 date (`2025-01-31`, midnight UTC) or date-time with a zone (`2025-01-31T12:00:00Z`). */
export const parseTime = (name: string, value: string): Either.Either<Date, Errors.InvalidRequest> => {
  const text = value.trim()
  const ms = DATE.test(text) ? Date.parse(`${text}T00:00:00Z`) : DATE_TIME.test(text) ? Date.parse(text) : Number.NaN
  return Number.isNaN(ms)
    ? Either.left(invalid(name, `${name} must be an ISO 8601 date (2025-01-31) or date-time with a zone (2025-01-31T12:00:00Z), not '${value}'`))
    : Either.right(new Date(ms))
}

const isStatus = Schema.is(AuditLog.AuditStatus)

/** A comma-separated list of statuses (`error,stream_error`). */
export const parseStatuses = (name: string, values: ReadonlyArray<string>): Either.Either<ReadonlyArray<AuditLog.AuditStatus>, Errors.InvalidRequest> => {
  const items = values.flatMap((v) => v.split(",")).map((s) => s.trim())
  const bad = items.find((s) => !isStatus(s))
  if (bad !== undefined) {
    return Either.left(invalid(name, `${name} must be a comma-separated list of ${AuditLog.AuditStatus.literals.join(", ")}; '${bad}' is none of them`))
  }
  return Either.right([...new Set(items.filter(isStatus))])
}

/** A whole number from `min` to `max`. */
export const parseCount = (name: string, value: string, min: number, max: number): Either.Either<number, Errors.InvalidRequest> => {
  const n = /^\d{1,9}$/.test(value.trim()) ? Number(value.trim()) : Number.NaN
  return Number.isInteger(n) && n >= min && n <= max
    ? Either.right(n)
    : Either.left(invalid(name, `${name} must be a whole number from ${min} to ${max}, not '${value}'`))
}

const isName = (s: string): s is Name => (names as ReadonlyArray<string>).includes(s)

/** Parses the query string's parameters (in order, repeated ones included). */
export const parse = (params: Iterable<readonly [string, string]>): Effect.Effect<Parsed, Errors.InvalidRequest> =>
  Effect.gen(function*() {
    const given = new Map<Name, Array<string>>()
    for (const [key, value] of params) {
      if (!isName(key)) return yield* invalid(key, `unknown parameter '${key}'; the parameters are ${names.join(", ")}`)
      if (value.includes("\u0000")) return yield* invalid(key, `${key} contains a NUL character`)
      given.set(key, [...(given.get(key) ?? []), value])
    }
    const one = (name: Name): Effect.Effect<string | undefined, Errors.InvalidRequest> => {
      const values = given.get(name)
      if (values === undefined) return Effect.succeed(undefined)
      if (values.length > 1) return Effect.fail(invalid(name, `${name} is given ${values.length} times; give it once`))
      return Effect.succeed(values[0])
    }
    const text = (name: Name) =>
      Effect.flatMap(one(name), (v) => v === undefined || v.trim() !== "" ? Effect.succeed(v) : Effect.fail(invalid(name, `${name} is empty`)))

    const formatText = yield* text("format")
    if (formatText !== undefined && formatText !== "json" && formatText !== "csv") {
      return yield* invalid("format", `format must be json or csv, not '${formatText}'`)
    }
    const format: Format = formatText ?? "json"
    const fromText = yield* text("from")
    const toText = yield* text("to")
    const from = fromText === undefined ? undefined : yield* parseTime("from", fromText)
    const to = toText === undefined ? undefined : yield* parseTime("to", toText)
    if (from !== undefined && to !== undefined && from.getTime() > to.getTime()) return yield* invalid("from", "from is after to")
    const statusValues = given.get("status")
    const status = statusValues === undefined ? undefined : yield* parseStatuses("status", statusValues)
    const reason = yield* text("reason")
    if (reason !== undefined && reason.length > AuditLog.MAX_REASON_FILTER) {
      return yield* invalid("reason", `reason is longer than ${AuditLog.MAX_REASON_FILTER} characters`)
    }
    const limitText = yield* text("limit")
    const max = format === "csv" ? EXPORT_MAX_ROWS : AuditLog.MAX_PAGE
    const limit = limitText === undefined ? (format === "csv" ? EXPORT_MAX_ROWS : DEFAULT_LIMIT) : yield* parseCount("limit", limitText, 1, max)
    const team = yield* text("team")
    const key_id = yield* text("key_id")
    const model = yield* text("model")
    const provider = yield* text("provider")
    const request_id = yield* text("request_id")
    const filter: AuditLog.AuditFilter = {
      ...(from === undefined ? {} : { from }),
      ...(to === undefined ? {} : { to }),
      ...(team === undefined ? {} : { team }),
      ...(key_id === undefined ? {} : { key_id }),
      ...(model === undefined ? {} : { model }),
      ...(provider === undefined ? {} : { provider }),
      ...(status === undefined ? {} : { status }),
      ...(reason === undefined ? {} : { reason_contains: reason }),
      ...(request_id === undefined ? {} : { request_id })
    }
    return { filter, limit, cursor: yield* text("cursor"), format }
  })

/** The port of the compliance audit trail: one row per request, whatever its outcome. */
import { Chunk, Context, Effect, Either, Encoding, Layer, Option, Ref, Schema, Stream } from "effect"
import { Errors } from "@tidyllm/core"
import type { Money } from "@tidyllm/core"

/** How a request ended. */
export const AuditStatus = Schema.Literal(
  "success", "error", "rejected_budget", "rejected_policy", "cancelled", "cache_hit", "stream_error"
)
export type AuditStatus = typeof AuditStatus.Type

/** One row of `llm_audit_log`. */
export interface AuditEntry {
  readonly id: string
  readonly request_id: string
  readonly created_at: Date
  /** Printable identity (see `Caller.describe`). */
  readonly caller: string
  readonly user_id: string | null
  readonly team: string | null
  readonly key_id: string | null
  readonly reason: string
  readonly provider: string
  readonly model: string
  readonly status: AuditStatus
  readonly input_tokens: number
  readonly output_tokens: number
  readonly cost: Money.Nanos
  readonly latency_ms: number
  readonly error_type: string | null
  readonly error_message: string | null
  /** The prompt as `audit_level` allows: full text, redacted text, or a SHA-256 hex digest. */
  readonly prompt: string
  readonly audit_level: "full" | "redacted" | "hash"
  /** 1 for the first attempt of a request; higher when gateway #2 retried or failed over. */
  readonly attempt: number
}

/** Which rows to list (the simple form `list` takes; `query` pages and filters more). */
export interface AuditQuery {
  readonly limit: number
  readonly request_id?: string | undefined
  readonly status?: AuditStatus | undefined
}

/** Filters of {@link PageQuery}; every one given must match (AND). */
export interface AuditFilter {
  /** Rows created at or after this instant. */
  readonly from?: Date | undefined
  /** Rows created before this instant (exclusive). */
  readonly to?: Date | undefined
  readonly team?: string | undefined
  readonly key_id?: string | undefined
  readonly model?: string | undefined
  readonly provider?: string | undefined
  /** Rows with any of these statuses; absent or empty: every status. */
  readonly status?: ReadonlyArray<AuditStatus> | undefined
  /** Rows whose reason contains this text, case-insensitively (`%`, `_` and `\` are taken literally). */
  readonly reason_contains?: string | undefined
  readonly request_id?: string | undefined
}

/** One page of a filtered query, newest first. */
export interface PageQuery extends AuditFilter {
  /** Rows per page, 1 to {@link MAX_PAGE}. */
  readonly limit: number
  /** The `next_cursor` of the previous page; absent for the first page. */
  readonly cursor?: string | undefined
}

/** A page of rows, ordered by (created_at, id) descending. */
export interface Page {
  readonly rows: ReadonlyArray<AuditEntry>
  /** Pass as `cursor` for the next page; null on the last page. */
  readonly next_cursor: string | null
}

/** What `purge` is asked to do. */
export interface PurgeRequest {
  /** Rows created before this instant are purged (unless kept under an open agreement). */
  readonly older_than: Date
  /** Count what would be purged, delete nothing. */
  readonly dry_run?: boolean | undefined
}

/** What `purge` removed (or, on a dry run, would remove). */
export interface PurgeResult {
  readonly removed: number
  /** Rows older than the cut-off kept because they belong to an open flow agreement. */
  readonly kept_under_agreement: number
  /** `removed`, by status (statuses with no removed row are absent). */
  readonly by_status: Readonly<Record<string, number>>
}

/** The most rows one page holds. */
export const MAX_PAGE = 1_000
/** The most characters of `reason_contains`. */
export const MAX_REASON_FILTER = 500

/** The audit log service. */
export interface Service {
  /** Durably records one row; fails (and the request with it) when the store is unreachable. */
  readonly write: (entry: AuditEntry) => Effect.Effect<void, Errors.StoreUnavailable>
  /** Newest rows first. */
  readonly list: (query: AuditQuery) => Effect.Effect<ReadonlyArray<AuditEntry>, Errors.StoreUnavailable>
  /**
   * One page of the rows matching the filters, newest first (keyset pagination on
   * `(created_at, id)`, so pages stay stable while rows are written). A bad limit, time range or
   * cursor fails with `InvalidRequest` naming the field.
   */
  readonly query: (query: PageQuery) => Effect.Effect<Page, Errors.InvalidRequest | Errors.StoreUnavailable>
  /**
   * Deletes the rows created before `older_than`, except those under an open flow agreement (see
   * the adapter for how a row relates to an agreement), in batches so no statement holds many locks.
   */
  readonly purge: (request: PurgeRequest) => Effect.Effect<PurgeResult, Errors.InvalidRequest | Errors.StoreUnavailable>
}

/** The audit log in use. */
export class AuditLog extends Context.Tag("@tidyllm/corporate-llm/AuditLog")<AuditLog, Service>() {}

// ---------------------------------------------------------------------------------------------
// Cursors and query checks, shared by every adapter

/** The position a page ended at: the last row's creation time (microseconds since the epoch) and id. */
export interface Cursor {
  readonly created_us: number
  readonly id: string
}

const CURSOR_VERSION = "1"
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
const BASE64URL = /^[A-Za-z0-9_-]{1,200}$/
const CURSOR_TEXT = /^1:(\d{1,16}):([0-9a-f-]{36})$/

/** The opaque cursor of a position (base64url; its content is not an API). */
export const encodeCursor = (cursor: Cursor): string =>
  Encoding.encodeBase64Url(`${CURSOR_VERSION}:${cursor.created_us}:${cursor.id.toLowerCase()}`)

const badCursor = (why: string) =>
  new Errors.InvalidRequest({ message: `cursor is not valid (${why}): pass the next_cursor of a previous page unchanged`, field: "cursor" })

/** The position of a cursor made by {@link encodeCursor}; anything else fails naming `cursor`. */
export const decodeCursor = (text: string): Effect.Effect<Cursor, Errors.InvalidRequest> => {
  if (!BASE64URL.test(text)) return Effect.fail(badCursor("not base64url"))
  const decoded = Encoding.decodeBase64UrlString(text)
  if (Either.isLeft(decoded)) return Effect.fail(badCursor("not base64url"))
  const m = CURSOR_TEXT.exec(decoded.right)
  const us = Number(m?.[1])
  const id = m?.[2]
  if (id === undefined || !UUID.test(id) || !Number.isSafeInteger(us)) return Effect.fail(badCursor("unknown content"))
  return Effect.succeed({ created_us: us, id })
}

/** The cursor after `entry`, for adapters whose times are whole milliseconds. */
export const cursorOf = (entry: AuditEntry): Cursor => ({ created_us: entry.created_at.getTime() * 1_000, id: entry.id.toLowerCase() })

/** A page query that passed {@link checkQuery}: limit in range, times valid, cursor decoded. */
export interface CheckedQuery extends AuditFilter {
  readonly limit: number
  readonly after: Option.Option<Cursor>
}

const invalid = (field: string, message: string) => new Errors.InvalidRequest({ message, field })
const isValidDate = (d: Date | undefined) => d === undefined || (d instanceof Date && !Number.isNaN(d.getTime()))

/** Checks a page query the same way for every adapter. */
export const checkQuery = (q: PageQuery): Effect.Effect<CheckedQuery, Errors.InvalidRequest> =>
  Effect.gen(function*() {
    if (!Number.isInteger(q.limit) || q.limit < 1 || q.limit > MAX_PAGE) {
      return yield* invalid("limit", `limit must be an integer from 1 to ${MAX_PAGE}`)
    }
    if (!isValidDate(q.from)) return yield* invalid("from", "from is not a valid time")
    if (!isValidDate(q.to)) return yield* invalid("to", "to is not a valid time")
    if (q.from !== undefined && q.to !== undefined && q.from.getTime() > q.to.getTime()) {
      return yield* invalid("from", "from is after to")
    }
    if (q.reason_contains !== undefined && q.reason_contains.length > MAX_REASON_FILTER) {
      return yield* invalid("reason_contains", `reason_contains is longer than ${MAX_REASON_FILTER} characters`)
    }
    // No stored text holds a NUL (Postgres text cannot): such a filter is a client error, not a store failure.
    for (const field of ["team", "key_id", "model", "provider", "reason_contains", "request_id"] as const) {
      if (q[field]?.includes("\u0000") === true) return yield* invalid(field, `${field} contains a NUL character`)
    }
    const after = q.cursor === undefined ? Option.none<Cursor>() : Option.some(yield* decodeCursor(q.cursor))
    const { cursor: _cursor, ...rest } = q
    return { ...rest, after }
  })

/** Checks a purge request the same way for every adapter. */
export const checkPurge = (r: PurgeRequest): Effect.Effect<PurgeRequest, Errors.InvalidRequest> =>
  isValidDate(r.older_than) && r.older_than instanceof Date ? Effect.succeed(r) : Effect.fail(invalid("older_than", "older_than is not a valid time"))

/** True when `entry` passes the filters (the semantics every adapter implements). */
export const matches = (q: AuditFilter, entry: AuditEntry): boolean => {
  const t = entry.created_at.getTime()
  return (q.from === undefined || t >= q.from.getTime()) &&
    (q.to === undefined || t < q.to.getTime()) &&
    (q.team === undefined || entry.team === q.team) &&
    (q.key_id === undefined || entry.key_id === q.key_id) &&
    (q.model === undefined || entry.model === q.model) &&
    (q.provider === undefined || entry.provider === q.provider) &&
    (q.status === undefined || q.status.length === 0 || q.status.includes(entry.status)) &&
    (q.reason_contains === undefined || entry.reason.toLowerCase().includes(q.reason_contains.toLowerCase())) &&
    (q.request_id === undefined || entry.request_id === q.request_id)
}

/** Orders positions newest first: negative when `a` comes before `b`. */
const compareDesc = (a: Cursor, b: Cursor): number =>
  a.created_us !== b.created_us ? b.created_us - a.created_us : a.id < b.id ? 1 : a.id > b.id ? -1 : 0

/**
 * Every row matching `filter`, newest first, as a stream read page by page (at most `maxRows`
 * rows); for exports. Starts after `cursor` when given.
 */
export const stream = (
  log: Service,
  filter: AuditFilter,
  options: { readonly maxRows: number; readonly pageSize?: number | undefined; readonly cursor?: string | undefined }
): Stream.Stream<AuditEntry, Errors.InvalidRequest | Errors.StoreUnavailable> => {
  const pageSize = Math.min(MAX_PAGE, Math.max(1, options.pageSize ?? MAX_PAGE))
  type State = { readonly cursor: string | undefined; readonly left: number }
  return Stream.paginateChunkEffect<State, AuditEntry, Errors.InvalidRequest | Errors.StoreUnavailable, never>(
    { cursor: options.cursor, left: Math.max(0, options.maxRows) },
    (state) =>
      state.left <= 0
        ? Effect.succeed([Chunk.empty(), Option.none()])
        : Effect.map(log.query({ ...filter, limit: Math.min(pageSize, state.left), cursor: state.cursor }), (page) => {
          const left = state.left - page.rows.length
          return [
            Chunk.fromIterable(page.rows),
            page.next_cursor === null || left <= 0 ? Option.none() : Option.some({ cursor: page.next_cursor, left })
          ]
        })
  )
}

// ---------------------------------------------------------------------------------------------
// In memory

/** Options of the in-memory audit log. */
export interface MemoryOptions {
  /**
   * The request ids under an open flow agreement, read at each purge (their rows are kept).
   * Absent: no row is ever under an agreement.
   */
  readonly underAgreement?: Effect.Effect<ReadonlySet<string>> | undefined
}

/** An in-memory audit log over the given ref (exposed so tests can read every row). */
export const makeMemory = (rows: Ref.Ref<ReadonlyArray<AuditEntry>>, options: MemoryOptions = {}): Service => ({
  write: (entry) => Ref.update(rows, (all) => [...all, entry]),
  list: (q) =>
    Ref.get(rows).pipe(Effect.map((all) =>
      all
        .filter((r) => (q.request_id === undefined || r.request_id === q.request_id) && (q.status === undefined || r.status === q.status))
        .slice()
        .reverse()
        .slice(0, q.limit)
    )),
  query: (query) =>
    Effect.gen(function*() {
      const q = yield* checkQuery(query)
      const all = yield* Ref.get(rows)
      const sorted = all
        .filter((r) => matches(q, r))
        .map((r) => [cursorOf(r), r] as const)
        .filter(([c]) => Option.match(q.after, { onNone: () => true, onSome: (after) => compareDesc(after, c) < 0 }))
        .sort(([a], [b]) => compareDesc(a, b))
      const page = sorted.slice(0, q.limit)
      const last = page[page.length - 1]
      return {
        rows: page.map(([, r]) => r),
        next_cursor: sorted.length > q.limit && last !== undefined ? encodeCursor(last[0]) : null
      }
    }),
  purge: (request) =>
    Effect.gen(function*() {
      const r = yield* checkPurge(request)
      const kept = options.underAgreement === undefined ? new Set<string>() : yield* options.underAgreement
      const cutoff = r.older_than.getTime()
      const old = (e: AuditEntry) => e.created_at.getTime() < cutoff
      const all = yield* Ref.get(rows)
      const doomed = all.filter((e) => old(e) && !kept.has(e.request_id))
      const by_status: Record<string, number> = {}
      for (const e of doomed) by_status[e.status] = (by_status[e.status] ?? 0) + 1
      if (r.dry_run !== true) {
        const gone = new Set(doomed)
        yield* Ref.update(rows, (current) => current.filter((e) => !gone.has(e)))
      }
      return {
        removed: doomed.length,
        kept_under_agreement: all.filter((e) => old(e) && kept.has(e.request_id)).length,
        by_status
      }
    })
})

/** An in-memory audit log, for unit tests. */
export const layerMemory = Layer.effect(AuditLog, Effect.map(Ref.make<ReadonlyArray<AuditEntry>>([]), (rows) => makeMemory(rows)))

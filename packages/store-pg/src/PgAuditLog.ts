/**
 * The `AuditLog` port on SQL (`llm_audit_log`), durable before the answer, with group commit.
 *
 * `write` enqueues its row and waits until the row is committed. One background fiber takes
 * whatever rows are waiting (up to `maxBatch`) and inserts them with one multi-row `INSERT` — one
 * statement, one commit — then wakes every writer of the batch. A lone row is taken and committed
 * at once; rows that arrive while a batch commits form the next one, so under load a commit
 * carries many rows and costs one flush. `ON CONFLICT (id) DO NOTHING` makes a retried batch
 * idempotent (an attempt whose commit succeeded but whose answer was lost inserts nothing twice).
 *
 * When the database is unreachable, the batch is retried with backoff until the oldest row has
 * waited `maxWait` (5 s by default), then every writer fails with `StoreUnavailable`: no answer
 * without its record. With `buffered` durability no writer waits: the writer lets rows gather for
 * `lingerMs` (5 ms) before it commits a batch, and a batch is retried until the
 * database is back (each try bounded by `maxWait`) and its rows are written after an outage; only
 * once shutdown has begun does it give up, `maxWait` after that. A batch refused for its data (a
 * bad value, a violated constraint) is split so that only the bad row fails. On shutdown, rows
 * already queued are still written.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { SqlError } from "@effect/sql/SqlError"
import * as SqlSchema from "@effect/sql/SqlSchema"
import { Deadline, Errors, Money, Spans } from "@tidyllm/core"
import { AuditLog } from "@tidyllm/corporate-llm"
import { Duration, Effect, Fiber, GlobalValue, Layer, Metric, MetricBoundaries, Option, ParseResult, Schema } from "effect"
import type { Scope } from "effect"
import { describe, isDataError, orUnavailable, unavailable } from "./internal/sqlErrors.js"
import { purgeLlmAudit } from "./AuditRetention.js"

/** Tuning of the group commit. */
export interface Options {
  /** Most rows in one INSERT (default 256). */
  readonly maxBatch?: number | undefined
  /** How long a write waits for an unreachable database before it fails (default 5 s). */
  readonly maxWait?: Duration.DurationInput | undefined
  /** Most rows waiting to be written; further writes wait for room (default 10,000). */
  readonly capacity?: number | undefined
  /**
   * `sync` (default): `write` returns once the row is committed. `buffered`: `write` returns once
   * the row is queued; the queue is flushed in batches and drained at shutdown, and what a crash
   * loses (the queued rows) is counted by `tidyllm_audit_rows_failed_total` only when a flush fails.
   */
  readonly durability?: "sync" | "buffered" | undefined
  /**
   * With `buffered` durability, how long the writer lets rows gather before it commits a batch
   * smaller than `maxBatch` (default 5 ms): no caller waits for the commit, and one commit of many
   * rows costs the gateway and Postgres far less than many commits of a few. `sync` never waits:
   * its callers do, and rows gather on their own while a batch commits.
   */
  readonly lingerMs?: number | undefined
}

/** Batches committed (one INSERT statement each). */
export const batchesCommitted = Metric.counter("tidyllm_audit_batches_committed_total", {
  description: "audit batches committed, one INSERT statement and one commit each",
  incremental: true
})
/** Rows committed. */
export const rowsCommitted = Metric.counter("tidyllm_audit_rows_committed_total", {
  description: "audit rows committed",
  incremental: true
})
/** Rows whose write failed (the request failed with them). */
export const rowsFailed = Metric.counter("tidyllm_audit_rows_failed_total", {
  description: "audit rows that could not be written; their requests failed closed",
  incremental: true
})
/** Rows per committed batch. */
export const batchSize = Metric.histogram(
  "tidyllm_audit_batch_size",
  MetricBoundaries.exponential({ start: 1, factor: 2, count: 10 }),
  "rows per committed audit batch"
)

/** Rows not yet committed (queued or in the batch being written), set at scrape time by {@link refreshQueueMetrics}. */
export const queueDepth = Metric.gauge("tidyllm_audit_queue_depth", {
  description: "Audit rows waiting to be committed (queued or in the batch being written); with buffered durability, what a crash now would lose."
})
/** Age of the oldest row not yet committed, set at scrape time. */
export const queueOldestAge = Metric.gauge("tidyllm_audit_queue_oldest_age_seconds", {
  description: "Age of the oldest audit row not yet committed (0 when none): how far the audit writer is behind."
})
/** Time from a batch's oldest row being queued to the batch's commit. */
export const commitLag = Metric.histogram(
  "tidyllm_audit_commit_lag_seconds",
  MetricBoundaries.fromIterable([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]),
  "Time from the oldest row of an audit batch being queued to the batch's commit."
)

/** What the metrics read of one audit log's queue. */
interface QueueProbe {
  /** Rows queued or being written. */
  readonly depth: () => number
  /** When the oldest row being written was queued (epoch ms), if a batch is being written. */
  readonly oldestQueuedAt: () => number | undefined
}

/**
 * The queues of the audit logs open in this process (normally one), registered for the life of
 * their scope. Process-wide like Effect's metric registry, so that the server can read them when
 * it is scraped without the port growing a metrics method.
 */
const openQueues = GlobalValue.globalValue(Symbol.for("@tidyllm/store-pg/PgAuditLog/openQueues"), () => new Set<QueueProbe>())

/** Sets {@link queueDepth} and {@link queueOldestAge} from the open audit logs (summed depth, oldest age). */
export const refreshQueueMetrics: Effect.Effect<void> = Effect.clockWith((clock) =>
  Effect.sync(() => {
    const now = clock.unsafeCurrentTimeMillis()
    let depth = 0
    let oldest = now
    for (const probe of openQueues) {
      depth += probe.depth()
      oldest = Math.min(oldest, probe.oldestQueuedAt() ?? now)
    }
    queueDepth.unsafeUpdate(depth, [])
    queueOldestAge.unsafeUpdate(Math.max(0, now - oldest) / 1000, [])
  }))

const STORE = "postgres"
const FIRST_RETRY_MS = 50
const MAX_RETRY_MS = 1_000

/** The columns of `llm_audit_log`, as bound to the INSERT. */
interface Row {
  readonly [column: string]: string | number | Date | null
}

const toRow = (e: AuditLog.AuditEntry): Row => ({
  id: e.id,
  request_id: e.request_id,
  created_at: e.created_at,
  caller: e.caller,
  user_id: e.user_id,
  team: e.team,
  key_id: e.key_id,
  reason: e.reason,
  provider: e.provider,
  model: e.model,
  status: e.status,
  input_tokens: e.input_tokens,
  output_tokens: e.output_tokens,
  cost: Money.toUsdString(e.cost),
  // A measured duration; the column holds whole milliseconds.
  latency_ms: Math.round(e.latency_ms),
  error_type: e.error_type,
  error_message: e.error_message,
  prompt: e.prompt,
  audit_level: e.audit_level,
  attempt: e.attempt
})

const NanosFromNumeric = Schema.transformOrFail(Schema.String, Schema.Number.pipe(Schema.fromBrand(Money.Nanos)), {
  strict: true,
  decode: (s, _, ast) => {
    try {
      return ParseResult.succeed(Money.fromUsdString(s))
    } catch (e) {
      return ParseResult.fail(new ParseResult.Type(ast, s, e instanceof Error ? e.message : String(e)))
    }
  },
  encode: (n) => ParseResult.succeed(Money.toUsdString(Money.Nanos(n)))
})

/** One row of `llm_audit_log`, as selected. */
const EntryRow = Schema.Struct({
  id: Schema.String,
  request_id: Schema.String,
  created_at: Schema.DateFromSelf,
  caller: Schema.String,
  user_id: Schema.NullOr(Schema.String),
  team: Schema.NullOr(Schema.String),
  key_id: Schema.NullOr(Schema.String),
  reason: Schema.String,
  provider: Schema.String,
  model: Schema.String,
  status: AuditLog.AuditStatus,
  input_tokens: Schema.Number,
  output_tokens: Schema.Number,
  cost: NanosFromNumeric,
  latency_ms: Schema.Number,
  error_type: Schema.NullOr(Schema.String),
  error_message: Schema.NullOr(Schema.String),
  prompt: Schema.String,
  audit_level: Schema.Literal("full", "redacted", "hash"),
  attempt: Schema.Number
})

const Query = Schema.Struct({
  limit: Schema.Number,
  request_id: Schema.optional(Schema.String),
  status: Schema.optional(AuditLog.AuditStatus)
})

const MAX_LIST = 10_000

/** One page query as bound to the SELECT (the cursor's time as text: it holds microseconds). */
const PageRequest = Schema.Struct({
  from: Schema.optional(Schema.DateFromSelf),
  to: Schema.optional(Schema.DateFromSelf),
  team: Schema.optional(Schema.String),
  key_id: Schema.optional(Schema.String),
  model: Schema.optional(Schema.String),
  provider: Schema.optional(Schema.String),
  status: Schema.optional(Schema.Array(AuditLog.AuditStatus)),
  reason_contains: Schema.optional(Schema.String),
  request_id: Schema.optional(Schema.String),
  after_at: Schema.optional(Schema.String),
  after_id: Schema.optional(Schema.String),
  fetch: Schema.Number
})

/** A selected row with its creation time in microseconds (the cursor keeps what a `Date` drops). */
const PageRow = Schema.Struct({ ...EntryRow.fields, created_us: Schema.String })

/** A `LIKE` pattern matching strings that contain `text` (`\` escapes `%`, `_` and itself). */
const likeContains = (text: string) => `%${text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`

/** `2025-01-02T03:04:05.678901Z` from microseconds since the epoch. */
const isoMicros = (us: number): string => {
  const ms = Math.floor(us / 1_000)
  return new Date(ms).toISOString().replace(/Z$/, `${String(us - ms * 1_000).padStart(3, "0")}Z`)
}

interface Pending {
  readonly row: Row
  /** Resumes the writer waiting for the commit (none with `buffered` durability). */
  readonly done: ((outcome: Effect.Effect<void, Errors.StoreUnavailable>) => void) | undefined
  /** When the writer stops waiting for an unreachable database (epoch ms). */
  readonly deadline: number
}

/** The audit log over the `SqlClient` in context; the writer fiber lives (and drains) with the scope. */
export const make = (options: Options = {}): Effect.Effect<AuditLog.Service, never, SqlClient.SqlClient | Scope.Scope> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    // One clock for enqueue times and retry deadlines, whichever fiber reads it.
    const clock = yield* Effect.clock
    const maxBatch = Math.max(1, options.maxBatch ?? 256)
    const maxWaitMs = Duration.toMillis(options.maxWait ?? Duration.seconds(5))
    const capacity = Math.max(1, options.capacity ?? 10_000)
    // The queue is plain state, read and changed only in synchronous steps: a write enqueues its
    // row and registers its wake-up in one step (a few Effect operations per row, where a `Queue`
    // and a `Deferred` cost ~50), and the writer takes what waits in one step.
    let queued: Array<Pending> = []
    /** Resumes the writer fiber when it waits for rows (or for the stop). */
    let wakeWriter: (() => void) | undefined
    /** Writes waiting for room in a full queue. */
    let roomWaiters: Array<() => void> = []
    let closing = false
    // When shutdown began (epoch ms): from then on buffered rows are retried for `maxWait` at most.
    let closingAt: number | undefined
    const buffered = options.durability === "buffered"
    // The counters exist (at 0) from the start, so that a rate of failures reads 0 rather than nothing.
    yield* Effect.sync(() => [batchesCommitted, rowsCommitted, rowsFailed].forEach((m) => m.register()))

    const insert = (rows: ReadonlyArray<Row>): Effect.Effect<void, SqlError> =>
      Effect.asVoid(sql`INSERT INTO llm_audit_log ${sql.insert(rows)} ON CONFLICT (id) DO NOTHING`)

    /** Inserts `rows`, retrying transient failures until `deadline`. */
    const insertUntil = (rows: ReadonlyArray<Row>, deadline: () => number): Effect.Effect<void, SqlError> => {
      const attempt = (delay: number): Effect.Effect<void, SqlError> =>
        Effect.suspend(() => {
          const remaining = deadline() - clock.unsafeCurrentTimeMillis()
          // A hung connection must not hold the writers past their deadline (1 s to maxWait per try).
          return Deadline.timeoutFail(insert(rows), Math.max(Math.min(remaining, maxWaitMs), 1_000), () =>
            new SqlError({ message: "audit insert timed out", cause: new Error("timed out") }))
        }).pipe(
          Effect.catchAll((error) => {
            const left = deadline() - clock.unsafeCurrentTimeMillis()
            if (isDataError(error) || left <= 0) return Effect.fail(error)
            return clock.sleep(Duration.millis(Math.min(delay, left))).pipe(
              Effect.zipRight(attempt(Math.min(delay * 2, MAX_RETRY_MS)))
            )
          })
        )
      return attempt(FIRST_RETRY_MS)
    }

    const failAll = (batch: ReadonlyArray<Pending>, error: Errors.StoreUnavailable) =>
      Effect.sync(() => {
        const failed = Effect.fail(error)
        for (const p of batch) p.done?.(failed)
      }).pipe(Effect.zipRight(Metric.incrementBy(rowsFailed, batch.length)))

    const flush = (batch: ReadonlyArray<Pending>): Effect.Effect<void> =>
      Effect.gen(function*() {
        const deadline = batch.reduce((min, p) => Math.min(min, p.deadline), Number.POSITIVE_INFINITY)
        // Buffered rows have no writer waiting: keep them until the database is back, unless shutting down.
        const giveUpAt = buffered
          ? () => (closingAt === undefined ? Number.POSITIVE_INFINITY : Math.max(deadline, closingAt + maxWaitMs))
          : () => deadline
        const result = yield* Effect.either(insertUntil(batch.map((p) => p.row), giveUpAt))
        if (result._tag === "Right") {
          // The batch's metrics in one step (four `Metric` effects were ~20 Effect operations a batch,
          // which at one connection is a batch a request; the writer fiber has no metric labels).
          return yield* Effect.sync(() => {
            batchesCommitted.unsafeUpdate(1, [])
            rowsCommitted.unsafeUpdate(batch.length, [])
            batchSize.unsafeUpdate(batch.length, [])
            commitLag.unsafeUpdate(Math.max(0, clock.unsafeCurrentTimeMillis() - (deadline - maxWaitMs)) / 1000, [])
            for (const p of batch) p.done?.(Effect.void)
          })
        }
        const error = result.left
        if (isDataError(error) && batch.length > 1) {
          // One bad row must not sink the rows that share its batch: write them one by one.
          return yield* Effect.forEach(batch, (p) => flush([p]), { discard: true })
        }
        yield* Effect.logError(`audit rows not written (${batch.length}): ${describe(error)}`)
        yield* failAll(batch, unavailable(STORE, error))
      }).pipe(
        // Whatever happens, no writer is left waiting.
        Effect.catchAllCause((cause) =>
          Effect.logError("audit batch failed", cause).pipe(
            Effect.zipRight(failAll(batch, new Errors.StoreUnavailable({ message: "audit log writer failed", store: STORE })))
          )
        ),
        Spans.span("PgAuditLog.flush", { attributes: { "tidyllm.audit.batch_size": batch.length } })
      )

    // The batch being written, for the queue metrics; only the writer fiber sets it.
    let writing: ReadonlyArray<Pending> = []
    const probe: QueueProbe = {
      depth: () => queued.length + writing.length,
      oldestQueuedAt: () => (writing.length === 0 ? undefined : writing.reduce((min, p) => Math.min(min, p.deadline), Number.POSITIVE_INFINITY) - maxWaitMs)
    }
    yield* Effect.acquireRelease(Effect.sync(() => openQueues.add(probe)), () => Effect.sync(() => openQueues.delete(probe)))

    const enqueue = (p: Pending) => {
      queued.push(p)
      const wake = wakeWriter
      wakeWriter = undefined
      wake?.()
    }
    /** Takes up to `maxBatch` waiting rows, and lets the writes waiting for room try again. */
    const take = (): ReadonlyArray<Pending> => {
      const batch = queued.length <= maxBatch ? queued : queued.slice(0, maxBatch)
      queued = queued.length <= maxBatch ? [] : queued.slice(maxBatch)
      if (roomWaiters.length > 0) {
        const waiters = roomWaiters
        roomWaiters = []
        for (const resume of waiters) resume()
      }
      return batch
    }
    /** Resumes once rows wait or the log is closing. */
    const rowsOrStop = Effect.async<void>((resume) => {
      if (queued.length > 0 || closing) return resume(Effect.void)
      wakeWriter = () => resume(Effect.void)
      return Effect.sync(() => {
        wakeWriter = undefined
      })
    })

    const linger = buffered ? Math.max(0, options.lingerMs ?? 5) : 0
    /** Takes and commits batches until the log closes and nothing is left. */
    const writer = Effect.gen(function*() {
      for (;;) {
        yield* rowsOrStop
        if (queued.length === 0) return
        // With a linger, what arrives during it joins the batch (not once shutdown has begun).
        if (linger > 0 && queued.length < maxBatch && !closing) yield* clock.sleep(Duration.millis(linger))
        const batch = take()
        writing = batch
        yield* flush(batch)
        writing = []
      }
    })
    const fiber = yield* Effect.forkScoped(writer)

    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        closingAt = clock.unsafeCurrentTimeMillis()
        closing = true
        const wake = wakeWriter
        wakeWriter = undefined
        wake?.()
        // The writer drains what is queued, then ends.
        yield* Fiber.await(fiber)
        // Had the writer died, what it left is still written (and its writers told).
        while (queued.length > 0) yield* flush(take())
        const waiters = roomWaiters
        roomWaiters = []
        for (const resume of waiters) resume()
      })
    )

    const shuttingDown = new Errors.StoreUnavailable({ message: "the audit log is shutting down", store: STORE })

    /** Queues `entry`'s row; with `sync` durability, waits for its commit. A full queue makes it wait for room. */
    const write = (entry: AuditLog.AuditEntry): Effect.Effect<void, Errors.StoreUnavailable> =>
      Effect.suspend(() => {
        if (closing) return Effect.fail(shuttingDown)
        if (queued.length >= capacity) {
          const room = Effect.async<void>((resume) => {
            roomWaiters.push(() => resume(Effect.void))
          })
          return Effect.zipRight(room, write(entry))
        }
        const deadline = clock.unsafeCurrentTimeMillis() + maxWaitMs
        if (buffered) {
          enqueue({ row: toRow(entry), done: undefined, deadline })
          return Effect.void
        }
        return Effect.async<void, Errors.StoreUnavailable>((resume) => enqueue({ row: toRow(entry), done: resume, deadline }))
      })

    const list = SqlSchema.findAll({
      Request: Query,
      Result: EntryRow,
      execute: (q) => {
        const where = [
          ...(q.request_id === undefined ? [] : [sql`request_id = ${q.request_id}`]),
          ...(q.status === undefined ? [] : [sql`status = ${q.status}`])
        ]
        const limit = Math.max(0, Math.min(MAX_LIST, Math.floor(q.limit)))
        return sql`SELECT id, request_id, created_at, caller, user_id, team, key_id, reason, provider, model, status,
            input_tokens, output_tokens, cost, latency_ms, error_type, error_message, prompt, audit_level, attempt
          FROM llm_audit_log WHERE ${sql.and(where)} ORDER BY created_at DESC, id DESC LIMIT ${limit}`
      }
    })

    // Keyset pagination: the row-value comparison on (created_at, id) is an index condition on the
    // (…, created_at DESC, id DESC) indexes of 0003, so a deep page costs what the first one does.
    const pageRows = SqlSchema.findAll({
      Request: PageRequest,
      Result: PageRow,
      execute: (q) => {
        const eq = (column: string, value: string | undefined) => value === undefined ? [] : [sql`${sql(column)} = ${value}`]
        const where = [
          ...(q.from === undefined ? [] : [sql`created_at >= ${q.from}`]),
          ...(q.to === undefined ? [] : [sql`created_at < ${q.to}`]),
          ...eq("team", q.team),
          ...eq("key_id", q.key_id),
          ...eq("model", q.model),
          ...eq("provider", q.provider),
          ...eq("request_id", q.request_id),
          ...(q.status === undefined || q.status.length === 0 ? [] : [sql.in("status", q.status)]),
          ...(q.reason_contains === undefined || q.reason_contains === "" ? [] : [sql`reason ILIKE ${likeContains(q.reason_contains)}`]),
          ...(q.after_at === undefined || q.after_id === undefined
            ? []
            : [sql`(created_at, id) < (${q.after_at}::timestamptz, ${q.after_id}::uuid)`])
        ]
        return sql`SELECT id, request_id, created_at, caller, user_id, team, key_id, reason, provider, model, status,
            input_tokens, output_tokens, cost, latency_ms, error_type, error_message, prompt, audit_level, attempt,
            (extract(epoch FROM created_at) * 1000000)::int8::text AS created_us
          FROM llm_audit_log WHERE ${sql.and(where)} ORDER BY created_at DESC, id DESC LIMIT ${q.fetch}`
      }
    })

    const query = (request: AuditLog.PageQuery) =>
      Effect.gen(function*() {
        const { after, limit, ...filter } = yield* AuditLog.checkQuery(request)
        const cursor = Option.getOrUndefined(after)
        // One row more than the page: whether it exists says whether there is a next page.
        const fetched = yield* pageRows({
          ...filter,
          ...(cursor === undefined ? {} : { after_at: isoMicros(cursor.created_us), after_id: cursor.id }),
          fetch: limit + 1
        }).pipe(Effect.catchTag("ParseError", (e) => Effect.die(e)))
        const page = fetched.slice(0, limit)
        const last = page[page.length - 1]
        return {
          rows: page.map(({ created_us: _us, ...entry }): AuditLog.AuditEntry => entry),
          next_cursor: fetched.length > limit && last !== undefined
            ? AuditLog.encodeCursor({ created_us: Number(last.created_us), id: last.id })
            : null
        }
      }).pipe(orUnavailable(STORE), Effect.withSpan("PgAuditLog.query"))

    return AuditLog.AuditLog.of({
      write,
      list: (query) =>
        list(query).pipe(
          // Our own rows failing their schema is a bug, not an outage.
          Effect.catchTag("ParseError", (e) => Effect.die(e)),
          orUnavailable(STORE),
          Effect.withSpan("PgAuditLog.list")
        ),
      query,
      purge: (request) =>
        AuditLog.checkPurge(request).pipe(
          Effect.flatMap((r) => purgeLlmAudit(r)),
          Effect.provideService(SqlClient.SqlClient, sql),
          Effect.withSpan("PgAuditLog.purge")
        )
    })
  })

/** The `AuditLog` on the `SqlClient` in context. */
export const layer = (options: Options = {}): Layer.Layer<AuditLog.AuditLog, never, SqlClient.SqlClient> =>
  Layer.scoped(AuditLog.AuditLog, make(options))

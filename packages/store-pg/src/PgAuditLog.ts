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
 * without its record. A batch refused for its data (a bad value, a violated constraint) is split
 * so that only the bad row fails. On shutdown, rows already queued are still written.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { SqlError } from "@effect/sql/SqlError"
import * as SqlSchema from "@effect/sql/SqlSchema"
import { Errors, Money } from "@tidyllm/core"
import { AuditLog } from "@tidyllm/corporate-llm"
import { Chunk, Deferred, Duration, Effect, Fiber, Layer, Metric, MetricBoundaries, ParseResult, Queue, Ref, Schema } from "effect"
import type { Scope } from "effect"
import { describe, isDataError, orUnavailable, unavailable } from "./internal/sqlErrors.js"

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

interface Pending {
  readonly row: Row
  readonly done: Deferred.Deferred<void, Errors.StoreUnavailable>
  /** When the writer stops waiting for an unreachable database (epoch ms). */
  readonly deadline: number
}
const STOP = Symbol("stop")
type Item = Pending | typeof STOP

/** The audit log over the `SqlClient` in context; the writer fiber lives (and drains) with the scope. */
export const make = (options: Options = {}): Effect.Effect<AuditLog.Service, never, SqlClient.SqlClient | Scope.Scope> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    // One clock for enqueue times and retry deadlines, whichever fiber reads it.
    const clock = yield* Effect.clock
    const maxBatch = Math.max(1, options.maxBatch ?? 256)
    const maxWaitMs = Duration.toMillis(options.maxWait ?? Duration.seconds(5))
    const queue = yield* Queue.bounded<Item>(Math.max(1, options.capacity ?? 10_000))
    const closing = yield* Ref.make(false)
    const buffered = options.durability === "buffered"

    const insert = (rows: ReadonlyArray<Row>): Effect.Effect<void, SqlError> =>
      Effect.asVoid(sql`INSERT INTO llm_audit_log ${sql.insert(rows)} ON CONFLICT (id) DO NOTHING`)

    /** Inserts `rows`, retrying transient failures until `deadline`. */
    const insertUntil = (rows: ReadonlyArray<Row>, deadline: number): Effect.Effect<void, SqlError> => {
      const attempt = (delay: number): Effect.Effect<void, SqlError> =>
        Effect.suspend(() => {
          const remaining = deadline - clock.unsafeCurrentTimeMillis()
          return insert(rows).pipe(
            // A hung connection must not hold the writers past their deadline (at least 1 s per try).
            Effect.timeoutFail({
              duration: Math.max(remaining, 1_000),
              onTimeout: () => new SqlError({ message: "audit insert timed out", cause: new Error("timed out") })
            })
          )
        }).pipe(
          Effect.catchAll((error) => {
            const left = deadline - clock.unsafeCurrentTimeMillis()
            if (isDataError(error) || left <= 0) return Effect.fail(error)
            return clock.sleep(Duration.millis(Math.min(delay, left))).pipe(
              Effect.zipRight(attempt(Math.min(delay * 2, MAX_RETRY_MS)))
            )
          })
        )
      return attempt(FIRST_RETRY_MS)
    }

    const succeedAll = (batch: ReadonlyArray<Pending>) =>
      Effect.forEach(batch, (p) => Deferred.succeed(p.done, undefined), { discard: true })
    const failAll = (batch: ReadonlyArray<Pending>, error: Errors.StoreUnavailable) =>
      Effect.forEach(batch, (p) => Deferred.fail(p.done, error), { discard: true }).pipe(
        Effect.zipRight(Metric.incrementBy(rowsFailed, batch.length))
      )

    const flush = (batch: ReadonlyArray<Pending>): Effect.Effect<void> =>
      Effect.gen(function*() {
        const deadline = batch.reduce((min, p) => Math.min(min, p.deadline), Number.POSITIVE_INFINITY)
        const result = yield* Effect.either(insertUntil(batch.map((p) => p.row), deadline))
        if (result._tag === "Right") {
          yield* Metric.increment(batchesCommitted)
          yield* Metric.incrementBy(rowsCommitted, batch.length)
          yield* Metric.update(batchSize, batch.length)
          return yield* succeedAll(batch)
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
        Effect.withSpan("PgAuditLog.flush", { attributes: { "tidyllm.audit.batch_size": batch.length } })
      )

    const isPending = (item: Item): item is Pending => item !== STOP

    /** Takes and commits batches until it meets STOP. */
    const writer = Effect.gen(function*() {
      for (;;) {
        const items = Chunk.toReadonlyArray(yield* Queue.takeBetween(queue, 1, maxBatch))
        const batch = items.filter(isPending)
        if (batch.length > 0) yield* flush(batch)
        if (batch.length < items.length) return
      }
    })
    const fiber = yield* Effect.forkScoped(writer)

    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        yield* Ref.set(closing, true)
        yield* Queue.offer(queue, STOP)
        yield* Fiber.await(fiber)
        // Rows offered by writers that raced the shutdown flag.
        const rest = Chunk.toReadonlyArray(yield* Queue.takeAll(queue)).filter(isPending)
        for (let i = 0; i < rest.length; i += maxBatch) yield* flush(rest.slice(i, i + maxBatch))
        yield* Queue.shutdown(queue)
      })
    )

    const shuttingDown = new Errors.StoreUnavailable({ message: "the audit log is shutting down", store: STORE })

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

    return AuditLog.AuditLog.of({
      write: (entry) =>
        Effect.gen(function*() {
          if (yield* Ref.get(closing)) return yield* Effect.fail(shuttingDown)
          const done = yield* Deferred.make<void, Errors.StoreUnavailable>()
          yield* Queue.offer(queue, { row: toRow(entry), done, deadline: clock.unsafeCurrentTimeMillis() + maxWaitMs })
          if (buffered) return
          return yield* Deferred.await(done)
        }),
      list: (query) =>
        list(query).pipe(
          // Our own rows failing their schema is a bug, not an outage.
          Effect.catchTag("ParseError", (e) => Effect.die(e)),
          orUnavailable(STORE),
          Effect.withSpan("PgAuditLog.list")
        )
    })
  })

/** The `AuditLog` on the `SqlClient` in context. */
export const layer = (options: Options = {}): Layer.Layer<AuditLog.AuditLog, never, SqlClient.SqlClient> =>
  Layer.scoped(AuditLog.AuditLog, make(options))

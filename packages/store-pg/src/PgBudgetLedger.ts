/**
 * The `BudgetLedger` port on SQL (`budget_ledger`, `budget_reservations`): exact across replicas.
 *
 * Reserving is one transaction: per scope, one upsert that creates the period's row or adds the
 * amount to `reserved` only while `spent + reserved + amount ≤ limit` (the row lock makes the
 * check and the update one atomic step, also against other replicas); if any scope has no room
 * the transaction rolls back and the call fails with `BudgetExceeded`. The reservation row
 * records the instance and a deadline, so a reaper on any replica frees what a crashed one left.
 * Settling deletes the reservation row and moves the cost in the same transaction; a second
 * settle finds no row and charges nothing.
 *
 * Scopes are locked in one order (scope, period) by every transaction, so concurrent requests
 * over overlapping scopes queue instead of deadlocking. Times come from the Effect `Clock`.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as SqlSchema from "@effect/sql/SqlSchema"
import { Ids, Money } from "@tidyllm/core"
import { BudgetLedger } from "@tidyllm/corporate-llm"
import { Clock, Effect, Layer, Option, Schema } from "effect"
import { orUnavailable } from "./internal/sqlErrors.js"

/** Who this replica is. */
export interface Options {
  /** Recorded on each reservation (e.g. host name and pid), to tell whose reservations a reaper freed. */
  readonly instanceId: string
}

const STORE = "postgres"
const REAP_BATCH = 1_000

/** A row of a reservation: the ledger row it holds an amount on. */
const LedgerKey = Schema.Struct({
  scope: Schema.String,
  period: Schema.Literal("day", "month"),
  period_start: Schema.String
})
type LedgerKey = typeof LedgerKey.Type

const byKey = (a: LedgerKey, b: LedgerKey) =>
  a.scope < b.scope ? -1 : a.scope > b.scope ? 1 : a.period < b.period ? -1 : a.period > b.period ? 1 : a.period_start < b.period_start ? -1 : a.period_start > b.period_start ? 1 : 0

const Nanos = Schema.transform(Schema.String, Schema.Number, {
  strict: true,
  decode: (s) => Money.fromUsdString(s),
  encode: (n) => Money.toUsdString(Money.Nanos(n))
})

const Amounts = Schema.Struct({ spent: Nanos, reserved: Nanos })

const Deleted = Schema.Struct({ amount: Nanos, rows: Schema.parseJson(Schema.Array(LedgerKey)) })

const nanos = (n: number): Money.Nanos => Money.Nanos(n)
const usd = (n: Money.Nanos): string => Money.toUsdString(n)

/** The ledger over the `SqlClient` in context. */
export const make = (options: Options): Effect.Effect<BudgetLedger.Service, never, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient

    /** Adds `amount` to the row's `reserved` if it fits under `limit` (creating the row); true when it did. */
    const tryReserve = (key: LedgerKey, limit: Money.Nanos, amount: Money.Nanos, now: Date) =>
      sql<{ readonly scope: string }>`
        INSERT INTO budget_ledger AS b (scope, period, period_start, limit_usd, spent, reserved, updated_at)
        SELECT ${key.scope}::text, ${key.period}::text, ${key.period_start}::date, ${usd(limit)}::numeric, 0, ${usd(amount)}::numeric,
          ${now}::timestamptz
        WHERE ${usd(amount)}::numeric <= ${usd(limit)}::numeric
        ON CONFLICT (scope, period, period_start) DO UPDATE
          SET reserved = b.reserved + EXCLUDED.reserved, limit_usd = EXCLUDED.limit_usd, updated_at = EXCLUDED.updated_at
          WHERE b.spent + b.reserved + EXCLUDED.reserved <= EXCLUDED.limit_usd
        RETURNING b.scope`.pipe(Effect.map((rows) => rows.length > 0))

    const amountsOf = SqlSchema.findOne({
      Request: LedgerKey,
      Result: Amounts,
      execute: (key) =>
        sql`SELECT spent::text AS spent, reserved::text AS reserved FROM budget_ledger
          WHERE scope = ${key.scope} AND period = ${key.period} AND period_start = ${key.period_start}::date`
    })

    const reserve = (input: BudgetLedger.ReserveInput) =>
      Effect.gen(function*() {
        const nowMs = yield* Clock.currentTimeMillis
        const now = new Date(nowMs)
        const id = Ids.randomUuid()
        const keyed = input.scopes.map((scope) => ({
          scope,
          key: { scope: scope.key, period: scope.period, period_start: BudgetLedger.periodStart(scope.period, nowMs) }
        }))
        const ordered = [...keyed].sort((a, b) => byKey(a.key, b.key))
        yield* sql.withTransaction(Effect.gen(function*() {
          for (const { key, scope } of ordered) {
            if (yield* tryReserve(key, scope.limit, input.amount, now)) continue
            // No room: read the row as it stands (locked by the upsert, so this is what refused us).
            const current = yield* amountsOf(key)
            const spent = Option.match(current, { onNone: () => Money.zero, onSome: (a) => nanos(a.spent) })
            const reserved = Option.match(current, { onNone: () => Money.zero, onSome: (a) => nanos(a.reserved) })
            return yield* BudgetLedger.exceeded(scope.key, scope.limit, spent, reserved, input.amount)
          }
          yield* sql`INSERT INTO budget_reservations (id, request_id, amount, rows, instance_id, created_at, expires_at)
            VALUES (${id}, ${input.request_id}, ${usd(input.amount)}::numeric, ${JSON.stringify(keyed.map((k) => k.key))}::jsonb,
              ${options.instanceId}, ${now}, ${new Date(nowMs + Math.max(0, input.ttl_ms))})`
        }))
        const reservation: BudgetLedger.Reservation = {
          id,
          amount: input.amount,
          rows: keyed.map(({ key }) => ({ scope: key.scope, period: key.period, period_start: key.period_start }))
        }
        return reservation
      })

    const deleteReservation = SqlSchema.findOne({
      Request: Schema.String,
      Result: Deleted,
      execute: (id) => sql`DELETE FROM budget_reservations WHERE id = ${id} RETURNING amount::text AS amount, rows::text AS rows`
    })

    /** Frees reservation `id` and charges `actual`; false when it was already settled. */
    const settleId = (id: string, actual: Money.Nanos): Effect.Effect<boolean, SqlError> =>
      Effect.gen(function*() {
        const now = new Date(yield* Clock.currentTimeMillis)
        return yield* sql.withTransaction(Effect.gen(function*() {
          const deleted = yield* deleteReservation(id).pipe(Effect.catchTag("ParseError", (e) => Effect.die(e)))
          if (Option.isNone(deleted)) return false
          const { amount, rows } = deleted.value
          for (const key of [...rows].sort(byKey)) {
            yield* sql`UPDATE budget_ledger
              SET reserved = greatest(reserved - ${usd(nanos(amount))}::numeric, 0), spent = spent + ${usd(actual)}::numeric, updated_at = ${now}
              WHERE scope = ${key.scope} AND period = ${key.period} AND period_start = ${key.period_start}::date`
          }
          return true
        }))
      })

    const status = (scopes: ReadonlyArray<BudgetLedger.Scope>) =>
      Effect.gen(function*() {
        const nowMs = yield* Clock.currentTimeMillis
        return yield* Effect.forEach(scopes, (scope) => {
          const key: LedgerKey = { scope: scope.key, period: scope.period, period_start: BudgetLedger.periodStart(scope.period, nowMs) }
          return amountsOf(key).pipe(Effect.map((row): BudgetLedger.ScopeStatus => ({
            scope: scope.key,
            period: scope.period,
            period_start: key.period_start,
            limit: scope.limit,
            spent: Option.match(row, { onNone: () => Money.zero, onSome: (a) => nanos(a.spent) }),
            reserved: Option.match(row, { onNone: () => Money.zero, onSome: (a) => nanos(a.reserved) })
          })))
        })
      })

    const reapExpired = Effect.gen(function*() {
      const now = new Date(yield* Clock.currentTimeMillis)
      const expired = yield* sql<{ readonly id: string }>`SELECT id FROM budget_reservations WHERE expires_at <= ${now}
        ORDER BY expires_at LIMIT ${REAP_BATCH}`
      // Each in its own short transaction; one settled concurrently by its owner is skipped.
      const freed = yield* Effect.forEach(expired, (r) => settleId(r.id, Money.zero))
      const count = freed.filter((f) => f).length
      if (count > 0) yield* Effect.logWarning(`released ${count} expired budget reservation(s)`)
      return count
    })

    const openReservations = sql<{ readonly n: number }>`SELECT count(*)::int AS n FROM budget_reservations`.pipe(
      Effect.map((rows) => rows[0]?.n ?? 0)
    )

    // Decoding our own rows fails only on a bug: that is a defect, not an outage.
    return BudgetLedger.BudgetLedger.of({
      reserve: (input) => reserve(input).pipe(Effect.catchTag("ParseError", (e) => Effect.die(e)), orUnavailable(STORE), Effect.withSpan("PgBudgetLedger.reserve")),
      settle: (reservation, actual) =>
        settleId(reservation.id, actual).pipe(Effect.asVoid, orUnavailable(STORE), Effect.withSpan("PgBudgetLedger.settle")),
      status: (scopes) => status(scopes).pipe(Effect.catchTag("ParseError", (e) => Effect.die(e)), orUnavailable(STORE), Effect.withSpan("PgBudgetLedger.status")),
      reapExpired: reapExpired.pipe(orUnavailable(STORE), Effect.withSpan("PgBudgetLedger.reapExpired")),
      openReservations: openReservations.pipe(orUnavailable(STORE))
    })
  })

/** The `BudgetLedger` on the `SqlClient` in context. */
export const layer = (options: Options): Layer.Layer<BudgetLedger.BudgetLedger, never, SqlClient.SqlClient> =>
  Layer.effect(BudgetLedger.BudgetLedger, make(options))

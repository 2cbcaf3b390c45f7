/**
 * The port of budgets: a scope (global, team, key; per day or month) has a limit, a spent and a
 * reserved amount. Reserving succeeds only while `spent + reserved + amount ≤ limit`, atomically
 * across every scope of the request; settling moves the real cost to `spent` and frees the rest.
 */
import { Clock, Context, Effect, Layer, Ref } from "effect"
import { Errors, Ids, Money } from "@tidyllm/core"

/** A budget scope. `key` is `global`, `team:<id>` or `key:<id>`. */
export interface Scope {
  readonly key: string
  readonly period: "day" | "month"
  readonly limit: Money.Nanos
}

/** An open reservation. */
export interface Reservation {
  readonly id: string
  readonly amount: Money.Nanos
  /** The scopes and the period each was reserved in (settlement hits the same rows after midnight). */
  readonly rows: ReadonlyArray<{ readonly scope: string; readonly period: "day" | "month"; readonly period_start: string }>
}

/** One scope's state in its current period. */
export interface ScopeStatus {
  readonly scope: string
  readonly period: "day" | "month"
  readonly period_start: string
  readonly limit: Money.Nanos
  readonly spent: Money.Nanos
  readonly reserved: Money.Nanos
}

/** What to reserve. */
export interface ReserveInput {
  readonly scopes: ReadonlyArray<Scope>
  readonly amount: Money.Nanos
  readonly request_id: string
  /** How long the reservation may stay open before a reaper releases it. */
  readonly ttl_ms: number
}

/** The ledger service. */
export interface Service {
  readonly reserve: (input: ReserveInput) => Effect.Effect<Reservation, Errors.BudgetExceeded | Errors.StoreUnavailable>
  /** Charges `actual` and frees the reservation. Idempotent: settling twice charges once. */
  readonly settle: (reservation: Reservation, actual: Money.Nanos) => Effect.Effect<void, Errors.StoreUnavailable>
  /** The current period of each scope (a scope never reserved against shows zeros). */
  readonly status: (scopes: ReadonlyArray<Scope>) => Effect.Effect<ReadonlyArray<ScopeStatus>, Errors.StoreUnavailable>
  /** Releases reservations whose deadline has passed; returns how many. */
  readonly reapExpired: Effect.Effect<number, Errors.StoreUnavailable>
  /** Number of reservations still open. */
  readonly openReservations: Effect.Effect<number, Errors.StoreUnavailable>
}

/** The budget ledger in use. */
export class BudgetLedger extends Context.Tag("@tidyllm/corporate-llm/BudgetLedger")<BudgetLedger, Service>() {}

const DAY_MS = 86_400_000
let memo = { from: 0, until: 0, day: "", month: "" }

/** The start (UTC, `YYYY-MM-DD`) of the period containing `now`. */
export const periodStart = (period: "day" | "month", now: number): string => {
  // Asked for each scope of every request: the last UTC day's answers are kept.
  if (!(now >= memo.from && now < memo.until)) {
    const iso = new Date(now).toISOString()
    const from = Date.UTC(Number(iso.slice(0, 4)), Number(iso.slice(5, 7)) - 1, Number(iso.slice(8, 10)))
    memo = { from, until: from + DAY_MS, day: iso.slice(0, 10), month: `${iso.slice(0, 7)}-01` }
  }
  return period === "day" ? memo.day : memo.month
}


/** The message of a refused reservation. */
export const exceeded = (scope: string, limit: Money.Nanos, spent: Money.Nanos, reserved: Money.Nanos, amount: Money.Nanos) =>
  new Errors.BudgetExceeded({
    message: `budget '${scope}' has $${Money.toUsdString(Money.subtractFloor(limit, Money.add(spent, reserved)))} left of $${Money.toUsdString(limit)}; this request may cost up to $${Money.toUsdString(amount)}`,
    scope,
    limit_usd: Money.toUsdString(limit),
    spent_usd: Money.toUsdString(spent),
    reserved_usd: Money.toUsdString(reserved),
    requested_usd: Money.toUsdString(amount)
  })

interface Row { limit: Money.Nanos; spent: Money.Nanos; reserved: Money.Nanos }
interface MemoryState {
  readonly rows: ReadonlyMap<string, Row>
  readonly open: ReadonlyMap<string, { reservation: Reservation; expires: number }>
}
// A daily and a monthly budget of one scope are different rows, also on the 1st of the month.
const rowKey = (scope: string, period: string, periodStart: string) => `${scope}@${period}@${periodStart}`

/** An in-memory ledger (atomic within one process), for unit tests. */
export const makeMemory = Effect.gen(function*() {
  const state = yield* Ref.make<MemoryState>({ rows: new Map(), open: new Map() })
  const free = (s: MemoryState, id: string, actual: Money.Nanos): MemoryState => {
    const open = s.open.get(id)
    if (open === undefined) return s
    const rows = new Map(s.rows)
    for (const r of open.reservation.rows) {
      const k = rowKey(r.scope, r.period, r.period_start)
      const row = rows.get(k)
      if (row) rows.set(k, { ...row, reserved: Money.subtractFloor(row.reserved, open.reservation.amount), spent: Money.add(row.spent, actual) })
    }
    const o = new Map(s.open)
    o.delete(id)
    return { rows, open: o }
  }
  const service: Service = {
    reserve: (input) =>
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        const id = Ids.randomUuid()
        return yield* Ref.modify(state, (s): [Effect.Effect<Reservation, Errors.BudgetExceeded>, MemoryState] => {
          const rows = new Map(s.rows)
          const keys: Array<{ scope: string; period: "day" | "month"; period_start: string }> = []
          for (const scope of input.scopes) {
            const ps = periodStart(scope.period, now)
            const k = rowKey(scope.key, scope.period, ps)
            const row = rows.get(k) ?? { limit: scope.limit, spent: Money.zero, reserved: Money.zero }
            const current = { ...row, limit: scope.limit }
            if (current.spent + current.reserved + input.amount > current.limit) {
              return [Effect.fail(exceeded(scope.key, current.limit, current.spent, current.reserved, input.amount)), s]
            }
            rows.set(k, { ...current, reserved: Money.add(current.reserved, input.amount) })
            keys.push({ scope: scope.key, period: scope.period, period_start: ps })
          }
          const reservation: Reservation = { id, amount: input.amount, rows: keys }
          const open = new Map(s.open).set(id, { reservation, expires: now + input.ttl_ms })
          return [Effect.succeed(reservation), { rows, open }]
        }).pipe(Effect.flatten)
      }),
    settle: (reservation, actual) => Ref.update(state, (s) => free(s, reservation.id, actual)),
    status: (scopes) =>
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        const s = yield* Ref.get(state)
        return scopes.map((scope) => {
          const ps = periodStart(scope.period, now)
          const row = s.rows.get(rowKey(scope.key, scope.period, ps))
          return { scope: scope.key, period: scope.period, period_start: ps, limit: scope.limit, spent: row?.spent ?? Money.zero, reserved: row?.reserved ?? Money.zero }
        })
      }),
    reapExpired: Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      return yield* Ref.modify(state, (s) => {
        const expired = [...s.open.values()].filter((o) => o.expires <= now)
        return [expired.length, expired.reduce((acc, o) => free(acc, o.reservation.id, Money.zero), s)]
      })
    }),
    openReservations: Effect.map(Ref.get(state), (s) => s.open.size)
  }
  return service
})

/** An in-memory ledger, for unit tests. */
export const layerMemory = Layer.effect(BudgetLedger, makeMemory)

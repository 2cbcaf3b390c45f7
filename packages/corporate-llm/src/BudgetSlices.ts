/**
 * Budget slices: a `BudgetLedger` that leases a slice of each scope's remaining budget from an
 * underlying ledger (one atomic reservation there) and reserves against the slice in memory, so
 * the database's hot budget row is touched once per slice instead of twice per request.
 *
 * Exactness holds because a request only ever reserves inside leases the underlying ledger has
 * granted, and leases never exceed what remains. A lease is returned (settled with what was spent
 * inside it) when it cannot fit the next request, when it has idled, when it is older than the
 * rotation period, and at shutdown. Slices shrink as the budget nears its end (each refused lease
 * is retried at half the size, down to the request's own amount), so the last cents are not
 * stranded in one replica. Once a budget runs out, a refusal is remembered for a moment
 * (`refusal_ms`), so that the requests that follow are refused without each taking a round trip
 * on the budget's row under the lock. What a crash can lose is the spend recorded inside the crashed
 * replica's open leases (at most one slice per scope, bounded further by the rotation period):
 * the reaper releases those leases as unspent.
 */
import { Clock, Duration, Effect, Schedule } from "effect"
import type { Scope } from "effect"
import { Ids, Money } from "@tidyllm/core"
import type { Errors } from "@tidyllm/core"
import * as BudgetLedger from "./BudgetLedger.js"

/** How slices are sized and recycled. */
export interface Options {
  /** A new slice is this fraction of the scope's limit (e.g. 0.01), never less than the request needs. */
  readonly fraction: number
  /** A lease unused this long is returned (default 5 s). */
  readonly idle_ms?: number | undefined
  /** A lease older than this is returned once its requests have settled (default 60 s). */
  readonly rotate_ms?: number | undefined
  /** The deadline of a lease in the underlying ledger, after which a reaper may release it (default 15 min). */
  readonly lease_ttl_ms?: number | undefined
  /**
   * After the underlying ledger refuses a lease, requests that cannot fit what it said was left are
   * refused here for this long (default 100 ms) or until this replica returns a lease of the scope,
   * instead of each taking a round trip on the budget's row under the lock.
   */
  readonly refusal_ms?: number | undefined
}

interface Lease {
  readonly key: string
  readonly reservation: BudgetLedger.Reservation
  readonly scope: BudgetLedger.Scope
  readonly period_start: string
  readonly created: number
  /** Reserved by open requests plus spent by settled ones; never above `reservation.amount` while open. */
  used: number
  spent: number
  open: number
  lastUsed: number
  retiring: boolean
}

interface Local {
  readonly amount: Money.Nanos
  readonly leases: ReadonlyArray<Lease>
}

/** Wraps `base` with slices. Leases are returned when the scope closes. */
export const make = (base: BudgetLedger.Service, options: Options): Effect.Effect<BudgetLedger.Service, never, Scope.Scope> =>
  Effect.gen(function*() {
    const idleMs = options.idle_ms ?? 5_000
    const rotateMs = options.rotate_ms ?? 60_000
    const leaseTtl = options.lease_ttl_ms ?? 15 * 60_000
    const refusalMs = options.refusal_ms ?? 100
    /** The last refusal of the underlying ledger per lease key: what was left, until when it is trusted. */
    const refusals = new Map<string, { readonly limit: number; readonly spent: Money.Nanos; readonly reserved: Money.Nanos; readonly left: number; readonly until: number }>()
    const active = new Map<string, Lease>()
    const retiring = new Set<Lease>()
    const locals = new Map<string, Local>()
    // One permit: the in-memory books and lease changes are one critical section. A reservation
    // that fits the open leases, and a settlement that returns no lease, are that section in one
    // synchronous step (no other fiber can run inside it), taken only while no fiber holds or
    // waits for the lock, since those hold decisions across their round trips to the ledger.
    const lock = yield* Effect.makeSemaphore(1)
    let lockers = 0
    const locked = <A, E>(effect: Effect.Effect<A, E>): Effect.Effect<A, E> =>
      Effect.uninterruptibleMask((restore) =>
        Effect.suspend(() => {
          lockers++
          return restore(lock.withPermits(1)(effect)).pipe(Effect.ensuring(Effect.sync(() => {
            lockers--
          })))
        }))

    const keyOf = (scope: BudgetLedger.Scope, periodStart: string) => `${scope.key}@${scope.period}@${periodStart}`

    /** Hands a lease back to the underlying ledger, charging what was spent inside it. */
    const giveBack = (lease: Lease): Effect.Effect<void, Errors.StoreUnavailable> =>
      base.settle(lease.reservation, Money.Nanos(lease.spent)).pipe(Effect.tap(() => Effect.sync(() => {
        retiring.delete(lease)
        refusals.delete(lease.key)
      })))

    /** Stops reserving against `lease`; returns it now if nothing is open on it. */
    const retire = (lease: Lease) =>
      Effect.suspend(() => {
        if (active.get(lease.key) === lease) active.delete(lease.key)
        lease.retiring = true
        retiring.add(lease)
        return lease.open === 0 ? giveBack(lease) : Effect.void
      })

    /** Leases a new slice for `scope` big enough for `amount`, halving the ask on refusal down to `amount`. */
    const lease = (scope: BudgetLedger.Scope, periodStart: string, amount: Money.Nanos, requestId: string, now: number) =>
      Effect.gen(function*() {
        let ask = Math.max(amount, Math.floor(scope.limit * options.fraction))
        for (;;) {
          const attempt = yield* Effect.either(base.reserve({ scopes: [scope], amount: Money.Nanos(ask), request_id: `lease:${requestId}`, ttl_ms: leaseTtl }))
          if (attempt._tag === "Right") {
            const l: Lease = {
              key: keyOf(scope, periodStart), reservation: attempt.right, scope, period_start: periodStart,
              created: now, used: 0, spent: 0, open: 0, lastUsed: now, retiring: false
            }
            active.set(l.key, l)
            return l
          }
          const refused = attempt.left
          if (refused._tag !== "BudgetExceeded") return yield* Effect.fail(refused)
          // The refusal says what is left: when that cannot fit the request, halving further only
          // costs more round trips (under the lock, for every request once a budget runs out).
          const spent = Money.fromUsdString(refused.spent_usd)
          const reserved = Money.fromUsdString(refused.reserved_usd)
          const left = Money.subtractFloor(scope.limit, Money.add(spent, reserved))
          if (ask <= amount || left < amount) {
            refusals.set(keyOf(scope, periodStart), { limit: scope.limit, spent, reserved, left, until: now + refusalMs })
            return yield* Effect.fail(BudgetLedger.exceeded(scope.key, scope.limit, spent, reserved, amount))
          }
          ask = Math.max(amount, Math.min(Math.floor(ask / 2), left))
        }
      })

    /** Books `amount` on `chosen` and records the reservation. */
    const book = (input: BudgetLedger.ReserveInput, chosen: ReadonlyArray<Lease>, now: number): BudgetLedger.Reservation => {
      for (const l of chosen) {
        l.used += input.amount
        l.open += 1
        l.lastUsed = now
      }
      const id = Ids.randomUuid()
      locals.set(id, { amount: input.amount, leases: chosen })
      return { id, amount: input.amount, rows: chosen.map((l) => ({ scope: l.scope.key, period: l.scope.period, period_start: l.period_start })) }
    }

    /** The open leases that fit `input` for every scope, if there are such leases and no one holds the lock. */
    const fitting = (input: BudgetLedger.ReserveInput, now: number): ReadonlyArray<Lease> | undefined => {
      if (lockers > 0) return undefined
      const chosen: Array<Lease> = []
      for (const scope of input.scopes) {
        const l = active.get(keyOf(scope, BudgetLedger.periodStart(scope.period, now)))
        if (l === undefined || l.reservation.amount - l.used < input.amount || l.scope.limit !== scope.limit) return undefined
        chosen.push(l)
      }
      return chosen
    }

    const reserve = (input: BudgetLedger.ReserveInput): Effect.Effect<BudgetLedger.Reservation, Errors.BudgetExceeded | Errors.StoreUnavailable> =>
      Effect.clockWith((clock) => {
        const now = clock.unsafeCurrentTimeMillis()
        const chosen = fitting(input, now)
        return chosen === undefined ? reserveLocked(input) : Effect.succeed(book(input, chosen, now))
      })

    const reserveLocked = (input: BudgetLedger.ReserveInput) =>
      locked(Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        const chosen: Array<Lease> = []
        for (const scope of input.scopes) {
          const ps = BudgetLedger.periodStart(scope.period, now)
          let current = active.get(keyOf(scope, ps))
          if (current !== undefined && (current.reservation.amount - current.used < input.amount || current.scope.limit !== scope.limit)) {
            yield* retire(current)
            current = undefined
          }
          if (current === undefined) {
            const last = refusals.get(keyOf(scope, ps))
            if (last !== undefined && now < last.until && last.limit === scope.limit && last.left < input.amount) {
              return yield* Effect.fail(BudgetLedger.exceeded(scope.key, scope.limit, last.spent, last.reserved, input.amount))
            }
          }
          chosen.push(current ?? (yield* lease(scope, ps, input.amount, input.request_id, now)))
        }
        return book(input, chosen, now)
      }))

    const settle = (reservation: BudgetLedger.Reservation, actual: Money.Nanos): Effect.Effect<void, Errors.StoreUnavailable> =>
      Effect.suspend(() => {
        const local = locals.get(reservation.id)
        if (local === undefined) return Effect.void
        if (lockers > 0 || local.leases.some((l) => l.retiring)) return settleLocked(reservation, actual)
        // No lease of it is being returned: nothing to hand back, one step.
        locals.delete(reservation.id)
        for (const l of local.leases) {
          l.used += actual - local.amount
          l.spent += actual
          l.open -= 1
        }
        return Effect.void
      })

    const settleLocked = (reservation: BudgetLedger.Reservation, actual: Money.Nanos) =>
      locked(Effect.gen(function*() {
        const local = locals.get(reservation.id)
        if (local === undefined) return
        locals.delete(reservation.id)
        for (const l of local.leases) {
          l.used += actual - local.amount
          l.spent += actual
          l.open -= 1
          if (l.retiring && l.open === 0) yield* giveBack(l)
        }
      }))

    /** Returns idle and old leases (run periodically). */
    const sweep = locked(Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      for (const l of [...active.values()]) {
        if ((l.open === 0 && now - l.lastUsed >= idleMs) || now - l.created >= rotateMs) yield* retire(l)
      }
    }))

    yield* sweep.pipe(
      Effect.catchAll((e) => Effect.logWarning(`budget slices: returning leases failed: ${e.message}`)),
      Effect.repeat(Schedule.spaced(Duration.millis(Math.max(100, Math.min(idleMs, rotateMs) / 2)))),
      Effect.forkScoped
    )
    // At shutdown every lease goes back, charged with what was spent plus what is still open on it.
    yield* Effect.addFinalizer(() =>
      locked(Effect.forEach([...active.values(), ...retiring], (l) => {
        active.delete(l.key)
        const stillOpen = l.used - l.spent
        return base.settle(l.reservation, Money.Nanos(Math.min(l.reservation.amount, l.spent + Math.max(0, stillOpen)))).pipe(
          Effect.catchAll((e) => Effect.logWarning(`budget slices: lease not returned at shutdown (the reaper will release it): ${e.message}`))
        )
      }, { discard: true }))
    )

    const status = (scopes: ReadonlyArray<BudgetLedger.Scope>) =>
      Effect.gen(function*() {
        const rows = yield* base.status(scopes)
        const leases = [...active.values(), ...retiring]
        return rows.map((row): BudgetLedger.ScopeStatus => {
          const mine = leases.filter((l) => l.scope.key === row.scope && l.scope.period === row.period && l.period_start === row.period_start)
          // The ledger counts our leases as reserved; show what was spent and what is in flight instead.
          const leased = mine.reduce((n, l) => n + l.reservation.amount, 0)
          const spent = mine.reduce((n, l) => n + l.spent, 0)
          const inFlight = mine.reduce((n, l) => n + (l.used - l.spent), 0)
          return { ...row, spent: Money.Nanos(row.spent + spent), reserved: Money.Nanos(Math.max(0, row.reserved - leased + inFlight)) }
        })
      })

    return {
      reserve,
      settle,
      status,
      reapExpired: base.reapExpired,
      openReservations: Effect.sync(() => locals.size)
    } satisfies BudgetLedger.Service
  })


import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Exit, Random, Scope, TestClock } from "effect"
import { Money } from "@tidyllm/core"
import { BudgetLedger, BudgetSlices } from "@tidyllm/corporate-llm"

const scope = (limit: number, key = "global"): BudgetLedger.Scope => ({ key, period: "day", limit: Money.Nanos(limit) })
const input = (amount: number, scopes: ReadonlyArray<BudgetLedger.Scope>, i = 0): BudgetLedger.ReserveInput =>
  ({ scopes, amount: Money.Nanos(amount), request_id: `r${i}`, ttl_ms: 60_000 })

describe("BudgetSlices", () => {
  it.scoped("many requests share one lease: the underlying ledger sees one reservation, status shows the true spend", () =>
    Effect.gen(function*() {
      const base = yield* BudgetLedger.makeMemory
      const sliced = yield* BudgetSlices.make(base, { fraction: 0.1 })
      const g = scope(1_000_000)
      for (let i = 0; i < 20; i++) {
        const r = yield* sliced.reserve(input(1_000, [g], i))
        yield* sliced.settle(r, Money.Nanos(600))
      }
      expect(yield* base.openReservations).toBe(1)
      const [viaBase] = yield* base.status([g])
      expect(viaBase).toMatchObject({ spent: 0, reserved: 100_000 })
      const [viaSliced] = yield* sliced.status([g])
      expect(viaSliced).toMatchObject({ spent: 12_000, reserved: 0 })
      expect(yield* sliced.openReservations).toBe(0)
    }))

  it.scoped("a lease retired while a request is open on it goes back when that request settles", () =>
    Effect.gen(function*() {
      const base = yield* BudgetLedger.makeMemory
      const sliced = yield* BudgetSlices.make(base, { fraction: 0.1 })
      const g = scope(1_000_000)
      const first = yield* sliced.reserve(input(60_000, [g], 1))
      // The second does not fit what is left of the first lease: that one retires, a new one is leased.
      const second = yield* sliced.reserve(input(60_000, [g], 2))
      expect(yield* base.openReservations).toBe(2)
      yield* sliced.settle(first, Money.Nanos(50_000))
      expect(yield* base.openReservations).toBe(1)
      expect((yield* base.status([g]))[0]).toMatchObject({ spent: 50_000, reserved: 100_000 })
      yield* sliced.settle(second, Money.Nanos(10_000))
      expect((yield* sliced.status([g]))[0]).toMatchObject({ spent: 60_000, reserved: 0 })
    }))

  it.effect("closing returns every lease, charged exactly what was spent", () =>
    Effect.gen(function*() {
      const base = yield* BudgetLedger.makeMemory
      const g = scope(1_000_000)
      const scopeHandle = yield* Scope.make()
      const sliced = yield* BudgetSlices.make(base, { fraction: 0.1 }).pipe(Scope.extend(scopeHandle))
      for (let i = 0; i < 5; i++) yield* sliced.settle(yield* sliced.reserve(input(1_000, [g], i)), Money.Nanos(700))
      yield* Scope.close(scopeHandle, Exit.void)
      expect(yield* base.openReservations).toBe(0)
      expect((yield* base.status([g]))[0]).toMatchObject({ spent: 3_500, reserved: 0 })
    }))

  it.scoped("two replicas under concurrency never overshoot, and every nano spent is charged once", () =>
    Effect.gen(function*() {
      const base = yield* BudgetLedger.makeMemory
      const limit = 5_000_000
      const g = scope(limit)
      const teams = [scope(2_000_000, "team:a"), scope(2_000_000, "team:b")]
      const replicas = [yield* BudgetSlices.make(base, { fraction: 0.05 }), yield* BudgetSlices.make(base, { fraction: 0.05 })]
      const rng = Random.make("slices")
      let inFlight = 0
      let peak = 0
      let charged = 0
      const results = yield* Effect.forEach(Array.from({ length: 300 }, (_, i) => i), (i) =>
        Effect.gen(function*() {
          const amount = yield* rng.nextIntBetween(10_000, 200_000)
          const actual = Math.floor(amount * (yield* rng.next))
          const ledger = replicas[i % 2]!
          const r = yield* Effect.either(ledger.reserve(input(amount, [g, teams[i % 2]!], i)))
          if (r._tag === "Left") return false
          inFlight += amount
          peak = Math.max(peak, inFlight + charged)
          yield* Effect.yieldNow()
          yield* ledger.settle(r.right, Money.Nanos(actual))
          inFlight -= amount
          charged += actual
          return true
        }), { concurrency: "unbounded" })
      expect(results.filter((x) => x).length).toBeGreaterThan(0)
      expect(results.filter((x) => !x).length).toBeGreaterThan(0)
      expect(peak).toBeLessThanOrEqual(limit)
      const views = yield* Effect.forEach(replicas, (r) => r.status([g]))
      // Each replica sees the other's leases as reserved; the spend it adds is its own.
      const spentByReplicas = views.reduce((n, [v]) => n + v!.spent, 0) - (yield* base.status([g]))[0]!.spent
      expect(spentByReplicas).toBe(charged)
    }))

  it.live("two-scope requests under a slow ledger: leases change while others book into them, none is booked past its size", () =>
    Effect.gen(function*() {
      const memory = yield* BudgetLedger.makeMemory
      // Each round trip to the underlying ledger takes a while: leases are taken and given back
      // while other requests arrive and book into the open ones.
      const slow = <A, E>(self: Effect.Effect<A, E>) => Effect.zipRight(Effect.sleep(Duration.millis(5)), self)
      let overbooked = 0
      const base: BudgetLedger.Service = {
        ...memory,
        reserve: (i) => slow(memory.reserve(i)),
        settle: (r, a) => Effect.suspend(() => {
          if (a > r.amount) overbooked++
          return slow(memory.settle(r, a))
        })
      }
      // Two scopes, as a team's request has: a request may find one lease open and wait on the
      // ledger for the other's, while requests of the global scope alone book into the first.
      // The global scope's slices hold a few requests each, the team's many: global leases come and
      // go while a team request waits on the ledger for its team lease.
      const g = scope(10_000_000)
      const team = scope(50_000_000, "team:a")
      const slicesScope = yield* Scope.make()
      const sliced = yield* BudgetSlices.make(base, { fraction: 0.01 }).pipe(Scope.extend(slicesScope))
      const rng = Random.make("fast path")
      let chargedGlobal = 0
      let chargedTeam = 0
      yield* Effect.forEach(Array.from({ length: 600 }, (_, i) => i), (i) =>
        Effect.gen(function*() {
          // Every request spends all it reserved: a lease booked past its size would show.
          const amount = yield* rng.nextIntBetween(1_000, 20_000)
          const ofTeam = i % 3 !== 0
          yield* Effect.sleep(Duration.millis(yield* rng.nextIntBetween(0, 300)))
          const r = yield* sliced.reserve(input(amount, ofTeam ? [g, team] : [g], i))
          yield* Effect.sleep(Duration.millis(yield* rng.nextIntBetween(0, 3)))
          yield* sliced.settle(r, Money.Nanos(amount))
          chargedGlobal += amount
          if (ofTeam) chargedTeam += amount
        }), { concurrency: "unbounded", discard: true })
      expect(yield* sliced.openReservations).toBe(0)
      expect((yield* sliced.status([g]))[0]).toMatchObject({ spent: chargedGlobal, reserved: 0 })
      expect((yield* sliced.status([team]))[0]).toMatchObject({ spent: chargedTeam, reserved: 0 })
      // Every lease goes back: none was charged more than it reserved, and the ledger holds exactly
      // what was spent.
      yield* Scope.close(slicesScope, Exit.void)
      expect(overbooked).toBe(0)
      expect(yield* memory.openReservations).toBe(0)
      expect((yield* memory.status([g]))[0]).toMatchObject({ spent: chargedGlobal, reserved: 0 })
      expect((yield* memory.status([team]))[0]).toMatchObject({ spent: chargedTeam, reserved: 0 })
    }))

  it.effect("an idle lease is returned, so another replica can use the last of the budget", () =>
    Effect.gen(function*() {
      const base = yield* BudgetLedger.makeMemory
      const g = scope(100_000)
      const a = yield* Effect.scoped(Effect.gen(function*() {
        const a = yield* BudgetSlices.make(base, { fraction: 1, idle_ms: 5_000 })
        const b = yield* BudgetSlices.make(base, { fraction: 1, idle_ms: 5_000 })
        yield* a.settle(yield* a.reserve(input(10_000, [g])), Money.Nanos(10_000))
        // A holds the whole budget as its lease: B is refused...
        const refused = yield* Effect.flip(b.reserve(input(50_000, [g])))
        expect(refused._tag).toBe("BudgetExceeded")
        // ...until A's lease has idled and gone back.
        yield* TestClock.adjust(Duration.seconds(6))
        const r = yield* b.reserve(input(50_000, [g]))
        yield* b.settle(r, Money.Nanos(50_000))
        return a
      }))
      void a
      expect((yield* base.status([g]))[0]).toMatchObject({ spent: 60_000, reserved: 0 })
      expect(yield* base.openReservations).toBe(0)
    }))

  it.scoped("slices shrink near the end: a request that fits what remains is accepted", () =>
    Effect.gen(function*() {
      const base = yield* BudgetLedger.makeMemory
      const g = scope(100_000)
      // Someone else has reserved 70 % of the budget directly.
      yield* base.reserve(input(70_000, [g]))
      const sliced = yield* BudgetSlices.make(base, { fraction: 0.5 })
      const r = yield* sliced.reserve(input(25_000, [g]))
      yield* sliced.settle(r, Money.Nanos(25_000))
      const refused = yield* Effect.flip(sliced.reserve(input(10_000, [g])))
      expect(refused._tag).toBe("BudgetExceeded")
    }))
})

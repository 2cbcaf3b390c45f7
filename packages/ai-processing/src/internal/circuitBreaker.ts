/**
 * Circuit breakers keyed by `backend/model`: closed → open after N consecutive counted failures,
 * open fails fast until a cool-down has passed, then one probe is let through (half open) whose
 * outcome closes or re-opens the breaker. Time comes from the Effect `Clock` (TestClock drives it).
 * The state is in memory, per replica.
 */
import { Effect, Either } from "effect"

/** A breaker's state. */
export type State = "closed" | "open" | "half_open"

/** One breaker, as reported by health and metrics. */
export interface Status {
  readonly backend: string
  readonly model: string
  readonly state: State
  readonly consecutive_failures: number
  /** When it last opened (ISO 8601), while it is open or half open. */
  readonly opened_at?: string
}

/** The right to make one call, from {@link CircuitBreakers.acquire}; give it back with `release`. */
export interface Permit {
  readonly key: string
  /** `true` for the single call let through by a half-open breaker. */
  readonly probe: boolean
  /** The breaker's generation when the permit was given: outcomes of calls from before it last opened are ignored. */
  readonly generation: number
}

/** Why a call was refused: the breaker is open (or half open with its probe in flight). */
export interface Rejection {
  readonly backend: string
  readonly model: string
  readonly state: State
  readonly opened_at: number
  /** When a probe will be let through (epoch ms). */
  readonly retry_at: number
}

/** How a call ended, as far as the breaker cares: `neutral` neither counts nor resets. */
export type Outcome = "success" | "failure" | "neutral"

/** A set of breakers. */
export interface CircuitBreakers {
  readonly enabled: boolean
  readonly acquire: (backend: string, model: string) => Effect.Effect<Either.Either<Permit, Rejection>>
  readonly release: (permit: Permit, outcome: Outcome) => Effect.Effect<void>
  /** The state of one breaker now (`closed` for one never used). */
  readonly state: (backend: string, model: string) => Effect.Effect<State>
  readonly status: Effect.Effect<ReadonlyArray<Status>>
}

interface Entry {
  readonly backend: string
  readonly model: string
  readonly state: State
  readonly failures: number
  readonly opened_at: number
  /** Half open with its probe in flight. */
  readonly probing: boolean
  readonly generation: number
}

const keyOf = (backend: string, model: string) => `${backend}/${model}`

/** Breakers that open after `failures` consecutive counted failures (0: never) and stay open `cooldown_ms`. */
export const make = (options: { readonly failures: number; readonly cooldown_ms: number }): Effect.Effect<CircuitBreakers> =>
  // The clock of the fiber that makes the breakers (a `TestClock` in tests) tells every call the time.
  Effect.clockWith((clock) => Effect.sync(() => {
    // Plain state: every read and change below is one synchronous step, so no other fiber can
    // come between a breaker's read and its update (an `Effect.Ref` cost a few operations more per call).
    let breakers = new Map<string, Entry>()
    const enabled = options.failures > 0
    const fresh = (backend: string, model: string): Entry => ({ backend, model, state: "closed", failures: 0, opened_at: 0, probing: false, generation: 0 })
    const put = (m: Map<string, Entry>, key: string, e: Entry) => new Map(m).set(key, e)

    /** Runs `f` on the breakers at the clock's time and keeps the map it returns. */
    const modify = <A>(f: (m: Map<string, Entry>, now: number) => readonly [A, Map<string, Entry>]): Effect.Effect<A> =>
      Effect.sync(() => {
        const [a, next] = f(breakers, clock.unsafeCurrentTimeMillis())
        breakers = next
        return a
      })

    const acquire = (backend: string, model: string) =>
      modify((m, now): readonly [Either.Either<Permit, Rejection>, Map<string, Entry>] => {
          const key = keyOf(backend, model)
          const e = m.get(key) ?? fresh(backend, model)
          const reject = Either.left({ backend, model, state: e.state, opened_at: e.opened_at, retry_at: e.opened_at + options.cooldown_ms })
          switch (e.state) {
            case "closed":
              return [Either.right({ key, probe: false, generation: e.generation }), m.has(key) ? m : put(m, key, e)]
            case "open":
              if (now < e.opened_at + options.cooldown_ms) return [reject, m]
              return [Either.right({ key, probe: true, generation: e.generation }), put(m, key, { ...e, state: "half_open", probing: true })]
            case "half_open":
              if (e.probing) return [reject, m]
              return [Either.right({ key, probe: true, generation: e.generation }), put(m, key, { ...e, probing: true })]
          }
        })

    /** The breakers once `permit`'s call ended with `outcome` at `now`. */
    const released = (m: Map<string, Entry>, permit: Permit, outcome: Outcome, now: number): Map<string, Entry> => {
      const e = m.get(permit.key)
      if (e === undefined || e.generation !== permit.generation) return m
      const open = (): Entry => ({ ...e, state: "open", failures: e.failures + 1, opened_at: now, probing: false, generation: e.generation + 1 })
      if (permit.probe) {
        if (e.state !== "half_open" || !e.probing) return m
        switch (outcome) {
          case "success": return put(m, permit.key, { ...e, state: "closed", failures: 0, probing: false })
          case "failure": return put(m, permit.key, open())
          // The probe told nothing about the backend's health (cancelled, refused by policy): let another through.
          case "neutral": return put(m, permit.key, { ...e, probing: false })
        }
      }
      // Calls admitted while closed only move a closed breaker: once open, the probe decides.
      if (e.state !== "closed") return m
      switch (outcome) {
        case "success": return e.failures === 0 ? m : put(m, permit.key, { ...e, failures: 0 })
        case "failure": return put(m, permit.key, e.failures + 1 >= options.failures ? open() : { ...e, failures: e.failures + 1 })
        case "neutral": return m
      }
    }
    const release = (permit: Permit, outcome: Outcome) =>
      modify((m, now): readonly [void, Map<string, Entry>] => [undefined, released(m, permit, outcome, now)])

    const state = (backend: string, model: string) =>
      Effect.sync(() => breakers.get(keyOf(backend, model))?.state ?? "closed")

    const status = Effect.sync(() =>
      [...breakers.values()].map((e): Status => ({
        backend: e.backend,
        model: e.model,
        state: e.state,
        consecutive_failures: e.failures,
        ...(e.state === "closed" ? {} : { opened_at: new Date(e.opened_at).toISOString() })
      })))

    const disabled: CircuitBreakers = {
      enabled: false,
      acquire: (backend, model) => Effect.succeed(Either.right({ key: keyOf(backend, model), probe: false, generation: 0 })),
      release: () => Effect.void,
      state: () => Effect.succeed("closed"),
      status: Effect.succeed([])
    }
    return enabled ? { enabled, acquire, release, state, status } : disabled
  }))

/**
 * A warning that a dependency outage would repeat on every request (a cache, a rate limiter that
 * is down) logged once per interval, with the count of the ones held back in between. The metrics
 * still count every occurrence; the log just does not drown.
 */
import { Clock, Effect } from "effect"

/** Logs `message` at most once per `intervalMs` per key; the next line says how many were held back. */
export const make = (intervalMs: number) => {
  const state = new Map<string, { last: number; held: number }>()
  return (key: string, message: string): Effect.Effect<void> =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => {
      const s = state.get(key)
      if (s !== undefined && now - s.last < intervalMs) {
        s.held++
        return Effect.void
      }
      const held = s?.held ?? 0
      state.set(key, { last: now, held: 0 })
      return Effect.logWarning(held === 0 ? message : `${message} (${held} more like it in the last ${Math.round((now - (s?.last ?? now)) / 1000)} s)`)
    })
}

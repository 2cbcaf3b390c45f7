/**
 * `Effect.timeoutFail` at a tenth of its cost, for the hot path (the provider call, the audit
 * insert): one child fiber and one timer, instead of a race of two forked fibers over the clock's
 * sleep (~0.1 ms of CPU per call, measured on the gateway's hot path). On time-out the call's fiber
 * is interrupted (which aborts its request) before the failure is returned; an interrupted caller
 * interrupts the call. The timer is the process's own, not the Effect `Clock` (a `TestClock` does
 * not move it).
 */
import { Effect, Fiber } from "effect"

export const timeoutFail = <A, E, E2, R>(self: Effect.Effect<A, E, R>, ms: number, onTimeout: () => E2): Effect.Effect<A, E | E2, R> =>
  Effect.uninterruptibleMask((restore) =>
    Effect.flatMap(Effect.fork(restore(self)), (fiber) =>
      Effect.async<A, E | E2>((resume) => {
        const timer = setTimeout(() => resume(Effect.zipRight(Fiber.interrupt(fiber), Effect.fail(onTimeout()))), ms)
        fiber.addObserver((exit) => {
          clearTimeout(timer)
          // What the call set in its fiber refs (log annotations…) is kept, as with a join.
          resume(Effect.zipRight(Fiber.inheritAll(fiber), exit))
        })
        return Effect.suspend(() => {
          clearTimeout(timer)
          return Fiber.interrupt(fiber)
        })
      })
    )
  )

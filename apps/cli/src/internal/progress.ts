/**
 * Progress of a long command (diagnose, migrate, several workflow files) on stderr, one
 * `[n/N] what` line a step, when the environment asks for it (stderr is a terminal); silent
 * otherwise, so what a pipe or a log file gets is the results only.
 */
import { Console, Effect, Ref } from "effect"
import { CliEnvironment } from "../CliEnvironment.js"

/** The progress of one command. */
export interface Progress {
  /** Counts a step done and prints `[n/N] label`. */
  readonly step: (label: string) => Effect.Effect<void>
  /** Prints `label` without counting (what is starting now, e.g. a slow phase). */
  readonly note: (label: string) => Effect.Effect<void>
}

/** A progress that prints nothing. */
export const silent: Progress = { step: () => Effect.void, note: () => Effect.void }

/** A progress of `total` steps; prints nothing unless `CliEnvironment.progress`. */
export const make = (total: number): Effect.Effect<Progress, never, CliEnvironment> =>
  Effect.gen(function*() {
    const { progress } = yield* CliEnvironment
    const done = yield* Ref.make(0)
    if (!progress) return silent
    const width = String(total).length
    const shown: Progress = {
      step: (label: string) => Effect.flatMap(Ref.updateAndGet(done, (n) => n + 1), (n) => Console.error(`[${String(n).padStart(width)}/${total}] ${label}`)),
      note: (label: string) => Console.error(`${" ".repeat(width * 2 + 3)} ${label}`)
    }
    return shown
  })

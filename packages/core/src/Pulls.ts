/**
 * Streams as the gateway passes them between its layers: opened in a scope, then pulled a chunk
 * at a time (the shape of `Stream.toPull`). Every `Stream` stage costs its own channel, with its
 * set-up and tear-down and a few Effect operations per chunk; a streamed answer crossed five
 * (provider, gateway #1, gateway #2, the handler, the event encoder), most of its CPU and ~1 ms
 * before its first event (docs/performance.md). Each layer now wraps the pull of the layer under
 * it with a plain function, and a `Stream` is made once, where one is asked for
 * ({@link toStream}).
 */
import { Chunk, Effect, FiberRef, Option, Scope, Stream, Tracer } from "effect"
import type { Exit } from "effect"
import * as Deadline from "./Deadline.js"

/** The next chunk of an opened stream; fails with `None` at its end, `Some(e)` on a failure. */
export type Pull<A, E> = Effect.Effect<Chunk.Chunk<A>, Option.Option<E>>

/** Opens a stream: its resources live in the scope, and its failures before the first pull fail the opening. */
export type Open<A, E, R = never> = Effect.Effect<Pull<A, E>, E, R | Scope.Scope>

/** The pull's end. */
export const end: Effect.Effect<never, Option.Option<never>> = Effect.fail(Option.none())

/** Fails the pull with `e`. */
export const fail = <E>(e: E): Effect.Effect<never, Option.Option<E>> => Effect.fail(Option.some(e))

/** A stream that gives `events` in one chunk and ends. */
export const fromIterable = <A>(events: Iterable<A>): Pull<A, never> => {
  let given = false
  return Effect.suspend(() => {
    if (given) return end
    given = true
    return Effect.succeed(Chunk.fromIterable(events))
  })
}

/** The `Stream` of an opening: one stage, the opening's scope closed when the stream ends. */
export const toStream = <A, E, E2, R>(open: Effect.Effect<Pull<A, E>, E2, R>): Stream.Stream<A, E | E2, Exclude<R, Scope.Scope>> =>
  Stream.unwrapScoped(Effect.map(open, (pull) => Stream.repeatEffectChunkOption(pull)))

/** Opens a `Stream` as a pull (for a provider that gives only the `Stream`). */
export const fromStream = <A, E>(stream: Stream.Stream<A, E>): Effect.Effect<Pull<A, E>, never, Scope.Scope> =>
  Stream.toPull(stream)

/**
 * Fails a pull that gives nothing within `ms` with `onTimeout()` (a stream whose upstream went
 * silent): one timed call per pull ({@link Deadline.timeoutFail}).
 */
export const timeoutFail = <A, E, E2>(pull: Pull<A, E>, ms: number, onTimeout: () => E2): Pull<A, E | E2> =>
  Deadline.timeoutFail(pull, ms, () => Option.some<E | E2>(onTimeout()))

/**
 * A span over an opened stream, from its opening to the close of its scope (the stream's end,
 * failure or cancellation), the parent of what the opening and every pull do. None is made while
 * tracing is off (as `Spans.span`).
 */
export const span = (name: string, options?: Tracer.SpanOptions) =>
<A, E, E2, R>(open: Effect.Effect<Pull<A, E>, E2, R>): Effect.Effect<Pull<A, E>, E2, R | Scope.Scope> =>
  Effect.withFiberRuntime<Pull<A, E>, E2, R | Scope.Scope>((fiber) =>
    fiber.getFiberRef(FiberRef.currentTracerEnabled)
      ? Effect.flatMap(
        Effect.makeSpanScoped(name, { ...options, captureStackTrace: false }),
        // The span is the parent of the opening's work, then of every pull's.
        (s) => Effect.map(Effect.withParentSpan(open, s), (pull): Pull<A, E> => Effect.withParentSpan(pull, s)) as Effect.Effect<Pull<A, E>, E2, R | Scope.Scope>
      )
      : open
  )

/**
 * Runs an effect under the span current where this is read (none while tracing is off). A
 * finalizer runs in the context of whoever closes the scope — here a layer above — so one that
 * annotates its layer's span (the audit of a stream's outcome) is wrapped in this.
 */
export const keepSpan: Effect.Effect<<A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>> = Effect.map(
  Effect.serviceOption(Tracer.ParentSpan),
  (parent) => <A, E, R>(self: Effect.Effect<A, E, R>) => (Option.isNone(parent) ? self : Effect.withParentSpan(self, parent.value))
)

/**
 * Adds a finalizer to the opening's scope, run as the scope closes, with the fiber refs of the
 * fiber that closes it. `Effect.addFinalizer` (and `Effect.acquireRelease`) would put back the
 * fiber refs of the moment it was added, at the price of two diffs and two patches of all of them
 * (the context included) as it runs, for each of a stream's three finalizers (docs/performance.md).
 * What a finalizer needs from its opening is captured instead: its span with {@link keepSpan},
 * its values in its closure.
 */
export const addFinalizer = (finalizer: (exit: Exit.Exit<unknown, unknown>) => Effect.Effect<unknown>): Effect.Effect<void, never, Scope.Scope> =>
  Effect.flatMap(Effect.scope, (scope) => Scope.addFinalizerExit(scope, finalizer))

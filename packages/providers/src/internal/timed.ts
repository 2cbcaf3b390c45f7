/**
 * A call that returns a promise, as an Effect timed with one plain timer: its signal is aborted
 * when the fiber is interrupted, or when `ms` runs out (the call then fails with `onTimeout()`).
 * Gateway #1 would otherwise time the call with a child fiber of its own (`Deadline.timeoutFail`),
 * whose fork and join of fiber refs cost more than the rest of the call's bookkeeping.
 */
import { EventEmitter } from "node:events"
import { Pulls } from "@tidyllm/core"
import { Chunk, Effect, Either } from "effect"

/**
 * What a call is aborted through: `AbortController`'s signal, or an {@link EmitterSignal} where the
 * client takes one (undici does).
 */
export interface Abortable<S> {
  readonly signal: S
  abort(reason: unknown): void
}

/**
 * An abort signal as an `EventEmitter`, which undici takes in place of an `AbortSignal` (it emits
 * `abort`, and has `aborted` and `reason`): an `AbortController` and its listener cost ~4 µs per
 * call on this machine, this ~0.1 (docs/performance.md).
 */
export class EmitterSignal extends EventEmitter implements Abortable<EmitterSignal> {
  aborted = false
  reason: unknown = undefined
  get signal(): EmitterSignal {
    return this
  }
  abort(reason: unknown): void {
    if (this.aborted) return
    this.aborted = true
    this.reason = reason
    this.emit("abort")
  }
}

/** An `AbortController` (whose `abort` takes a reason) for clients that need an `AbortSignal`. */
const abortController = (): Abortable<AbortSignal> => new AbortController()

/**
 * The reason an exchange is aborted with when its fiber or its stream's scope no longer wants it:
 * made once, since a bare `abort()` builds a `DOMException` with its stack every time.
 */
export const abandoned = new Error("the exchange was abandoned: its caller was interrupted or its stream closed")

/** Why an exchange is aborted on its timeout (the caller fails with its own time-out error). */
const expired = new Error("the exchange timed out")

/**
 * `run(signal)` as an Effect (see above): `signal` comes from `abortable()`, an `AbortController`
 * unless given (an {@link EmitterSignal} for undici).
 */
export function timedPromise<A, E, S = AbortSignal>(
  run: (signal: S) => Promise<A>,
  ms: number | undefined,
  onTimeout: () => E,
  onError: (error: unknown) => E,
  // Without one, S is AbortSignal: an `AbortController` it is.
  abortable: () => Abortable<S> = abortController as unknown as () => Abortable<S>
): Effect.Effect<A, E> {
  return Effect.async<A, E>((resume) => {
    const controller = abortable()
    let timer: ReturnType<typeof setTimeout> | undefined
    let settled = false
    const settle = (result: Effect.Effect<A, E>) => {
      if (settled) return
      settled = true
      if (timer !== undefined) clearTimeout(timer)
      resume(result)
    }
    if (ms !== undefined) {
      timer = setTimeout(() => {
        settle(Effect.fail(onTimeout()))
        controller.abort(expired)
      }, ms)
    }
    try {
      run(controller.signal).then((a) => settle(Effect.succeed(a)), (error: unknown) => settle(Effect.fail(onError(error))))
    } catch (error) {
      settle(Effect.fail(onError(error)))
    }
    return Effect.sync(() => {
      settled = true
      if (timer !== undefined) clearTimeout(timer)
      controller.abort(abandoned)
    })
  })
}

/** What a wait that outlasted the call's timeout rejects with (see {@link within}). */
export class TimedOut extends Error {}

/**
 * `promise`, or a rejection with {@link TimedOut} once `ms` has passed (one plain timer): for the
 * waits of an opened stream, whose request the scope's close aborts.
 */
export const within = <A>(promise: Promise<A>, ms: number | undefined): Promise<A> =>
  ms === undefined ? promise : new Promise<A>((resolve, reject) => {
    const timer = setTimeout(() => reject(new TimedOut()), ms)
    promise.then((a) => {
      clearTimeout(timer)
      resolve(a)
    }, (e: unknown) => {
      clearTimeout(timer)
      reject(e instanceof Error ? e : new Error(String(e)))
    })
  })

/**
 * A pull over an SDK's async iterator of upstream events (`next`; `undefined` when the response
 * has no body): one `next()` per pull, each wait timed with {@link within}. `map` turns an event,
 * or `undefined` for the iterator's end, into events (a fresh array: it becomes the chunk) or a
 * failure (an end without the upstream's last event is one); a pull whose event maps to nothing reads on. Every failure goes through
 * `finish` (the adapter's scrubbing); after a failure or the end, the pull ends.
 */
export const iteratorPull = <T, A, E>(options: {
  readonly next: (() => Promise<IteratorResult<T>>) | undefined
  readonly ms: number | undefined
  readonly failure: (error: unknown) => E
  readonly map: (event: T | undefined) => Either.Either<ReadonlyArray<A>, E>
  readonly finish: (error: E) => E
}): Pulls.Pull<A, E> => {
  const { failure, finish, map, ms, next } = options
  let over = false
  const failWith = (error: E): Pulls.Pull<A, E> => {
    over = true
    return Pulls.fail(finish(error))
  }
  const emit = (event: T | undefined): Pulls.Pull<A, E> => {
    const mapped = map(event)
    if (Either.isLeft(mapped)) return failWith(mapped.left)
    if (event === undefined) over = true
    return mapped.right.length > 0 ? Effect.succeed(Chunk.unsafeFromArray(mapped.right)) : over ? Pulls.end : pull
  }
  const pull: Pulls.Pull<A, E> = Effect.suspend(() =>
    over
      ? Pulls.end
      : next === undefined
      ? emit(undefined)
      : Effect.matchEffect(Effect.tryPromise({ try: () => within(next(), ms), catch: failure }), {
        onSuccess: (result) => emit(result.done === true ? undefined : result.value),
        onFailure: failWith
      })
  )
  return pull
}

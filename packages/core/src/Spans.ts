/**
 * Span attributes at a price the hot path can pay. `Effect.annotateCurrentSpan` finds its span by
 * failing with a `NoSuchElementException` — an `Error`, with its stack trace captured — whenever
 * there is no span to annotate, which is every time while tracing is off (the spans are then no-op
 * spans, which it skips). {@link annotate} looks the span up without an exception and annotates the
 * same span: the nearest one that propagates.
 */
import { Context, Effect, FiberRef, Option, Stream, Tracer } from "effect"
import type { Fiber } from "effect"

const propagating = (span: Tracer.AnySpan | undefined): Tracer.Span | undefined => {
  let s = span
  while (s !== undefined && s._tag === "Span" && Context.get(s.context, Tracer.DisablePropagation)) {
    s = Option.getOrUndefined(s.parent)
  }
  return s?._tag === "Span" ? s : undefined
}

/** The span that annotations (and log lines) of `fiber` go to: the nearest one that propagates, if any. */
export const spanOf = (fiber: Fiber.RuntimeFiber<unknown, unknown>): Tracer.Span | undefined =>
  propagating(Option.getOrUndefined(Context.getOption(fiber.getFiberRef(FiberRef.currentContext), Tracer.ParentSpan)))

/** Sets attributes on the current span (as `Effect.annotateCurrentSpan` does); nothing when there is none. */
export const annotate: {
  (key: string, value: unknown): Effect.Effect<void>
  (attributes: Readonly<Record<string, unknown>>): Effect.Effect<void>
} = (keyOrAttributes: string | Readonly<Record<string, unknown>>, value?: unknown) =>
  Effect.withFiberRuntime((fiber) => {
    const span = spanOf(fiber)
    if (span === undefined) return Effect.void
    if (typeof keyOrAttributes === "string") span.attribute(keyOrAttributes, value)
    else for (const key in keyOrAttributes) span.attribute(key, keyOrAttributes[key])
    return Effect.void
  })

/**
 * {@link annotate} with attributes made only when there is a span to annotate: with tracing off,
 * the attributes of an outcome are not built for every request only to be dropped.
 */
export const annotateWith = (attributes: () => Readonly<Record<string, unknown>>): Effect.Effect<void> =>
  annotateThen(attributes, () => Effect.void)

/**
 * {@link annotateWith}, then `then()`, in one Effect operation, where `Effect.zipRight(annotate(…),
 * next)` costs three for what is, while tracing is off, nothing (the gateway's hot path annotates
 * its spans several times per request).
 */
export const annotateThen = <A, E, R>(attributes: () => Readonly<Record<string, unknown>>, then: () => Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.withFiberRuntime((fiber) => {
    const span = spanOf(fiber)
    if (span !== undefined) {
      const made = attributes()
      for (const key in made) span.attribute(key, made[key])
    }
    return then()
  })

/**
 * `Effect.withSpan` that makes no span while tracing is off. Effect makes a no-op span then, which
 * still costs a captured stack trace, a copy of the context and an exit hook — on the gateway's hot
 * path, for every layer of a request. With tracing on, the span is made as `Effect.withSpan` makes
 * it, without the code location (it would point here).
 */
export const span = (name: string, options?: Tracer.SpanOptions) => <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  whenTracing(self, (traced) => Effect.withSpan(traced, name, { ...options, captureStackTrace: false }))

/**
 * `self` made into `traced(self)` only while the tracer is on (a span with what annotates it, say);
 * with tracing off, `self` as it is.
 */
export const whenTracing = <A, E, R>(self: Effect.Effect<A, E, R>, traced: (self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.withFiberRuntime((fiber) => (fiber.getFiberRef(FiberRef.currentTracerEnabled) ? traced(self) : self))

/** {@link span} for a stream: the span covers the stream's whole run, and is not made while tracing is off. */
export const streamSpan = (name: string, options?: Tracer.SpanOptions) => <A, E, R>(self: Stream.Stream<A, E, R>): Stream.Stream<A, E, R> =>
  Stream.unwrap(Effect.withFiberRuntime((fiber) =>
    Effect.succeed(fiber.getFiberRef(FiberRef.currentTracerEnabled) ? Stream.withSpan(self, name, { ...options, captureStackTrace: false }) : self)
  ))

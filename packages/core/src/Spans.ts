/**
 * Span attributes at a price the hot path can pay. `Effect.annotateCurrentSpan` finds its span by
 * failing with a `NoSuchElementException` — an `Error`, with its stack trace captured — whenever
 * there is no span to annotate, which is every time while tracing is off (the spans are then no-op
 * spans, which it skips). {@link annotate} looks the span up without an exception and annotates the
 * same span: the nearest one that propagates.
 */
import { Context, Effect, Option, Tracer } from "effect"

const propagating = (span: Tracer.AnySpan | undefined): Tracer.Span | undefined => {
  let s = span
  while (s !== undefined && s._tag === "Span" && Context.get(s.context, Tracer.DisablePropagation)) {
    s = Option.getOrUndefined(s.parent)
  }
  return s?._tag === "Span" ? s : undefined
}

/** Sets attributes on the current span (as `Effect.annotateCurrentSpan` does); nothing when there is none. */
export const annotate: {
  (key: string, value: unknown): Effect.Effect<void>
  (attributes: Readonly<Record<string, unknown>>): Effect.Effect<void>
} = (keyOrAttributes: string | Readonly<Record<string, unknown>>, value?: unknown) =>
  Effect.contextWith((context: Context.Context<never>) => {
    const span = propagating(Option.getOrUndefined(Context.getOption(context, Tracer.ParentSpan)))
    if (span === undefined) return
    if (typeof keyOrAttributes === "string") span.attribute(keyOrAttributes, value)
    else for (const key in keyOrAttributes) span.attribute(key, keyOrAttributes[key])
  })

import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Option, Stream, Tracer } from "effect"
import { Spans } from "@tidyllm/core"

/** A span's attributes as a plain object. */
const attributesOf = (span: Tracer.Span) => Object.fromEntries(span.attributes)

describe("Spans.annotate", () => {
  it.effect("sets attributes on the current span, one or several at once", () =>
    Effect.gen(function*() {
      const span = yield* Effect.gen(function*() {
        yield* Spans.annotate("a", 1)
        yield* Spans.annotate({ b: "two", c: true })
        return yield* Effect.currentSpan
      }).pipe(Effect.withSpan("outer"))
      expect(attributesOf(span)).toEqual({ a: 1, b: "two", c: true })
    }))

  it.effect("annotates the nearest span that propagates, as Effect.annotateCurrentSpan does", () =>
    Effect.gen(function*() {
      const [outer, inner] = yield* Effect.gen(function*() {
        const outer = yield* Effect.currentSpan
        const inner = yield* Effect.gen(function*() {
          yield* Spans.annotate("k", "v")
          yield* Effect.annotateCurrentSpan("effect", "too")
          return yield* Effect.serviceOption(Tracer.ParentSpan)
        }).pipe(Effect.withSpan("hidden", { context: Tracer.DisablePropagation.context(true) }))
        return [outer, inner] as const
      }).pipe(Effect.withSpan("outer"))
      expect(attributesOf(outer)).toEqual({ k: "v", effect: "too" })
      expect(Option.isSome(inner) && inner.value._tag === "Span" && inner.value.attributes.size).toBe(0)
    }))

  it.effect("does nothing, and fails nothing, with no span or with tracing off", () =>
    Effect.gen(function*() {
      yield* Spans.annotate("no", "span")
      const span = yield* Effect.gen(function*() {
        yield* Spans.annotate({ off: 1 })
        return yield* Effect.serviceOption(Tracer.ParentSpan)
      }).pipe(Effect.withSpan("off"), Effect.withTracerEnabled(false))
      expect(Option.isSome(span) && span.value._tag === "Span" && span.value.attributes.size).toBe(0)
    }))
})

describe("Spans.span and Spans.streamSpan", () => {
  const parentName = Effect.map(Effect.serviceOption(Tracer.ParentSpan), Option.map((s) => (s._tag === "Span" ? s.name : "external")))

  it.effect("make the span, with its options, while tracing is on", () =>
    Effect.gen(function*() {
      const span = yield* Effect.currentSpan.pipe(Spans.span("made", { attributes: { a: 1 } }))
      expect(span.name).toBe("made")
      expect(attributesOf(span)).toEqual({ a: 1 })
      const streamed = yield* Stream.fromEffect(parentName).pipe(Spans.streamSpan("streamed"), Stream.runCollect)
      expect(Chunk.toReadonlyArray(streamed)).toEqual([Option.some("streamed")])
    }))

  it.effect("make no span at all while tracing is off", () =>
    Effect.gen(function*() {
      expect(yield* parentName.pipe(Spans.span("skipped"))).toEqual(Option.none())
      const streamed = yield* Stream.fromEffect(parentName).pipe(Spans.streamSpan("skipped"), Stream.runCollect)
      expect(Chunk.toReadonlyArray(streamed)).toEqual([Option.none()])
      // Effect.withSpan, by contrast, still makes a (no-op) span.
      expect(yield* parentName.pipe(Effect.withSpan("noop"))).toEqual(Option.some("noop"))
    }).pipe(Effect.withTracerEnabled(false)))
})

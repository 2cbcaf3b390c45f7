/** Streams opened for pulling: the one-stage `Stream`, the timed pull, and the span of an opened stream. */
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Exit, Option, Scope, Stream, Tracer } from "effect"
import { Pulls } from "@tidyllm/core"

const nameOf = (span: Option.Option<Tracer.AnySpan>) => Option.getOrUndefined(Option.map(span, (s) => (s._tag === "Span" ? s.name : "external")))
const parentName = Effect.map(Effect.serviceOption(Tracer.ParentSpan), nameOf)

describe("Pulls", () => {
  it.effect("toStream gives every chunk, then closes the opening's scope; fromIterable gives one chunk and ends", () =>
    Effect.gen(function*() {
      const closed: Array<string> = []
      const open = Effect.as(Effect.addFinalizer(() => Effect.sync(() => closed.push("closed"))), Pulls.fromIterable([1, 2, 3]))
      expect(Chunk.toReadonlyArray(yield* Stream.runCollect(Pulls.toStream(open)))).toEqual([1, 2, 3])
      expect(closed).toEqual(["closed"])
      const pull = Pulls.fromIterable(["a"])
      expect(Chunk.toReadonlyArray(yield* pull)).toEqual(["a"])
      expect(yield* Effect.flip(pull)).toEqual(Option.none())
    }))

  it.scoped("fromStream opens a Stream; its failure comes as Some", () =>
    Effect.gen(function*() {
      const pull = yield* Pulls.fromStream(Stream.concat(Stream.make(1), Stream.fail("broken")))
      expect(Chunk.toReadonlyArray(yield* pull)).toEqual([1])
      expect(yield* Effect.flip(pull)).toEqual(Option.some("broken"))
    }))

  it.live("timeoutFail fails a pull that gives nothing in time, and lets a prompt one through", () =>
    Effect.gen(function*() {
      const silent: Pulls.Pull<number, never> = Effect.never
      expect(yield* Effect.flip(Pulls.timeoutFail(silent, 20, () => "silent"))).toEqual(Option.some("silent"))
      const prompt = Pulls.timeoutFail(Pulls.fromIterable([7]), 1_000, () => "silent")
      expect(Chunk.toReadonlyArray(yield* prompt)).toEqual([7])
    }))

  it.effect("span: the parent of the opening and of every pull, ended when the scope closes; none while tracing is off", () =>
    Effect.gen(function*() {
      const seen: Array<string | undefined> = []
      const open = Effect.gen(function*() {
        seen.push(yield* parentName)
        return Effect.flatMap(parentName, (name) => Effect.sync(() => seen.push(name)).pipe(Effect.as(Chunk.of(1))))
      })
      const scope = yield* Scope.make()
      const pull = yield* Pulls.span("opened")(open).pipe(Scope.extend(scope))
      yield* pull
      yield* Effect.withSpan(pull, "elsewhere")
      expect(seen).toEqual(["opened", "opened", "opened"])
      // The span is still open until the scope closes.
      const span = yield* Pulls.span("probe")(Effect.map(Effect.currentSpan, (s) => Effect.succeed(Chunk.of(s)))).pipe(Scope.extend(scope))
      const probe = Chunk.unsafeHead(yield* Effect.orDie(span))
      expect(probe.status._tag).toBe("Started")
      yield* Scope.close(scope, Exit.void)
      expect(probe.status._tag).toBe("Ended")

      const off: Array<string | undefined> = []
      yield* Effect.scoped(Pulls.span("not made")(Effect.map(parentName, (n) => {
        off.push(n)
        return Pulls.fromIterable([])
      }))).pipe(Effect.withTracerEnabled(false))
      expect(off).toEqual([undefined])
    }))

  it.effect("keepSpan runs an effect under the span current where it was read", () =>
    Effect.gen(function*() {
      const keep = yield* Effect.withSpan(Pulls.keepSpan, "kept")
      expect(yield* keep(parentName)).toBe("kept")
      expect(yield* Effect.withSpan(keep(parentName), "other")).toBe("kept")
      const none = yield* Pulls.keepSpan
      expect(yield* none(parentName)).toBeUndefined()
    }))
})

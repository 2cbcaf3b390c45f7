import { describe, expect, it } from "@effect/vitest"
import { Effect, List, Logger, TestClock } from "effect"
import { ThrottledLog } from "@tidyllm/core"

describe("ThrottledLog", () => {
  it.effect("one line per interval per key, then a count of what was held back", () =>
    Effect.gen(function*() {
      const lines: Array<string> = []
      const capture = Logger.make(({ message }) => { lines.push(List.isList(message) ? List.toArray(message).join(" ") : Array.isArray(message) ? message.join(" ") : String(message)) })
      const warn = ThrottledLog.make(10_000)
      const run = <A, E>(self: Effect.Effect<A, E>) => Effect.provide(self, Logger.replace(Logger.defaultLogger, capture))
      for (let i = 0; i < 5; i++) yield* run(warn("cache", "cache down"))
      yield* run(warn("limiter", "limiter down"))
      expect(lines).toEqual(["cache down", "limiter down"])
      yield* TestClock.adjust("11 seconds")
      yield* run(warn("cache", "cache down"))
      expect(lines[2]).toBe("cache down (4 more like it in the last 11 s)")
    }))
})

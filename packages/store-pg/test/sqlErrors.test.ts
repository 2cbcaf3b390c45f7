/**
 * Database failures as callers see them: `StoreUnavailable` says what failed (the SQLSTATE or the
 * socket's error code) and never the database's address, table or statement; those go to the
 * server log, once per 10 s and store.
 */
import { SqlError } from "@effect/sql/SqlError"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, List, Logger } from "effect"
import { orUnavailable } from "../src/internal/sqlErrors.js"

const refused = () =>
  new SqlError({
    message: "Failed to acquire connection",
    cause: Object.assign(new Error("connect ECONNREFUSED 10.20.30.40:6543"), { code: "ECONNREFUSED" })
  })
const missingTable = () =>
  new SqlError({
    message: "Failed to execute statement",
    cause: Object.assign(new Error(`relation "secret_things" does not exist`), { code: "42P01" })
  })
const silent = () => new SqlError({ message: "Failed to acquire connection", cause: new Error("timeout exceeded when trying to connect") })

const run = <A, E>(self: Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const lines: Array<string> = []
    const capture = Logger.make(({ message }) => {
      lines.push(List.isList(message) ? List.toArray(message).join(" ") : Array.isArray(message) ? message.join(" ") : String(message))
    })
    const exit = yield* Effect.exit(Effect.provide(self, Logger.replace(Logger.defaultLogger, capture)))
    return { exit, lines }
  })

const messageOf = <A, E>(exit: Exit.Exit<A, E>): string =>
  Exit.isFailure(exit) && exit.cause._tag === "Fail" ? String((exit.cause.error as { message: string }).message) : "(no failure)"

describe("orUnavailable", () => {
  it.effect("a refused connection: the error code for the caller, the address only in the log", () =>
    Effect.gen(function*() {
      const { exit, lines } = yield* run(orUnavailable("store_a")(Effect.fail(refused())))
      expect(messageOf(exit)).toBe("store_a is unavailable (ECONNREFUSED); the details are in the server log")
      expect(lines.join("\n")).toMatch(/store_a is unavailable: Failed to acquire connection: connect ECONNREFUSED 10\.20\.30\.40:6543/)
    }))

  it.effect("a failed statement: its SQLSTATE, not the table; a defect (a failed COMMIT) maps the same way", () =>
    Effect.gen(function*() {
      const failed = yield* run(orUnavailable("store_b")(Effect.fail(missingTable())))
      expect(messageOf(failed.exit)).toBe("store_b is unavailable (SQLSTATE 42P01); the details are in the server log")
      expect(failed.lines.join("\n")).toMatch(/secret_things/)
      const died = yield* run(orUnavailable("store_c")(Effect.die(missingTable())))
      expect(messageOf(died.exit)).not.toMatch(/secret_things|relation/)
      expect(messageOf(died.exit)).toMatch(/SQLSTATE 42P01/)
    }))

  it.effect("no code at all: a plain reason; an outage is logged once per interval, every request still fails", () =>
    Effect.gen(function*() {
      const { exit, lines } = yield* run(Effect.forEach([1, 2, 3], () => Effect.exit(orUnavailable("store_d")(Effect.fail(silent())))))
      expect(Exit.isSuccess(exit) ? exit.value.map(messageOf) : []).toEqual(Array(3).fill("store_d is unavailable (the database did not answer); the details are in the server log"))
      expect(lines.filter((l) => l.includes("store_d"))).toHaveLength(1)
    }))
})

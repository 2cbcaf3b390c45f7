/** `PoolProbe` on embedded PGlite: one session, in use while held, statements queued behind it counted as waiting. */
import * as SqlClient from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import { Context, Deferred, Effect, Exit, Fiber, Layer, Schedule, Scope } from "effect"
import { PgliteClient, PoolProbe } from "../src/index.js"

const until = (ok: (usage: ReadonlyArray<PoolProbe.PoolUsage>) => boolean) =>
  PoolProbe.usage.pipe(
    Effect.filterOrFail(ok, () => "not yet"),
    Effect.retry(Schedule.spaced("5 millis")),
    Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => new Error("the pool never reached the expected state") })
  )

describe("PoolProbe on PGlite", () => {
  it.live("reports one connection: idle, in use while a transaction holds it, statements behind it waiting; gone when the client closes", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const sql = Context.get(yield* Layer.buildWithScope(PgliteClient.layer(), scope), SqlClient.SqlClient)
      expect(yield* PoolProbe.usage).toEqual([{ engine: "pglite", max: 1, total: 1, in_use: 0, idle: 1, waiting: 0 }])

      const inside = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const tx = yield* Effect.fork(sql.withTransaction(Effect.zipRight(Deferred.succeed(inside, undefined), Deferred.await(release))))
      yield* Deferred.await(inside)
      const queued = yield* Effect.fork(sql`SELECT 1 AS one`)
      const gaveUp = yield* Effect.fork(sql`SELECT 2 AS two`)
      expect(yield* until((u) => u[0]?.waiting === 2)).toEqual([{ engine: "pglite", max: 1, total: 1, in_use: 1, idle: 0, waiting: 2 }])

      // A statement interrupted while it waits is no longer counted.
      yield* Fiber.interrupt(gaveUp)
      expect((yield* PoolProbe.usage)[0]?.waiting).toBe(1)

      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(tx)
      expect(yield* Fiber.join(queued)).toEqual([{ one: 1 }])
      expect(yield* until((u) => u[0]?.in_use === 0)).toEqual([{ engine: "pglite", max: 1, total: 1, in_use: 0, idle: 1, waiting: 0 }])

      yield* Scope.close(scope, Exit.void)
      expect(yield* PoolProbe.usage).toEqual([])
    }))
})

describe("PoolProbe.applicationNameFor", () => {
  it("names each pool apart, within the 63 bytes Postgres keeps, in printable ASCII", () => {
    const a = PoolProbe.applicationNameFor("tidyllm")
    const b = PoolProbe.applicationNameFor("tidyllm")
    expect(a).not.toBe(b)
    expect(a).toMatch(new RegExp(`^tidyllm/[0-9a-f]{8}/${process.pid}@`))
    const long = PoolProbe.applicationNameFor(`tidyllm-${"x".repeat(80)}é`, "0123abcd")
    expect(long.length).toBe(63)
    expect(PoolProbe.applicationNameFor("tidyllmé", "0123abcd")).toMatch(/^tidyllm\?\/0123abcd\//)
  })
})

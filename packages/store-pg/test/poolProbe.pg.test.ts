/**
 * `PoolProbe` on the Postgres server at `DATABASE_URL`: each pool counts its own sessions in
 * `pg_stat_activity` by the `application_name` it connects under, not another pool's.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Fiber, Layer, Schedule } from "effect"
import { PgClient, PoolProbe } from "../src/index.js"
import { freshDatabaseUrl } from "./harness.js"

describe("PoolProbe on Postgres", () => {
  it.scopedLive("counts this pool's connections: two busy statements are in use, the other pool's are not", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabaseUrl
      const a = Context.get(yield* Layer.build(PgClient.layer({ url, poolSize: 4 })), SqlClient.SqlClient)
      yield* Layer.build(PgClient.layer({ url, poolSize: 2 }))
      const of = (usage: ReadonlyArray<PoolProbe.PoolUsage>, max: number) => usage.find((u) => u.engine === "postgres" && u.max === max)

      const sleepers = yield* Effect.fork(Effect.all([a`SELECT pg_sleep(1.5)`, a`SELECT pg_sleep(1.5)`], { concurrency: 2 }))
      const busy = yield* PoolProbe.usage.pipe(
        Effect.filterOrFail((u) => of(u, 4)?.in_use === 2, () => "not yet"),
        Effect.retry(Schedule.spaced("20 millis")),
        Effect.timeoutFail({ duration: "5 seconds", onTimeout: () => new Error("the sleepers never showed as in use") })
      )
      const mine = of(busy, 4)
      // The two sleepers and the probe's own session (idle once it has its answer), at least.
      expect(mine?.total).toBeGreaterThanOrEqual(3)
      expect(mine?.idle).toBe((mine?.total ?? 0) - 2)
      expect(mine?.waiting).toBeUndefined()
      expect(of(busy, 2)).toMatchObject({ in_use: 0 })
      expect(of(busy, 2)?.total).toBeGreaterThanOrEqual(1)

      yield* Fiber.join(sleepers)
      expect(of(yield* PoolProbe.usage, 4)?.in_use).toBe(0)
    }), { timeout: 30_000 })
})

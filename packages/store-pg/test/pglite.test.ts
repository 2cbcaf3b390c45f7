/** The shared suites on embedded PGlite, and what is particular to the in-process client. */
import { mkdtempSync, readdirSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import * as SqlClient from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Layer } from "effect"
import { Migrator, PgliteClient } from "../src/index.js"
import { pglite } from "./harness.js"
import { allSuites } from "./suites.js"

allSuites("pglite", pglite)

describe("Migrator.defaultDirectory", () => {
  it("is the repository's sql/ directory, found from this package's sources", () => {
    expect(fileURLToPath(Migrator.defaultDirectory())).toBe(fileURLToPath(new URL("../../../sql/", import.meta.url)))
    expect(readdirSync(Migrator.defaultDirectory()).some((f) => f.startsWith("0001_"))).toBe(true)
  })
})

describe("PgliteClient", () => {
  it.live("serialises transactions: concurrent read-modify-write transactions lose no update", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* sql`CREATE TABLE counter (n int NOT NULL)`
      yield* sql`INSERT INTO counter VALUES (0)`
      yield* Effect.forEach(Array.from({ length: 20 }, (_, i) => i), () =>
        sql.withTransaction(Effect.gen(function*() {
          const [row] = yield* sql<{ readonly n: number }>`SELECT n FROM counter`
          // Give other fibers every chance to run a statement in the middle of this transaction.
          yield* Effect.sleep("1 millis")
          yield* sql`UPDATE counter SET n = ${(row?.n ?? 0) + 1}`
        })), { concurrency: "unbounded", discard: true })
      const [row] = yield* sql<{ readonly n: number }>`SELECT n FROM counter`
      expect(row?.n).toBe(20)
    }).pipe(Effect.provide(pglite)))

  it.live("a failed transaction rolls back, other fibers never see its writes, and the client stays usable", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* sql`CREATE TABLE t (x int)`
      const exit = yield* Effect.exit(sql.withTransaction(Effect.gen(function*() {
        yield* sql`INSERT INTO t VALUES (1)`
        return yield* Effect.fail("boom" as const)
      })))
      expect(Exit.isFailure(exit)).toBe(true)
      const failedStatement = yield* Effect.exit(sql.withTransaction(sql`INSERT INTO t VALUES ('not a number')`))
      expect(Exit.isFailure(failedStatement)).toBe(true)
      // Nested transactions use savepoints.
      yield* sql.withTransaction(Effect.gen(function*() {
        yield* sql`INSERT INTO t VALUES (2)`
        yield* Effect.exit(sql.withTransaction(Effect.zipRight(sql`INSERT INTO t VALUES (3)`, Effect.fail("inner"))))
      }))
      const rows = yield* sql<{ readonly x: number }>`SELECT x FROM t ORDER BY x`
      expect(rows).toEqual([{ x: 2 }])
    }).pipe(Effect.provide(pglite)))

  it.live("a data directory keeps its data: reopened, it needs no migration", () =>
    Effect.gen(function*() {
      const dir = yield* Effect.acquireRelease(
        Effect.sync(() => join(mkdtempSync(join(tmpdir(), "tidyllm-pglite-")), "data")),
        (d) => Effect.sync(() => rmSync(join(d, ".."), { recursive: true, force: true }))
      )
      const open = Layer.fresh(PgliteClient.layer({ dataDir: dir }))
      const first = yield* Effect.gen(function*() {
        const applied = yield* Migrator.run()
        const sql = yield* SqlClient.SqlClient
        yield* sql`INSERT INTO api_keys (id, hash, role) VALUES ('k1', 'h1', 'admin')`
        return applied
      }).pipe(Effect.provide(open))
      expect(first.length).toBeGreaterThan(0)
      const [second, keys] = yield* Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        return [yield* Migrator.run(), yield* sql<{ readonly id: string }>`SELECT id FROM api_keys`] as const
      }).pipe(Effect.provide(open))
      expect(second).toEqual([])
      expect(keys).toEqual([{ id: "k1" }])
    }).pipe(Effect.scoped), 60_000)
})

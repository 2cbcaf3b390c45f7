/**
 * An in-process `SqlClient` over embedded PGlite (Postgres compiled to WebAssembly): the zero-setup
 * default when no `DATABASE_URL` is configured.
 *
 * PGlite is one backend with one session, so every statement is serialised through a one-permit
 * semaphore; a transaction holds the permit from `BEGIN` to `COMMIT`/`ROLLBACK`, so other fibers
 * wait rather than run inside someone else's transaction. A transaction that waits for work done
 * by another fiber's query (rather than its own) would wait forever here: keep transactions short
 * and self-contained (they are, in every repository of this package).
 *
 * Values are parsed as node-postgres parses them (so repositories behave the same on both
 * engines): `numeric` and `int8` as strings, `timestamptz` as `Date`, `json(b)` parsed.
 * `date` columns differ between the two drivers: select them as `::text`.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import * as SqlClient from "@effect/sql/SqlClient"
import type { Connection } from "@effect/sql/SqlConnection"
import { SqlError } from "@effect/sql/SqlError"
import { makeCompiler } from "@effect/sql-pg/PgClient"
import { PGlite, types, type Results } from "@electric-sql/pglite"
import { Effect, Layer, Stream } from "effect"
import type { Scope } from "effect"
import * as PoolProbe from "./PoolProbe.js"

/** Where the embedded database lives. */
export interface Config {
  /** Data directory (created when missing); an in-memory database when absent. */
  readonly dataDir?: string | undefined
  /** Extra attributes of every query span. */
  readonly spanAttributes?: Record<string, unknown> | undefined
}

type Rows = ReadonlyArray<Record<string, unknown>>
type TransformRows = (<A extends object>(rows: ReadonlyArray<A>) => ReadonlyArray<A>) | undefined

const failed = (cause: unknown) => new SqlError({ cause, message: "Failed to execute statement" })

/** Builds the client; the database closes when the scope closes. */
export const make = (config: Config = {}): Effect.Effect<SqlClient.SqlClient, SqlError, Scope.Scope | Reactivity.Reactivity> =>
  Effect.gen(function*() {
    const permit = yield* Effect.makeSemaphore(1)
    const db = yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: async () => {
          // int8 as a string, as node-postgres returns it (a count past 2^53 stays exact). Options go
          // in one object: `new PGlite(undefined, options)` ignores the options.
          const parsers = { [types.INT8]: (value: string) => value }
          const pg = new PGlite(config.dataDir === undefined ? { parsers } : { dataDir: config.dataDir, parsers })
          await pg.waitReady
          return pg
        },
        catch: (cause) => new SqlError({ cause, message: `PgliteClient: failed to open ${config.dataDir ?? "an in-memory database"}` })
      }),
      // Waits for the statement (or transaction) in flight, then closes the files.
      (pg) => permit.withPermits(1)(Effect.tryPromise(() => pg.close())).pipe(Effect.ignore)
    )

    // A PGlite call cannot be cancelled: let it finish so the permit is only freed once the
    // backend is idle again.
    const call = <A>(f: () => Promise<A>): Effect.Effect<A, SqlError> =>
      Effect.uninterruptible(Effect.tryPromise({ try: f, catch: failed }))

    // One statement gives its rows; several (simple protocol) give one array of rows each, as node-postgres does.
    const query = (sql: string, params: ReadonlyArray<unknown>): Effect.Effect<ReadonlyArray<object>, SqlError> =>
      params.length === 0
        // Simple protocol: a migration file may hold many statements (as with node-postgres).
        ? call(() => db.exec(sql)).pipe(Effect.map((results) => results.length === 1 ? rowsOf(results[0]) : results.map(rowsOf)))
        : call(() => db.query<Record<string, unknown>>(sql, [...params])).pipe(Effect.map(rowsOf))

    const makeConnection = (guard: <A, E>(self: Effect.Effect<A, E>) => Effect.Effect<A, E>): Connection => {
      const execute = (sql: string, params: ReadonlyArray<unknown>, transformRows: TransformRows) =>
        guard(query(sql, params)).pipe(Effect.map((rows) => transformRows ? transformRows(rows) : rows))
      return {
        execute,
        executeUnprepared: execute,
        executeRaw: (sql, params) => guard(call(() => db.query(sql, [...params]))),
        executeValues: (sql, params) =>
          guard(call(() => db.query<Array<unknown>>(sql, [...params], { rowMode: "array" }))).pipe(Effect.map((r) => r.rows)),
        // Rows come back whole from PGlite anyway; stream them from memory.
        executeStream: (sql, params, transformRows) =>
          Stream.fromIterableEffect(Effect.map(execute(sql, params, transformRows), (rows) => rows as ReadonlyArray<unknown>))
      }
    }

    // Who holds the permit and who waits for it, for the pool metrics (PoolProbe).
    let holding = 0
    let waiting = 0
    // Interruptible while it waits, like `permit.take`; counted as holding once it has the permit.
    const take = Effect.uninterruptibleMask((restore) =>
      Effect.sync(() => waiting++).pipe(
        Effect.zipRight(restore(permit.take(1)).pipe(Effect.ensuring(Effect.sync(() => waiting--)))),
        Effect.zipRight(Effect.sync(() => holding++))
      ))
    const release = Effect.suspend(() => {
      holding--
      return permit.release(1)
    })
    yield* PoolProbe.register(Effect.sync((): PoolProbe.PoolUsage => ({ engine: "pglite", max: 1, total: 1, in_use: holding, idle: 1 - holding, waiting })))

    // Outside a transaction each statement takes the permit for its own duration…
    const shared = makeConnection((self) =>
      Effect.uninterruptibleMask((restore) => Effect.zipRight(restore(take), Effect.ensuring(restore(self), release))))
    // …inside one, the transaction holds it (taken here, released when the transaction's scope closes).
    const owned = makeConnection((self) => self)
    const transactionAcquirer: Connection.Acquirer = Effect.as(
      Effect.acquireRelease(take, () => release),
      owned
    )

    return yield* SqlClient.make({
      acquirer: Effect.succeed(shared),
      transactionAcquirer,
      compiler: makeCompiler(),
      spanAttributes: [
        ...Object.entries(config.spanAttributes ?? {}),
        ["db.system.name", "postgresql"],
        ["db.namespace", config.dataDir ?? "memory"]
      ]
    })
  })

const rowsOf = (result: Results<Record<string, unknown>> | undefined): Rows => result?.rows ?? []

/** The `SqlClient` over a PGlite database in `config.dataDir` (in memory when absent). */
export const layer = (config: Config = {}): Layer.Layer<SqlClient.SqlClient, SqlError> =>
  Layer.scoped(SqlClient.SqlClient, make(config)).pipe(Layer.provide(Reactivity.layer))

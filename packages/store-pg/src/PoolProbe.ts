/**
 * How busy the database connections of this process are, for the metrics (`/metrics` reads
 * {@link usage} when it is scraped).
 *
 * Every client this package builds registers a probe for the life of its scope:
 *
 * - Postgres ({@link postgres}): `@effect/sql-pg` 0.53 keeps its `pg.Pool` to itself (owning the
 *   pool through `PgClient.fromPool` would need `pg` as a direct dependency of this package), so
 *   the pool is observed from the server side. Each pool connects under an `application_name` of
 *   its own ({@link applicationNameFor}), and the probe counts that name's sessions in
 *   `pg_stat_activity`: all of them (`total`), those running a statement or holding a transaction
 *   (`in_use`), the rest (`idle`). Statements waiting for a free connection happen inside the
 *   pool and cannot be seen there: `waiting` is absent. The probe is one query on the pool it
 *   measures (its own session is counted as idle, as it is once the answer is read); on a pool
 *   with no free connection it waits like any other statement, so the scrape's timeout fires.
 * - PGlite ({@link PgliteClient}): one session behind one permit: `total` 1, `in_use` 1 while a
 *   statement or transaction holds the permit, `waiting` the fibers queued for it.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { Effect, GlobalValue } from "effect"
import type { Scope } from "effect"
import { hostname } from "node:os"
import { Ids } from "@tidyllm/core"

/** One pool's connections right now. */
export interface PoolUsage {
  readonly engine: "postgres" | "pglite"
  /** Most connections the pool opens. */
  readonly max: number
  /** Connections open now. */
  readonly total: number
  /** Connections running a statement or holding a transaction. */
  readonly in_use: number
  /** Open connections doing nothing. */
  readonly idle: number
  /** Statements waiting for a connection, where that can be seen (not on Postgres: see the module's note). */
  readonly waiting?: number | undefined
}

/** A registered probe (an object, so that two probes reading alike stay two entries). */
interface Registered {
  readonly read: Effect.Effect<PoolUsage, SqlError>
}

/** The pools open in this process, process-wide like Effect's metric registry. */
const openPools = GlobalValue.globalValue(Symbol.for("@tidyllm/store-pg/PoolProbe/openPools"), () => new Set<Registered>())

/** Registers `read` as the probe of a pool for the life of the scope. */
export const register = (read: Effect.Effect<PoolUsage, SqlError>): Effect.Effect<void, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const entry: Registered = { read }
      openPools.add(entry)
      return entry
    }),
    (entry) => Effect.sync(() => openPools.delete(entry))
  ).pipe(Effect.asVoid)

/** The usage of every pool open in this process (empty when none is, e.g. on the in-memory store). */
export const usage: Effect.Effect<ReadonlyArray<PoolUsage>, SqlError> = Effect.suspend(() =>
  Effect.forEach([...openPools], (p) => p.read, { concurrency: "unbounded" })
)

/** Postgres keeps the first 63 bytes of an `application_name` and turns other than printable ASCII into `?`. */
const MAX_APPLICATION_NAME = 63

/**
 * An `application_name` for one pool: `base`, then a random id and the process (`tidyllm/3f9c1a2e/4242@host`),
 * cut to what Postgres keeps. The id comes before the host name, so a cut never makes two pools alike.
 */
export const applicationNameFor = (base: string, id: string = Ids.randomUuid().slice(0, 8)): string =>
  `${base}/${id}/${process.pid}@${hostname()}`.replace(/[^\x20-\x7e]/g, "?").slice(0, MAX_APPLICATION_NAME)

/** Reads the sessions of `applicationName` in `pg_stat_activity` through `sql` (see the module's note). */
export const postgres = (applicationName: string, max: number): Effect.Effect<Effect.Effect<PoolUsage, SqlError>, never, SqlClient.SqlClient> =>
  Effect.map(SqlClient.SqlClient, (sql) =>
    sql<{ readonly total: number; readonly in_use: number }>`
      SELECT count(*)::int AS total,
             (count(*) FILTER (WHERE state IS DISTINCT FROM 'idle' AND pid <> pg_backend_pid()))::int AS in_use
      FROM pg_stat_activity
      WHERE application_name = ${applicationName}`.pipe(
      Effect.map(([row]): PoolUsage => {
        const total = row?.total ?? 0
        const in_use = row?.in_use ?? 0
        return { engine: "postgres", max, total, in_use, idle: Math.max(0, total - in_use) }
      }),
      Effect.withSpan("PoolProbe.postgres")
    ))

/**
 * Database connection pool gauges, refreshed when `/metrics` is scraped from what
 * `PoolProbe.usage` reads of the pools open in this process (see `@tidyllm/store-pg/PoolProbe`
 * for how: on Postgres from `pg_stat_activity`, per replica by its `application_name`; on PGlite
 * from the one session's permit).
 *
 * - `tidyllm_db_pool_connections{engine, state}`: `state` is `total` (open), `in_use` (running a
 *   statement or holding a transaction), `idle`, and — on PGlite only, where it can be seen —
 *   `waiting` (statements queued for a connection).
 * - `tidyllm_db_pool_max_connections{engine}`: the pool's size (`storage.pool_size`; 1 on PGlite).
 *
 * With several pools open (not the server's case) the figures of one engine are summed. With none
 * (the in-memory store) the gauges are not set.
 */
import type { SqlError } from "@effect/sql/SqlError"
import { Effect, Metric, MetricLabel } from "effect"
import { PoolProbe } from "@tidyllm/store-pg"

/** Connections of the database pool by state. */
export const connections = Metric.gauge("tidyllm_db_pool_connections", {
  description:
    "Database connections of this replica's pool by state: total (open), in_use (running a statement or holding a transaction), idle; waiting (statements queued for a connection) where the engine shows it (PGlite)."
})

/** The most connections the pool opens. */
export const maxConnections = Metric.gauge("tidyllm_db_pool_max_connections", {
  description: "The most connections this replica's database pool opens (storage.pool_size; 1 for embedded PGlite)."
})

/** Per engine: the usage of its pools, summed. */
const byEngine = (pools: ReadonlyArray<PoolProbe.PoolUsage>): ReadonlyMap<string, PoolProbe.PoolUsage> => {
  const out = new Map<string, PoolProbe.PoolUsage>()
  for (const p of pools) {
    const seen = out.get(p.engine)
    out.set(p.engine, seen === undefined ? p : {
      engine: p.engine,
      max: seen.max + p.max,
      total: seen.total + p.total,
      in_use: seen.in_use + p.in_use,
      idle: seen.idle + p.idle,
      waiting: seen.waiting === undefined && p.waiting === undefined ? undefined : (seen.waiting ?? 0) + (p.waiting ?? 0)
    })
  }
  return out
}

/** Sets the gauges from the given pools' usage. */
export const set = (pools: ReadonlyArray<PoolProbe.PoolUsage>): Effect.Effect<void> =>
  Effect.sync(() => {
    for (const [engine, u] of byEngine(pools)) {
      const e = MetricLabel.make("engine", engine)
      const states: ReadonlyArray<readonly [string, number | undefined]> = [["total", u.total], ["in_use", u.in_use], ["idle", u.idle], ["waiting", u.waiting]]
      for (const [state, value] of states) {
        if (value !== undefined) connections.unsafeUpdate(value, [e, MetricLabel.make("state", state)])
      }
      maxConnections.unsafeUpdate(u.max, [e])
    }
  })

/** Reads every open pool and sets the gauges (the `db_pool` collector of `/metrics`). */
export const refresh: Effect.Effect<void, SqlError> = Effect.flatMap(PoolProbe.usage, set)

/**
 * The `SqlClient` over a Postgres server (`DATABASE_URL`), through `@effect/sql-pg`'s pool.
 *
 * Column names stay snake_case (no name transforms), `numeric` and `int8` arrive as strings
 * (node-postgres' defaults; money is converted with `Money.fromUsdString`), `timestamptz` as `Date`.
 *
 * Each pool connects under an `application_name` of its own (`tidyllm/<id>/<pid>@<host>`), so
 * that `pg_stat_activity` tells replicas apart and {@link PoolProbe} can count this pool's
 * connections for the metrics.
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as PgClient from "@effect/sql-pg/PgClient"
import { Config as EffectConfig, Effect, Layer } from "effect"
import type { ConfigError, Duration, Redacted } from "effect"
import * as PoolProbe from "./PoolProbe.js"

/** How to reach the server. */
export interface Config {
  /** `postgres://user:password@host:port/database` (a secret: it may hold a password). */
  readonly url: Redacted.Redacted
  /** Connections in the pool (default 10). */
  readonly poolSize?: number | undefined
  /** How long to wait for a connection (default 5 s); a request then fails instead of hanging. */
  readonly connectTimeout?: Duration.DurationInput | undefined
  /**
   * The start of `application_name` as `pg_stat_activity` shows it (default `tidyllm`); a random
   * id, the process id and the host name follow it (see {@link PoolProbe.applicationNameFor}).
   */
  readonly applicationName?: string | undefined
}

/** The `SqlClient` (and `PgClient`, for LISTEN/NOTIFY) over a pool to `config.url`; its usage is reported to {@link PoolProbe}. */
export const layer = (config: Config): Layer.Layer<SqlClient.SqlClient | PgClient.PgClient, SqlError> =>
  // The name is drawn when the layer is built: a layer built twice opens two pools, each counted apart.
  Layer.unwrapEffect(Effect.sync(() => {
    const maxConnections = config.poolSize ?? 10
    const applicationName = PoolProbe.applicationNameFor(config.applicationName ?? "tidyllm")
    const client = PgClient.layer({
      url: config.url,
      maxConnections,
      connectTimeout: config.connectTimeout ?? "5 seconds",
      applicationName
    })
    const probe = Layer.scopedDiscard(Effect.flatMap(PoolProbe.postgres(applicationName, maxConnections), PoolProbe.register))
    return probe.pipe(Layer.provideMerge(client))
  }))

/** {@link layer}, its settings read with `Config` when the layer is built (e.g. `Config.redacted("DATABASE_URL")`). */
export const layerConfig = (
  config: EffectConfig.Config.Wrap<Config>
): Layer.Layer<SqlClient.SqlClient | PgClient.PgClient, SqlError | ConfigError.ConfigError> =>
  Layer.unwrapEffect(Effect.map(EffectConfig.unwrap(config), layer))

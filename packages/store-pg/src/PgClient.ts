/**
 * The `SqlClient` over a Postgres server (`DATABASE_URL`), through `@effect/sql-pg`'s pool.
 *
 * Column names stay snake_case (no name transforms), `numeric` and `int8` arrive as strings
 * (node-postgres' defaults; money is converted with `Money.fromUsdString`), `timestamptz` as `Date`.
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as PgClient from "@effect/sql-pg/PgClient"
import { Config as EffectConfig, Effect, Layer } from "effect"
import type { ConfigError, Duration, Redacted } from "effect"

/** How to reach the server. */
export interface Config {
  /** `postgres://user:password@host:port/database` (a secret: it may hold a password). */
  readonly url: Redacted.Redacted
  /** Connections in the pool (default 10). */
  readonly poolSize?: number | undefined
  /** How long to wait for a connection (default 5 s); a request then fails instead of hanging. */
  readonly connectTimeout?: Duration.DurationInput | undefined
  /** `application_name` as `pg_stat_activity` shows it (default `tidyllm`). */
  readonly applicationName?: string | undefined
}

/** The `SqlClient` (and `PgClient`, for LISTEN/NOTIFY) over a pool to `config.url`. */
export const layer = (config: Config): Layer.Layer<SqlClient.SqlClient | PgClient.PgClient, SqlError> =>
  PgClient.layer({
    url: config.url,
    maxConnections: config.poolSize ?? 10,
    connectTimeout: config.connectTimeout ?? "5 seconds",
    applicationName: config.applicationName ?? "tidyllm"
  })

/** {@link layer}, its settings read with `Config` when the layer is built (e.g. `Config.redacted("DATABASE_URL")`). */
export const layerConfig = (
  config: EffectConfig.Config.Wrap<Config>
): Layer.Layer<SqlClient.SqlClient | PgClient.PgClient, SqlError | ConfigError.ConfigError> =>
  Layer.unwrapEffect(Effect.map(EffectConfig.unwrap(config), layer))

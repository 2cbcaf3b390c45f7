/**
 * `@effect/experimental`'s `RateLimiter.RateLimiterStore` on SQL (`rate_limit_counters`, see
 * `sql/0004_keys_limits.sql`), so a limit holds across every replica that shares the database.
 *
 * `fixedWindow` has the semantics of the library's Redis store: a counter whose time to live grows
 * by `refillRate × tokens` with every take; an expired (or missing) counter restarts at `tokens`;
 * with a `limit`, a take that would bring the count above it changes nothing and reports the count
 * it would have reached with the current time to live. Each take is one statement, an upsert whose
 * row lock makes the check and the change one atomic step (a refused take may run it a second
 * time, see `take`; a refused take changes nothing, so that is safe); times are the database's
 * (`statement_timestamp()`), so replicas with skewed clocks still share one window.
 *
 * `tokenBucket` is not supported (the gateway limits with fixed windows): it fails with a
 * `RateLimitStoreError`.
 */
import { RateLimiter } from "@effect/experimental"
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { Duration, Effect, Layer } from "effect"
import { describe } from "./internal/sqlErrors.js"

/**
 * How often a take retries when its statement found no row to report (the counter appeared after
 * the statement's snapshot was taken, see `take`); one retry suffices in practice.
 */
const MAX_ATTEMPTS = 5

const storeError = (operation: string) => (cause: SqlError) =>
  new RateLimiter.RateLimitStoreError({ message: `rate limit store (postgres) failed to ${operation}: ${describe(cause)}`, cause })

interface Taken {
  readonly count: number
  readonly ttl: number
}

/** The store over the `SqlClient` in context. */
export const make: Effect.Effect<RateLimiter.RateLimiterStore["Type"], never, SqlClient.SqlClient> = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient

  /**
   * The upsert applies the take to the newest version of the row (waiting for a concurrent take's
   * lock), or, when the `limit` refuses it, only locks the row and returns nothing. The refused
   * branch then reads the row with `FOR UPDATE`: a plain read would see the statement's snapshot,
   * which can predate a concurrent take that committed while this one waited, and report a count
   * below the limit for a take that was refused. A locking read follows the row to its newest
   * version. It finds nothing only when the row was inserted after the snapshot (first takes on a
   * key racing each other): nothing was taken then, so the statement runs again.
   */
  const take = (key: string, tokens: number, refillMillis: number, limit: number | undefined) =>
    sql<Taken>`
      WITH upsert AS (
        INSERT INTO rate_limit_counters AS c (key, count, expires_at)
        VALUES (${key}::text, ${tokens}::bigint, statement_timestamp() + ${refillMillis * tokens}::float8 * interval '1 millisecond')
        ON CONFLICT (key) DO UPDATE SET
          count      = CASE WHEN c.expires_at <= statement_timestamp() THEN EXCLUDED.count ELSE c.count + EXCLUDED.count END,
          expires_at = CASE WHEN c.expires_at <= statement_timestamp() THEN EXCLUDED.expires_at
                            ELSE c.expires_at + ${refillMillis * tokens}::float8 * interval '1 millisecond' END
        WHERE c.expires_at <= statement_timestamp() OR ${limit ?? null}::bigint IS NULL
           OR c.count + EXCLUDED.count <= ${limit ?? null}::bigint
        RETURNING c.count, c.expires_at
      ),
      refused AS (
        SELECT c.count + ${tokens}::bigint AS count, c.expires_at FROM rate_limit_counters AS c
        WHERE c.key = ${key}::text AND NOT EXISTS (SELECT 1 FROM upsert)
        FOR UPDATE OF c
      )
      SELECT r.count::float8 AS count, (extract(epoch FROM r.expires_at - statement_timestamp()) * 1000)::float8 AS ttl
      FROM (SELECT count, expires_at FROM upsert UNION ALL SELECT count, expires_at FROM refused) AS r`

  const fixedWindow = (options: {
    readonly key: string
    readonly tokens: number
    readonly refillRate: Duration.Duration
    readonly limit: number | undefined
  }) => {
    const refillMillis = Duration.toMillis(options.refillRate)
    const attempt = (n: number): Effect.Effect<readonly [count: number, ttl: number], RateLimiter.RateLimitStoreError> =>
      take(options.key, options.tokens, refillMillis, options.limit).pipe(
        Effect.mapError(storeError("take from a fixed window")),
        Effect.flatMap(([row]) => {
          if (row !== undefined) return Effect.succeed([row.count, Math.max(0, row.ttl)] as const)
          if (n < MAX_ATTEMPTS) return attempt(n + 1)
          return Effect.fail(
            new RateLimiter.RateLimitStoreError({ message: `rate limit store (postgres) found no counter for ${options.key} after ${n} attempts` })
          )
        })
      )
    return attempt(1).pipe(Effect.withSpan("PgRateLimiterStore.fixedWindow", { attributes: { key: options.key } }))
  }

  return RateLimiter.RateLimiterStore.of({
    fixedWindow,
    tokenBucket: () =>
      Effect.fail(
        new RateLimiter.RateLimitStoreError({
          message: "the token-bucket algorithm is not supported by the Postgres rate limiter store; use algorithm: \"fixed-window\""
        })
      )
  })
})

/** The `RateLimiterStore` on the `SqlClient` in context. */
export const layer: Layer.Layer<RateLimiter.RateLimiterStore, never, SqlClient.SqlClient> = Layer.effect(RateLimiter.RateLimiterStore, make)

/** Deletes the counters whose window has passed (they mean nothing any more); returns how many. */
export const purgeExpired: Effect.Effect<number, RateLimiter.RateLimitStoreError, SqlClient.SqlClient> = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<{ readonly n: number }>`
    WITH gone AS (DELETE FROM rate_limit_counters WHERE expires_at <= statement_timestamp() RETURNING 1)
    SELECT count(*)::int AS n FROM gone`
  return rows[0]?.n ?? 0
}).pipe(Effect.mapError(storeError("purge expired counters")), Effect.withSpan("PgRateLimiterStore.purgeExpired"))

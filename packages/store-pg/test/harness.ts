/** Databases for the suites: a fresh one per build of the layer, on PGlite or on Postgres. */
import * as Reactivity from "@effect/experimental/Reactivity"
import type * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as SqlPg from "@effect/sql-pg/PgClient"
import { Ids, Money } from "@tidyllm/core"
import type { AuditLog } from "@tidyllm/corporate-llm"
import { Effect, Layer, Redacted } from "effect"
import type { Scope } from "effect"
import { Migrator, PgClient, PgliteClient } from "../src/index.js"

/** A layer that builds a new, empty database each time it is built, and drops it afterwards. */
export type FreshDatabase = Layer.Layer<SqlClient.SqlClient, SqlError>

/** An in-memory PGlite database. */
export const pglite: FreshDatabase = PgliteClient.layer()

/** The server the `*.pg.test.ts` suites use. */
export const databaseUrl = process.env["DATABASE_URL"] ?? "postgres://postgres@127.0.0.1:5432/postgres"

const withAdmin = <A>(f: (sql: SqlClient.SqlClient) => Effect.Effect<A, SqlError>): Effect.Effect<A, SqlError> =>
  Effect.scoped(Effect.flatMap(SqlPg.make({ url: Redacted.make(databaseUrl), maxConnections: 1 }), f)).pipe(
    Effect.provide(Reactivity.layer)
  )

/** Creates a database with a random name on the server; drops it when the scope closes. Returns its URL. */
export const freshDatabaseUrl: Effect.Effect<Redacted.Redacted, SqlError, Scope.Scope> = Effect.gen(function*() {
  const name = `tidyllm_test_${Ids.randomUuid().replaceAll("-", "").slice(0, 16)}`
  yield* Effect.acquireRelease(
    withAdmin((sql) => sql.unsafe(`CREATE DATABASE ${name}`)),
    () => withAdmin((sql) => sql.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).pipe(Effect.orDie)
  )
  const url = new URL(databaseUrl)
  url.pathname = `/${name}`
  return Redacted.make(url.toString())
})

/** A new database on the Postgres server at `DATABASE_URL`. */
export const postgres = (poolSize = 10): FreshDatabase =>
  Layer.unwrapScoped(Effect.map(freshDatabaseUrl, (url) => PgClient.layer({ url, poolSize })))

/** `fresh`, migrated. */
export const migrated = (fresh: FreshDatabase) => Layer.provideMerge(Migrator.layer(), fresh)

/** An audit row with sensible defaults. */
export const auditEntry = (over: Partial<AuditLog.AuditEntry> = {}): AuditLog.AuditEntry => ({
  id: Ids.randomUuid(),
  request_id: "req-1",
  created_at: new Date(),
  caller: "key:k1",
  user_id: "u1",
  team: "team-a",
  key_id: "k1",
  reason: "unit test",
  provider: "mock",
  model: "mock-model",
  status: "success",
  input_tokens: 10,
  output_tokens: 20,
  cost: Money.Nanos(123),
  latency_ms: 5,
  error_type: null,
  error_message: null,
  prompt: "hello",
  audit_level: "full",
  attempt: 1,
  ...over
})

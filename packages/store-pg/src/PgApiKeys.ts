/**
 * The `ApiKeys` port on SQL (`api_keys`, see `sql/0004_keys_limits.sql` for the limit columns).
 *
 * Only the hash of a secret is stored; the primary key and the unique index on `hash` refuse a
 * second key with the same id or secret, also across replicas. A revocation keeps the first
 * `revoked_at`. Dollar limits are numeric(20, 9) in the table and numbers in `Caller.KeyLimits`; a
 * NULL column is a limit the key does not have. The creation time comes from the Effect `Clock`.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { SqlError } from "@effect/sql/SqlError"
import * as SqlSchema from "@effect/sql/SqlSchema"
import { Caller, Errors } from "@tidyllm/core"
import { ApiKeys } from "@tidyllm/corporate-llm"
import { Clock, Effect, Layer, Option, Schema } from "effect"
import { describe, orUnavailable, sqlState } from "./internal/sqlErrors.js"

const STORE = "postgres"

const COLUMNS = `id, name, team, role, created_at, created_by, expires_at, revoked_at,
  budget_daily_usd::text AS budget_daily_usd, budget_monthly_usd::text AS budget_monthly_usd,
  requests_per_minute, tokens_per_minute`

const Row = Schema.Struct({
  id: Schema.String,
  name: Schema.NullOr(Schema.String),
  team: Schema.NullOr(Schema.String),
  role: Caller.Role,
  created_at: Schema.DateFromSelf,
  created_by: Schema.String,
  expires_at: Schema.NullOr(Schema.DateFromSelf),
  revoked_at: Schema.NullOr(Schema.DateFromSelf),
  budget_daily_usd: Schema.NullOr(Schema.NumberFromString),
  budget_monthly_usd: Schema.NullOr(Schema.NumberFromString),
  requests_per_minute: Schema.NullOr(Schema.Number),
  tokens_per_minute: Schema.NullOr(Schema.Number)
})
type Row = typeof Row.Type

/** A row as the port's `ApiKey`: NULL columns become absent fields (`exactOptionalPropertyTypes`). */
const toApiKey = (row: Row): ApiKeys.ApiKey => ({
  id: row.id,
  ...(row.name === null ? {} : { name: row.name }),
  ...(row.team === null ? {} : { team: row.team }),
  role: row.role,
  created_at: row.created_at,
  created_by: row.created_by,
  ...(row.expires_at === null ? {} : { expires_at: row.expires_at }),
  ...(row.revoked_at === null ? {} : { revoked_at: row.revoked_at }),
  limits: {
    ...(row.budget_daily_usd === null ? {} : { budget_daily_usd: row.budget_daily_usd }),
    ...(row.budget_monthly_usd === null ? {} : { budget_monthly_usd: row.budget_monthly_usd }),
    ...(row.requests_per_minute === null ? {} : { requests_per_minute: row.requests_per_minute }),
    ...(row.tokens_per_minute === null ? {} : { tokens_per_minute: row.tokens_per_minute })
  }
})

const Insert = Schema.Struct({
  id: Schema.String,
  hash: Schema.String,
  name: Schema.NullOr(Schema.String),
  team: Schema.NullOr(Schema.String),
  role: Caller.Role,
  created_at: Schema.DateFromSelf,
  created_by: Schema.String,
  expires_at: Schema.NullOr(Schema.DateFromSelf),
  budget_daily_usd: Schema.NullOr(Schema.Number),
  budget_monthly_usd: Schema.NullOr(Schema.Number),
  requests_per_minute: Schema.NullOr(Schema.Number),
  tokens_per_minute: Schema.NullOr(Schema.Number)
})

const ListFilter = Schema.Struct({ team: Schema.NullOr(Schema.String), include_revoked: Schema.Boolean })

const isSqlError = (e: unknown): e is SqlError => e instanceof SqlError

/** The store over the `SqlClient` in context. */
export const make: Effect.Effect<ApiKeys.Service, never, SqlClient.SqlClient> = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient

  const insert = SqlSchema.single({
    Request: Insert,
    Result: Row,
    // Dollars go in as text: numeric parses the decimal exactly, and NULL stays NULL.
    execute: (k) =>
      sql`INSERT INTO api_keys (id, hash, name, team, role, created_at, created_by, expires_at,
          budget_daily_usd, budget_monthly_usd, requests_per_minute, tokens_per_minute)
        VALUES (${k.id}, ${k.hash}, ${k.name}, ${k.team}, ${k.role}, ${k.created_at}, ${k.created_by}, ${k.expires_at},
          ${k.budget_daily_usd === null ? null : String(k.budget_daily_usd)}::numeric,
          ${k.budget_monthly_usd === null ? null : String(k.budget_monthly_usd)}::numeric,
          ${k.requests_per_minute}::integer, ${k.tokens_per_minute}::integer)
        RETURNING ${sql.literal(COLUMNS)}`
  })

  const byHash = SqlSchema.findOne({
    Request: Schema.String,
    Result: Row,
    execute: (hash) => sql`SELECT ${sql.literal(COLUMNS)} FROM api_keys WHERE hash = ${hash}`
  })

  const byId = SqlSchema.findOne({
    Request: Schema.String,
    Result: Row,
    execute: (id) => sql`SELECT ${sql.literal(COLUMNS)} FROM api_keys WHERE id = ${id}`
  })

  const listRows = SqlSchema.findAll({
    Request: ListFilter,
    Result: Row,
    execute: (f) => {
      const where = [
        ...(f.team === null ? [] : [sql`team = ${f.team}`]),
        ...(f.include_revoked ? [] : [sql`revoked_at IS NULL`])
      ]
      return sql`SELECT ${sql.literal(COLUMNS)} FROM api_keys WHERE ${sql.and(where)} ORDER BY created_at DESC, id DESC`
    }
  })

  const revokeRow = SqlSchema.findOne({
    Request: Schema.Struct({ id: Schema.String, at: Schema.DateFromSelf }),
    Result: Row,
    execute: ({ at, id }) =>
      sql`UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ${at}) WHERE id = ${id} RETURNING ${sql.literal(COLUMNS)}`
  })

  const countActive = (now: Date) =>
    sql<{ readonly n: number }>`SELECT count(*)::int AS n FROM api_keys
      WHERE (revoked_at IS NULL OR revoked_at > ${now}) AND (expires_at IS NULL OR expires_at > ${now})`.pipe(
      Effect.map((rows) => rows[0]?.n ?? 0)
    )

  /** The SQL failures of an insert that are the request's fault, as `InvalidRequest`. */
  const refused = (key: ApiKeys.NewKey, e: SqlError): Option.Option<Errors.InvalidRequest> => {
    const code = sqlState(e)
    // 23505: the primary key or the unique hash; which one is not said, as in the memory store.
    if (code === "23505") {
      return Option.some(new Errors.InvalidRequest({ message: `an API key with id ${key.id} or the same secret already exists`, field: "id" }))
    }
    // 22003 (dollars beyond numeric(20, 9), a rate beyond integer) or 23514 (a CHECK): the limits
    // are wrong and retrying cannot help, so this is no outage.
    if (code === "22003" || code === "23514") {
      return Option.some(new Errors.InvalidRequest({ message: `the limits of API key ${key.id} are out of range: ${describe(e)}`, field: "limits" }))
    }
    return Option.none()
  }

  const create = (key: ApiKeys.NewKey) =>
    Effect.gen(function*() {
      const created_at = new Date(yield* Clock.currentTimeMillis)
      const row = yield* insert({
        id: key.id,
        hash: key.hash,
        name: key.name ?? null,
        team: key.team ?? null,
        role: key.role,
        created_at,
        created_by: key.created_by,
        expires_at: key.expires_at ?? null,
        budget_daily_usd: key.limits.budget_daily_usd ?? null,
        budget_monthly_usd: key.limits.budget_monthly_usd ?? null,
        requests_per_minute: key.limits.requests_per_minute ?? null,
        tokens_per_minute: key.limits.tokens_per_minute ?? null
      })
      return toApiKey(row)
    }).pipe(
      Effect.catchIf(isSqlError, (e): Effect.Effect<never, SqlError | Errors.InvalidRequest> =>
        Option.match(refused(key, e), { onNone: () => Effect.fail(e), onSome: Effect.fail })),
      // The INSERT … RETURNING of a row it just wrote returns that row.
      Effect.catchTag("NoSuchElementException", (e) => Effect.die(e))
    )

  // Decoding our own rows fails only on a bug: that is a defect, not an outage.
  return ApiKeys.ApiKeys.of({
    create: (key) =>
      create(key).pipe(Effect.catchTag("ParseError", (e) => Effect.die(e)), orUnavailable(STORE), Effect.withSpan("PgApiKeys.create")),
    findByHash: (hash) =>
      byHash(hash).pipe(
        Effect.map(Option.map(toApiKey)),
        Effect.catchTag("ParseError", (e) => Effect.die(e)),
        orUnavailable(STORE),
        Effect.withSpan("PgApiKeys.findByHash")
      ),
    get: (id) =>
      byId(id).pipe(
        Effect.map(Option.map(toApiKey)),
        Effect.catchTag("ParseError", (e) => Effect.die(e)),
        orUnavailable(STORE),
        Effect.withSpan("PgApiKeys.get")
      ),
    list: (filter) =>
      listRows({ team: filter.team ?? null, include_revoked: filter.include_revoked === true }).pipe(
        Effect.map((rows) => rows.map(toApiKey)),
        Effect.catchTag("ParseError", (e) => Effect.die(e)),
        orUnavailable(STORE),
        Effect.withSpan("PgApiKeys.list")
      ),
    revoke: (id, at) =>
      revokeRow({ id, at }).pipe(
        Effect.map(Option.map(toApiKey)),
        Effect.catchTag("ParseError", (e) => Effect.die(e)),
        orUnavailable(STORE),
        Effect.withSpan("PgApiKeys.revoke")
      ),
    countActive: (now) => countActive(now).pipe(orUnavailable(STORE), Effect.withSpan("PgApiKeys.countActive"))
  })
})

/** The `ApiKeys` store on the `SqlClient` in context. */
export const layer: Layer.Layer<ApiKeys.ApiKeys, never, SqlClient.SqlClient> = Layer.effect(ApiKeys.ApiKeys, make)

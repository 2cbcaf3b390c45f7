/**
 * Applies the numbered plain SQL migrations of the repository's `sql/` directory, in order, each
 * exactly once, on Postgres and PGlite alike.
 *
 * Every file runs in its own transaction together with its row in `tidyllm_migrations` (name,
 * checksum, applied_at), under a transaction-scoped advisory lock, so replicas starting together
 * apply each file once and the others wait, then skip it. A file that changed after it was
 * applied fails the run: schema changes go into a new file. Files must not hold their own
 * `BEGIN`/`COMMIT`.
 */
import { createHash } from "node:crypto"
import { readdirSync } from "node:fs"
import { readdir, readFile } from "node:fs/promises"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import * as SqlClient from "@effect/sql/SqlClient"
import { SqlError } from "@effect/sql/SqlError"
import { Data, Duration, Effect, Layer, Option } from "effect"
import { describe } from "./internal/sqlErrors.js"

/** A migration could not be read or applied. */
export class MigrationError extends Data.TaggedError("MigrationError")<{
  readonly message: string
  /** The file at fault, when there is one. */
  readonly migration?: string | undefined
  readonly cause?: unknown
}> {}

/** One migration file. */
export interface Migration {
  /** File name, e.g. `0001_init.sql`; its numeric prefix orders the migrations. */
  readonly name: string
  /** SHA-256 (hex) of the file's bytes. */
  readonly checksum: string
  readonly sql: string
}

/** One row of `tidyllm_migrations`. */
export interface AppliedMigration {
  readonly name: string
  readonly checksum: string
  readonly applied_at: Date
}

const FILE = /^(\d+)_[A-Za-z0-9_.-]*\.sql$/

/**
 * The repository's `sql/` directory: the nearest `sql/` holding a migration file, looking up from
 * this module's directory (`packages/store-pg/src` or `dist`, or the server's bundle in
 * `apps/server/dist/bundle`); `../../../sql/` from this module when there is none, so that the
 * error names the place expected.
 */
export const defaultDirectory = (): URL => {
  for (let dir = new URL("./", import.meta.url); ; dir = new URL("../", dir)) {
    const candidate = new URL("sql/", dir)
    if (holdsMigrations(candidate)) return candidate
    if (new URL("../", dir).href === dir.href) return new URL("../../../sql/", import.meta.url)
  }
}

const holdsMigrations = (dir: URL): boolean => {
  try {
    return readdirSync(dir).some((name) => FILE.test(name))
  } catch {
    return false
  }
}

// Any constant shared by every replica; 0x74696479 spells "tidy".
const LOCK_KEY = 0x74696479

const toPath = (directory: string | URL): string => (typeof directory === "string" ? directory : fileURLToPath(directory))

/** Reads the migrations of `directory`, ordered by their numeric prefix. */
export const load = (directory: string | URL = defaultDirectory()): Effect.Effect<ReadonlyArray<Migration>, MigrationError> =>
  Effect.tryPromise({
    try: async () => {
      const dir = toPath(directory)
      const files = (await readdir(dir))
        .flatMap((name) => {
          const m = FILE.exec(name)
          return m === null ? [] : [{ name, order: Number(m[1]) }]
        })
        .sort((a, b) => a.order - b.order || a.name.localeCompare(b.name))
      return Promise.all(files.map(async ({ name }) => {
        const bytes = await readFile(join(dir, name))
        return { name, checksum: createHash("sha256").update(bytes).digest("hex"), sql: bytes.toString("utf8") }
      }))
    },
    catch: (cause) => new MigrationError({ message: `cannot read migrations from ${toPath(directory)}: ${String(cause)}`, cause })
  }).pipe(Effect.flatMap((migrations) => {
    const numbers = migrations.map((m) => Number(FILE.exec(m.name)?.[1]))
    const dup = migrations.find((_, i) => numbers.indexOf(numbers[i] ?? NaN) !== i)
    return dup === undefined
      ? Effect.succeed(migrations)
      : Effect.fail(new MigrationError({ message: `two migrations share the number of ${dup.name}`, migration: dup.name }))
  }))

const sqlFailure = (migration: string | undefined) => (cause: SqlError) =>
  new MigrationError({
    message: migration === undefined ? `migration bookkeeping failed: ${describe(cause)}` : `migration ${migration} failed: ${describe(cause)}`,
    migration,
    cause
  })

const ensureTable = (sql: SqlClient.SqlClient) =>
  sql`CREATE TABLE IF NOT EXISTS tidyllm_migrations (
    name       text        PRIMARY KEY,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
  )`

/** Progress callbacks of {@link run} (the CLI prints each migration as it is applied). */
export interface RunOptions {
  /** A migration is about to run (inside its transaction, once it is known to be pending). */
  readonly onApplying?: ((name: string) => Effect.Effect<void>) | undefined
  /** A migration was applied and committed, in `duration`. */
  readonly onApplied?: ((name: string, duration: Duration.Duration) => Effect.Effect<void>) | undefined
}

/**
 * Applies the migrations of `directory` not applied yet, in order; returns the names it applied
 * (empty when the schema was up to date).
 */
export const run = (
  directory: string | URL = defaultDirectory(),
  options: RunOptions = {}
): Effect.Effect<ReadonlyArray<string>, MigrationError, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const migrations = yield* load(directory)
    const applied: Array<string> = []
    for (const migration of migrations) {
      const [duration, done] = yield* sql.withTransaction(Effect.gen(function*() {
        // Held until this transaction ends: a second replica waits here, then sees the row below.
        yield* sql.unsafe(`SELECT pg_advisory_xact_lock(${LOCK_KEY})`)
        yield* ensureTable(sql)
        const rows = yield* sql<{ readonly checksum: string }>`SELECT checksum FROM tidyllm_migrations WHERE name = ${migration.name}`
        const previous = rows[0]
        if (previous !== undefined) {
          if (previous.checksum !== migration.checksum) {
            return yield* new MigrationError({
              message: `migration ${migration.name} changed after it was applied (checksum ${previous.checksum} in the database, ${migration.checksum} on disk); put schema changes in a new file`,
              migration: migration.name
            })
          }
          return false
        }
        if (options.onApplying !== undefined) yield* options.onApplying(migration.name)
        yield* sql.unsafe(migration.sql).pipe(Effect.mapError(sqlFailure(migration.name)))
        yield* sql`INSERT INTO tidyllm_migrations (name, checksum) VALUES (${migration.name}, ${migration.checksum})`
        return true
      })).pipe(
        Effect.timed,
        Effect.catchTag("SqlError", (e) => Effect.fail(sqlFailure(migration.name)(e))),
        // `withTransaction` turns a failed COMMIT into a defect; it is still this file's failure.
        Effect.catchSomeDefect((d) => d instanceof SqlError ? Option.some(Effect.fail(sqlFailure(migration.name)(d))) : Option.none())
      )
      if (done) {
        applied.push(migration.name)
        if (options.onApplied !== undefined) yield* options.onApplied(migration.name, duration)
      }
    }
    if (applied.length > 0) yield* Effect.logInfo(`applied migrations: ${applied.join(", ")}`)
    return applied
  }).pipe(Effect.withSpan("Migrator.run"))

/** What `tidyllm_migrations` records, oldest first (empty before the first run). */
export const applied: Effect.Effect<ReadonlyArray<AppliedMigration>, MigrationError, SqlClient.SqlClient> = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const exists = yield* sql<{ readonly t: string | null }>`SELECT to_regclass('tidyllm_migrations')::text AS t`
  if (exists[0]?.t == null) return []
  return yield* sql<AppliedMigration>`SELECT name, checksum, applied_at FROM tidyllm_migrations ORDER BY applied_at, name`
}).pipe(Effect.mapError(sqlFailure(undefined)))

/** Runs the migrations when the layer is built (the app's start-up), failing the start when one fails. */
export const layer = (directory: string | URL = defaultDirectory()): Layer.Layer<never, MigrationError, SqlClient.SqlClient> =>
  Layer.effectDiscard(run(directory))

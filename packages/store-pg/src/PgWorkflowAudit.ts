/**
 * The `WorkflowAudit` port on SQL (`workflow_audit_log`).
 *
 * One row per call, committed before `record` returns (the session manager answers only once its
 * row is durable). `ON CONFLICT (id) DO NOTHING` makes a retried row idempotent. A database that
 * does not answer within `maxWait` fails the call with `StoreUnavailable`: no operation without
 * its record.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import * as SqlSchema from "@effect/sql/SqlSchema"
import { Errors } from "@tidyllm/core"
import { WorkflowAudit } from "@tidyllm/session-manager"
import { Duration, Effect, Layer, Schema } from "effect"
import { orUnavailable } from "./internal/sqlErrors.js"

/** Tuning. */
export interface Options {
  /** How long `record` and `list` wait for the database before failing (default 5 s). */
  readonly maxWait?: Duration.DurationInput | undefined
}

const STORE = "postgres"
const MAX_LIST = 10_000

/** One row of `workflow_audit_log`, as selected. */
const EntryRow = Schema.Struct({
  id: Schema.String,
  created_at: Schema.DateFromSelf,
  operation: Schema.String,
  key: Schema.String,
  actor: Schema.String,
  reason: Schema.NullOr(Schema.String),
  // Both drivers hand `jsonb` over parsed.
  detail: Schema.Record({ key: Schema.String, value: Schema.Unknown })
})

const Query = Schema.Struct({
  limit: Schema.Number,
  key: Schema.optional(Schema.String),
  key_prefix: Schema.optional(Schema.String),
  operation: Schema.optional(Schema.String)
})

/** `detail` as JSON text; a value JSON cannot hold (a BigInt) is written as a string. */
const detailJson = (detail: WorkflowAudit.Detail): string =>
  JSON.stringify(detail, (_key, value: unknown) => typeof value === "bigint" ? value.toString() : value)

/** A `LIKE` pattern matching strings that start with `prefix` (`\` escapes). */
const likePrefix = (prefix: string) => `${prefix.replace(/[\\%_]/g, (c) => `\\${c}`)}%`

/** The workflow audit over the `SqlClient` in context. */
export const make = (options: Options = {}): Effect.Effect<WorkflowAudit.Service, never, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const maxWait = options.maxWait ?? Duration.seconds(5)
    const timedOut = (what: string) => () =>
      new Errors.StoreUnavailable({ message: `${STORE} is unavailable: workflow audit ${what} timed out`, store: STORE })

    const list = SqlSchema.findAll({
      Request: Query,
      Result: EntryRow,
      execute: (q) => {
        const where = [
          ...(q.key === undefined ? [] : [sql`key = ${q.key}`]),
          ...(q.key_prefix === undefined ? [] : [sql`key LIKE ${likePrefix(q.key_prefix)}`]),
          ...(q.operation === undefined ? [] : [sql`operation = ${q.operation}`])
        ]
        const limit = Math.max(0, Math.min(MAX_LIST, Math.floor(q.limit)))
        return sql`SELECT id, created_at, operation, key, actor, reason, detail
          FROM workflow_audit_log WHERE ${sql.and(where)} ORDER BY created_at DESC, id DESC LIMIT ${limit}`
      }
    })

    return WorkflowAudit.WorkflowAudit.of({
      record: (entry) =>
        sql`INSERT INTO workflow_audit_log (id, created_at, operation, key, actor, reason, detail)
          VALUES (${entry.id}, ${entry.created_at}, ${entry.operation}, ${entry.key}, ${entry.actor}, ${entry.reason},
            ${detailJson(entry.detail)}::jsonb)
          ON CONFLICT (id) DO NOTHING`.pipe(
          Effect.asVoid,
          orUnavailable(STORE),
          Effect.timeoutFail({ duration: maxWait, onTimeout: timedOut("write") }),
          Effect.withSpan("PgWorkflowAudit.record", { attributes: { "tidyllm.workflow_audit.operation": entry.operation } })
        ),
      list: (query) =>
        list(query).pipe(
          // Our own rows failing their schema is a bug, not an outage.
          Effect.catchTag("ParseError", (e) => Effect.die(e)),
          orUnavailable(STORE),
          Effect.timeoutFail({ duration: maxWait, onTimeout: timedOut("query") }),
          Effect.withSpan("PgWorkflowAudit.list")
        )
    })
  })

/** The `WorkflowAudit` on the `SqlClient` in context. */
export const layer = (options: Options = {}): Layer.Layer<WorkflowAudit.WorkflowAudit, never, SqlClient.SqlClient> =>
  Layer.effect(WorkflowAudit.WorkflowAudit, make(options))

/**
 * Retention of the audit tables: rows older than `corporate_llm.audit_retention_days` are purged
 * (by `tidyllm audit purge`), in batches of a few thousand rows per statement, each statement its
 * own short transaction, so a purge of millions of rows never holds the table or many row locks
 * for long and runs beside live traffic.
 *
 * Never purged are the rows under an open flow agreement. An agreement is open while its row in
 * `flow_agreements` says `proposed` (an overdue proposal counts until the expiry sweep marks it
 * `expired`: keeping too much is the safe side). Its records are:
 *
 * - the LLM audit rows (`llm_audit_log`) of the requests its records name: the request that
 *   proposed it (`proposal.request_id`; its rows include the model-assisted review of the
 *   optimisation) and the request of every workflow audit row of the agreement
 *   (`detail.agreement_id`: its proposal and every decision recorded so far);
 * - the workflow audit rows (`workflow_audit_log`) of the workflow it would change
 *   (`detail.workflow_id`: the version history the proposal builds on), of the agreement itself
 *   (`detail.agreement_id`), and of the requests above (`detail.request_id`).
 *
 * Once the agreement is decided (approved, rejected, expired), its rows age out like any other.
 * The protected ids are read once, when a purge starts: an agreement proposed during the purge
 * names only rows written now, which are far younger than any cut-off.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import type { Errors } from "@tidyllm/core"
import type { AuditLog } from "@tidyllm/corporate-llm"
import { Effect } from "effect"
import { orUnavailable } from "./internal/sqlErrors.js"

/** Rows deleted per statement. */
export const DEFAULT_BATCH_SIZE = 5_000

/** What to purge. */
export interface PurgeOptions {
  /** Rows created before this instant are purged. */
  readonly older_than: Date
  /** Count, delete nothing. */
  readonly dry_run?: boolean | undefined
  /** Rows per DELETE statement (default {@link DEFAULT_BATCH_SIZE}). */
  readonly batch_size?: number | undefined
}

/** What a purge of `workflow_audit_log` removed (or would remove). */
export interface WorkflowPurgeResult {
  readonly removed: number
  readonly kept_under_agreement: number
  /** `removed`, by operation. */
  readonly by_operation: Readonly<Record<string, number>>
}

/** What the open agreements protect. */
export interface Protected {
  readonly agreement_ids: ReadonlyArray<string>
  readonly workflow_ids: ReadonlyArray<string>
  readonly request_ids: ReadonlyArray<string>
}

const STORE = "postgres"

/** The ids the open agreements protect (see the module comment). */
export const protectedIds: Effect.Effect<Protected, SqlError, SqlClient.SqlClient> = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const open = yield* sql<{ readonly id: string; readonly workflow_id: string; readonly request_id: string | null }>`
    SELECT id::text AS id, workflow_id, proposal->>'request_id' AS request_id FROM flow_agreements WHERE status = 'proposed'`
  if (open.length === 0) return { agreement_ids: [], workflow_ids: [], request_ids: [] }
  const agreement_ids = open.map((a) => a.id)
  // One pass over the workflow trail per purge, not per batch.
  const recorded = yield* sql<{ readonly request_id: string }>`
    SELECT DISTINCT detail->>'request_id' AS request_id FROM workflow_audit_log
    WHERE detail->>'agreement_id' = ANY(${agreement_ids}::text[]) AND detail->>'request_id' IS NOT NULL`
  const request_ids = new Set([...open.flatMap((a) => a.request_id === null ? [] : [a.request_id]), ...recorded.map((r) => r.request_id)])
  return { agreement_ids, workflow_ids: [...new Set(open.map((a) => a.workflow_id))], request_ids: [...request_ids] }
})

interface Counted {
  readonly key: string
  readonly kept: boolean
  readonly n: number
}
interface Deleted {
  readonly key: string
  readonly n: number
}

const tally = (rows: ReadonlyArray<Deleted>, into: Record<string, number>): number => {
  let total = 0
  for (const r of rows) {
    into[r.key] = (into[r.key] ?? 0) + r.n
    total += r.n
  }
  return total
}

/**
 * The purge loop shared by both tables: counts on a dry run; else deletes batch after batch until
 * a batch comes back short, then counts what was kept.
 */
const purgeTable = (
  options: PurgeOptions,
  count: (cutoff: Date) => Effect.Effect<ReadonlyArray<Counted>, SqlError>,
  deleteBatch: (cutoff: Date, size: number) => Effect.Effect<ReadonlyArray<Deleted>, SqlError>
) =>
  Effect.gen(function*() {
    const size = Math.max(1, Math.floor(options.batch_size ?? DEFAULT_BATCH_SIZE))
    const by: Record<string, number> = {}
    let removed = 0
    if (options.dry_run === true) {
      removed = tally((yield* count(options.older_than)).filter((c) => !c.kept), by)
    } else {
      for (;;) {
        const deleted = tally(yield* deleteBatch(options.older_than, size), by)
        removed += deleted
        if (deleted < size) break
      }
    }
    const kept = (yield* count(options.older_than)).filter((c) => c.kept).reduce((s, c) => s + c.n, 0)
    return { removed, kept_under_agreement: kept, by }
  })

/** Purges `llm_audit_log` (the `AuditLog.purge` of the SQL adapter). */
export const purgeLlmAudit = (options: PurgeOptions): Effect.Effect<AuditLog.PurgeResult, Errors.StoreUnavailable, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const ids = (yield* protectedIds).request_ids
    const kept = ids.length === 0 ? sql.literal("false") : sql`request_id = ANY(${ids}::text[])`
    const result = yield* purgeTable(
      options,
      (cutoff) =>
        sql<Counted>`SELECT status AS key, ${kept} AS kept, count(*)::int AS n
          FROM llm_audit_log WHERE created_at < ${cutoff} GROUP BY 1, 2`,
      // Oldest first, along the (created_at DESC, id DESC) index scanned backwards: each batch reads
      // about its own rows (the column statistics of request_id keep the planner on that path);
      // then the rows go by primary key.
      (cutoff, size) =>
        sql<Deleted>`WITH gone AS (
            DELETE FROM llm_audit_log WHERE id = ANY(ARRAY(
              SELECT id FROM llm_audit_log WHERE created_at < ${cutoff} AND NOT ${kept} ORDER BY created_at LIMIT ${size}
            )) RETURNING status
          )
          SELECT status AS key, count(*)::int AS n FROM gone GROUP BY status`
    )
    return { removed: result.removed, kept_under_agreement: result.kept_under_agreement, by_status: result.by }
  }).pipe(orUnavailable(STORE), Effect.withSpan("AuditRetention.purgeLlmAudit", { attributes: { "tidyllm.audit.dry_run": options.dry_run === true } }))

/** Purges `workflow_audit_log` (the session manager's and the optimiser's trail). */
export const purgeWorkflowAudit = (options: PurgeOptions): Effect.Effect<WorkflowPurgeResult, Errors.StoreUnavailable, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const p = yield* protectedIds
    // A row without the key compares as NULL, which COALESCE turns into "not protected by it".
    const clauses = [
      ...(p.workflow_ids.length === 0 ? [] : [sql`COALESCE(detail->>'workflow_id' = ANY(${p.workflow_ids}::text[]), false)`]),
      ...(p.agreement_ids.length === 0 ? [] : [sql`COALESCE(detail->>'agreement_id' = ANY(${p.agreement_ids}::text[]), false)`]),
      ...(p.request_ids.length === 0 ? [] : [sql`COALESCE(detail->>'request_id' = ANY(${p.request_ids}::text[]), false)`])
    ]
    const kept = clauses.length === 0 ? sql.literal("false") : sql.or(clauses)
    const result = yield* purgeTable(
      options,
      (cutoff) =>
        sql<Counted>`SELECT operation AS key, ${kept} AS kept, count(*)::int AS n
          FROM workflow_audit_log WHERE created_at < ${cutoff} GROUP BY 1, 2`,
      // No ORDER BY: the planner cannot estimate the jsonb conditions and would sort every old row
      // per batch; unordered, any scan stops at the batch size.
      (cutoff, size) =>
        sql<Deleted>`WITH gone AS (
            DELETE FROM workflow_audit_log WHERE id = ANY(ARRAY(
              SELECT id FROM workflow_audit_log WHERE created_at < ${cutoff} AND NOT ${kept} LIMIT ${size}
            )) RETURNING operation
          )
          SELECT operation AS key, count(*)::int AS n FROM gone GROUP BY operation`
    )
    return { removed: result.removed, kept_under_agreement: result.kept_under_agreement, by_operation: result.by }
  }).pipe(orUnavailable(STORE), Effect.withSpan("AuditRetention.purgeWorkflowAudit", { attributes: { "tidyllm.audit.dry_run": options.dry_run === true } }))

/**
 * The port of the workflow audit trail (`workflow_audit_log`): one row per session-manager
 * operation and per flow-agreement transition, with who, when and why.
 */
import { Context, Effect, Layer, Ref } from "effect"
import type { Errors } from "@tidyllm/core"

/** A JSON object of operation details (version, outcome, byte count, digest…); never secrets. */
export type Detail = { readonly [key: string]: unknown }

/** One row of `workflow_audit_log`. */
export interface WorkflowAuditEntry {
  /** A UUID. */
  readonly id: string
  readonly created_at: Date
  /** What was done, e.g. `store_workflow`, `put_version`, `set_current`, `agreement_approved`. */
  readonly operation: string
  /** The object key (or workflow id) the operation concerned. */
  readonly key: string
  /** Who did it (see `Caller.describe`), `system` for the gateway itself. */
  readonly actor: string
  readonly reason: string | null
  readonly detail: Detail
}

/** Which rows to list. */
export interface WorkflowAuditQuery {
  readonly limit: number
  /** Only rows of this exact key. */
  readonly key?: string | undefined
  /** Only rows whose key starts with this. */
  readonly key_prefix?: string | undefined
  readonly operation?: string | undefined
}

/** The workflow audit service. */
export interface Service {
  /** Durably records one row; fails (and the operation with it) when the store is unreachable. */
  readonly record: (entry: WorkflowAuditEntry) => Effect.Effect<void, Errors.StoreUnavailable>
  /** Newest rows first. */
  readonly list: (query: WorkflowAuditQuery) => Effect.Effect<ReadonlyArray<WorkflowAuditEntry>, Errors.StoreUnavailable>
}

/** The workflow audit trail in use. */
export class WorkflowAudit extends Context.Tag("@tidyllm/session-manager/WorkflowAudit")<WorkflowAudit, Service>() {}

/** True when `entry` is one `query` asks for (the filters of `list`, without the limit). */
export const matches = (query: WorkflowAuditQuery) => (entry: WorkflowAuditEntry): boolean =>
  (query.key === undefined || entry.key === query.key) &&
  (query.key_prefix === undefined || entry.key.startsWith(query.key_prefix)) &&
  (query.operation === undefined || entry.operation === query.operation)

/** An in-memory workflow audit over `rows`, oldest first (exposed so tests can read every row). */
export const makeMemory = (rows: Ref.Ref<ReadonlyArray<WorkflowAuditEntry>>): Service => ({
  record: (entry) => Ref.update(rows, (all) => [...all, entry]),
  list: (query) =>
    Ref.get(rows).pipe(Effect.map((all) =>
      all.filter(matches(query)).reverse().slice(0, Math.max(0, Math.floor(query.limit)))
    ))
})

/** An in-memory workflow audit, for unit tests. */
export const layerMemory: Layer.Layer<WorkflowAudit> = Layer.effect(
  WorkflowAudit,
  Effect.map(Ref.make<ReadonlyArray<WorkflowAuditEntry>>([]), makeMemory)
)

/** The port of the compliance audit trail: one row per request, whatever its outcome. */
import { Context, Effect, Layer, Ref, Schema } from "effect"
import type { Errors, Money } from "@tidyllm/core"

/** How a request ended. */
export const AuditStatus = Schema.Literal(
  "success", "error", "rejected_budget", "rejected_policy", "cancelled", "cache_hit", "stream_error"
)
export type AuditStatus = typeof AuditStatus.Type

/** One row of `llm_audit_log`. */
export interface AuditEntry {
  readonly id: string
  readonly request_id: string
  readonly created_at: Date
  /** Printable identity (see `Caller.describe`). */
  readonly caller: string
  readonly user_id: string | null
  readonly team: string | null
  readonly key_id: string | null
  readonly reason: string
  readonly provider: string
  readonly model: string
  readonly status: AuditStatus
  readonly input_tokens: number
  readonly output_tokens: number
  readonly cost: Money.Nanos
  readonly latency_ms: number
  readonly error_type: string | null
  readonly error_message: string | null
  /** The prompt as `audit_level` allows: full text, redacted text, or a SHA-256 hex digest. */
  readonly prompt: string
  readonly audit_level: "full" | "redacted" | "hash"
  /** 1 for the first attempt of a request; higher when gateway #2 retried or failed over. */
  readonly attempt: number
}

/** Which rows to list. */
export interface AuditQuery {
  readonly limit: number
  readonly request_id?: string | undefined
  readonly status?: AuditStatus | undefined
}

/** The audit log service. */
export interface Service {
  /** Durably records one row; fails (and the request with it) when the store is unreachable. */
  readonly write: (entry: AuditEntry) => Effect.Effect<void, Errors.StoreUnavailable>
  /** Newest rows first. */
  readonly list: (query: AuditQuery) => Effect.Effect<ReadonlyArray<AuditEntry>, Errors.StoreUnavailable>
}

/** The audit log in use. */
export class AuditLog extends Context.Tag("@tidyllm/corporate-llm/AuditLog")<AuditLog, Service>() {}

/** An in-memory audit log over the given ref (exposed so tests can read every row). */
export const makeMemory = (rows: Ref.Ref<ReadonlyArray<AuditEntry>>): Service => ({
  write: (entry) => Ref.update(rows, (all) => [...all, entry]),
  list: (q) =>
    Ref.get(rows).pipe(Effect.map((all) =>
      all
        .filter((r) => (q.request_id === undefined || r.request_id === q.request_id) && (q.status === undefined || r.status === q.status))
        .slice()
        .reverse()
        .slice(0, q.limit)
    ))
})

/** An in-memory audit log, for unit tests. */
export const layerMemory = Layer.effect(AuditLog, Effect.map(Ref.make<ReadonlyArray<AuditEntry>>([]), makeMemory))

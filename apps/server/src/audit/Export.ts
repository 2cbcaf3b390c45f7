/**
 * Audit rows as the API and the CLI render them: JSON objects (money as a decimal string) and
 * CSV lines (RFC 4180: CRLF line ends, fields with a comma, quote or line break quoted, quotes
 * doubled), with cells a spreadsheet would read as a formula defused by a leading `'`.
 */
import { Money } from "@tidyllm/core"
import type { AuditLog } from "@tidyllm/corporate-llm"

/** One audit row as JSON. */
export interface Row {
  readonly id: string
  readonly created_at: string
  readonly request_id: string
  readonly caller: string
  readonly user_id: string | null
  readonly team: string | null
  readonly key_id: string | null
  readonly reason: string
  readonly provider: string
  readonly model: string
  readonly status: AuditLog.AuditStatus
  readonly attempt: number
  readonly input_tokens: number
  readonly output_tokens: number
  readonly cost_usd: string
  readonly latency_ms: number
  readonly error_type: string | null
  readonly error_message: string | null
  readonly audit_level: "full" | "redacted" | "hash"
  readonly prompt: string
}

/** An audit entry as JSON. */
export const toRow = (e: AuditLog.AuditEntry): Row => ({
  id: e.id,
  created_at: e.created_at.toISOString(),
  request_id: e.request_id,
  caller: e.caller,
  user_id: e.user_id,
  team: e.team,
  key_id: e.key_id,
  reason: e.reason,
  provider: e.provider,
  model: e.model,
  status: e.status,
  attempt: e.attempt,
  input_tokens: e.input_tokens,
  output_tokens: e.output_tokens,
  cost_usd: Money.toUsdString(e.cost),
  latency_ms: e.latency_ms,
  error_type: e.error_type,
  error_message: e.error_message,
  audit_level: e.audit_level,
  prompt: e.prompt
})

/** The CSV columns, in order (the JSON fields). */
export const columns: ReadonlyArray<keyof Row> = [
  "id", "created_at", "request_id", "caller", "user_id", "team", "key_id", "reason", "provider", "model", "status", "attempt",
  "input_tokens", "output_tokens", "cost_usd", "latency_ms", "error_type", "error_message", "audit_level", "prompt"
]

const CRLF = "\r\n"
// What Excel, LibreOffice and Sheets start a formula (or DDE call) with.
const FORMULA = /^[=+\-@\t\r]/
const NEEDS_QUOTES = /[",\r\n]/

/** One CSV field: null as empty, a formula-like text prefixed with `'`, quoted when it must be. */
export const cell = (value: string | number | null): string => {
  if (value === null) return ""
  const text = typeof value === "number" ? String(value) : FORMULA.test(value) ? `'${value}` : value
  return NEEDS_QUOTES.test(text) ? `"${text.replaceAll("\"", "\"\"")}"` : text
}

/** The header line (with its CRLF). */
export const csvHeader: string = columns.join(",") + CRLF

/** One entry as a CSV line (with its CRLF). */
export const csvLine = (e: AuditLog.AuditEntry): string => {
  const row = toRow(e)
  return columns.map((c) => cell(row[c])).join(",") + CRLF
}

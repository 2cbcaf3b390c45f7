/** The audit contract: `GET /v1/audit`, the LLM audit trail filtered and paged, as JSON or a CSV export. */
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as OpenApi from "@effect/platform/OpenApi"
import { Schema } from "effect"
import { AuditLog } from "@tidyllm/corporate-llm"
import { ErrorBody } from "../http/Errors.js"
import { DEFAULT_LIMIT, EXPORT_MAX_ROWS } from "./Params.js"

/** One row of `llm_audit_log` as JSON. */
export const AuditRow = Schema.Struct({
  id: Schema.String,
  created_at: Schema.String.annotations({ description: "ISO 8601, UTC" }),
  request_id: Schema.String,
  caller: Schema.String,
  user_id: Schema.NullOr(Schema.String),
  team: Schema.NullOr(Schema.String),
  key_id: Schema.NullOr(Schema.String),
  reason: Schema.String,
  provider: Schema.String,
  model: Schema.String,
  status: AuditLog.AuditStatus,
  attempt: Schema.Int,
  input_tokens: Schema.Int,
  output_tokens: Schema.Int,
  cost_usd: Schema.String.annotations({ description: "US dollars, exact to the nano-dollar" }),
  latency_ms: Schema.Number,
  error_type: Schema.NullOr(Schema.String),
  error_message: Schema.NullOr(Schema.String),
  audit_level: Schema.Literal("full", "redacted", "hash"),
  prompt: Schema.String.annotations({ description: "as audit_level kept it: full, redacted, or a SHA-256 hex digest" })
}).annotations({ identifier: "AuditRow" })

/** A page of rows, newest first. */
export const AuditPage = Schema.Struct({
  data: Schema.Array(AuditRow),
  next_cursor: Schema.NullOr(Schema.String).annotations({ description: "pass as `cursor` for the next page; null on the last page" })
}).annotations({ identifier: "AuditPage" })

// Repeatable at the HTTP level (a repeated `status` adds statuses; any other repeated parameter
// is refused by the handler, naming it, rather than by the generic decoder, which would not).
const param = (description: string) => Schema.optional(Schema.Union(Schema.String, Schema.Array(Schema.String)).annotations({ description }))

/**
 * The query parameters, all text here: the handler parses them itself so that a bad one is a 400
 * naming it (see `Params.ts`).
 */
export const AuditParams = Schema.Struct({
  from: param("rows created at or after: ISO 8601 date (midnight UTC) or date-time with a zone"),
  to: param("rows created before (exclusive): ISO 8601 date or date-time with a zone"),
  team: param("team, exactly"),
  key_id: param("API key id, exactly"),
  model: param("model id as audited, exactly"),
  provider: param("provider, exactly"),
  status: param(`comma-separated statuses: ${AuditLog.AuditStatus.literals.join(", ")}`),
  reason: param("text the reason contains, case-insensitive"),
  request_id: param("request id, exactly"),
  limit: param(`JSON: rows per page, 1-${AuditLog.MAX_PAGE} (default ${DEFAULT_LIMIT}); CSV: rows of the export, 1-${EXPORT_MAX_ROWS} (default ${EXPORT_MAX_ROWS})`),
  cursor: param("the next_cursor of the previous page"),
  format: param("json (default) or csv")
})

/** The audit group. */
export class AuditApi extends HttpApiGroup.make("audit")
  .add(
    HttpApiEndpoint.get("query", "/v1/audit")
      .setUrlParams(AuditParams)
      .addSuccess(AuditPage)
      .addError(ErrorBody, { status: 400 })
      .addError(ErrorBody, { status: 503 })
      .annotate(OpenApi.Summary, "The LLM audit trail: filter, page, export")
      .annotate(
        OpenApi.Description,
        "Rows of the LLM audit log, newest first (by created_at, then id), filtered by time range, team, key, model, provider, " +
          "statuses, reason text and request id. JSON pages carry `next_cursor` (opaque; keyset pagination, stable while rows " +
          `are written). \`format=csv\` streams an RFC 4180 export with a header row (text/csv; cells that start with = + - @ are ` +
          `prefixed with ') of at most ${EXPORT_MAX_ROWS} rows; the header x-tidyllm-export-max-rows says so, and an export of ` +
          "exactly that many rows may have been cut: narrow the time range. A bad parameter is a 400 whose `error.param` names it. " +
          "Access: the admin and compliance roles; a key bound to a team reads that team's rows only (asking for another team is a 403)."
      )
  )
  .annotate(OpenApi.Title, "Audit") {}

/** The key-management contract (admin role): create, list, show and revoke API keys. */
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as OpenApi from "@effect/platform/OpenApi"
import { Schema } from "effect"
import { Caller } from "@tidyllm/core"
import { ErrorBody } from "../http/Errors.js"

const Usd = Schema.Number.pipe(Schema.finite(), Schema.nonNegative())
const Label = Schema.String.pipe(Schema.minLength(1), Schema.maxLength(128), Schema.pattern(/^[\x20-\x7E]+$/))
/** Team names go into budget scopes, storage keys and log lines: a conservative alphabet. */
export const TeamName = Caller.TeamName

/** `POST /v1/keys`. */
export const CreateKeyBody = Schema.Struct({
  role: Caller.Role,
  team: Schema.optional(TeamName),
  name: Schema.optional(Label),
  /** When the key stops working: an ISO 8601 date-time with a zone. */
  expires_at: Schema.optional(Schema.String),
  /** Or: days from now. */
  expires_in_days: Schema.optional(Schema.Number.pipe(Schema.finite(), Schema.positive(), Schema.lessThanOrEqualTo(3650))),
  budget_daily_usd: Schema.optional(Usd),
  budget_monthly_usd: Schema.optional(Usd),
  requests_per_minute: Schema.optional(Schema.Int.pipe(Schema.positive())),
  tokens_per_minute: Schema.optional(Schema.Int.pipe(Schema.positive()))
}).annotations({ identifier: "CreateKey" })

/** The limits a creation request asks for (each one given, and only those). */
export const limitsOf = (body: typeof CreateKeyBody.Type): Caller.KeyLimits => ({
  ...(body.budget_daily_usd === undefined ? {} : { budget_daily_usd: body.budget_daily_usd }),
  ...(body.budget_monthly_usd === undefined ? {} : { budget_monthly_usd: body.budget_monthly_usd }),
  ...(body.requests_per_minute === undefined ? {} : { requests_per_minute: body.requests_per_minute }),
  ...(body.tokens_per_minute === undefined ? {} : { tokens_per_minute: body.tokens_per_minute })
})

/** A key as the API shows it (never its secret, never its hash). */
export const KeyView = Schema.Struct({
  id: Schema.String,
  name: Schema.NullOr(Schema.String),
  team: Schema.NullOr(Schema.String),
  role: Caller.Role,
  status: Schema.Literal("active", "revoked", "expired"),
  created_at: Schema.String,
  created_by: Schema.String,
  expires_at: Schema.NullOr(Schema.String),
  revoked_at: Schema.NullOr(Schema.String),
  limits: Caller.KeyLimits
}).annotations({ identifier: "ApiKey" })

/** The answer to a creation: the key and its secret, shown this once. */
export const CreatedKey = Schema.Struct({
  key: KeyView,
  secret: Schema.String.annotations({ description: "the API key itself (Authorization: Bearer …); shown once, stored only as a hash" })
}).annotations({ identifier: "CreatedKey" })

/** The key group. */
export class KeysApi extends HttpApiGroup.make("keys")
  .add(
    HttpApiEndpoint.post("create", "/v1/keys")
      .addSuccess(CreatedKey, { status: 201 })
      .addError(ErrorBody, { status: 400 })
      .addError(ErrorBody, { status: 403 })
      .annotate(OpenApi.Summary, "Create an API key (admin); its secret is in this answer only")
  )
  .add(
    HttpApiEndpoint.get("list", "/v1/keys")
      .setUrlParams(Schema.Struct({ team: Schema.optional(Schema.String), include_revoked: Schema.optional(Schema.String) }))
      .addSuccess(Schema.Struct({ keys: Schema.Array(KeyView) }))
      .annotate(OpenApi.Summary, "List API keys (admin), newest first")
  )
  .add(
    HttpApiEndpoint.get("get", "/v1/keys/:id")
      .setPath(Schema.Struct({ id: Schema.String }))
      .addSuccess(KeyView)
      .addError(ErrorBody, { status: 404 })
      .annotate(OpenApi.Summary, "One API key (admin)")
  )
  .add(
    HttpApiEndpoint.del("revoke", "/v1/keys/:id")
      .setPath(Schema.Struct({ id: Schema.String }))
      .addSuccess(KeyView)
      .addError(ErrorBody, { status: 404 })
      .annotate(OpenApi.Summary, "Revoke an API key (admin); it stops working at once on this replica, within server.key_cache_seconds on others")
  )
  .annotate(OpenApi.Title, "Keys") {}

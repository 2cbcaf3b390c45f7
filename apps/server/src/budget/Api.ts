/** `GET /v1/budget`: the budgets that apply to the caller (or, for a team-less admin or compliance key, to every team). */
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as OpenApi from "@effect/platform/OpenApi"
import { Schema } from "effect"
import { ErrorBody } from "../http/Errors.js"

/** One budget scope in its current period. */
export const BudgetView = Schema.Struct({
  scope: Schema.String.annotations({ description: "global, team:<team> or key:<key id>" }),
  period: Schema.Literal("day", "month"),
  period_start: Schema.String.annotations({ description: "UTC date the period began" }),
  limit_usd: Schema.String,
  spent_usd: Schema.String,
  reserved_usd: Schema.String.annotations({ description: "held by requests in flight" }),
  remaining_usd: Schema.String
}).annotations({ identifier: "Budget" })

/** The budget group. */
export class BudgetApi extends HttpApiGroup.make("budget")
  .add(
    HttpApiEndpoint.get("status", "/v1/budget")
      .setUrlParams(Schema.Struct({ team: Schema.optional(Schema.String), key_id: Schema.optional(Schema.String) }))
      .addSuccess(Schema.Struct({ budgets: Schema.Array(BudgetView) }))
      .addError(ErrorBody, { status: 403 })
      .addError(ErrorBody, { status: 503 })
      .annotate(OpenApi.Summary, "Budgets: global, per team and per key, daily and monthly")
      .annotate(
        OpenApi.Description,
        "The caller's budgets: the global ones, its team's and its key's. A team-less admin or compliance key sees every configured " +
          "team (or one, with `team`), and a key's own budget with `key_id`. Another team's budgets are refused (403)."
      )
  )
  .annotate(OpenApi.Title, "Budget") {}

/** Handler of `GET /v1/budget`. */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { Effect, Option } from "effect"
import { Errors, Money } from "@tidyllm/core"
import { ApiKeys, BudgetLedger, CorporateLlmGateway } from "@tidyllm/corporate-llm"
import { Api } from "../Api.js"
import type { Principal } from "../auth/Auth.js"
import { NotFound } from "../http/Errors.js"
import { principalOf } from "../http/RequestContext.js"
import { respond } from "../workflows/Http.js"
import type { BudgetView } from "./Api.js"

/** A scope's state as the API shows it. */
export const view = (s: BudgetLedger.ScopeStatus): typeof BudgetView.Type => ({
  scope: s.scope,
  period: s.period,
  period_start: s.period_start,
  limit_usd: Money.toUsdString(s.limit),
  spent_usd: Money.toUsdString(s.spent),
  reserved_usd: Money.toUsdString(s.reserved),
  remaining_usd: Money.toUsdString(Money.subtractFloor(s.limit, Money.add(s.spent, s.reserved)))
})

/** Whether the principal sees every team (a team-less admin or compliance key, or open mode). */
const overseer = (p: Principal): boolean => p.open || (p.caller.team === undefined && (p.role === "admin" || p.role === "compliance"))

/** The budget handler. */
export const BudgetHttp = HttpApiBuilder.group(Api, "budget", (handlers) =>
  Effect.gen(function*() {
    const gw1 = yield* CorporateLlmGateway.CorporateLlmGateway
    const ledger = yield* BudgetLedger.BudgetLedger
    const keys = yield* ApiKeys.ApiKeys
    const teams = Object.keys(gw1.settings.teams ?? {})

    const scopesFor = (p: Principal, team: string | undefined, keyId: string | undefined) =>
      Effect.gen(function*() {
        if (!overseer(p)) {
          if (team !== undefined && team !== p.caller.team) {
            return yield* new Errors.Forbidden({ rule: "team", message: `this key may read the budgets of team '${p.caller.team ?? "(none)"}' only` })
          }
          if (keyId !== undefined && keyId !== p.caller.key_id) {
            return yield* new Errors.Forbidden({ rule: "team", message: "this key may read its own key budget only" })
          }
          return gw1.scopes(p.caller)
        }
        if (team !== undefined && !teams.includes(team)) {
          return yield* new Errors.InvalidRequest({
            message: `team '${team.slice(0, 64)}' has no budgets (configured under corporate_llm.teams: ${teams.join(", ") || "none"})`,
            field: "team"
          })
        }
        if (keyId === undefined) return gw1.overseenScopes({ team })
        const key = ApiKeys.isKeyId(keyId) ? yield* keys.get(keyId) : Option.none()
        if (Option.isNone(key)) return yield* new NotFound({ message: "no such API key (a key id is 16 hex digits)" })
        return gw1.overseenScopes({ team, key: ApiKeys.callerOf(key.value) })
      })

    return handlers.handleRaw("status", ({ request, urlParams }) =>
      respond(() =>
        Effect.gen(function*() {
          const p = yield* principalOf(request)
          const scopes = yield* scopesFor(p, urlParams.team, urlParams.key_id)
          const status = yield* ledger.status(scopes)
          return { budgets: status.map(view) }
        })))
  })
)

/**
 * `tidyllm budget [--team T] [--key ID] [--json]`: the budgets of the ledger in their current
 * periods — the global ones (`corporate_llm.budget_limit_daily_usd`, `budget_limit_monthly_usd`),
 * each configured team's (`corporate_llm.teams.<team>`, or one team's with `--team`), and with
 * `--key` that key's own — as a team-less admin sees them through `GET /v1/budget`, whose JSON
 * shape `--json` prints.
 */
import { Command, Options } from "@effect/cli"
import { Console, Effect, Option } from "effect"
import type { Caller } from "@tidyllm/core"
import { Money } from "@tidyllm/core"
import { ApiKeys, BudgetLedger, CorporateLlmGateway } from "@tidyllm/corporate-llm"
import { view } from "@tidyllm/server/budget/Http"
import { NotFound } from "@tidyllm/server/http/Errors"
import { CliEnvironment } from "../CliEnvironment.js"
import { UsageError } from "../CliError.js"
import { styles, table, usdString } from "../internal/format.js"
import { loadConfig, services } from "../Root.js"

const options = {
  team: Options.text("team").pipe(Options.withPseudoName("T"), Options.withDescription("only this team's budgets (beside the global ones); default: every configured team"), Options.optional),
  key: Options.text("key").pipe(Options.withPseudoName("ID"), Options.withDescription("also this API key's own budgets (and its team's)"), Options.optional),
  json: Options.boolean("json").pipe(Options.withDescription("print the budgets as JSON ({budgets: […]}, as GET /v1/budget)"))
}

/** Share of the limit spent or reserved, for people (`0.02 %`, `<0.01 %`, `n/a` without a limit). */
export const percent = (used: Money.Nanos, limit: Money.Nanos): string => {
  if (limit === 0) return used === 0 ? "n/a (limit $0)" : "100 % (limit $0)"
  const p = (used / limit) * 100
  return p > 0 && p < 0.01 ? "<0.01 %" : `${p.toFixed(2)} %`
}

/** The columns of the table. */
export const headers = ["scope", "period", "period start", "limit", "spent", "reserved", "remaining", "used"] as const

/** One scope as a row of the table. */
export const row = (s: BudgetLedger.ScopeStatus): ReadonlyArray<string> => {
  const v = view(s)
  return [
    v.scope, v.period, v.period_start, usdString(v.limit_usd), usdString(v.spent_usd), usdString(v.reserved_usd), usdString(v.remaining_usd),
    percent(Money.add(s.spent, s.reserved), s.limit)
  ]
}

/** `tidyllm budget`. */
export const command = Command.make("budget", options, (args) =>
  Effect.gen(function*() {
    const loaded = yield* loadConfig
    const configured = Object.keys(loaded.config.corporate_llm.teams)
    const team = Option.getOrUndefined(args.team)
    const keyId = Option.getOrUndefined(args.key)
    if (team !== undefined && !configured.includes(team)) {
      return yield* new UsageError({
        message: `--team: team '${team}' has no budget: corporate_llm.teams ${configured.length === 0 ? "is empty" : `has ${configured.join(", ")}`}`
      })
    }
    const statuses = yield* Effect.gen(function*() {
      const gateway = yield* CorporateLlmGateway.CorporateLlmGateway
      const ledger = yield* BudgetLedger.BudgetLedger
      // As the budget API does for a team-less admin: the global scopes, the teams', the key's.
      let key: Caller.Caller | undefined
      if (keyId !== undefined) {
        const found = yield* Effect.flatMap(ApiKeys.ApiKeys, (keys) => keys.get(keyId))
        if (Option.isNone(found)) return yield* new NotFound({ message: `no API key '${keyId}' (tidyllm keys list --all shows them)` })
        key = ApiKeys.callerOf(found.value)
      }
      const scopes = gateway.overseenScopes({ team, key })
      return yield* ledger.status(scopes)
    }).pipe(Effect.provide(services(loaded)))
    if (args.json) return yield* Console.log(JSON.stringify({ budgets: statuses.map(view) }, null, 2))
    const s = styles((yield* CliEnvironment).color)
    const [header, ...lines] = table(headers, statuses.map(row), new Set([3, 4, 5, 6, 7]))
    yield* Console.log(s.bold(header ?? ""))
    for (const [i, line] of lines.entries()) {
      const b = statuses[i]
      const exhausted = b !== undefined && b.limit > 0 && Money.add(b.spent, b.reserved) >= b.limit
      yield* Console.log(exhausted ? s.red(line) : line)
    }
    if (keyId !== undefined && !statuses.some((b) => b.scope === `key:${keyId}`)) {
      yield* Console.log(s.dim(`API key ${keyId} has no budget of its own`))
    }
  })
).pipe(Command.withDescription("show the budgets (global, per team, per key): spent, reserved and remaining in the current period"))

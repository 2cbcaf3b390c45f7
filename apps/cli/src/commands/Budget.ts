/** `tidyllm budget [--json]`: today's global spend against the daily limit, from the budget ledger. */
import { Command, Options } from "@effect/cli"
import { Console, Effect } from "effect"
import { Caller, Money } from "@tidyllm/core"
import { BudgetLedger, CorporateLlmGateway } from "@tidyllm/corporate-llm"
import { CliEnvironment } from "../CliEnvironment.js"
import { styles, usd } from "../internal/format.js"
import { loadConfig, services } from "../Root.js"

const json = Options.boolean("json").pipe(Options.withDescription("print the budget as JSON"))

/** Share of the limit spent or reserved, for people (`0.02 %`, `<0.01 %`, `n/a` without a limit). */
export const percent = (used: Money.Nanos, limit: Money.Nanos): string => {
  if (limit === 0) return used === 0 ? "n/a (limit $0)" : "100 % (limit $0)"
  const p = (used / limit) * 100
  return p > 0 && p < 0.01 ? "<0.01 %" : `${p.toFixed(2)} %`
}

/** `tidyllm budget`. */
export const command = Command.make("budget", { json }, (args) =>
  Effect.gen(function*() {
    const loaded = yield* loadConfig
    const s = styles((yield* CliEnvironment).color)
    const statuses = yield* Effect.gen(function*() {
      const gateway = yield* CorporateLlmGateway.CorporateLlmGateway
      const ledger = yield* BudgetLedger.BudgetLedger
      return yield* ledger.status(gateway.scopes(Caller.anonymous))
    }).pipe(Effect.provide(services(loaded)))
    for (const b of statuses) {
      const used = Money.add(b.spent, b.reserved)
      const remaining = Money.subtractFloor(b.limit, used)
      if (args.json) {
        yield* Console.log(JSON.stringify({
          scope: b.scope, period: b.period, period_start: b.period_start,
          limit_usd: Money.toUsdString(b.limit), spent_usd: Money.toUsdString(b.spent),
          reserved_usd: Money.toUsdString(b.reserved), remaining_usd: Money.toUsdString(remaining),
          percent_used: b.limit === 0 ? null : (used / b.limit) * 100
        }, null, 2))
        continue
      }
      const p = percent(used, b.limit)
      yield* Console.log(s.bold(`budget ${b.scope} · ${b.period} ${b.period_start} (UTC)`))
      yield* Console.log(`  spent      ${usd(b.spent)}`)
      yield* Console.log(`  reserved   ${usd(b.reserved)}${b.reserved > 0 ? s.dim("  (requests in flight)") : ""}`)
      yield* Console.log(`  remaining  ${usd(remaining)}`)
      yield* Console.log(`  limit      ${usd(b.limit)}  ${s.dim("corporate_llm.budget_limit_daily_usd")}`)
      yield* Console.log(`  used       ${remaining === 0 && b.limit > 0 ? s.red(p) : p}`)
    }
  })
).pipe(Command.withDescription("show today's spend against the daily budget"))

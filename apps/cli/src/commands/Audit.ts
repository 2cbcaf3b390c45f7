/** `tidyllm audit tail [--limit N] [--json]`: the newest rows of the LLM audit log. */
import { Command, Options } from "@effect/cli"
import { Console, Effect } from "effect"
import { Money } from "@tidyllm/core"
import { AuditLog } from "@tidyllm/corporate-llm"
import { CliEnvironment } from "../CliEnvironment.js"
import { UsageError } from "../CliError.js"
import { styles, table, truncate, usd, utc } from "../internal/format.js"
import { loadConfig, services } from "../Root.js"

const limit = Options.integer("limit").pipe(
  Options.withAlias("n"),
  Options.withDescription("how many rows (newest first; default 20)"),
  Options.withDefault(20)
)
const json = Options.boolean("json").pipe(Options.withDescription("print the rows as JSON (one array)"))

/** The columns of the table. */
export const headers = ["id", "time (UTC)", "status", "provider", "model", "tokens", "cost", "latency", "reason", "caller"] as const

/** One row of the table. */
export const row = (e: AuditLog.AuditEntry): ReadonlyArray<string> => [
  e.id.slice(0, 8),
  utc(e.created_at),
  e.status,
  e.provider,
  truncate(e.model, 24),
  `${e.input_tokens}+${e.output_tokens}`,
  usd(e.cost),
  `${e.latency_ms} ms`,
  truncate(e.reason, 32),
  truncate(e.caller, 24)
]

const toJson = (e: AuditLog.AuditEntry) => {
  const { cost: _cost, created_at, ...rest } = e
  return { ...rest, created_at: created_at.toISOString(), cost_usd: Money.toUsdString(e.cost) }
}

const tail = Command.make("tail", { limit, json }, (args) =>
  Effect.gen(function*() {
    const loaded = yield* loadConfig
    const s = styles((yield* CliEnvironment).color)
    const rows = yield* Effect.flatMap(AuditLog.AuditLog, (log) => log.list({ limit: Math.max(1, args.limit) })).pipe(
      Effect.provide(services(loaded))
    )
    if (args.json) return yield* Console.log(JSON.stringify(rows.map(toJson), null, 2))
    if (rows.length === 0) return yield* Console.log("no audit rows yet")
    const [header, ...lines] = table(headers, rows.map(row), new Set([5, 6, 7]))
    yield* Console.log(s.bold(header ?? ""))
    for (const [i, line] of lines.entries()) {
      const status = rows[i]?.status
      yield* Console.log(status === "success" || status === "cache_hit" ? line : s.yellow(line))
    }
  })
).pipe(Command.withDescription("show the newest audit rows"))

/** `tidyllm audit`. */
export const command = Command.make("audit").pipe(
  Command.withHandler(() => new UsageError({ message: "audit needs a subcommand: tidyllm audit tail [--limit N] [--json]" })),
  Command.withDescription("read the LLM audit log"),
  Command.withSubcommands([tail])
)

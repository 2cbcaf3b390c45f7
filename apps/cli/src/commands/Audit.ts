/**
 * `tidyllm audit`: the LLM audit log from the terminal.
 *
 * - `tail [--limit N] [--json]`: the newest rows;
 * - `query [filters] [--format table|json|csv] [--limit N] [--cursor C]`: the filters and pages of
 *   `GET /v1/audit` (same parameters, same validation);
 * - `purge [--older-than-days N] [--dry-run] [--json]`: deletes rows older than the retention
 *   (`corporate_llm.audit_retention_days`, default 365; 0 keeps them forever), from both audit
 *   tables, except the rows under an open flow agreement (see `AuditRetention` in store-pg), and
 *   reports what it removed by status.
 */
import { Command, Options } from "@effect/cli"
import { Clock, Console, Effect, Option } from "effect"
import { type Config, Errors, Money } from "@tidyllm/core"
import { AuditLog } from "@tidyllm/corporate-llm"
import { csvHeader, csvLine, toRow } from "@tidyllm/server/audit/Export"
import * as Params from "@tidyllm/server/audit/Params"
import * as Layers from "@tidyllm/server/Layers"
import { AuditRetention } from "@tidyllm/store-pg"
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

/** Prints rows as the table, failures highlighted. */
const printTable = (rows: ReadonlyArray<AuditLog.AuditEntry>) =>
  Effect.gen(function*() {
    const s = styles((yield* CliEnvironment).color)
    const [header, ...lines] = table(headers, rows.map(row), new Set([5, 6, 7]))
    yield* Console.log(s.bold(header ?? ""))
    for (const [i, line] of lines.entries()) {
      const status = rows[i]?.status
      yield* Console.log(status === "success" || status === "cache_hit" ? line : s.yellow(line))
    }
  })

const tail = Command.make("tail", { limit, json }, (args) =>
  Effect.gen(function*() {
    const loaded = yield* loadConfig
    const rows = yield* Effect.flatMap(AuditLog.AuditLog, (log) => log.list({ limit: Math.max(1, args.limit) })).pipe(
      Effect.provide(services(loaded))
    )
    if (args.json) return yield* Console.log(JSON.stringify(rows.map(toJson), null, 2))
    if (rows.length === 0) return yield* Console.log("no audit rows yet")
    yield* printTable(rows)
  })
).pipe(Command.withDescription("show the newest audit rows"))

// ---------------------------------------------------------------------------------------------
// query

const text = (name: string, description: string) => Options.text(name).pipe(Options.withDescription(description), Options.optional)

const filters = {
  from: text("from", "rows created at or after: ISO 8601 date (midnight UTC) or date-time with a zone"),
  to: text("to", "rows created before (exclusive): ISO 8601 date or date-time with a zone"),
  team: text("team", "team, exactly"),
  keyId: text("key-id", "API key id, exactly"),
  model: text("model", "model id as audited, exactly"),
  provider: text("provider", "provider, exactly"),
  status: text("status", `comma-separated statuses: ${AuditLog.AuditStatus.literals.join(", ")}`),
  reason: text("reason", "text the reason contains, case-insensitive"),
  requestId: text("request-id", "request id, exactly"),
  cursor: text("cursor", "continue after the page that printed this cursor"),
  limit: Options.integer("limit").pipe(
    Options.withAlias("n"),
    Options.withDescription(`rows of the page, 1-${AuditLog.MAX_PAGE} (default ${Params.DEFAULT_LIMIT})`),
    Options.withDefault(Params.DEFAULT_LIMIT)
  ),
  format: Options.choice("format", ["table", "json", "csv"]).pipe(
    Options.withDescription("table (default), json ({data, next_cursor}) or csv (RFC 4180, with a header row)"),
    Options.withDefault("table" as const)
  )
}

/** The option a parameter of `Params` comes from. */
const flagOf = (param: string | undefined) => `--${(param ?? "?").replaceAll("_", "-")}`

/** An invalid filter is a usage error naming the option. */
const asUsage = (e: Errors.InvalidRequest) => new UsageError({ message: `${flagOf(e.field)}: ${e.message}` })

const query = Command.make("query", filters, (args) =>
  Effect.gen(function*() {
    const given: ReadonlyArray<readonly [Params.Name, Option.Option<string>]> = [
      ["from", args.from], ["to", args.to], ["team", args.team], ["key_id", args.keyId], ["model", args.model],
      ["provider", args.provider], ["status", args.status], ["reason", args.reason], ["request_id", args.requestId],
      ["cursor", args.cursor], ["limit", Option.some(String(args.limit))]
    ]
    const parsed = yield* Params.parse(given.flatMap(([name, value]) => Option.toArray(Option.map(value, (v) => [name, v] as const)))).pipe(
      Effect.mapError(asUsage)
    )
    const loaded = yield* loadConfig
    const page = yield* Effect.flatMap(AuditLog.AuditLog, (log) =>
      log.query({ ...parsed.filter, limit: parsed.limit, cursor: parsed.cursor })).pipe(
        Effect.catchTag("InvalidRequest", (e) => Effect.fail(asUsage(e))),
        Effect.provide(Layers.store(loaded.config))
      )
    const more = page.next_cursor === null ? Effect.void : Console.error(`more rows: add --cursor ${page.next_cursor}`)
    switch (args.format) {
      case "json":
        return yield* Console.log(JSON.stringify({ data: page.rows.map(toRow), next_cursor: page.next_cursor }, null, 2))
      case "csv":
        // Console.log ends the last line.
        yield* Console.log((csvHeader + page.rows.map(csvLine).join("")).replace(/\r\n$/, ""))
        return yield* more
      case "table":
        if (page.rows.length === 0) return yield* Console.log("no audit rows match")
        yield* printTable(page.rows)
        return yield* more
    }
  })
).pipe(Command.withDescription("filter and page the audit log (the filters of GET /v1/audit)"))

// ---------------------------------------------------------------------------------------------
// purge

/** `corporate_llm.audit_retention_days` of the configuration (default 365; 0 keeps audit rows forever). */
export const retentionDays = (config: Config.GatewayConfig): number => config.corporate_llm.audit_retention_days

const DAY_MS = 86_400_000

const purgeOptions = {
  days: Options.integer("older-than-days").pipe(
    Options.withPseudoName("N"),
    Options.withDescription("purge rows older than N days (default: corporate_llm.audit_retention_days, 365 unless set)"),
    Options.optional
  ),
  dryRun: Options.boolean("dry-run").pipe(Options.withDescription("count what would be removed; delete nothing")),
  json: Options.boolean("json").pipe(Options.withDescription("print the result as JSON"))
}

/** `success 5, error 2` (largest first). */
const counts = (by: Readonly<Record<string, number>>): string => {
  const entries = Object.entries(by).sort(([a, x], [b, y]) => y - x || a.localeCompare(b))
  return entries.length === 0 ? "nothing" : entries.map(([k, n]) => `${k} ${n}`).join(", ")
}

const purge = Command.make("purge", purgeOptions, (args) =>
  Effect.gen(function*() {
    const loaded = yield* loadConfig
    const fromConfig = Option.isNone(args.days)
    const days = Option.getOrElse(args.days, () => retentionDays(loaded.config))
    if (!fromConfig && days < 1) return yield* new UsageError({ message: "--older-than-days must be 1 or more" })
    if (days <= 0) {
      return yield* Console.log("corporate_llm.audit_retention_days is 0: audit rows are kept forever; nothing purged")
    }
    const olderThan = new Date((yield* Clock.currentTimeMillis) - days * DAY_MS)
    const dryRun = args.dryRun
    const [llm, workflow] = yield* Effect.gen(function*() {
      const log = yield* AuditLog.AuditLog
      const llm = yield* log.purge({ older_than: olderThan, dry_run: dryRun })
      const workflow = yield* AuditRetention.purgeWorkflowAudit({ older_than: olderThan, dry_run: dryRun })
      return [llm, workflow] as const
    }).pipe(Effect.provide(Layers.store(loaded.config)))

    if (args.json) {
      return yield* Console.log(JSON.stringify({
        older_than: olderThan.toISOString(),
        retention_days: days,
        dry_run: dryRun,
        llm_audit_log: llm,
        workflow_audit_log: workflow
      }, null, 2))
    }
    const s = styles((yield* CliEnvironment).color)
    const verb = dryRun ? "would remove" : "removed"
    yield* Console.log(s.bold(`${dryRun ? "dry run: " : ""}audit rows created before ${utc(olderThan)} UTC (older than ${days} days${fromConfig ? ", corporate_llm.audit_retention_days" : ""})`))
    yield* Console.log(`llm_audit_log       ${verb} ${llm.removed} (${counts(llm.by_status)}); kept under open agreements: ${llm.kept_under_agreement}`)
    yield* Console.log(`workflow_audit_log  ${verb} ${workflow.removed} (${counts(workflow.by_operation)}); kept under open agreements: ${workflow.kept_under_agreement}`)
  })
).pipe(Command.withDescription("delete audit rows older than the retention (never those under an open flow agreement)"))

/** `tidyllm audit`. */
export const command = Command.make("audit").pipe(
  Command.withHandler(() => new UsageError({ message: "audit needs a subcommand: tidyllm audit tail|query|purge (tidyllm audit --help)" })),
  Command.withDescription("read, search and purge the audit log"),
  Command.withSubcommands([tail, query, purge])
)

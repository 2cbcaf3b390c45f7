/**
 * `tidyllm keys`: API keys, straight in the store. The CLI is the operator's tool and has the
 * database: it needs no admin key (it is how the first one is made), and what it creates is
 * recorded as `created_by: cli`. Inputs are validated as `POST /v1/keys` validates them, with
 * errors naming the option.
 *
 * - `create --role R [--team T] [--name N] [--expires-in-days D | --expires-at ISO]
 *   [--budget-daily USD] [--budget-monthly USD] [--rpm N] [--tpm N] [--json]`: prints the secret,
 *   this once (the store keeps only its SHA-256);
 * - `list [--team T] [--all] [--json]`: newest first, never a secret or a hash;
 * - `revoke <id> [--json]`: the key stops working (on running servers within
 *   `server.key_cache_seconds`).
 */
import { Args, Command, Options } from "@effect/cli"
import { Clock, Console, Effect, Either, Option, ParseResult, Schema } from "effect"
import { Caller, Money } from "@tidyllm/core"
import { ApiKeys } from "@tidyllm/corporate-llm"
import { NotFound } from "@tidyllm/server/http/Errors"
import { CreateKeyBody, type KeyView, limitsOf } from "@tidyllm/server/keys/Api"
import { expiryOf, view } from "@tidyllm/server/keys/Http"
import * as Layers from "@tidyllm/server/Layers"
import { CliEnvironment } from "../CliEnvironment.js"
import { UsageError } from "../CliError.js"
import { styles, table, truncate, usd, utc } from "../internal/format.js"
import { loadConfig } from "../Root.js"

/** What `created_by` records for a key the CLI made. */
export const CREATED_BY = "cli"

const text = (name: string, pseudo: string, description: string) =>
  Options.text(name).pipe(Options.withPseudoName(pseudo), Options.withDescription(description), Options.optional)

const json = Options.boolean("json").pipe(Options.withDescription("print JSON (the shape of the /v1/keys API)"))

// ---------------------------------------------------------------------------------------------
// create

const createOptions = {
  role: Options.text("role").pipe(Options.withPseudoName("R"), Options.withDescription(`the key's role: ${Caller.Role.literals.join(", ")}`)),
  team: text("team", "T", "the team the key acts for (budgets, audit, agreements); unset: no team (an admin or compliance key then sees every team)"),
  name: text("name", "N", "a label for people (ci-pipeline, alice laptop)"),
  expiresInDays: text("expires-in-days", "D", "the key stops working D days from now"),
  expiresAt: text("expires-at", "ISO", "the key stops working at this ISO 8601 date-time with a zone (2026-12-31T00:00:00Z)"),
  budgetDaily: text("budget-daily", "USD", "the key's own daily budget in dollars, beside its team's and the global one"),
  budgetMonthly: text("budget-monthly", "USD", "the key's own monthly budget in dollars (calendar month, UTC)"),
  rpm: text("rpm", "N", "model calls per minute"),
  tpm: text("tpm", "N", "tokens per minute"),
  json
}

/** The fields of `POST /v1/keys` and the options they come from. */
const flags: Readonly<Record<string, string>> = {
  role: "--role",
  team: "--team",
  name: "--name",
  expires_at: "--expires-at",
  expires_in_days: "--expires-in-days",
  budget_daily_usd: "--budget-daily",
  budget_monthly_usd: "--budget-monthly",
  requests_per_minute: "--rpm",
  tokens_per_minute: "--tpm"
}

const usage = (flag: string, message: string) => new UsageError({ message: `${flag}: ${message}` })

const decimal = /^\d+(\.\d+)?$/
const whole = /^0*[1-9]\d*$/

/** A number option's value, or a usage error naming it (`Number("")` is 0 and `Number("1e3")` is 1000: neither is what was meant). */
const numberOf = (flag: string, value: Option.Option<string>, kind: "dollars" | "days" | "whole"): Effect.Effect<number | undefined, UsageError> => {
  if (Option.isNone(value)) return Effect.succeed(undefined)
  const v = value.value.trim()
  const ok = kind === "whole" ? whole.test(v) : decimal.test(v) && (kind !== "dollars" || (v.split(".")[1] ?? "").length <= 9)
  if (!ok) {
    const expected = kind === "whole"
      ? "a whole number greater than 0"
      : kind === "dollars"
      ? "an amount of dollars (12 or 12.50, at most 9 decimals)"
      : "a number of days greater than 0"
    return Effect.fail(usage(flag, `expected ${expected}, not '${value.value}'`))
  }
  return Effect.succeed(Number(v))
}

/** The first problem of a decoded body, as a usage error naming its option. */
const firstIssue = (error: ParseResult.ParseError): UsageError => {
  const issues = ParseResult.ArrayFormatter.formatErrorSync(error)
  const issue = issues[0]
  const field = issue === undefined ? undefined : String(issue.path[0] ?? "")
  return usage(field === undefined ? "options" : flags[field] ?? `--${field}`, issue?.message ?? error.message)
}

/** The options of `keys create` as the body `POST /v1/keys` would receive, validated by its schema. */
export const parseCreate = (args: {
  readonly role: string
  readonly team: Option.Option<string>
  readonly name: Option.Option<string>
  readonly expiresInDays: Option.Option<string>
  readonly expiresAt: Option.Option<string>
  readonly budgetDaily: Option.Option<string>
  readonly budgetMonthly: Option.Option<string>
  readonly rpm: Option.Option<string>
  readonly tpm: Option.Option<string>
}): Effect.Effect<typeof CreateKeyBody.Type, UsageError> =>
  Effect.gen(function*() {
    if (!Schema.is(Caller.Role)(args.role)) {
      return yield* usage("--role", `'${args.role}' is not a role; one of: ${Caller.Role.literals.join(", ")}`)
    }
    if (Option.isSome(args.expiresAt) && Option.isSome(args.expiresInDays)) {
      return yield* usage("--expires-at", "give --expires-at or --expires-in-days, not both")
    }
    const body: Record<string, unknown> = { role: args.role }
    const set = (field: string, value: unknown) => {
      if (value !== undefined) body[field] = value
    }
    set("team", Option.getOrUndefined(args.team))
    set("name", Option.getOrUndefined(args.name))
    set("expires_at", Option.getOrUndefined(args.expiresAt))
    set("expires_in_days", yield* numberOf("--expires-in-days", args.expiresInDays, "days"))
    set("budget_daily_usd", yield* numberOf("--budget-daily", args.budgetDaily, "dollars"))
    set("budget_monthly_usd", yield* numberOf("--budget-monthly", args.budgetMonthly, "dollars"))
    set("requests_per_minute", yield* numberOf("--rpm", args.rpm, "whole"))
    set("tokens_per_minute", yield* numberOf("--tpm", args.tpm, "whole"))
    return yield* Either.match(Schema.decodeUnknownEither(CreateKeyBody)(body), {
      onLeft: (e) => Effect.fail(firstIssue(e)),
      onRight: Effect.succeed
    })
  })

/** A key's limits for people: `$5.00/day, $100.00/month, 60 req/min, 20000 tok/min`, or `-`. */
export const limitsText = (l: Caller.KeyLimits): string => {
  const parts = [
    l.budget_daily_usd === undefined ? undefined : `${usd(Money.fromUsd(l.budget_daily_usd))}/day`,
    l.budget_monthly_usd === undefined ? undefined : `${usd(Money.fromUsd(l.budget_monthly_usd))}/month`,
    l.requests_per_minute === undefined ? undefined : `${l.requests_per_minute} req/min`,
    l.tokens_per_minute === undefined ? undefined : `${l.tokens_per_minute} tok/min`
  ].filter((p) => p !== undefined)
  return parts.length === 0 ? "-" : parts.join(", ")
}

const now = Effect.map(Clock.currentTimeMillis, (ms) => new Date(ms))

const create = Command.make("create", createOptions, (args) =>
  Effect.gen(function*() {
    const body = yield* parseCreate(args)
    const at = yield* now
    const expires_at = yield* expiryOf(body, at.getTime()).pipe(
      Effect.mapError((e) => usage(flags[e.field ?? ""] ?? "--expires-at", e.message))
    )
    const loaded = yield* loadConfig
    const generated = ApiKeys.generate()
    const key = yield* Effect.flatMap(ApiKeys.ApiKeys, (keys) =>
      keys.create({
        id: generated.id,
        hash: generated.hash,
        name: body.name,
        team: body.team,
        role: body.role,
        created_by: CREATED_BY,
        expires_at,
        limits: limitsOf(body)
      })).pipe(Effect.provide(Layers.store(loaded.config)))
    const once = "This secret is shown once and will not be shown again: store it now (the gateway keeps only its hash)."
    if (args.json) {
      // stdout stays one JSON document (the answer of POST /v1/keys); the warning goes to stderr.
      yield* Console.log(JSON.stringify({ key: view(key, at), secret: generated.secret }, null, 2))
      return yield* Console.error(once)
    }
    const s = styles((yield* CliEnvironment).color)
    yield* Console.log(s.bold(`API key ${key.id} created`))
    yield* Console.log(`  secret   ${generated.secret}`)
    yield* Console.log(s.yellow(`  ${once}`))
    yield* Console.log(`  id       ${key.id}`)
    if (key.name !== undefined) yield* Console.log(`  name     ${key.name}`)
    yield* Console.log(`  team     ${key.team ?? "(none: not bound to a team)"}`)
    yield* Console.log(`  role     ${key.role}`)
    yield* Console.log(`  expires  ${key.expires_at === undefined ? "never" : `${utc(key.expires_at)} UTC`}`)
    yield* Console.log(`  limits   ${limitsText(key.limits) === "-" ? "none of its own" : limitsText(key.limits)}`)
    yield* Console.log(s.dim("  use it as: Authorization: Bearer <secret>"))
  })
).pipe(Command.withDescription("create an API key in the store and print its secret (shown once)"))

// ---------------------------------------------------------------------------------------------
// list

/** The columns of `keys list`. */
export const headers = ["id", "name", "team", "role", "status", "created (UTC)", "expires (UTC)", "limits"] as const

/** One key as a row of the table. */
export const row = (k: typeof KeyView.Type): ReadonlyArray<string> => [
  k.id,
  truncate(k.name ?? "-", 24),
  k.team ?? "-",
  k.role,
  k.status,
  k.created_at.slice(0, 19).replace("T", " "),
  k.expires_at === null ? "never" : k.expires_at.slice(0, 19).replace("T", " "),
  limitsText(k.limits)
]

const list = Command.make("list", {
  team: text("team", "T", "only this team's keys"),
  all: Options.boolean("all").pipe(Options.withAlias("a"), Options.withDescription("include revoked keys")),
  json
}, (args) =>
  Effect.gen(function*() {
    const loaded = yield* loadConfig
    const keys = yield* Effect.flatMap(ApiKeys.ApiKeys, (store) =>
      store.list({ team: Option.getOrUndefined(args.team), include_revoked: args.all })).pipe(
        Effect.provide(Layers.store(loaded.config))
      )
    const at = yield* now
    const views = keys.map((k) => view(k, at))
    if (args.json) return yield* Console.log(JSON.stringify({ keys: views }, null, 2))
    if (views.length === 0) {
      return yield* Console.log(`no API keys${Option.isSome(args.team) ? ` of team ${args.team.value}` : ""}${args.all ? "" : " (revoked ones: add --all)"}`)
    }
    const s = styles((yield* CliEnvironment).color)
    const [header, ...lines] = table(headers, views.map(row))
    yield* Console.log(s.bold(header ?? ""))
    for (const [i, line] of lines.entries()) yield* Console.log(views[i]?.status === "active" ? line : s.dim(line))
  })).pipe(Command.withDescription("list API keys, newest first (never their secrets)"))

// ---------------------------------------------------------------------------------------------
// revoke

const revoke = Command.make("revoke", {
  id: Args.text({ name: "id" }).pipe(Args.withDescription("the key's id (as `keys list` shows it)")),
  json
}, (args) =>
  Effect.gen(function*() {
    const loaded = yield* loadConfig
    const at = yield* now
    const revoked = yield* Effect.flatMap(ApiKeys.ApiKeys, (store) => store.revoke(args.id, at)).pipe(
      Effect.provide(Layers.store(loaded.config))
    )
    if (Option.isNone(revoked)) return yield* new NotFound({ message: `no API key '${args.id}' (tidyllm keys list --all shows them)` })
    const key = revoked.value
    if (args.json) return yield* Console.log(JSON.stringify(view(key, at), null, 2))
    const s = styles((yield* CliEnvironment).color)
    const when = key.revoked_at ?? at
    if (when.getTime() < at.getTime()) {
      return yield* Console.log(`API key ${key.id} was already revoked at ${utc(when)} UTC`)
    }
    yield* Console.log(`${s.green("✓")} API key ${key.id} revoked at ${utc(when)} UTC`)
    yield* Console.log(s.dim(`running servers refuse it within server.key_cache_seconds (${loaded.config.server.key_cache_seconds} s)`))
  })).pipe(Command.withDescription("revoke an API key: it stops working"))

/** `tidyllm keys`. */
export const command = Command.make("keys").pipe(
  Command.withHandler(() => new UsageError({ message: "keys needs a subcommand: tidyllm keys create|list|revoke (tidyllm keys --help)" })),
  Command.withDescription("create, list and revoke API keys (in the store; no server needed)"),
  Command.withSubcommands([create, list, revoke])
)

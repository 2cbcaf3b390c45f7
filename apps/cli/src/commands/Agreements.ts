/**
 * `tidyllm agreements list [--workflow ID] [--status S] [--json]`, `approve <id> [--comment C]`,
 * `reject <id> --comment C`: flow agreements, deciding as `--as <name> --role <role>` (default:
 * the local user, role `user`).
 */
import { Args, Command, Options } from "@effect/cli"
import { Console, Effect, Option } from "effect"
import { WorkflowOptimizerGateway } from "@tidyllm/workflow-optimizer"
import { CliEnvironment } from "../CliEnvironment.js"
import { UsageError } from "../CliError.js"
import { styles, table } from "../internal/format.js"
import { agreementRow } from "../internal/workflowReport.js"
import { loadConfig, services } from "../Root.js"
import { cliContext } from "./Workflow.js"

const json = Options.boolean("json").pipe(Options.withDescription("print JSON"))
const as = Options.text("as").pipe(Options.withDescription("decide as this user (default: $USER)"), Options.optional)
const role = Options.text("role").pipe(
  Options.withDescription("the role you decide in: user, approver or compliance (medium risk needs approver; high needs approver and compliance)"),
  Options.withDefault(WorkflowOptimizerGateway.DEFAULT_ROLE)
)
const comment = Options.text("comment").pipe(Options.withAlias("m"), Options.withDescription("why (written to the workflow audit log)"), Options.optional)
const agreementId = Args.text({ name: "id" }).pipe(Args.withDescription("agreement id"))

const list = Command.make("list", {
  workflow: Options.text("workflow").pipe(Options.withDescription("only this workflow's agreements"), Options.optional),
  status: Options.choice("status", ["proposed", "approved", "rejected", "expired"]).pipe(Options.optional),
  json
}, (args) =>
  Effect.gen(function*() {
    const loaded = yield* loadConfig
    const environment = yield* CliEnvironment
    const s = styles(environment.color)
    const all = yield* Effect.flatMap(WorkflowOptimizerGateway.WorkflowOptimizerGateway, (gw) =>
      gw.listAgreements({ workflow_id: Option.getOrUndefined(args.workflow), status: Option.getOrUndefined(args.status) }, cliContext(environment.env, Option.none()))
    ).pipe(Effect.provide(services(loaded)))
    if (args.json) return yield* Console.log(JSON.stringify(all, null, 2))
    if (all.length === 0) return yield* Console.log("no agreements")
    const [header, ...rows] = table(["id", "workflow", "status", "risk", "proposed by", "approvals", "expires (UTC)"], all.map(agreementRow))
    yield* Console.log(s.bold(header ?? ""))
    for (const row of rows) yield* Console.log(row)
  })).pipe(Command.withDescription("list flow agreements, newest first"))

const decide = (name: "approve" | "reject") =>
  Command.make(name, { id: agreementId, comment, as, role, json }, (args) =>
    Effect.gen(function*() {
      const loaded = yield* loadConfig
      const environment = yield* CliEnvironment
      const s = styles(environment.color)
      const text = Option.getOrUndefined(args.comment)
      if (name === "reject" && (text === undefined || text.trim() === "")) {
        return yield* new UsageError({ message: "--comment is required: say why the proposal is rejected" })
      }
      const result = yield* Effect.flatMap(WorkflowOptimizerGateway.WorkflowOptimizerGateway, (gw) =>
        gw[name](args.id, text, cliContext(environment.env, args.as, args.role))
      ).pipe(Effect.provide(services(loaded)))
      if (args.json) return yield* Console.log(JSON.stringify(result, null, 2))
      const a = result.agreement
      yield* Console.log(`${s.green("✓")} ${name === "approve" ? "approval" : "rejection"} recorded: agreement ${a.id} (${a.workflow_id}) ${result.from} → ${result.to}`)
      if (result.current_version !== null) yield* Console.log(`${a.workflow_id} v${result.current_version} is now current`)
      else if (result.to === "proposed") yield* Console.log(s.dim(`still proposed: a ${a.risk_level}-risk change needs more approvals`))
    })).pipe(Command.withDescription(name === "approve"
      ? "approve an agreement (the approval that completes it makes the proposed version current)"
      : "reject an agreement, with a comment"))

/** `tidyllm agreements`. */
export const command = Command.make("agreements").pipe(
  Command.withHandler(() => new UsageError({ message: "agreements needs a subcommand: list | approve <id> | reject <id> --comment …" })),
  Command.withDescription("flow agreements: proposals of behaviour-changing optimisations awaiting approval"),
  Command.withSubcommands([list, decide("approve"), decide("reject")])
)

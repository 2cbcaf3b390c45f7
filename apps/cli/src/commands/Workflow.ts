/**
 * `tidyllm workflow validate|analyze|optimize <file.json|yaml>… [--level L] [--id ID] [--json]`:
 * gateway #3 on definition files, printing a readable report (critical path, bottlenecks,
 * compliance verdicts, risk, changes applied, before → after); `--json` prints the response.
 * Several files are processed one after the other, each under a `== file (n/N) ==` heading (with
 * `--json`, one array of `{ file, response }` or `{ file, error }`); one that fails does not stop
 * the others, and the exit code is 1 when any failed.
 * `tidyllm workflow store <id> <file>`, `get <id> [--version n]`, `list`: the versioned store.
 */
import { Args, Command, Options } from "@effect/cli"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import { Console, Effect, Either, Option } from "effect"
import { Ids } from "@tidyllm/core"
import * as Files from "@tidyllm/server/workflows/Files"
import { WorkflowOptimizerGateway } from "@tidyllm/workflow-optimizer"
import { CliEnvironment } from "../CliEnvironment.js"
import { ChecksFailed, report, UsageError } from "../CliError.js"
import { styles, table } from "../internal/format.js"
import { analysisReport, metadataLine, optimizationReport, validationReport } from "../internal/workflowReport.js"
import * as Progress from "../internal/progress.js"
import { loadConfig, services } from "../Root.js"
import { cliCaller } from "./Ask.js"

const file = Args.text({ name: "file" }).pipe(Args.withDescription("the workflow definition (.json, .yaml or .yml)"))
const files = Args.text({ name: "file" }).pipe(
  Args.withDescription("workflow definitions (.json, .yaml or .yml); several are processed one after the other"),
  Args.atLeast(1)
)
const json = Options.boolean("json").pipe(Options.withDescription("print the whole response as JSON"))
const level = Options.choice("level", ["low", "medium", "high"]).pipe(
  Options.withAlias("l"),
  Options.withDescription("optimization_level (default: workflow_optimizer.optimization_level); high adds a model-assisted review"),
  Options.optional
)
const reason = Options.text("reason").pipe(
  Options.withAlias("r"),
  Options.withDescription("why, written to the audit logs (default: the command line)"),
  Options.optional
)
const id = Options.text("id").pipe(
  Options.withDescription("store the optimised definition as the next version of this workflow (proposed under a flow agreement when it changes behaviour)"),
  Options.optional
)
const as = Options.text("as").pipe(Options.withDescription("act as this user (default: $USER)"), Options.optional)

/** A workflow definition file, parsed. */
export const readDefinition = (name: string) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const environment = yield* CliEnvironment
    const resolved = path.resolve(environment.cwd, name)
    const text = yield* fs.readFileString(resolved).pipe(Effect.mapError((e) => new UsageError({ message: `cannot read ${name}: ${e.message}` })))
    return yield* Either.mapLeft(Files.parseDefinitionText(text, resolved), (message) => new UsageError({ message }))
  })

/** The gateway #3 call context of the CLI: the local user (or `--as`), a new request id. */
export const cliContext = (
  env: Readonly<Record<string, string | undefined>>,
  user: Option.Option<string>,
  role?: string,
  reasonText?: string
): WorkflowOptimizerGateway.CallContext => ({
  request_id: Ids.randomUuid(),
  caller: Option.match(user, { onNone: () => cliCaller(env), onSome: (u) => ({ user_id: u }) }),
  role: role ?? WorkflowOptimizerGateway.DEFAULT_ROLE,
  reason: reasonText
})

/** One file through gateway #3: its request, from the file and the options. */
const requestOf = (
  op: WorkflowOptimizerGateway.Operation,
  name: string,
  fileName: string,
  args: { readonly level: Option.Option<"low" | "medium" | "high">; readonly reason: Option.Option<string>; readonly id: Option.Option<string> }
) =>
  Effect.map(readDefinition(fileName), (definition): WorkflowOptimizerGateway.WorkflowRequest => ({
    operation: op,
    workflow: definition,
    reason: Option.getOrElse(args.reason, () => `tidyllm workflow ${name} ${fileName}`),
    ...Option.match(args.level, { onNone: () => ({}), onSome: (l) => ({ optimization_level: l }) }),
    ...Option.match(args.id, { onNone: () => ({}), onSome: (w) => ({ workflow_id: w }) })
  }))

const operation = (op: WorkflowOptimizerGateway.Operation, name: "validate" | "analyze" | "optimize", description: string) =>
  Command.make(name, { files, level, reason, id, as, json }, (args) =>
    Effect.gen(function*() {
      const loaded = yield* loadConfig
      const environment = yield* CliEnvironment
      const s = styles(environment.color)
      if (args.files.length > 1 && Option.isSome(args.id)) {
        return yield* new UsageError({ message: `--id stores one definition: give one file, not ${args.files.length}` })
      }
      const lines = (response: WorkflowOptimizerGateway.WorkflowResponse) =>
        op === "VALIDATE"
          ? validationReport(response, s)
          : op === "ANALYZE"
          ? (response.data.analysis === undefined ? [] : analysisReport(response.data.analysis, s))
          : optimizationReport(response, s)
      const invalid = (response: WorkflowOptimizerGateway.WorkflowResponse) => {
        const v = response.data.validation
        return op === "VALIDATE" && v !== undefined && !v.valid ? v : undefined
      }

      const [only, ...rest] = args.files
      if (rest.length === 0) {
        // The file is read before the services are built: a typo costs no database start.
        const request = yield* requestOf(op, name, only, args)
        const response = yield* Effect.flatMap(WorkflowOptimizerGateway.WorkflowOptimizerGateway, (gw) =>
          gw.process(request, cliContext(environment.env, args.as))
        ).pipe(Effect.provide(services(loaded)))
        if (args.json) return yield* Console.log(JSON.stringify(response, null, 2))
        for (const line of lines(response)) yield* Console.log(line)
        yield* Console.error(s.dim(metadataLine(response)))
        const v = invalid(response)
        // The report said why; exit 1 like any other failed check.
        if (v !== undefined) return yield* new ChecksFailed({ failed: v.issues.filter((i) => i.severity === "error").length, total: v.issues.length })
        return
      }

      // Several files: each in turn over one set of services, a failure reported and the rest still processed.
      yield* Effect.gen(function*() {
        const gw = yield* WorkflowOptimizerGateway.WorkflowOptimizerGateway
        const process = (fileName: string) =>
          Effect.flatMap(requestOf(op, name, fileName, args), (request) => gw.process(request, cliContext(environment.env, args.as)))
        const total = args.files.length
        const progress = yield* Progress.make(total)
        const outcomes: Array<{ readonly file: string; readonly response?: WorkflowOptimizerGateway.WorkflowResponse; readonly error?: { readonly type: string; readonly message: string } }> = []
        let failed = 0
        for (const [i, fileName] of args.files.entries()) {
          if (!args.json) yield* Console.log(`${i === 0 ? "" : "\n"}${s.bold(`== ${fileName} (${i + 1}/${total}) ==`)}`)
          const result = yield* Effect.either(process(fileName))
          if (result._tag === "Left") {
            failed++
            const { lines: errorLines } = report(result.left)
            if (args.json) {
              const e = result.left
              outcomes.push({ file: fileName, error: { type: "type" in e && typeof e.type === "string" ? e.type : e._tag, message: e.message } })
            } else {
              for (const line of errorLines) yield* Console.error(line)
            }
            yield* progress.step(`✗ ${fileName}`)
            continue
          }
          const response = result.right
          if (invalid(response) !== undefined) failed++
          if (args.json) {
            outcomes.push({ file: fileName, response })
          } else {
            for (const line of lines(response)) yield* Console.log(line)
            yield* Console.error(s.dim(`${fileName}: ${metadataLine(response)}`))
          }
          yield* progress.step(`${invalid(response) === undefined ? "✓" : "✗"} ${fileName}`)
        }
        if (args.json) yield* Console.log(JSON.stringify(outcomes, null, 2))
        else yield* Console.log(`\n${s.dim(`${total - failed} of ${total} files ${op === "VALIDATE" ? "valid" : "processed"}${failed === 0 ? "" : `, ${failed} failed`}`)}`)
        if (failed > 0) return yield* new ChecksFailed({ failed, total })
      }).pipe(Effect.provide(services(loaded)))
    })).pipe(Command.withDescription(description))

const store = Command.make("store", {
  id: Args.text({ name: "id" }).pipe(Args.withDescription("workflow id")),
  file,
  reason,
  as
}, (args) =>
  Effect.gen(function*() {
    const loaded = yield* loadConfig
    const environment = yield* CliEnvironment
    const definition = yield* readDefinition(args.file)
    const stored = yield* Effect.flatMap(WorkflowOptimizerGateway.WorkflowOptimizerGateway, (gw) =>
      gw.storeWorkflow(args.id, definition, cliContext(environment.env, args.as, undefined, Option.getOrUndefined(args.reason)))
    ).pipe(Effect.provide(services(loaded)))
    yield* Console.log(`stored ${stored.workflow_id} v${stored.version} (current) at ${stored.key}`)
  })).pipe(Command.withDescription("validate a definition and store it as the workflow's next version, made current"))

const get = Command.make("get", {
  id: Args.text({ name: "id" }).pipe(Args.withDescription("workflow id")),
  // Given as `--version N` (renamed before parsing: see `renameVersionOption`) or `--revision N`.
  version: Options.integer("revision").pipe(Options.withDescription("the version, also as --version (default: the current one)"), Options.optional)
}, (args) =>
  Effect.gen(function*() {
    const loaded = yield* loadConfig
    const environment = yield* CliEnvironment
    const s = styles(environment.color)
    const got = yield* Effect.flatMap(WorkflowOptimizerGateway.WorkflowOptimizerGateway, (gw) =>
      gw.getWorkflow(args.id, Option.getOrUndefined(args.version), cliContext(environment.env, Option.none()))
    ).pipe(Effect.provide(services(loaded)))
    yield* Console.log(JSON.stringify(got.definition, null, 2))
    yield* Console.error(s.dim(`${got.workflow_id} v${got.version}${got.current ? " (current)" : " (not current)"}`))
  })).pipe(Command.withDescription("print a stored version (default: the current one) as JSON"))

const list = Command.make("list", { json }, (args) =>
  Effect.gen(function*() {
    const loaded = yield* loadConfig
    const environment = yield* CliEnvironment
    const s = styles(environment.color)
    const all = yield* Effect.flatMap(WorkflowOptimizerGateway.WorkflowOptimizerGateway, (gw) =>
      gw.listWorkflows(cliContext(environment.env, Option.none()))
    ).pipe(Effect.provide(services(loaded)))
    if (args.json) return yield* Console.log(JSON.stringify(all, null, 2))
    if (all.length === 0) return yield* Console.log("no workflows stored yet")
    const [header, ...rows] = table(["workflow", "current", "versions"], all.map((w) => [w.workflow_id, w.current === null ? "-" : `v${w.current}`, w.versions.join(", ")]))
    yield* Console.log(s.bold(header ?? ""))
    for (const row of rows) yield* Console.log(row)
  })).pipe(Command.withDescription("list the stored workflows and their versions"))

/** `tidyllm workflow`. */
export const command = Command.make("workflow").pipe(
  Command.withHandler(() => new UsageError({ message: "workflow needs a subcommand: validate|analyze|optimize <file> | store <id> <file> | get <id> | list" })),
  Command.withDescription("validate, analyze, optimize and store workflow definitions (gateway #3)"),
  Command.withSubcommands([
    operation("VALIDATE", "validate", "VALIDATE a definition file: issues with codes, severities and step paths"),
    operation("ANALYZE", "analyze", "ANALYZE a definition file: critical path, bottlenecks, compliance verdicts, risk, suggestions"),
    operation("OPTIMIZE", "optimize", "OPTIMIZE a definition file: changes applied, before → after (--id stores or proposes the result)"),
    store,
    get,
    list
  ])
)

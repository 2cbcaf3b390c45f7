/** VALIDATE: schema and structural issues of a workflow definition, each with a code, severity and step path. */
import type { ModelCatalog } from "@tidyllm/core"
import { Either, Option, ParseResult, Schema } from "effect"
import { cycles, topoOrder } from "./internal/graph.js"
import { isAi, isKnownType, modelName } from "./internal/estimate.js"
import * as Workflow from "./Workflow.js"

/** What is wrong. */
export const IssueCode = Schema.Literal(
  "schema_error",
  "empty_workflow",
  "duplicate_id",
  "unknown_dependency",
  "cycle",
  "unreachable_step",
  "depth_exceeded",
  "unknown_model",
  "missing_model",
  "unknown_step_type"
)
export type IssueCode = typeof IssueCode.Type

/** `error` makes the definition invalid; `warning` does not. */
export const Severity = Schema.Literal("error", "warning")
export type Severity = typeof Severity.Type

/** One finding of VALIDATE. */
export const Issue = Schema.Struct({
  code: IssueCode,
  severity: Severity,
  /** Path of the step (`sub/step-2`) or nested workflow; `""` for the root definition. */
  path: Schema.String,
  message: Schema.String,
  /** For `cycle`: the paths of the steps on the cycle. */
  members: Schema.optional(Schema.Array(Schema.String))
})
export type Issue = typeof Issue.Type

/** Codes that leave no graph to analyse or optimise. */
export const structuralCodes: ReadonlySet<IssueCode> = new Set<IssueCode>([
  "schema_error", "duplicate_id", "unknown_dependency", "cycle", "depth_exceeded"
])

/** Settings VALIDATE reads. */
export interface Options {
  /** The model catalog AI steps are checked against. */
  readonly catalog: ModelCatalog.Service
  /** Deepest nesting allowed (default 10): the root is level 0, its nested workflows level 1, … */
  readonly dag_max_depth?: number | undefined
  /** Model an AI step without `model`/`ai_model` uses; without it such a step is an error. */
  readonly default_model?: string | undefined
}

/** The outcome: the decoded definition (if it decoded), its graph, and the issues. */
export interface Result {
  readonly definition: Option.Option<Workflow.Definition>
  readonly graph: Option.Option<Workflow.Graph>
  readonly issues: ReadonlyArray<Issue>
  /** True when no issue is an error. */
  readonly valid: boolean
}

/** Default of `dag_max_depth`. */
export const defaultMaxDepth = 10

const issue = (code: IssueCode, severity: Severity, path: string, message: string, members?: ReadonlyArray<string>): Issue =>
  members === undefined ? { code, severity, path, message } : { code, severity, path, message, members }

/** True when no issue is an error. */
export const isValid = (issues: ReadonlyArray<Issue>): boolean => issues.every((i) => i.severity !== "error")

/** True when some error leaves no usable graph (cycle, unknown dependency, duplicate id, depth, schema). */
export const hasStructuralErrors = (issues: ReadonlyArray<Issue>): boolean =>
  issues.some((i) => i.severity === "error" && structuralCodes.has(i.code))

/** Turns a decode failure's path (`steps.2.workflow.steps.0.config`) into a step path (`sub/step-0`) and a field. */
const schemaPath = (input: unknown, path: ReadonlyArray<PropertyKey>): { readonly step: string; readonly field: string } => {
  let value: unknown = input
  let step = ""
  const field: Array<string> = []
  for (let i = 0; i < path.length; i++) {
    const key = path[i]
    const next: unknown = typeof value === "object" && value !== null ? (value as Record<PropertyKey, unknown>)[key as string] : undefined
    if (key === "steps" && typeof path[i + 1] === "number") {
      const position = path[i + 1] as number
      const raw: unknown = Array.isArray(next) ? next[position] : undefined
      const id = typeof raw === "object" && raw !== null && typeof (raw as { id?: unknown }).id === "string"
        ? (raw as { id: string }).id
        : `step-${position}`
      step = Workflow.joinPath(step, id)
      field.length = 0
      value = raw
      i++
      continue
    }
    if (key === "workflow") {
      field.length = 0
      value = next
      continue
    }
    field.push(String(key))
    value = next
  }
  return { step, field: field.join(".") }
}

const numericKeys = ["input_tokens", "max_tokens", "estimated_ms", "estimated_cost_usd", "retention_days", "temperature"] as const

/** The structural issues of a decoded definition. */
export const validateGraph = (graph: Workflow.Graph, options: Options): ReadonlyArray<Issue> => {
  const maxDepth = options.dag_max_depth ?? defaultMaxDepth
  const out: Array<Issue> = []
  const nodes = graph.nodes
  for (const scope of graph.scopes) {
    const where = scope.path === "" ? "the workflow" : `nested workflow ${scope.path}`
    if (scope.members.length === 0) out.push(issue("empty_workflow", "error", scope.path, `${where} has no steps`))
    if (scope.depth === maxDepth + 1) {
      out.push(issue("depth_exceeded", "error", scope.path, `${where} is nested ${scope.depth} levels deep; dag_max_depth is ${maxDepth}`))
    }
  }
  for (const d of graph.duplicates) {
    const paths = d.nodes.map((n) => nodes[n]?.path ?? "")
    out.push(issue("duplicate_id", "error", paths[0] ?? "", `step id '${d.id}' is used by ${d.nodes.length} steps (positions ${d.nodes.map((n) => nodes[n]?.position).join(", ")})`))
  }
  for (const node of nodes) {
    for (const name of node.unknownDeps) {
      out.push(issue("unknown_dependency", "error", node.path, `step '${node.id}' depends on '${name}', which is no step of its workflow`))
    }
    if (node.type === "workflow" && node.step.workflow === undefined) {
      out.push(issue("schema_error", "error", node.path, `step '${node.id}' of type 'workflow' has no nested 'workflow'`))
    }
    if (!isKnownType(node.type)) {
      out.push(issue("unknown_step_type", "warning", node.path, `step type '${node.type}' is not known to HeirOS; type defaults are assumed`))
    }
    for (const key of numericKeys) {
      const v = node.config[key]
      if (v !== undefined && !(typeof v === "number" && Number.isFinite(v) && v >= 0)) {
        out.push(issue("schema_error", "error", node.path, `config.${key} must be a non-negative number, got ${JSON.stringify(v)}`))
      }
    }
    for (const key of ["model", "ai_model"] as const) {
      const v = node.config[key]
      if (v !== undefined && typeof v !== "string") out.push(issue("schema_error", "error", node.path, `config.${key} must be a string`))
    }
    if (isAi(node.type, node.config)) {
      const named = modelName(node.config)
      if (named !== undefined) {
        if (Option.isNone(options.catalog.resolve(named))) {
          out.push(issue("unknown_model", "error", node.path, `AI step '${node.id}' names model '${named}', which the model catalog does not know`))
        }
      } else if (options.default_model === undefined) {
        out.push(issue("missing_model", "error", node.path, `AI step '${node.id}' (type '${node.type}') names no model (config.model)`))
      } else if (Option.isNone(options.catalog.resolve(options.default_model))) {
        out.push(issue("unknown_model", "error", node.path, `AI step '${node.id}' uses the default model '${options.default_model}', which the model catalog does not know`))
      }
    }
  }
  // Cycles and connectivity, per list (dependencies never cross lists).
  for (const scope of graph.scopes) {
    const members = scope.members
    if (members.length === 0) continue
    const base = members[0] ?? 0
    const preds = members.map((m) => (nodes[m]?.deps ?? []).map((d) => d - base))
    const succs: Array<Array<number>> = members.map(() => [])
    preds.forEach((ps, i) => {
      for (const p of ps) succs[p]?.push(i)
    })
    const { remaining } = topoOrder({ preds, succs })
    if (remaining.length > 0) {
      for (const cycle of cycles({ preds, succs }, remaining)) {
        const paths = cycle.map((i) => nodes[base + i]?.path ?? "")
        out.push(issue("cycle", "error", paths[0] ?? scope.path, `steps form a cycle: ${[...paths, paths[0]].join(" → ")}`, paths))
      }
    }
    if (members.length > 1) {
      // Weakly connected to the first step, or unreachable.
      const seen = new Uint8Array(members.length)
      const queue = [0]
      seen[0] = 1
      for (let h = 0; h < queue.length; h++) {
        const v = queue[h] ?? 0
        for (const w of [...(preds[v] ?? []), ...(succs[v] ?? [])]) {
          if (seen[w] === 1) continue
          seen[w] = 1
          queue.push(w)
        }
      }
      const first = nodes[base]?.id ?? ""
      for (let i = 0; i < members.length; i++) {
        if (seen[i] === 1) continue
        const node = nodes[base + i]
        if (node === undefined) continue
        out.push(issue("unreachable_step", "warning", node.path, `step '${node.id}' is not connected to '${first}': no dependency path leads to or from it`))
      }
    }
  }
  return out
}

/** VALIDATE: decodes `input` as a definition and reports every issue. */
export const validate = (input: unknown, options: Options): Result => {
  const decoded = Workflow.decode(input)
  if (Either.isLeft(decoded)) {
    const issues = ParseResult.ArrayFormatter.formatErrorSync(decoded.left).map((e) => {
      const { step, field } = schemaPath(input, e.path)
      return issue("schema_error", "error", step, field === "" ? e.message : `${field}: ${e.message}`)
    })
    return { definition: Option.none(), graph: Option.none(), issues, valid: false }
  }
  return validateDefinition(decoded.right, options)
}

/** VALIDATE on an already decoded definition. */
export const validateDefinition = (definition: Workflow.Definition, options: Options): Result => {
  const graph = Workflow.normalise(definition)
  const issues = validateGraph(graph, options)
  return { definition: Option.some(definition), graph: Option.some(graph), issues, valid: isValid(issues) }
}

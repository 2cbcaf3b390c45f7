/**
 * The workflow definition (as clients send it) and its normalised graph: every step of every
 * nesting level with its path (`sub/step-2`), its resolved dependencies, and the flat graph of
 * executable steps that the analysis runs on.
 *
 * Normalisation follows WORKFLOWS.md: a missing `id` becomes `step-<index>` (0-based position in
 * its list); in a `linear` workflow, or where no step of a list names any dependency, each step
 * depends on the one before it (in a `linear` workflow in addition to what it declares).
 */
import { Either, type ParseResult, Schema } from "effect"

/** `linear` (the default) or `hierarchical_dag`. */
export const WorkflowType = Schema.Literal("hierarchical_dag", "linear")
export type WorkflowType = typeof WorkflowType.Type

/** Free-form step settings; the keys the analysis reads are listed in {@link ConfigKeys}. */
export type StepConfig = { readonly [key: string]: unknown }

/** The configuration keys HeirOS reads. */
export const ConfigKeys = [
  "model", "ai_model", "input_tokens", "max_tokens", "estimated_ms", "estimated_cost_usd", "frameworks",
  "destination", "source", "pii", "personal_data", "temperature", "retention_days", "cache", "batch", "approver",
  "author", "external", "audit_trail", "audit"
] as const

/** One step as decoded. */
export interface Step {
  readonly id?: string | undefined
  readonly name?: string | undefined
  readonly type: string
  readonly config: StepConfig
  readonly depends_on?: ReadonlyArray<string> | undefined
  /** The nested definition of a step of type `workflow`. */
  readonly workflow?: Definition | undefined
}

/** One step as sent. */
export interface StepEncoded {
  readonly id?: string | undefined
  readonly name?: string | undefined
  readonly type: string
  readonly config?: StepConfig | undefined
  readonly depends_on?: ReadonlyArray<string> | undefined
  readonly workflow?: DefinitionEncoded | undefined
}

/** A workflow definition as decoded. */
export interface Definition {
  readonly name: string
  readonly description?: string | undefined
  readonly type: WorkflowType
  readonly compliance_required: boolean
  /** Who wrote the workflow; segregation of duties compares approvers against it. */
  readonly author?: string | undefined
  readonly steps: ReadonlyArray<Step>
}

/** A workflow definition as sent. */
export interface DefinitionEncoded {
  readonly name: string
  readonly description?: string | undefined
  readonly type?: WorkflowType | undefined
  readonly compliance_required?: boolean | undefined
  readonly author?: string | undefined
  readonly steps: ReadonlyArray<StepEncoded>
}

const Id = Schema.String.pipe(Schema.minLength(1), Schema.pattern(/^[^/]+$/, { message: () => "a step id must not be empty or contain '/'" }))

// Unknown keys are kept, so an optimised definition still carries what the author wrote.
const preserve = { parseOptions: { onExcessProperty: "preserve" as const } }

/** Schema of one step. */
export const Step: Schema.Schema<Step, StepEncoded> = Schema.Struct({
  id: Schema.optional(Id),
  name: Schema.optional(Schema.String),
  type: Schema.String.pipe(Schema.minLength(1)),
  config: Schema.optionalWith(Schema.Record({ key: Schema.String, value: Schema.Unknown }), { default: () => ({}) }),
  depends_on: Schema.optional(Schema.Array(Schema.String)),
  workflow: Schema.optional(Schema.suspend((): Schema.Schema<Definition, DefinitionEncoded> => Definition))
}).annotations(preserve)

/** Schema of a workflow definition. */
export const Definition: Schema.Schema<Definition, DefinitionEncoded> = Schema.Struct({
  name: Schema.String.pipe(Schema.minLength(1)),
  description: Schema.optional(Schema.String),
  type: Schema.optionalWith(WorkflowType, { default: () => "linear" as const }),
  compliance_required: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  author: Schema.optional(Schema.String),
  steps: Schema.Array(Step)
}).annotations(preserve)

/** Decodes with the schema alone (what {@link decode} falls back to). */
export const decodeWithSchema = Schema.decodeUnknownEither(Definition, { errors: "all", onExcessProperty: "preserve" })

const isRecord = (u: unknown): u is Readonly<Record<string, unknown>> => typeof u === "object" && u !== null && !Array.isArray(u)
const optionalString = (u: unknown): boolean => u === undefined || typeof u === "string"

/**
 * The same result as the schema for well-formed input, without its per-node overhead (10,000
 * steps decode in milliseconds); `undefined` sends anything unusual through the schema, which
 * also words the errors.
 */
const decodeFast = (input: unknown): Definition | undefined => {
  if (!isRecord(input) || typeof input["name"] !== "string" || input["name"].length === 0 || !Array.isArray(input["steps"])) return undefined
  const type = input["type"]
  const compliance = input["compliance_required"]
  if (!(type === undefined || type === "linear" || type === "hierarchical_dag")) return undefined
  if (!(compliance === undefined || typeof compliance === "boolean")) return undefined
  if (!optionalString(input["description"]) || !optionalString(input["author"])) return undefined
  const raw: ReadonlyArray<unknown> = input["steps"]
  const steps: Array<Step> = []
  for (const s of raw) {
    if (!isRecord(s) || typeof s["type"] !== "string" || s["type"].length === 0 || !optionalString(s["name"])) return undefined
    const id = s["id"]
    if (!(id === undefined || (typeof id === "string" && id.length > 0 && !id.includes("/")))) return undefined
    const config = s["config"]
    if (!(config === undefined || isRecord(config))) return undefined
    const deps = s["depends_on"]
    if (!(deps === undefined || (Array.isArray(deps) && deps.every((d) => typeof d === "string")))) return undefined
    let workflow: Definition | undefined
    if (s["workflow"] !== undefined) {
      workflow = decodeFast(s["workflow"])
      if (workflow === undefined) return undefined
    }
    const step = { ...s, type: s["type"], config: config ?? {} } as Step
    steps.push(workflow === undefined ? step : { ...step, workflow })
  }
  return {
    ...input,
    name: input["name"],
    type: type ?? "linear",
    compliance_required: compliance ?? false,
    steps
  }
}

/** Decodes an unknown value (parsed JSON/YAML) as a definition. */
export const decode = (input: unknown): Either.Either<Definition, ParseResult.ParseError> => {
  const fast = decodeFast(input)
  return fast === undefined ? decodeWithSchema(input) : Either.right(fast)
}

/** Encodes a definition back to plain JSON-able data. */
export const encode = Schema.encodeSync(Definition)

// ---------------------------------------------------------------------------------------------
// The normalised graph

/** One list of steps: the root definition or the `workflow` of a step. */
export interface Scope {
  readonly index: number
  /** `""` for the root, else the path of the step holding it (`sub`, `sub/inner`). */
  readonly path: string
  /** 0 for the root; one more per nesting. */
  readonly depth: number
  readonly definition: Definition
  /** Node indexes of its steps, in order. */
  readonly members: ReadonlyArray<number>
  /** The node of the `workflow` step holding it (undefined for the root). */
  readonly owner: number | undefined
  /** True when the dependencies are the implicit chain (linear, or no step names any). */
  readonly chained: boolean
}

/** One step of any level. */
export interface Node {
  readonly index: number
  readonly scope: number
  /** Its position in its list. */
  readonly position: number
  /** Its id (explicit, or `step-<position>`). */
  readonly id: string
  readonly explicitId: boolean
  /** `id` prefixed by the ids of the workflow steps above it, joined by `/`. */
  readonly path: string
  readonly type: string
  readonly config: StepConfig
  readonly step: Step
  /** Resolved dependencies (node indexes, same scope, no repeats), implicit ones included. */
  readonly deps: ReadonlyArray<number>
  /** Declared dependencies naming no step of its list. */
  readonly unknownDeps: ReadonlyArray<string>
  /** The scope of its nested workflow, if it has one. */
  readonly child: number | undefined
}

/** A normalised definition. */
export interface Graph {
  readonly definition: Definition
  readonly nodes: ReadonlyArray<Node>
  readonly scopes: ReadonlyArray<Scope>
  /** Ids that occur more than once in one list: `[scope, id, node indexes]`. */
  readonly duplicates: ReadonlyArray<{ readonly scope: number; readonly id: string; readonly nodes: ReadonlyArray<number> }>
}

/** The id a step gets in its list. */
export const stepId = (step: Step, position: number): string => step.id ?? `step-${position}`

/** True when the list's dependencies are the implicit chain only. */
export const isChained = (definition: Definition): boolean =>
  definition.type === "linear" || definition.steps.every((s) => s.depends_on === undefined || s.depends_on.length === 0)

/** The path of `id` inside the scope at `scopePath`. */
export const joinPath = (scopePath: string, id: string): string => (scopePath === "" ? id : `${scopePath}/${id}`)

/** Normalises a definition: every level, ids, paths and resolved dependencies. Iterative over steps. */
export const normalise = (definition: Definition): Graph => {
  const nodes: Array<Node> = []
  const scopes: Array<Scope> = []
  const duplicates: Array<{ scope: number; id: string; nodes: Array<number> }> = []
  const queue: Array<{ definition: Definition; path: string; depth: number; owner: number | undefined }> = [
    { definition, path: "", depth: 0, owner: undefined }
  ]
  // Children are attached to their owner node after the owner's scope is built.
  const childOf = new Map<number, number>()
  for (let q = 0; q < queue.length; q++) {
    const item = queue[q]
    if (item === undefined) break
    const scopeIndex = scopes.length
    if (item.owner !== undefined) childOf.set(item.owner, scopeIndex)
    const steps = item.definition.steps
    const chained = isChained(item.definition)
    const base = nodes.length
    const byId = new Map<string, number>()
    const dupes = new Map<string, Array<number>>()
    steps.forEach((step, position) => {
      const id = stepId(step, position)
      const index = base + position
      const first = byId.get(id)
      if (first === undefined) byId.set(id, index)
      else dupes.set(id, [...(dupes.get(id) ?? [first]), index])
    })
    for (const [id, list] of dupes) duplicates.push({ scope: scopeIndex, id, nodes: list })
    const members: Array<number> = []
    steps.forEach((step, position) => {
      const id = stepId(step, position)
      const index = base + position
      const deps: Array<number> = []
      const unknownDeps: Array<string> = []
      const add = (d: number) => {
        if (!deps.includes(d)) deps.push(d)
      }
      for (const name of step.depends_on ?? []) {
        const d = byId.get(name)
        if (d === undefined) unknownDeps.push(name)
        else add(d)
      }
      if (chained && position > 0) add(index - 1)
      members.push(index)
      nodes.push({
        index,
        scope: scopeIndex,
        position,
        id,
        explicitId: step.id !== undefined,
        path: joinPath(item.path, id),
        type: step.type,
        config: step.config,
        step,
        deps,
        unknownDeps,
        child: undefined
      })
      if (step.workflow !== undefined) {
        queue.push({ definition: step.workflow, path: joinPath(item.path, id), depth: item.depth + 1, owner: index })
      }
    })
    scopes.push({ index: scopeIndex, path: item.path, depth: item.depth, definition: item.definition, members, owner: item.owner, chained })
  }
  for (const [owner, child] of childOf) {
    const node = nodes[owner]
    if (node !== undefined) nodes[owner] = { ...node, child }
  }
  return { definition, nodes, scopes, duplicates }
}

// ---------------------------------------------------------------------------------------------
// The flat graph: nested workflows replaced by their steps

/** The executable steps with the edges between them, nested workflows expanded. */
export interface Flat {
  /** Node indexes (of {@link Graph.nodes}) of the executable steps: every step but non-empty workflow steps. */
  readonly nodes: ReadonlyArray<number>
  /** `preds[i]` / `succs[i]`: positions in `nodes` of the predecessors / successors of `nodes[i]`. */
  readonly preds: ReadonlyArray<ReadonlyArray<number>>
  readonly succs: ReadonlyArray<ReadonlyArray<number>>
  /** Position in `nodes` of a graph node, or -1 for an expanded workflow step. */
  readonly positionOf: Int32Array
}

/**
 * Expands nested workflows: a workflow step's first steps inherit its dependencies, and its
 * dependants depend on its last steps. Edges of unknown dependencies are left out.
 */
export const flatten = (graph: Graph): Flat => {
  const n = graph.nodes.length
  const expanded = (node: Node): boolean => {
    if (node.child === undefined) return false
    const scope = graph.scopes[node.child]
    return scope !== undefined && scope.members.length > 0
  }
  // Entries and exits (executable node indexes) of every node, children before parents.
  const entries: Array<ReadonlyArray<number>> = new Array<ReadonlyArray<number>>(n)
  const exits: Array<ReadonlyArray<number>> = new Array<ReadonlyArray<number>>(n)
  const hasDependants = new Uint8Array(n)
  for (const node of graph.nodes) for (const d of node.deps) hasDependants[d] = 1
  for (let s = graph.scopes.length - 1; s >= 0; s--) {
    const scope = graph.scopes[s]
    if (scope === undefined) continue
    for (const m of scope.members) {
      const node = graph.nodes[m]
      if (node === undefined) continue
      if (!expanded(node)) {
        entries[m] = [m]
        exits[m] = [m]
        continue
      }
      const child = graph.scopes[node.child ?? -1]
      const ins: Array<number> = []
      const outs: Array<number> = []
      for (const c of child?.members ?? []) {
        const cn = graph.nodes[c]
        if (cn === undefined) continue
        if (cn.deps.length === 0) ins.push(...(entries[c] ?? []))
        if (hasDependants[c] === 0) outs.push(...(exits[c] ?? []))
      }
      entries[m] = ins
      exits[m] = outs
    }
  }
  const flatNodes: Array<number> = []
  const positionOf = new Int32Array(n).fill(-1)
  for (const node of graph.nodes) {
    if (expanded(node)) continue
    positionOf[node.index] = flatNodes.length
    flatNodes.push(node.index)
  }
  const preds: Array<Array<number>> = flatNodes.map(() => [])
  const succs: Array<Array<number>> = flatNodes.map(() => [])
  const seen = new Set<number>()
  for (const node of graph.nodes) {
    if (node.deps.length === 0) continue
    const targets = entries[node.index] ?? []
    for (const t of targets) {
      const tp = positionOf[t] ?? -1
      if (tp < 0) continue
      seen.clear()
      for (const d of node.deps) {
        for (const e of exits[d] ?? []) {
          const ep = positionOf[e] ?? -1
          if (ep < 0 || seen.has(ep)) continue
          seen.add(ep)
          preds[tp]?.push(ep)
          succs[ep]?.push(tp)
        }
      }
    }
  }
  return { nodes: flatNodes, preds, succs, positionOf }
}

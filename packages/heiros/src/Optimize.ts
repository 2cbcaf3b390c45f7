/**
 * OPTIMIZE: rewrite rules applied in rounds, up to `max_optimization_iterations` or until a round
 * changes nothing. Each rule rewrites the definition (every nesting level); a rewrite that would
 * leave a structurally invalid workflow is discarded, so the result is always a valid DAG.
 *
 * - `low`: `assign_ids` and `fix_dependencies` (when `enable_auto_fix`), `transitive_reduction`,
 *   `remove_duplicate_steps`;
 * - `medium`: + `parallelize_chain`, `enable_caching`, `batch_ai_calls`;
 * - `high`: + `cheaper_model`, `insert_compliance_check` (when `enable_compliance_mode`).
 *
 * The model-assisted review of `high` is the gateway's (it calls gateway #2); {@link reviewRequest}
 * gives it the text to send.
 */
import type { ModelCatalog } from "@tidyllm/core"
import { Money } from "@tidyllm/core"
import { Either, Option, Schema } from "effect"
import {
  batchOf, cheapAiKinds, familyOf, isAi, isExternalOutput, modelKey, modelName, num, priceOf, type BatchMember
} from "./internal/estimate.js"
import { redundantEdges, reach, topoOrder } from "./internal/graph.js"
import { canonical } from "./internal/json.js"
import * as M from "./internal/metrics.js"
import * as Validate from "./Validate.js"
import * as Workflow from "./Workflow.js"

/** `optimization_level`. */
export const Level = Schema.Literal("low", "medium", "high")
export type Level = typeof Level.Type

/** The rewrite rules. */
export const RuleName = Schema.Literal(
  "assign_ids",
  "fix_dependencies",
  "transitive_reduction",
  "remove_duplicate_steps",
  "parallelize_chain",
  "enable_caching",
  "batch_ai_calls",
  "cheaper_model",
  "insert_compliance_check"
)
export type RuleName = typeof RuleName.Type

/** Kinds of behaviour change; any of them under `enable_approval_workflows` opens a flow agreement. */
export type BehaviourChange = "model_change" | "removed_step" | "parallel_order" | "added_step"

/** Settings the rules read (names as in the `workflow_optimizer` config section). */
export interface RuleOptions {
  readonly catalog: ModelCatalog.Service
  readonly default_model?: string | undefined
  /** Apply the safe fixes of `low` (default true). */
  readonly enable_auto_fix?: boolean | undefined
  /** Insert compliance checks before external outputs at `high` (default true). */
  readonly enable_compliance_mode?: boolean | undefined
  /** Frameworks an inserted compliance check names (default SOX, GDPR, Internal). */
  readonly compliance_frameworks?: ReadonlyArray<string> | undefined
  /**
   * Cheaper models the catalog marks suitable, by model id (`{ "claude-3-sonnet": "claude-3-haiku" }`);
   * when given, only these moves are made. Without it, the cheapest chat model of the same family (id without its last `-` part)
   * whose context window and output limit fit the step is suitable.
   */
  readonly model_downgrades?: Readonly<Record<string, string>> | undefined
}

/** Settings of OPTIMIZE. */
export interface Options extends Validate.Options, RuleOptions {
  readonly optimization_level?: Level | undefined
  /** Most rounds (default 10). */
  readonly max_optimization_iterations?: number | undefined
}

/** What a change is expected to save on one run (negative: it costs more). */
export interface Saving {
  readonly critical_path_ms: number
  readonly cost_usd: number
}

/** One applied rewrite. */
export interface Change {
  readonly rule: RuleName
  readonly level: Level
  /** The round (1-based) that applied it. */
  readonly round: number
  /** Paths of the steps concerned (as they were before the change). */
  readonly steps: ReadonlyArray<string>
  readonly before: unknown
  readonly after: unknown
  readonly description: string
  /** The kind of behaviour change, if it changes behaviour. */
  readonly behaviour_change: BehaviourChange | undefined
  /** For a removed or batched step: the path of the step that now does its work. */
  readonly replaced_by?: string | undefined
  /** The rule application's saving, split evenly over its changes. */
  readonly saving: Saving
}

/** An optimisation ANALYZE suggests. */
export interface Suggestion {
  readonly rule: RuleName
  readonly level: Level
  readonly steps: ReadonlyArray<string>
  readonly description: string
  readonly behaviour_changing: boolean
  readonly expected_saving: Saving
}

/** The outcome of OPTIMIZE. */
export interface Result {
  readonly original: Workflow.Definition
  readonly definition: Workflow.Definition
  readonly changes: ReadonlyArray<Change>
  readonly metrics_before: M.Metrics
  readonly metrics_after: M.Metrics
  /** Rounds run, the last (unchanged) round included when a fixed point was reached. */
  readonly iterations: number
  /** True when the last round changed nothing. */
  readonly fixed_point: boolean
  /** `metadata.optimization_applied`: at least one change. */
  readonly optimization_applied: boolean
  /** True when some change alters behaviour: the gateway opens a flow agreement for it. */
  readonly behaviour_changing: boolean
  readonly behaviour_changes: ReadonlyArray<BehaviourChange>
  /** What VALIDATE reported on the result. */
  readonly issues: ReadonlyArray<Validate.Issue>
}

/** The definition has structural errors the auto-fix cannot repair (HTTP 400). */
export class CannotOptimize extends Schema.TaggedError<CannotOptimize>()("CannotOptimize", {
  message: Schema.String,
  issues: Schema.Array(Validate.Issue)
}) {
  get type() { return "invalid_workflow" as const }
  get status() { return 400 }
}

/** Default of `max_optimization_iterations`. */
export const defaultMaxIterations = 10

/** The rules of each level, in the order a round applies them. */
export const rulesOf = (level: Level, options: RuleOptions): ReadonlyArray<RuleName> => {
  const fix: ReadonlyArray<RuleName> = options.enable_auto_fix === false ? [] : ["assign_ids", "fix_dependencies"]
  const low: ReadonlyArray<RuleName> = [...fix, "transitive_reduction", "remove_duplicate_steps"]
  const medium: ReadonlyArray<RuleName> = [...low, "parallelize_chain", "enable_caching", "batch_ai_calls"]
  const high: ReadonlyArray<RuleName> = [...medium, "cheaper_model", ...(options.enable_compliance_mode === false ? [] : ["insert_compliance_check" as const])]
  return level === "low" ? low : level === "medium" ? medium : high
}

const levelOf = (rule: RuleName): Level =>
  rule === "parallelize_chain" || rule === "enable_caching" || rule === "batch_ai_calls"
    ? "medium"
    : rule === "cheaper_model" || rule === "insert_compliance_check"
    ? "high"
    : "low"

// ---------------------------------------------------------------------------------------------
// One list of steps

interface Pending {
  readonly rule: RuleName
  readonly steps: ReadonlyArray<string>
  readonly before: unknown
  readonly after: unknown
  readonly description: string
  readonly behaviour_change: BehaviourChange | undefined
  readonly replaced_by?: string | undefined
}

interface Rewrite {
  readonly definition: Workflow.Definition
  readonly changes: ReadonlyArray<Pending>
}

/** Effective dependencies of one list, by position. */
interface ListInfo {
  readonly ids: ReadonlyArray<string>
  readonly index: ReadonlyMap<string, number>
  readonly chained: boolean
  /** Declared dependencies naming a step of the list (positions, no repeats). */
  readonly declared: ReadonlyArray<ReadonlyArray<number>>
  /** Declared plus implicit (positions, no repeats). */
  readonly deps: ReadonlyArray<ReadonlyArray<number>>
}

const listInfo = (def: Workflow.Definition): ListInfo => {
  const ids = def.steps.map((s, i) => Workflow.stepId(s, i))
  const index = new Map<string, number>()
  ids.forEach((id, i) => {
    if (!index.has(id)) index.set(id, i)
  })
  const chained = Workflow.isChained(def)
  const declared = def.steps.map((s) => {
    const out: Array<number> = []
    for (const d of s.depends_on ?? []) {
      const p = index.get(d)
      if (p !== undefined && !out.includes(p)) out.push(p)
    }
    return out
  })
  const deps = declared.map((d, i) => (chained && i > 0 && !d.includes(i - 1) ? [...d, i - 1] : d))
  return { ids, index, chained, declared, deps }
}

/** Gives every step its id explicitly (positions are about to shift). */
const withIds = (steps: ReadonlyArray<Workflow.Step>): Array<Workflow.Step> =>
  steps.map((s, i) => (s.id === undefined ? { ...s, id: Workflow.stepId(s, i) } : s))

const stepJson = (s: Workflow.Step): unknown => JSON.parse(JSON.stringify(s)) as unknown

/** Applies `f` to every list, nested ones first. */
const eachList = (
  def: Workflow.Definition,
  path: string,
  f: (def: Workflow.Definition, path: string) => Rewrite | undefined
): Rewrite => {
  const changes: Array<Pending> = []
  let changed = false
  const steps = def.steps.map((s, i) => {
    if (s.workflow === undefined) return s
    const r = eachList(s.workflow, Workflow.joinPath(path, Workflow.stepId(s, i)), f)
    if (r.definition === s.workflow) return s
    changed = true
    changes.push(...r.changes)
    return { ...s, workflow: r.definition }
  })
  const current = changed ? { ...def, steps } : def
  const own = f(current, path)
  return own === undefined ? { definition: current, changes } : { definition: own.definition, changes: [...changes, ...own.changes] }
}

/** Removes the steps at `removed` (position → position of the step taking over), re-pointing dependencies. */
const removeSteps = (def: Workflow.Definition, removed: ReadonlyMap<number, number>): Workflow.Definition => {
  const steps = withIds(def.steps)
  const rename = new Map<string, string>()
  for (const [gone, kept] of removed) rename.set(steps[gone]?.id ?? "", steps[kept]?.id ?? "")
  const out: Array<Workflow.Step> = []
  steps.forEach((s, i) => {
    if (removed.has(i)) return
    if (s.depends_on === undefined) {
      out.push(s)
      return
    }
    if (!s.depends_on.some((d) => rename.has(d))) {
      out.push(s)
      return
    }
    const deps: Array<string> = []
    for (const d of s.depends_on) {
      const r = rename.get(d) ?? d
      if (r !== s.id && !deps.includes(r)) deps.push(r)
    }
    out.push({ ...s, depends_on: deps })
  })
  return { ...def, steps: out }
}

// ---------------------------------------------------------------------------------------------
// The rules

const assignIds = (def: Workflow.Definition, path: string): Rewrite | undefined => {
  const explicit = new Set(def.steps.flatMap((s) => (s.id === undefined ? [] : [s.id])))
  const added: Array<string> = []
  const steps = def.steps.map((s, i) => {
    const id = Workflow.stepId(s, i)
    if (s.id !== undefined || explicit.has(id)) return s
    added.push(id)
    return { ...s, id }
  })
  if (added.length === 0) return undefined
  return {
    definition: { ...def, steps },
    changes: [{
      rule: "assign_ids",
      steps: added.map((id) => Workflow.joinPath(path, id)),
      before: null,
      after: added,
      description: `gave ${added.length} step(s) their generated ids explicitly`,
      behaviour_change: undefined
    }]
  }
}

const fixDependencies = (def: Workflow.Definition, path: string): Rewrite | undefined => {
  const info = listInfo(def)
  const changes: Array<Pending> = []
  const steps = def.steps.map((s, i) => {
    if (s.depends_on === undefined) return s
    const id = info.ids[i] ?? ""
    const kept: Array<string> = []
    for (const d of s.depends_on) if (info.index.has(d) && d !== id && !kept.includes(d)) kept.push(d)
    if (kept.length === s.depends_on.length) return s
    changes.push({
      rule: "fix_dependencies",
      steps: [Workflow.joinPath(path, id)],
      before: s.depends_on,
      after: kept,
      description: `removed dependencies of '${id}' on unknown steps, itself, or repeated`,
      behaviour_change: undefined
    })
    return { ...s, depends_on: kept }
  })
  if (changes.length === 0) return undefined
  // Removing dangling names can leave no step naming a dependency: keep the list's order then.
  const next = { ...def, steps }
  if (!Workflow.isChained(def) && Workflow.isChained(next)) return undefined
  return { definition: next, changes }
}

const transitiveReduction = (def: Workflow.Definition, path: string): Rewrite | undefined => {
  const info = listInfo(def)
  // In a chain, what a step declares are its data inputs, which `parallelize_chain` reads: keep them.
  if (info.chained || info.declared.every((d) => d.length < 2)) return undefined
  const succs: Array<Array<number>> = def.steps.map(() => [])
  info.deps.forEach((ds, i) => {
    for (const d of ds) succs[d]?.push(i)
  })
  const g = { preds: info.deps, succs }
  const { order, remaining } = topoOrder(g)
  if (remaining.length > 0) return undefined
  const redundant = redundantEdges(g, order)
  const drop = new Map<number, Set<number>>()
  for (const [p, v] of redundant) {
    if (!(info.declared[v] ?? []).includes(p)) continue
    const set = drop.get(v) ?? new Set<number>()
    set.add(p)
    drop.set(v, set)
  }
  if (drop.size === 0) return undefined
  const changes: Array<Pending> = []
  const steps = def.steps.map((s, i) => {
    const set = drop.get(i)
    if (set === undefined || s.depends_on === undefined) return s
    const droppedIds = [...set].map((p) => info.ids[p] ?? "")
    const after = s.depends_on.filter((d) => !droppedIds.includes(d))
    changes.push({
      rule: "transitive_reduction",
      steps: [Workflow.joinPath(path, info.ids[i] ?? "")],
      before: s.depends_on,
      after,
      description: `removed dependencies of '${info.ids[i] ?? ""}' on ${droppedIds.map((d) => `'${d}'`).join(", ")}, already implied through other dependencies`,
      behaviour_change: undefined
    })
    return { ...s, depends_on: after }
  })
  return { definition: { ...def, steps }, changes }
}

// Steps are immutable and survive rounds unchanged, so their keys are computed once.
const contentKeys = new WeakMap<Workflow.Step, string>()
const contentKey = (s: Workflow.Step): string => {
  let key = contentKeys.get(s)
  if (key === undefined) {
    key = `${s.type}\u0000${canonical(s.config)}\u0000${s.workflow === undefined ? "" : canonical(s.workflow)}`
    contentKeys.set(s, key)
  }
  return key
}

const depsKey = (deps: ReadonlyArray<number> | undefined): string => [...(deps ?? [])].sort((a, b) => a - b).join(",")

const removeDuplicates = (def: Workflow.Definition, path: string): Rewrite | undefined => {
  const info = listInfo(def)
  const removed = new Map<number, number>()
  if (info.chained) {
    // In a chain, a step repeating the one before it (same declared inputs) is a duplicate.
    def.steps.forEach((s, i) => {
      const prev = def.steps[i - 1]
      if (prev !== undefined && !removed.has(i - 1) && contentKey(prev) === contentKey(s) && depsKey(info.declared[i]) === depsKey(info.declared[i - 1])) {
        removed.set(i, i - 1)
      }
    })
  } else {
    // In topological order, with dependencies on removed duplicates read as their survivors,
    // so that duplicates of duplicates go in the same pass.
    const succs: Array<Array<number>> = def.steps.map(() => [])
    info.deps.forEach((ds, i) => {
      for (const d of ds) succs[d]?.push(i)
    })
    const { order, remaining } = topoOrder({ preds: info.deps, succs })
    if (remaining.length > 0) return undefined
    const survivor = (i: number): number => removed.get(i) ?? i
    const seen = new Map<string, number>()
    for (const i of order) {
      const s = def.steps[i]
      if (s === undefined) continue
      const key = `${contentKey(s)}|${depsKey([...new Set((info.deps[i] ?? []).map(survivor))])}`
      const first = seen.get(key)
      if (first === undefined) seen.set(key, i)
      else removed.set(i, first)
    }
  }
  if (removed.size === 0) return undefined
  const changes: Array<Pending> = [...removed].map(([gone, kept]) => {
    const keptPath = Workflow.joinPath(path, info.ids[kept] ?? "")
    const step = def.steps[gone]
    return {
      rule: "remove_duplicate_steps",
      steps: [Workflow.joinPath(path, info.ids[gone] ?? "")],
      before: step === undefined ? null : stepJson(step),
      after: null,
      description: `removed '${info.ids[gone] ?? ""}', a duplicate of '${info.ids[kept] ?? ""}'; its dependants now depend on '${info.ids[kept] ?? ""}'`,
      behaviour_change: "removed_step",
      replaced_by: keptPath
    }
  })
  return { definition: removeSteps(def, removed), changes }
}

const parallelizeChain = (def: Workflow.Definition, path: string): Rewrite | undefined => {
  if (def.type !== "linear" || def.steps.length < 2) return undefined
  if (!def.steps.some((s, i) => i > 0 && s.depends_on !== undefined)) return undefined
  const before = listInfo(def)
  const named = withIds(def.steps)
  const steps = named.map((s, i) => {
    if (i === 0 || s.depends_on !== undefined) return s
    return { ...s, depends_on: [named[i - 1]?.id ?? ""] }
  })
  const next: Workflow.Definition = { ...def, type: "hierarchical_dag", steps }
  const after = listInfo(next)
  const freed = before.deps.flatMap((d, i) => (depsKey(d) === depsKey(after.deps[i]) ? [] : [i]))
  if (freed.length === 0) return undefined
  return {
    definition: next,
    changes: [{
      rule: "parallelize_chain",
      steps: freed.map((i) => Workflow.joinPath(path, before.ids[i] ?? "")),
      before: { type: "linear", depends_on: freed.map((i) => (before.deps[i] ?? []).map((d) => before.ids[d])) },
      after: { type: "hierarchical_dag", depends_on: freed.map((i) => (after.deps[i] ?? []).map((d) => after.ids[d])) },
      description: `turned the implicit chain into a DAG of the declared inputs: ${freed.map((i) => `'${before.ids[i] ?? ""}'`).join(", ")} no longer wait for the step before them`,
      behaviour_change: "parallel_order"
    }]
  }
}

const enableCaching = (def: Workflow.Definition, path: string): Rewrite | undefined => {
  const changes: Array<Pending> = []
  const steps = def.steps.map((s, i) => {
    if (s.workflow !== undefined || !isAi(s.type, s.config) || s.config["temperature"] !== 0 || s.config["cache"] !== undefined) return s
    const id = Workflow.stepId(s, i)
    changes.push({
      rule: "enable_caching",
      steps: [Workflow.joinPath(path, id)],
      before: { cache: null },
      after: { cache: true },
      description: `enabled response caching on '${id}': at temperature 0 the same input gives the same answer`,
      behaviour_change: undefined
    })
    return { ...s, config: { ...s.config, cache: true } }
  })
  return changes.length === 0 ? undefined : { definition: { ...def, steps }, changes }
}

const batchMember = (id: string, s: Workflow.Step): BatchMember => {
  const { batch: _batch, ...config } = s.config
  return { id, type: s.type, config }
}

const batchAiCalls = (options: RuleOptions) => (def: Workflow.Definition, path: string): Rewrite | undefined => {
  const info = listInfo(def)
  if (info.chained) return undefined
  const resolvedModel = (s: Workflow.Step): string | undefined => {
    const name = modelName(s.config) ?? options.default_model
    return name === undefined ? undefined : Option.getOrUndefined(Option.map(options.catalog.resolve(name), (e) => e.id))
  }
  const eligible = (s: Workflow.Step): boolean =>
    s.workflow === undefined && isAi(s.type, s.config) && num(s.config, "estimated_cost_usd") === undefined && resolvedModel(s) !== undefined
  const removed = new Map<number, number>()
  const merged = new Map<number, Array<number>>()
  let head = -1
  def.steps.forEach((s, i) => {
    const h = def.steps[head]
    if (h !== undefined && eligible(s) && resolvedModel(s) === resolvedModel(h) && s.config["temperature"] === h.config["temperature"] &&
      depsKey(info.deps[i]) === depsKey(info.deps[head])) {
      removed.set(i, head)
      merged.set(head, [...(merged.get(head) ?? []), i])
      return
    }
    head = eligible(s) ? i : -1
  })
  if (removed.size === 0) return undefined
  const named = withIds(def.steps)
  const withBatches = named.map((s, i) => {
    const members = merged.get(i)
    if (members === undefined) return s
    const batch = [...batchOf(s.config), ...members.flatMap((m) => {
      const ms = named[m]
      return ms === undefined ? [] : [batchMember(ms.id ?? "", ms), ...batchOf(ms.config)]
    })]
    return { ...s, config: { ...s.config, batch } }
  })
  const changes: Array<Pending> = [...merged].map(([h, members]) => ({
    rule: "batch_ai_calls",
    steps: [h, ...members].map((p) => Workflow.joinPath(path, info.ids[p] ?? "")),
    before: [h, ...members].map((p) => info.ids[p]),
    after: { id: info.ids[h], batch: [...batchOf(named[h]?.config ?? {}).map((b) => b.id), ...members.map((p) => info.ids[p])] },
    description: `batched ${members.length + 1} calls to ${resolvedModel(def.steps[h] ?? named[h] ?? { type: "", config: {} }) ?? "the same model"} over the same input into '${info.ids[h] ?? ""}'`,
    behaviour_change: "removed_step",
    replaced_by: Workflow.joinPath(path, info.ids[h] ?? "")
  }))
  return { definition: removeSteps({ ...def, steps: withBatches }, removed), changes }
}

/** The cheaper suitable model for a step on `entry`, if the catalog has one. */
export const cheaperModel = (
  entry: ModelCatalog.ModelEntry,
  options: RuleOptions,
  tokens: { readonly input: number; readonly output: number | undefined }
): ModelCatalog.ModelEntry | undefined => {
  if (options.model_downgrades !== undefined) {
    const mapped = options.model_downgrades[entry.id]
    if (mapped === undefined) return undefined
    const target = Option.getOrUndefined(options.catalog.resolve(mapped))
    return target !== undefined && target.id !== entry.id && priceOf(target) < priceOf(entry) ? target : undefined
  }
  const family = familyOf(entry)
  let best: ModelCatalog.ModelEntry | undefined
  for (const m of options.catalog.models) {
    if (m.kind !== "chat" || m.id === entry.id || familyOf(m) !== family || priceOf(m) >= priceOf(entry)) continue
    if (m.context_window < tokens.input + (tokens.output ?? 0)) continue
    if (tokens.output !== undefined && m.max_output_tokens < tokens.output) continue
    if (best === undefined || priceOf(m) < priceOf(best)) best = m
  }
  return best
}

const cheaperModels = (options: RuleOptions) => (def: Workflow.Definition, path: string): Rewrite | undefined => {
  const changes: Array<Pending> = []
  const steps = def.steps.map((s, i) => {
    const key = modelKey(s.config)
    if (key === undefined || s.workflow !== undefined || !cheapAiKinds.has(s.type)) return s
    if (batchOf(s.config).some((b) => !cheapAiKinds.has(b.type))) return s
    const current = s.config[key]
    const entry = typeof current === "string" ? Option.getOrUndefined(options.catalog.resolve(current)) : undefined
    if (entry === undefined) return s
    const target = cheaperModel(entry, options, { input: num(s.config, "input_tokens") ?? 0, output: num(s.config, "max_tokens") })
    if (target === undefined) return s
    const id = Workflow.stepId(s, i)
    changes.push({
      rule: "cheaper_model",
      steps: [Workflow.joinPath(path, id)],
      before: { [key]: current },
      after: { [key]: target.id },
      description: `moved the ${s.type} step '${id}' from ${entry.id} to the cheaper ${target.id} of the same family`,
      behaviour_change: "model_change"
    })
    return { ...s, config: { ...s.config, [key]: target.id } }
  })
  return changes.length === 0 ? undefined : { definition: { ...def, steps }, changes }
}

/** Paths of external outputs no compliance check precedes (across levels). */
const uncheckedOutputs = (def: Workflow.Definition): ReadonlySet<string> => {
  // Most workflows have no external output: find that out without building the graph.
  const pending: Array<Workflow.Definition> = [def]
  let any = false
  while (pending.length > 0 && !any) {
    const d = pending.pop()
    for (const s of d?.steps ?? []) {
      if (isExternalOutput(s.type, s.config)) any = true
      if (s.workflow !== undefined) pending.push(s.workflow)
    }
  }
  if (!any) return new Set()
  const graph = Workflow.normalise(def)
  const flat = Workflow.flatten(graph)
  const out = new Set<string>()
  flat.nodes.forEach((n, pos) => {
    const node = graph.nodes[n]
    if (node === undefined || !isExternalOutput(node.type, node.config)) return
    const ancestors = reach(flat.preds, [pos])
    const checked = flat.nodes.some((m, q) => q !== pos && ancestors[q] === 1 && graph.nodes[m]?.type === "compliance_check")
    if (!checked) out.add(node.path)
  })
  return out
}

const insertComplianceChecks = (options: RuleOptions) => {
  let targets: ReadonlySet<string> = new Set()
  const rule = (def: Workflow.Definition, path: string): Rewrite | undefined => {
    const info = listInfo(def)
    const hits = def.steps.flatMap((_, i) => (targets.has(Workflow.joinPath(path, info.ids[i] ?? "")) ? [i] : []))
    if (hits.length === 0) return undefined
    const taken = new Set(info.ids)
    const named = withIds(def.steps)
    const steps: Array<Workflow.Step> = []
    const changes: Array<Pending> = []
    named.forEach((s, i) => {
      if (!hits.includes(i)) {
        steps.push(s)
        return
      }
      const outId = s.id ?? ""
      let checkId = `${outId}-compliance-check`
      for (let k = 2; taken.has(checkId); k++) checkId = `${outId}-compliance-check-${k}`
      taken.add(checkId)
      const check: Workflow.Step = {
        id: checkId,
        type: "compliance_check",
        config: { frameworks: [...(options.compliance_frameworks ?? ["SOX", "GDPR", "Internal"])], inserted_by: "heiros" },
        ...(info.chained ? {} : { depends_on: s.depends_on ?? [] })
      }
      steps.push(check)
      steps.push(info.chained ? s : { ...s, depends_on: [checkId] })
      changes.push({
        rule: "insert_compliance_check",
        steps: [Workflow.joinPath(path, outId)],
        before: null,
        after: stepJson(check),
        description: `inserted the compliance check '${checkId}' before the external output '${outId}'`,
        behaviour_change: "added_step"
      })
    })
    return { definition: { ...def, steps }, changes }
  }
  return (def: Workflow.Definition): Rewrite => {
    targets = uncheckedOutputs(def)
    return targets.size === 0 ? { definition: def, changes: [] } : eachList(def, "", rule)
  }
}

const ruleFunction = (rule: RuleName, options: RuleOptions): (def: Workflow.Definition) => Rewrite => {
  const lists = (f: (def: Workflow.Definition, path: string) => Rewrite | undefined) => (def: Workflow.Definition) => eachList(def, "", f)
  switch (rule) {
    case "assign_ids":
      return lists(assignIds)
    case "fix_dependencies":
      return lists(fixDependencies)
    case "transitive_reduction":
      return lists(transitiveReduction)
    case "remove_duplicate_steps":
      return lists(removeDuplicates)
    case "parallelize_chain":
      return lists(parallelizeChain)
    case "enable_caching":
      return lists(enableCaching)
    case "batch_ai_calls":
      return lists(batchAiCalls(options))
    case "cheaper_model":
      return lists(cheaperModels(options))
    case "insert_compliance_check":
      return insertComplianceChecks(options)
  }
}

// ---------------------------------------------------------------------------------------------
// Rounds

const saving = (before: M.Metrics, after: M.Metrics, share: number): Saving => ({
  critical_path_ms: (before.critical_path.estimated_ms - after.critical_path.estimated_ms) / share,
  cost_usd: Money.toUsd(Money.Nanos(Math.abs(before.estimated_cost_nanos - after.estimated_cost_nanos))) *
    Math.sign(before.estimated_cost_nanos - after.estimated_cost_nanos) / share
})

/**
 * The prepared graph of a rewritten definition, or `undefined` when it has a structural error
 * (duplicate id, unknown dependency, nesting too deep, cycle): the checks of VALIDATE that a
 * rewrite could break, without the ones it cannot (schema, models, types).
 */
const structurallySound = (def: Workflow.Definition, options: Options): M.Prepared | undefined => {
  const graph = Workflow.normalise(def)
  const maxDepth = options.dag_max_depth ?? Validate.defaultMaxDepth
  if (graph.duplicates.length > 0 || graph.nodes.some((n) => n.unknownDeps.length > 0) || graph.scopes.some((s) => s.depth > maxDepth)) return undefined
  const prepared = M.prepare(graph, options)
  return prepared.order.length === prepared.flat.nodes.length ? prepared : undefined
}

/** OPTIMIZE on a decoded definition. */
export const optimizeDefinition = (original: Workflow.Definition, options: Options): Either.Either<Result, CannotOptimize> => {
  const level = options.optimization_level ?? "medium"
  const maxRounds = Math.max(0, Math.floor(options.max_optimization_iterations ?? defaultMaxIterations))
  const rules = rulesOf(level, options)
  const changes: Array<Change> = []
  let current = original
  // The safe fixes first, so that what they repair does not stop the optimisation.
  const fixes = rules.filter((r) => r === "assign_ids" || r === "fix_dependencies")
  const preFixes: Array<Pending> = []
  for (const rule of fixes) {
    const r = ruleFunction(rule, options)(current)
    current = r.definition
    preFixes.push(...r.changes)
  }
  const first = Validate.validateDefinition(current, options)
  if (Validate.hasStructuralErrors(first.issues) || Option.isNone(first.graph)) {
    return Either.left(new CannotOptimize({ message: "the workflow has structural errors that the auto-fix cannot repair", issues: first.issues }))
  }
  // Measured after the safe fixes: a self-dependency the fix removes would hide a step from the metrics.
  let metrics = M.metricsOf(M.prepare(first.graph.value, options))
  const metricsBefore = metrics
  const zero = saving(metrics, metrics, 1)
  for (const c of preFixes) changes.push({ ...c, level: levelOf(c.rule), round: 1, saving: zero })
  let rounds = 0
  let fixedPoint = false
  // A rule that changed nothing on a definition changes nothing on it again.
  const idleOn = new Map<RuleName, Workflow.Definition>()
  while (rounds < maxRounds) {
    rounds++
    let changedThisRound = preFixes.length > 0 && rounds === 1
    for (const rule of rules) {
      if (idleOn.get(rule) === current) continue
      const r = ruleFunction(rule, options)(current)
      if (r.changes.length === 0 || r.definition === current) {
        idleOn.set(rule, current)
        continue
      }
      const prepared = structurallySound(r.definition, options)
      // A rewrite never makes the workflow invalid: one that would is dropped.
      if (prepared === undefined) {
        idleOn.set(rule, current)
        continue
      }
      const next = M.metricsOf(prepared)
      const share = saving(metrics, next, r.changes.length)
      for (const c of r.changes) changes.push({ ...c, level: levelOf(c.rule), round: rounds, saving: share })
      current = r.definition
      metrics = next
      changedThisRound = true
    }
    if (!changedThisRound) {
      fixedPoint = true
      break
    }
  }
  const issues = Validate.validateDefinition(current, options).issues
  const behaviour_changes = [...new Set(changes.flatMap((c) => (c.behaviour_change === undefined ? [] : [c.behaviour_change])))]
  return Either.right({
    original,
    definition: current,
    changes,
    metrics_before: metricsBefore,
    metrics_after: metrics,
    iterations: rounds,
    fixed_point: fixedPoint,
    optimization_applied: changes.length > 0,
    behaviour_changing: behaviour_changes.length > 0,
    behaviour_changes,
    issues
  })
}

/** OPTIMIZE: decodes `input` and optimises it. */
export const optimize = (input: unknown, options: Options): Either.Either<Result, CannotOptimize> => {
  const decoded = Workflow.decode(input)
  if (Either.isLeft(decoded)) {
    const issues = Validate.validate(input, options).issues
    return Either.left(new CannotOptimize({ message: "the workflow does not match the schema", issues }))
  }
  return optimizeDefinition(decoded.right, options)
}

/** The changes of a result as suggestions, each with its expected saving. */
export const suggestionsOf = (result: Result): ReadonlyArray<Suggestion> =>
  result.changes.map((c) => ({
    rule: c.rule,
    level: c.level,
    steps: c.steps,
    description: c.description,
    behaviour_changing: c.behaviour_change !== undefined,
    expected_saving: c.saving
  }))

/**
 * The request for the model-assisted review at `high` (gateway #3 sends it through gateway #2
 * and records the answer under `data.review`; it is advice, never applied).
 */
export const reviewRequest = (result: Result): { readonly system: string; readonly prompt: string } => ({
  system: "You review optimisations of AI workflow definitions for a corporate LLM gateway. " +
    "Point out changes that could alter results, compliance or cost in ways the author may not expect. Be brief.",
  prompt: [
    `Workflow: ${result.original.name}`,
    `Metrics before: ${JSON.stringify(result.metrics_before)}`,
    `Metrics after: ${JSON.stringify(result.metrics_after)}`,
    "Changes:",
    ...result.changes.map((c) => `- [${c.rule}] ${c.description}`),
    "Optimised definition:",
    JSON.stringify(Workflow.encode(result.definition))
  ].join("\n")
})

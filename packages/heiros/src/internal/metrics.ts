/** The metrics of a normalised workflow, computed on its flat graph with Kahn's algorithm. */
import type { ModelCatalog } from "@tidyllm/core"
import { Money } from "@tidyllm/core"
import * as Workflow from "../Workflow.js"
import { estimate, type Estimate } from "./estimate.js"
import { topoOrder } from "./graph.js"

/** Metrics of a workflow or of one nested workflow, rolled up through every level below it. */
export interface Metrics {
  /** Every step of every level, nested `workflow` steps included. */
  readonly step_count: number
  /** Steps that run: nested workflows replaced by their steps. */
  readonly executable_steps: number
  /** Nested workflows below this level. */
  readonly nested_workflows: number
  /** Hierarchy levels (1 for a workflow without nested workflows). */
  readonly levels: number
  /** Topological levels of the executable steps: the longest dependency chain, in steps. */
  readonly depth: number
  /** The most executable steps on one topological level (largest antichain level). */
  readonly width: number
  /** The longest chain by estimated time: step paths, and its milliseconds. */
  readonly critical_path: { readonly steps: ReadonlyArray<string>; readonly estimated_ms: number }
  /** Estimated milliseconds when every step runs one after another. */
  readonly serial_ms: number
  /** `serial_ms / critical_path.estimated_ms` (1 when both are 0). */
  readonly parallelism: number
  /** Estimated cost of one run, in US dollars (exact: {@link estimated_cost_nanos}). */
  readonly estimated_cost_usd: number
  readonly estimated_cost_nanos: Money.Nanos
  /** Model calls of one run (a batch is one call). */
  readonly ai_calls: number
}

/** Estimation settings. */
export interface EstimateOptions {
  readonly catalog: ModelCatalog.Service
  readonly default_model?: string | undefined
}

/** A graph ready for measuring: flat graph, per-step estimates, topological order. */
export interface Prepared {
  readonly graph: Workflow.Graph
  readonly flat: Workflow.Flat
  /** By flat position. */
  readonly estimates: ReadonlyArray<Estimate>
  /** Flat positions in topological order (all of them when the graph is acyclic). */
  readonly order: ReadonlyArray<number>
}

/** Flattens and estimates a graph (which must be free of cycles). */
export const prepare = (graph: Workflow.Graph, options: EstimateOptions): Prepared => {
  const flat = Workflow.flatten(graph)
  const estimates = flat.nodes.map((n) => {
    const node = graph.nodes[n]
    return estimate(node?.type ?? "", node?.config ?? {}, options.catalog, options.default_model)
  })
  const { order } = topoOrder(flat)
  return { graph, flat, estimates, order }
}

/**
 * Measures the executable steps selected by `include` (all by default) together with the
 * hierarchy described by `scopes` (the scopes at and below the measured level).
 */
export const measure = (
  p: Prepared,
  include: ((position: number) => boolean) | undefined,
  scopes: ReadonlyArray<Workflow.Scope>
): Metrics => {
  const { flat, estimates, graph } = p
  const n = flat.nodes.length
  const level = new Int32Array(n)
  const dist = new Float64Array(n)
  const via = new Int32Array(n).fill(-1)
  const perLevel = new Map<number, number>()
  let serial = 0
  let cost = 0
  let ai = 0
  let count = 0
  let end = -1
  for (const v of p.order) {
    if (include !== undefined && !include(v)) continue
    const e = estimates[v]
    if (e === undefined) continue
    count++
    serial += e.ms
    cost += e.cost
    if (e.ai) ai++
    let lv = 1
    let best = 0
    let bestFrom = -1
    for (const u of flat.preds[v] ?? []) {
      if (include !== undefined && !include(u)) continue
      lv = Math.max(lv, (level[u] ?? 0) + 1)
      const d = dist[u] ?? 0
      if (bestFrom < 0 || d > best) {
        best = d
        bestFrom = u
      }
    }
    level[v] = lv
    dist[v] = best + e.ms
    via[v] = bestFrom
    perLevel.set(lv, (perLevel.get(lv) ?? 0) + 1)
    if (end < 0 || (dist[v] ?? 0) > (dist[end] ?? 0)) end = v
  }
  const path: Array<string> = []
  for (let v = end; v >= 0; v = via[v] ?? -1) path.push(graph.nodes[flat.nodes[v] ?? -1]?.path ?? "")
  path.reverse()
  const criticalMs = end < 0 ? 0 : dist[end] ?? 0
  let width = 0
  let depth = 0
  for (const [lv, c] of perLevel) {
    width = Math.max(width, c)
    depth = Math.max(depth, lv)
  }
  const top = scopes.reduce((m, s) => Math.min(m, s.depth), Number.POSITIVE_INFINITY)
  const levels = scopes.reduce((m, s) => Math.max(m, s.depth - top + 1), 0)
  const stepCount = scopes.reduce((m, s) => m + s.members.length, 0)
  return {
    step_count: stepCount,
    executable_steps: count,
    nested_workflows: Math.max(0, scopes.length - 1),
    levels,
    depth,
    width,
    critical_path: { steps: path, estimated_ms: criticalMs },
    serial_ms: serial,
    parallelism: criticalMs === 0 ? 1 : serial / criticalMs,
    estimated_cost_usd: Money.toUsd(Money.Nanos(cost)),
    estimated_cost_nanos: Money.Nanos(cost),
    ai_calls: ai
  }
}

/** The scopes at and below `root` (pre-order of the breadth-first scope list is not assumed). */
export const subtreeScopes = (graph: Workflow.Graph, root: number): ReadonlyArray<Workflow.Scope> => {
  const out: Array<Workflow.Scope> = []
  const stack = [root]
  while (stack.length > 0) {
    const s = stack.pop() ?? 0
    const scope = graph.scopes[s]
    if (scope === undefined) continue
    out.push(scope)
    for (const m of scope.members) {
      const child = graph.nodes[m]?.child
      if (child !== undefined) stack.push(child)
    }
  }
  return out
}

/** Metrics of the whole workflow. */
export const metricsOf = (p: Prepared): Metrics => measure(p, undefined, p.graph.scopes)

/** Metrics of a decoded definition (which must be free of cycles). */
export const metricsOfDefinition = (definition: Workflow.Definition, options: EstimateOptions): Metrics =>
  metricsOf(prepare(Workflow.normalise(definition), options))

/**
 * ANALYZE: metrics rolled up through every level, bottlenecks, compliance verdicts per
 * framework, risk, and the optimisations OPTIMIZE would apply. Pure, linear in the size of the
 * workflow (one Kahn pass per level plus the optimiser's rounds for the suggestions).
 */
import { Money } from "@tidyllm/core"
import { Either, Schema } from "effect"
import {
  approvalTypes, auditTypes, isExternalOutput, isOutput, num, readsPersonalData, redactionTypes, str, strs, usesExternalModel
} from "./internal/estimate.js"
import { reach } from "./internal/graph.js"
import * as M from "./internal/metrics.js"
import * as Optimize from "./Optimize.js"
import * as Validate from "./Validate.js"
import type * as Workflow from "./Workflow.js"

export type Metrics = M.Metrics

/** The definition has structural errors: nothing to analyse (HTTP 400). */
export class InvalidWorkflow extends Schema.TaggedError<InvalidWorkflow>()("InvalidWorkflow", {
  message: Schema.String,
  issues: Schema.Array(Validate.Issue)
}) {
  get type() { return "invalid_workflow" as const }
  get status() { return 400 }
}

/** A compliance framework HeirOS has rules for. */
export const knownFrameworks = ["SOX", "GDPR", "Internal"] as const

/** Settings ANALYZE reads (names as in the `workflow_optimizer` config section). */
export interface Options extends Optimize.Options {
  /** Share of the largest share a step needs to count as a bottleneck (default 0.8). */
  readonly bottleneck_threshold?: number | undefined
  /** Frameworks to give verdicts for (default SOX, GDPR, Internal); frameworks named by `compliance_check` steps are added. */
  readonly compliance_frameworks?: ReadonlyArray<string> | undefined
  /** The per-request cost cap the `Internal` framework holds a run to (default 5 USD). */
  readonly max_cost_per_request_usd?: number | undefined
  /** Leave suggestions out (the optimiser's own before/after metrics do not need them). */
  readonly suggestions?: boolean | undefined
  // `optimization_level` (default `high` here) is the level of the suggestions: one round of OPTIMIZE.
}

/** A step that dominates the critical path's time or the run's cost. */
export interface Bottleneck {
  readonly path: string
  readonly reason: "time" | "cost"
  /** Its share of the critical path's milliseconds, or of the total cost. */
  readonly share: number
  readonly estimated_ms: number
  readonly estimated_cost_usd: number
  readonly message: string
}

/** One checked rule of a framework. */
export interface Finding {
  readonly rule: string
  readonly passed: boolean
  readonly severity: "error" | "warning" | "info"
  /** Paths of the steps concerned. */
  readonly steps: ReadonlyArray<string>
  readonly message: string
}

/** The verdict of one framework. */
export interface Verdict {
  readonly framework: string
  /** `fail` when a finding of severity `error` did not pass; `not_evaluated` for a framework without rules. */
  readonly status: "pass" | "fail" | "not_evaluated"
  readonly findings: ReadonlyArray<Finding>
}

/** The named risk factors. */
export type RiskFactorName = "external_outputs" | "personal_data" | "model_cost" | "failed_compliance" | "depth" | "fan_out"

/** One risk factor and the points it adds (0–100 in total). */
export interface RiskFactor {
  readonly name: RiskFactorName
  readonly points: number
  readonly detail: string
}

/** `low` below 25 points, `medium` below 50, `high` from 50. */
export type RiskLevel = "low" | "medium" | "high"

/** The risk of running the workflow. */
export interface Risk {
  readonly level: RiskLevel
  readonly score: number
  readonly factors: ReadonlyArray<RiskFactor>
}

/** One nested workflow's metrics. */
export interface LevelMetrics {
  readonly path: string
  readonly name: string
  /** Nesting depth (root 0). */
  readonly depth: number
  readonly metrics: Metrics
}

/** `data.analysis`. */
export interface Analysis {
  readonly name: string
  readonly metrics: Metrics
  /** Every nested workflow, rolled up through the levels below it. */
  readonly sub_workflows: ReadonlyArray<LevelMetrics>
  readonly bottlenecks: ReadonlyArray<Bottleneck>
  readonly compliance: ReadonlyArray<Verdict>
  readonly risk: Risk
  readonly suggestions: ReadonlyArray<Optimize.Suggestion>
  /** What VALIDATE reported (warnings, and errors that do not stop the analysis, such as an unknown model). */
  readonly issues: ReadonlyArray<Validate.Issue>
}

/** Default of `bottleneck_threshold`. */
export const defaultBottleneckThreshold = 0.8
/** Default of `max_cost_per_request_usd`. */
export const defaultCostCapUsd = 5

const canonicalFramework = (name: string): string => {
  const known = knownFrameworks.find((f) => f.toLowerCase() === name.toLowerCase())
  return known ?? name
}

/** Bottlenecks of a prepared graph. */
export const bottlenecks = (p: M.Prepared, metrics: Metrics, threshold: number): ReadonlyArray<Bottleneck> => {
  if (metrics.executable_steps < 2) return []
  const out: Array<Bottleneck> = []
  const positionOfPath = new Map<string, number>()
  p.flat.nodes.forEach((n, i) => positionOfPath.set(p.graph.nodes[n]?.path ?? "", i))
  const critical = metrics.critical_path.steps.flatMap((path) => {
    const pos = positionOfPath.get(path)
    return pos === undefined ? [] : [pos]
  })
  const entry = (pos: number, reason: "time" | "cost", share: number): Bottleneck => {
    const e = p.estimates[pos]
    const path = p.graph.nodes[p.flat.nodes[pos] ?? -1]?.path ?? ""
    return {
      path,
      reason,
      share,
      estimated_ms: e?.ms ?? 0,
      estimated_cost_usd: Money.toUsd(e?.cost ?? Money.zero),
      message: reason === "time"
        ? `'${path}' takes ${(share * 100).toFixed(1)}% of the critical path's ${metrics.critical_path.estimated_ms} ms`
        : `'${path}' costs ${(share * 100).toFixed(1)}% of the run's $${metrics.estimated_cost_usd.toFixed(6)}`
    }
  }
  const total = metrics.critical_path.estimated_ms
  if (total > 0) {
    const shares = critical.map((pos) => (p.estimates[pos]?.ms ?? 0) / total)
    const max = Math.max(...shares)
    critical.forEach((pos, i) => {
      const s = shares[i] ?? 0
      if (s > 0 && s >= threshold * max) out.push(entry(pos, "time", s))
    })
  }
  const cost = metrics.estimated_cost_nanos
  if (cost > 0) {
    const shares = p.estimates.map((e) => e.cost / cost)
    const max = shares.reduce((m, s) => Math.max(m, s), 0)
    shares.forEach((s, pos) => {
      if (s > 0 && s >= threshold * max) out.push(entry(pos, "cost", s))
    })
  }
  return out
}

/** The author a step answers to: its own `config.author`, else the nearest definition's `author`. */
const authorOf = (graph: Workflow.Graph, node: Workflow.Node): string | undefined => {
  const own = str(node.config, "author")
  if (own !== undefined) return own
  for (let s: number | undefined = node.scope; s !== undefined;) {
    const scope: Workflow.Scope | undefined = graph.scopes[s]
    if (scope === undefined) break
    if (scope.definition.author !== undefined) return scope.definition.author
    s = scope.owner === undefined ? undefined : graph.nodes[scope.owner]?.scope
  }
  return undefined
}

/** Compliance verdicts, one per framework. */
export const compliance = (p: M.Prepared, metrics: Metrics, options: Options): ReadonlyArray<Verdict> => {
  const { graph, flat, estimates } = p
  const nodeAt = (pos: number) => graph.nodes[flat.nodes[pos] ?? -1]
  const pathAt = (pos: number) => nodeAt(pos)?.path ?? ""
  const positions = flat.nodes.map((_, i) => i)
  const requested = options.compliance_frameworks ?? knownFrameworks
  const named = graph.nodes.filter((n) => n.type === "compliance_check").flatMap((n) => strs(n.config, "frameworks"))
  const frameworks = [...new Set([...requested, ...named].map(canonicalFramework))]

  const finding = (rule: string, passed: boolean, severity: Finding["severity"], steps: ReadonlyArray<string>, message: string): Finding =>
    ({ rule, passed, severity, steps, message })

  const sox = (): ReadonlyArray<Finding> => {
    const audits = graph.nodes.filter((n) =>
      auditTypes.has(n.type) || n.config["audit_trail"] === true || n.config["audit"] === true ||
      (n.type === "compliance_check" && (strs(n.config, "frameworks").length === 0 || strs(n.config, "frameworks").some((f) => f.toLowerCase() === "sox")))
    )
    const external = positions.filter((i) => isExternalOutput(nodeAt(i)?.type ?? "", nodeAt(i)?.config ?? {}))
    // The gateway audits every model call itself; a workflow-level trail is required once results
    // leave the company or the workflow is marked compliance-relevant, and advised otherwise.
    const auditRequired = external.length > 0 || graph.definition.compliance_required
    const out: Array<Finding> = [
      audits.length > 0
        ? finding("audit_trail", true, "info", audits.map((n) => n.path), `an audit trail is configured (${audits.map((n) => n.path).join(", ")})`)
        : finding("audit_trail", false, auditRequired ? "error" : "warning", [],
          "no audit step and no step with config.audit_trail: SOX needs an audit trail (model calls are audited by the gateway)")
    ]
    if (external.length === 0) out.push(finding("approval_before_external_output", true, "info", [], "no output goes to an external destination"))
    else {
      const unapproved = external.filter((o) => {
        const ancestors = reach(flat.preds, [o])
        return !positions.some((a) => a !== o && ancestors[a] === 1 && approvalTypes.has(nodeAt(a)?.type ?? ""))
      })
      out.push(unapproved.length === 0
        ? finding("approval_before_external_output", true, "info", external.map(pathAt), "a human approval precedes every external output")
        : finding("approval_before_external_output", false, "error", unapproved.map(pathAt),
          `no human approval step precedes the external output(s) ${unapproved.map(pathAt).join(", ")}`))
    }
    const approvals = graph.nodes.filter((n) => approvalTypes.has(n.type))
    const conflicts = approvals.filter((n) => {
      const approver = str(n.config, "approver")
      return approver !== undefined && approver === authorOf(graph, n)
    })
    const namedApprovals = approvals.filter((n) => str(n.config, "approver") !== undefined)
    out.push(conflicts.length > 0
      ? finding("segregation_of_duties", false, "error", conflicts.map((n) => n.path), `the approver of ${conflicts.map((n) => n.path).join(", ")} is also the author`)
      : finding("segregation_of_duties", true, "info", namedApprovals.map((n) => n.path),
        namedApprovals.length > 0 ? "approvers differ from the authors" : "no approver is named: nothing to compare"))
    return out
  }

  const gdpr = (): ReadonlyArray<Finding> => {
    const out: Array<Finding> = []
    const personal = positions.filter((i) => readsPersonalData(nodeAt(i)?.config ?? {}))
    if (personal.length === 0) out.push(finding("redaction_before_external_ai", true, "info", [], "no step reads personal data"))
    else {
      const reached = reach(flat.succs, personal, (v) => redactionTypes.has(nodeAt(v)?.type ?? ""))
      const exposed = positions.filter((i) => {
        const node = nodeAt(i)
        const e = estimates[i]
        return reached[i] === 1 && node !== undefined && e !== undefined && e.ai && !redactionTypes.has(node.type) &&
          usesExternalModel(node.config, e.entry)
      })
      out.push(exposed.length === 0
        ? finding("redaction_before_external_ai", true, "info", personal.map(pathAt), "personal data is redacted or minimised before any external model sees it")
        : finding("redaction_before_external_ai", false, "error", exposed.map(pathAt),
          `personal data read by ${personal.map(pathAt).join(", ")} reaches the external model step(s) ${exposed.map(pathAt).join(", ")} without redaction or minimisation`))
    }
    const outputs = positions.filter((i) => isOutput(nodeAt(i)?.type ?? "", nodeAt(i)?.config ?? {}))
    const missing = outputs.filter((i) => !((num(nodeAt(i)?.config ?? {}, "retention_days") ?? 0) > 0))
    out.push(outputs.length === 0
      ? finding("retention_on_outputs", true, "info", [], "the workflow has no output step")
      : missing.length === 0
      ? finding("retention_on_outputs", true, "info", outputs.map(pathAt), "every output sets config.retention_days")
      : finding("retention_on_outputs", false, "error", missing.map(pathAt), `output(s) ${missing.map(pathAt).join(", ")} set no retention period (config.retention_days)`))
    return out
  }

  const internal = (): ReadonlyArray<Finding> => {
    const unknown = positions.filter((i) => estimates[i]?.ai === true && estimates[i]?.entry === undefined)
    const cap = options.max_cost_per_request_usd ?? defaultCostCapUsd
    return [
      unknown.length === 0
        ? finding("approved_models", true, "info", [], "every model used is in the approved catalog")
        : finding("approved_models", false, "error", unknown.map(pathAt), `step(s) ${unknown.map(pathAt).join(", ")} use models outside the approved catalog`),
      metrics.estimated_cost_nanos <= Money.fromUsd(cap)
        ? finding("cost_under_cap", true, "info", [], `estimated cost per run $${metrics.estimated_cost_usd.toFixed(6)} is under the cap of $${cap}`)
        : finding("cost_under_cap", false, "error", [], `estimated cost per run $${metrics.estimated_cost_usd.toFixed(6)} exceeds the per-request cap of $${cap}`)
    ]
  }

  return frameworks.map((framework): Verdict => {
    const findings = framework === "SOX" ? sox() : framework === "GDPR" ? gdpr() : framework === "Internal" ? internal() : undefined
    if (findings === undefined) {
      return { framework, status: "not_evaluated", findings: [finding("rules", false, "warning", [], `HeirOS has no rules for ${framework}`)] }
    }
    return { framework, status: findings.some((f) => !f.passed && f.severity === "error") ? "fail" : "pass", findings }
  })
}

/** Risk level and score from the named factors. */
export const risk = (p: M.Prepared, metrics: Metrics, verdicts: ReadonlyArray<Verdict>, options: Options): Risk => {
  const { graph, flat } = p
  const nodeAt = (pos: number) => graph.nodes[flat.nodes[pos] ?? -1]
  const positions = flat.nodes.map((_, i) => i)
  const external = positions.filter((i) => isExternalOutput(nodeAt(i)?.type ?? "", nodeAt(i)?.config ?? {})).length
  const personal = positions.filter((i) => readsPersonalData(nodeAt(i)?.config ?? {})).length
  const cap = options.max_cost_per_request_usd ?? defaultCostCapUsd
  const ratio = cap > 0 ? metrics.estimated_cost_usd / cap : metrics.estimated_cost_usd > 0 ? Number.POSITIVE_INFINITY : 0
  const failed = verdicts.filter((v) => v.status === "fail").map((v) => v.framework)
  const fanOut = flat.succs.reduce((m, s) => Math.max(m, s.length), 0)
  const factors: Array<RiskFactor> = [
    { name: "external_outputs", points: external > 0 ? 20 : 0, detail: `${external} output(s) to external destinations` },
    { name: "personal_data", points: personal > 0 ? 20 : 0, detail: `${personal} step(s) read personal data` },
    {
      name: "model_cost",
      points: ratio > 1 ? 25 : ratio > 0.5 ? 15 : ratio > 0.1 ? 5 : 0,
      detail: `estimated $${metrics.estimated_cost_usd.toFixed(6)} per run, ${(ratio * 100).toFixed(1)}% of the $${cap} cap`
    },
    {
      name: "failed_compliance",
      points: Math.min(30, failed.length * 15) + (failed.length > 0 && graph.definition.compliance_required ? 10 : 0),
      detail: failed.length === 0 ? "every framework passes" : `failed: ${failed.join(", ")}${graph.definition.compliance_required ? " (compliance is required)" : ""}`
    },
    {
      name: "depth",
      points: (metrics.depth > 25 ? 10 : metrics.depth > 10 ? 5 : 0) + (metrics.levels > 3 ? 5 : 0),
      detail: `${metrics.depth} steps deep, ${metrics.levels} level(s) of nesting`
    },
    { name: "fan_out", points: fanOut > 20 ? 10 : fanOut > 5 ? 5 : 0, detail: `largest fan-out ${fanOut}` }
  ]
  const score = Math.min(100, factors.reduce((s, f) => s + f.points, 0))
  return { level: score >= 50 ? "high" : score >= 25 ? "medium" : "low", score, factors }
}

/** ANALYZE on an already decoded definition. */
export const analyzeDefinition = (definition: Workflow.Definition, options: Options): Either.Either<Analysis, InvalidWorkflow> => {
  const validated = Validate.validateDefinition(definition, options)
  return analyzeValidated(definition, validated, options)
}

const analyzeValidated = (
  definition: Workflow.Definition,
  validated: Validate.Result,
  options: Options
): Either.Either<Analysis, InvalidWorkflow> => {
  if (Validate.hasStructuralErrors(validated.issues) || validated.graph._tag === "None") {
    return Either.left(new InvalidWorkflow({ message: "the workflow has structural errors", issues: validated.issues }))
  }
  const graph = validated.graph.value
  const p = M.prepare(graph, options)
  const metrics = M.metricsOf(p)
  const sub_workflows = graph.scopes.filter((s) => s.depth > 0).map((scope): LevelMetrics => {
    const scopes = M.subtreeScopes(graph, scope.index)
    const inside = new Set(scopes.map((s) => s.index))
    return {
      path: scope.path,
      name: scope.definition.name,
      depth: scope.depth,
      metrics: M.measure(p, (pos) => inside.has(graph.nodes[p.flat.nodes[pos] ?? -1]?.scope ?? -1), scopes)
    }
  })
  const verdicts = compliance(p, metrics, options)
  const suggestions = options.suggestions === false
    ? []
    // One round of the optimiser: what it would apply first, at a fraction of a full run's cost.
    : Either.match(Optimize.optimizeDefinition(definition, { ...options, optimization_level: options.optimization_level ?? "high", max_optimization_iterations: 1 }), {
      onLeft: () => [],
      onRight: (r) => Optimize.suggestionsOf(r)
    })
  return Either.right({
    name: definition.name,
    metrics,
    sub_workflows,
    bottlenecks: bottlenecks(p, metrics, options.bottleneck_threshold ?? defaultBottleneckThreshold),
    compliance: verdicts,
    risk: risk(p, metrics, verdicts, options),
    suggestions,
    issues: validated.issues
  })
}

/** ANALYZE: decodes, validates and analyses `input`; fails with the issues when there is no graph to analyse. */
export const analyze = (input: unknown, options: Options): Either.Either<Analysis, InvalidWorkflow> => {
  const validated = Validate.validate(input, options)
  if (validated.definition._tag === "None") {
    return Either.left(new InvalidWorkflow({ message: "the workflow does not match the schema", issues: validated.issues }))
  }
  return analyzeValidated(validated.definition.value, validated, options)
}

/** Readable reports of gateway #3's responses: validation issues, analysis, optimisation, agreements. */
import type { Analyze, Validate } from "@tidyllm/heiros"
import type { WorkflowOptimizerGateway } from "@tidyllm/workflow-optimizer"
import type { Styles } from "./format.js"

const ms = (n: number): string => (n >= 10_000 ? `${(n / 1000).toFixed(1)} s` : `${Math.round(n)} ms`)
const dollars = (n: number): string => (n === 0 ? "$0.00" : n < 0.01 ? `$${n.toPrecision(3)}` : `$${n.toFixed(4)}`)
const pct = (n: number): string => `${Math.round(n * 100)}%`

/** The issues of VALIDATE, one per line. */
export const issueLines = (issues: ReadonlyArray<Validate.Issue>, s: Styles): ReadonlyArray<string> =>
  issues.map((i) => {
    const where = i.path === "" ? "(workflow)" : i.path
    const members = i.members === undefined ? "" : ` [${i.members.join(" → ")}]`
    return `  ${i.severity === "error" ? s.red("error") : s.yellow("warning")} ${i.code} ${where} — ${i.message}${members}`
  })

/** The VALIDATE report. */
export const validationReport = (r: WorkflowOptimizerGateway.WorkflowResponse, s: Styles): ReadonlyArray<string> => {
  const v = r.data.validation
  if (v === undefined) return []
  const errors = v.issues.filter((i) => i.severity === "error").length
  const warnings = v.issues.length - errors
  const head = v.valid
    ? `${s.green("✓")} ${r.data.workflow_name ?? "workflow"} is valid${warnings === 0 ? "" : ` (${warnings} warning${warnings === 1 ? "" : "s"})`}`
    : `${s.red("✗")} ${r.data.workflow_name ?? "workflow"} is invalid: ${errors} error${errors === 1 ? "" : "s"}, ${warnings} warning${warnings === 1 ? "" : "s"}`
  return [head, ...issueLines(v.issues, s)]
}

const metricsLine = (m: Analyze.Metrics): string =>
  `${m.step_count} steps (${m.executable_steps} executable), ${m.levels} level${m.levels === 1 ? "" : "s"}, depth ${m.depth}, width ${m.width}`

/** The ANALYZE report: metrics, critical path, bottlenecks, compliance verdicts, risk, suggestions. */
export const analysisReport = (a: Analyze.Analysis, s: Styles): ReadonlyArray<string> => {
  const m = a.metrics
  const lines: Array<string> = [
    s.bold(`Workflow: ${a.name}`) + ` — ${metricsLine(m)}`,
    `Critical path (${ms(m.critical_path.estimated_ms)}): ${m.critical_path.steps.join(" → ") || "(none)"}`,
    `Serial ${ms(m.serial_ms)} · parallelism ${m.parallelism.toFixed(2)}× · estimated cost ${dollars(m.estimated_cost_usd)} per run · ${m.ai_calls} AI call${m.ai_calls === 1 ? "" : "s"}`
  ]
  lines.push(a.bottlenecks.length === 0 ? "Bottlenecks: none" : "Bottlenecks:")
  for (const b of a.bottlenecks) lines.push(`  ${b.path} — ${b.reason} ${pct(b.share)}: ${b.message}`)
  lines.push("Compliance:")
  for (const v of a.compliance) {
    const mark = v.status === "pass" ? s.green("✓") : v.status === "fail" ? s.red("✗") : s.dim("-")
    lines.push(`  ${mark} ${v.framework}: ${v.status}`)
    for (const f of v.findings) {
      const fm = f.passed ? s.green("✓") : f.severity === "error" ? s.red("✗") : s.yellow("!")
      lines.push(`      ${fm} ${f.rule}${f.steps.length === 0 ? "" : ` (${f.steps.join(", ")})`} — ${f.message}`)
    }
  }
  const factors = a.risk.factors.filter((f) => f.points > 0).map((f) => `${f.name} +${f.points}`)
  const level = a.risk.level === "high" ? s.red(a.risk.level) : a.risk.level === "medium" ? s.yellow(a.risk.level) : s.green(a.risk.level)
  lines.push(`Risk: ${level} (score ${a.risk.score}${factors.length === 0 ? "" : `: ${factors.join(", ")}`})`)
  lines.push(a.suggestions.length === 0 ? "Suggestions: none" : "Suggestions:")
  for (const x of a.suggestions) {
    lines.push(`  - [${x.rule}] ${x.description} (saves ${ms(x.expected_saving.critical_path_ms)}, ${dollars(x.expected_saving.cost_usd)}${x.behaviour_changing ? "; changes behaviour" : ""})`)
  }
  if (a.issues.length > 0) lines.push("Issues:", ...issueLines(a.issues, s))
  return lines
}

/** The OPTIMIZE report: changes applied, before → after, review, where the result went. */
export const optimizationReport = (r: WorkflowOptimizerGateway.WorkflowResponse, s: Styles): ReadonlyArray<string> => {
  const o = r.data.optimization
  if (o === undefined) return []
  const b = o.metrics_before
  const a = o.metrics_after
  const lines: Array<string> = [
    s.bold(`Workflow: ${r.data.workflow_name ?? ""}`) + ` — optimised at ${o.level}, ${o.iterations} round${o.iterations === 1 ? "" : "s"}${o.fixed_point ? " (fixed point)" : ""}`
  ]
  lines.push(o.changes.length === 0 ? "Changes applied: none" : `Changes applied (${o.changes.length}):`)
  for (const c of o.changes) lines.push(`  - [${c.rule}] ${c.description}${c.behaviour_change === undefined ? "" : s.yellow(` (${c.behaviour_change})`)}`)
  lines.push("Before → after:")
  lines.push(`  steps          ${b.step_count} → ${a.step_count}`)
  lines.push(`  critical path  ${ms(b.critical_path.estimated_ms)} → ${ms(a.critical_path.estimated_ms)}`)
  lines.push(`  parallelism    ${b.parallelism.toFixed(2)}× → ${a.parallelism.toFixed(2)}×`)
  lines.push(`  cost per run   ${dollars(b.estimated_cost_usd)} → ${dollars(a.estimated_cost_usd)}`)
  lines.push(`  AI calls       ${b.ai_calls} → ${a.ai_calls}`)
  lines.push(`Risk: ${o.risk.level} (score ${o.risk.score})${o.behaviour_changing ? ` · changes behaviour: ${o.behaviour_changes.join(", ")}` : ""}`)
  const review = r.data.review
  if (review !== undefined && review !== null) {
    lines.push(review.status === "success"
      ? `Review (advisory, not applied; ${review.provider}/${review.model}, audit ${review.audit_id}):`
      : `Review failed (advisory only): ${review.error.type}: ${review.error.message}`)
    if (review.status === "success") for (const l of review.text.split("\n")) lines.push(`  ${l}`)
  }
  const stored = r.data.stored
  if (stored !== undefined) {
    lines.push(stored.current
      ? `Stored: ${stored.workflow_id} v${stored.version} (current; was v${stored.base_version ?? "-"})`
      : `Stored: ${stored.workflow_id} v${stored.version} (proposed, not current; v${stored.base_version ?? "-"} stays current until approved)`)
  } else if (o.approval_required && r.data.optimization?.behaviour_changing === true) {
    lines.push(s.yellow("This optimisation changes behaviour: store it with a workflow id to propose it for approval."))
  }
  const agreement = r.data.agreement
  if (agreement !== undefined) {
    lines.push(`Agreement ${agreement.id}: ${agreement.status}, ${agreement.risk_level} risk, expires ${agreement.expires_at}`)
  }
  return lines
}

/** The metadata line of a response. */
export const metadataLine = (r: WorkflowOptimizerGateway.WorkflowResponse): string => {
  const m = r.metadata
  return [
    m.operation,
    `${m.processing_metrics.total_ms} ms`,
    `optimization_applied=${m.optimization_applied}`,
    `corporate_audit_id=${m.corporate_audit_id ?? "none"}`,
    `request ${m.request_id}`
  ].join(" · ")
}

/** One agreement in a listing. */
export const agreementRow = (a: WorkflowOptimizerGateway.AgreementJson): ReadonlyArray<string> => [
  a.id,
  a.workflow_id,
  a.status,
  a.risk_level,
  a.proposed_by,
  `${a.decisions.filter((d) => d.decision === "approve").length}`,
  a.expires_at.slice(0, 19).replace("T", " ")
]

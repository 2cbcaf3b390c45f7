import { describe, expect, it } from "@effect/vitest"
import { Either } from "effect"
import * as Analyze from "../src/Analyze.js"
import type * as Workflow from "../src/Workflow.js"
import { catalog, diagnostic, diamond, fanOutIn, fullSystemTest, nested, t } from "./fixtures.js"
import { generate } from "../src/Generate.js"

const options: Analyze.Options = { catalog }
const analyze = (def: unknown, over: Partial<Analyze.Options> = {}) => Either.getOrThrow(Analyze.analyze(def, { ...options, ...over }))

const verdict = (a: Analyze.Analysis, framework: string) => a.compliance.find((v) => v.framework === framework)
const finding = (a: Analyze.Analysis, framework: string, rule: string) => verdict(a, framework)?.findings.find((f) => f.rule === rule)

describe("ANALYZE metrics on hand-checked DAGs", () => {
  const table: ReadonlyArray<{
    name: string
    def: Workflow.DefinitionEncoded
    critical: ReadonlyArray<string>
    ms: number
    depth: number
    width: number
    serial: number
    steps: number
    executable: number
    levels: number
  }> = [
    { name: "diamond", def: diamond, critical: ["a", "b", "d"], ms: 65, depth: 3, width: 2, serial: 85, steps: 4, executable: 4, levels: 1 },
    { name: "fan-out/fan-in", def: fanOutIn, critical: ["src", "w2", "sink"], ms: 850, depth: 3, width: 4, serial: 1750, steps: 6, executable: 6, levels: 1 },
    {
      name: "nested three levels",
      def: nested,
      critical: ["a", "outer/p", "outer/q", "z"],
      ms: 1111,
      depth: 5,
      width: 2,
      serial: 1611,
      steps: 8,
      executable: 6,
      levels: 3
    }
  ]
  for (const c of table) {
    it(c.name, () => {
      const { metrics } = analyze(c.def)
      expect(metrics.critical_path).toEqual({ steps: c.critical, estimated_ms: c.ms })
      expect(metrics.depth).toBe(c.depth)
      expect(metrics.width).toBe(c.width)
      expect(metrics.serial_ms).toBe(c.serial)
      expect(metrics.parallelism).toBeCloseTo(c.serial / c.ms, 10)
      expect(metrics.step_count).toBe(c.steps)
      expect(metrics.executable_steps).toBe(c.executable)
      expect(metrics.levels).toBe(c.levels)
      expect(metrics.ai_calls).toBe(0)
      expect(metrics.estimated_cost_usd).toBe(0)
    })
  }

  it("nested levels are rolled up, and each nested workflow is measured on its own", () => {
    const a = analyze(nested)
    expect(a.sub_workflows.map((s) => [s.path, s.depth, s.metrics.critical_path.steps, s.metrics.critical_path.estimated_ms, s.metrics.levels])).toEqual([
      ["outer", 1, ["outer/p", "outer/q"], 1010, 2],
      ["outer/inner", 2, ["outer/inner/x", "outer/inner/y"], 500, 1]
    ])
    const inner = a.sub_workflows[1]?.metrics
    expect(inner?.width).toBe(1)
    expect(inner?.depth).toBe(2)
  })

  it("a slow step inside a nested workflow moves the critical path into it", () => {
    const slow = JSON.parse(JSON.stringify(nested).replace('"estimated_ms":300', '"estimated_ms":5000')) as Workflow.DefinitionEncoded
    expect(analyze(slow).metrics.critical_path).toEqual({ steps: ["a", "outer/p", "outer/inner/x", "outer/inner/y", "z"], estimated_ms: 5311 })
  })

  it("AI steps are priced from the catalog with the configured tokens", () => {
    const def = { name: "w", steps: [{ id: "s", type: "summarize", config: { model: "claude-3-sonnet", input_tokens: 1_000_000, max_tokens: 100_000 } }] }
    const { metrics } = analyze(def)
    expect(metrics.ai_calls).toBe(1)
    expect(metrics.estimated_cost_usd).toBeCloseTo(3 + 1.5, 9)
  })

  it("explicit estimated_ms and estimated_cost_usd override the type defaults", () => {
    const def = { name: "w", steps: [{ id: "s", type: "summarize", config: { model: "claude-3-sonnet", estimated_ms: 7, estimated_cost_usd: 0.25 } }] }
    const { metrics } = analyze(def)
    expect(metrics.critical_path.estimated_ms).toBe(7)
    expect(metrics.estimated_cost_usd).toBe(0.25)
  })
})

describe("ANALYZE bottlenecks", () => {
  it("steps at or above bottleneck_threshold times the largest share", () => {
    const a = analyze(fanOutIn)
    // Critical path src 100, w2 700, sink 50: only w2 is within 0.8 of the largest share.
    expect(a.bottlenecks.map((b) => [b.path, b.reason])).toEqual([["w2", "time"]])
    expect(a.bottlenecks[0]?.share).toBeCloseTo(700 / 850, 10)
    const lax = analyze(fanOutIn, { bottleneck_threshold: 0.1 })
    expect(lax.bottlenecks.map((b) => b.path)).toEqual(["src", "w2"])
  })

  it("the most expensive steps are cost bottlenecks", () => {
    const def = {
      name: "w",
      type: "hierarchical_dag",
      steps: [
        { id: "cheap", type: "classify", config: { model: "claude-3-haiku", estimated_ms: 10 }, depends_on: [] },
        { id: "dear", type: "generate", config: { model: "claude-3-opus", estimated_ms: 10 }, depends_on: ["cheap"] }
      ]
    }
    expect(analyze(def).bottlenecks.filter((b) => b.reason === "cost").map((b) => b.path)).toEqual(["dear"])
  })
})

describe("ANALYZE the build guide's examples", () => {
  it("the three-step diagnostic workflow analyses clean", () => {
    const a = analyze(diagnostic)
    expect(a.issues).toEqual([])
    expect(a.metrics).toMatchObject({ step_count: 3, depth: 3, width: 1, ai_calls: 1, levels: 1 })
    expect(a.metrics.critical_path.steps).toEqual(["intake", "analysis", "output"])
    expect(a.compliance.map((v) => [v.framework, v.status])).toEqual([["SOX", "pass"], ["GDPR", "pass"], ["Internal", "pass"]])
    expect(a.risk.level).toBe("low")
    expect(a.risk.score).toBe(0)
    expect(a.risk.factors.map((f) => f.name)).toEqual(["external_outputs", "personal_data", "model_cost", "failed_compliance", "depth", "fan_out"])
    expect(a.metrics.estimated_cost_usd).toBeGreaterThan(0)
    expect(a.metrics.estimated_cost_usd).toBeLessThan(0.01)
  })

  it("the five-step Full System Test gets SOX and GDPR verdicts with findings", () => {
    const a = analyze(fullSystemTest, { compliance_frameworks: ["SOX", "GDPR"] })
    expect(a.compliance.map((v) => v.framework)).toEqual(["SOX", "GDPR"])
    const sox = verdict(a, "SOX")
    expect(sox?.status).toBe("pass")
    expect(sox?.findings.map((f) => [f.rule, f.passed])).toEqual([
      ["audit_trail", true], ["approval_before_external_output", true], ["segregation_of_duties", true]
    ])
    expect(finding(a, "SOX", "audit_trail")?.steps).toEqual(["check"])
    const gdpr = verdict(a, "GDPR")
    expect(gdpr?.status).toBe("fail")
    expect(finding(a, "GDPR", "retention_on_outputs")).toMatchObject({ passed: false, severity: "error", steps: ["out"] })
    expect(finding(a, "GDPR", "redaction_before_external_ai")?.passed).toBe(true)
    // Failed GDPR on a workflow that requires compliance: 15 + 10 points.
    expect(a.risk).toMatchObject({ level: "medium", score: 25 })
    expect(a.metrics).toMatchObject({ step_count: 7, executable_steps: 6, levels: 2, ai_calls: 2 })
    expect(a.metrics.critical_path.steps).toEqual(["intake", "ai", "sub/step-0", "sub/step-1", "check", "out"])
    expect(a.sub_workflows.map((s) => s.path)).toEqual(["sub"])
  })
})

describe("ANALYZE compliance rules", () => {
  const base = (steps: ReadonlyArray<Workflow.StepEncoded>, extra: Partial<Workflow.DefinitionEncoded> = {}): Workflow.DefinitionEncoded =>
    ({ name: "w", type: "hierarchical_dag", steps, ...extra })

  it("SOX: an external output needs a human approval before it, and an audit trail", () => {
    const bare = analyze(base([
      { id: "in", type: "intake", depends_on: [] },
      { id: "send", type: "output", config: { destination: "email", retention_days: 1 }, depends_on: ["in"] }
    ]))
    expect(verdict(bare, "SOX")?.status).toBe("fail")
    expect(finding(bare, "SOX", "audit_trail")?.passed).toBe(false)
    expect(finding(bare, "SOX", "approval_before_external_output")).toMatchObject({ passed: false, steps: ["send"] })
    expect(bare.risk.factors.find((f) => f.name === "external_outputs")?.points).toBe(20)

    const approved = analyze(base([
      { id: "in", type: "intake", depends_on: [] },
      { id: "ok", type: "human_approval", config: { approver: "carol" }, depends_on: ["in"] },
      { id: "log", type: "audit", depends_on: ["ok"] },
      { id: "send", type: "output", config: { destination: "https://partner.example/api", retention_days: 1 }, depends_on: ["log"] }
    ], { author: "alice" }))
    expect(verdict(approved, "SOX")?.status).toBe("pass")
  })

  it("SOX: segregation of duties fails when the approver is the author", () => {
    const a = analyze(base([
      { id: "in", type: "intake", depends_on: [] },
      { id: "ok", type: "human_approval", config: { approver: "alice" }, depends_on: ["in"] },
      { id: "log", type: "audit", depends_on: ["ok"] }
    ], { author: "alice" }))
    expect(finding(a, "SOX", "segregation_of_duties")).toMatchObject({ passed: false, steps: ["ok"] })
  })

  it("GDPR: personal data must be redacted before an external model sees it, also across levels", () => {
    const exposed = analyze(base([
      { id: "in", type: "intake", config: { pii: true }, depends_on: [] },
      { id: "sub", type: "workflow", depends_on: ["in"], workflow: { name: "s", steps: [{ id: "ai", type: "ai_analysis", config: { model: "claude-3-haiku" } }] } }
    ]))
    expect(finding(exposed, "GDPR", "redaction_before_external_ai")).toMatchObject({ passed: false, steps: ["sub/ai"] })
    expect(exposed.risk.factors.find((f) => f.name === "personal_data")?.points).toBe(20)

    const redacted = analyze(base([
      { id: "in", type: "intake", config: { source: "crm:personal" }, depends_on: [] },
      { id: "mask", type: "redact", depends_on: ["in"] },
      { id: "ai", type: "ai_analysis", config: { model: "claude-3-haiku" }, depends_on: ["mask"] }
    ]))
    expect(finding(redacted, "GDPR", "redaction_before_external_ai")?.passed).toBe(true)
  })

  it("Internal: unknown models and a run over the per-request cap fail", () => {
    const a = analyze(base([{ id: "g", type: "generate", config: { model: "claude-3-opus", input_tokens: 200_000, max_tokens: 100_000 } }]), {
      max_cost_per_request_usd: 1
    })
    expect(finding(a, "Internal", "cost_under_cap")?.passed).toBe(false)
    expect(a.risk.factors.find((f) => f.name === "model_cost")?.points).toBe(25)
    const unknown = analyze(base([{ id: "g", type: "generate", config: { model: "mystery" } }]))
    expect(unknown.issues.map((i) => i.code)).toEqual(["unknown_model"])
    expect(finding(unknown, "Internal", "approved_models")).toMatchObject({ passed: false, steps: ["g"] })
  })

  it("a framework without rules is reported as not evaluated", () => {
    expect(verdict(analyze(diagnostic, { compliance_frameworks: ["HIPAA"] }), "HIPAA")?.status).toBe("not_evaluated")
  })

  it("high risk: external output, personal data and failed checks add up", () => {
    const a = analyze(base([
      { id: "in", type: "intake", config: { pii: true }, depends_on: [] },
      { id: "ai", type: "ai_analysis", config: { model: "claude-3-haiku" }, depends_on: ["in"] },
      { id: "send", type: "output", config: { destination: "webhook" }, depends_on: ["ai"] }
    ], { compliance_required: true }))
    expect(a.risk.level).toBe("high")
    expect(a.risk.score).toBeGreaterThanOrEqual(50)
  })
})

describe("ANALYZE failures and suggestions", () => {
  it("a structurally invalid workflow fails with its issues", () => {
    const result = Analyze.analyze({ name: "w", type: "hierarchical_dag", steps: [t("a", 1, ["b"]), t("b", 1, ["a"])] }, options)
    expect(Either.isLeft(result)).toBe(true)
    if (Either.isLeft(result)) {
      expect(result.left._tag).toBe("InvalidWorkflow")
      expect(result.left.issues.map((i) => i.code)).toEqual(["cycle"])
    }
  })

  it("suggestions are the optimiser's changes with their expected savings", () => {
    const a = analyze({
      name: "w",
      steps: [
        { id: "in", type: "intake" },
        { id: "a", type: "transform", config: { estimated_ms: 1000, op: "x" }, depends_on: ["in"] },
        { id: "b", type: "transform", config: { estimated_ms: 1000, op: "y" }, depends_on: ["in"] }
      ]
    })
    const parallel = a.suggestions.find((s) => s.rule === "parallelize_chain")
    expect(parallel?.behaviour_changing).toBe(true)
    expect(parallel?.expected_saving.critical_path_ms).toBe(1000)
  })

  it("a generated 10,000-step, three-level workflow analyses completely", () => {
    const a = analyze(generate(10_000, 3))
    expect(a.metrics.executable_steps).toBe(10_000)
    expect(a.metrics.levels).toBe(3)
    expect(a.metrics.critical_path.steps.length).toBe(a.metrics.depth)
  })
})

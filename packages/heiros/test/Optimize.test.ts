import { describe, expect, it } from "@effect/vitest"
import { Either, Option } from "effect"
import * as fc from "fast-check"
import * as Optimize from "../src/Optimize.js"
import * as Validate from "../src/Validate.js"
import * as Workflow from "../src/Workflow.js"
import { reach } from "../src/internal/graph.js"
import { catalog } from "./fixtures.js"

const options: Optimize.Options = { catalog }
const run = (def: unknown, over: Partial<Optimize.Options> = {}) => Either.getOrThrow(Optimize.optimize(def, { ...options, ...over }))
const dag = (steps: ReadonlyArray<Workflow.StepEncoded>): Workflow.DefinitionEncoded => ({ name: "w", type: "hierarchical_dag", steps })
const stepOf = (r: Optimize.Result, id: string) => r.definition.steps.find((s) => s.id === id)

const levels: ReadonlyArray<Optimize.Level> = ["low", "medium", "high"]
const rank = (l: Optimize.Level) => levels.indexOf(l)

interface RuleCase {
  readonly rule: Optimize.RuleName
  readonly level: Optimize.Level
  readonly input: Workflow.DefinitionEncoded
  readonly behaviour: Optimize.BehaviourChange | undefined
  readonly check: (r: Optimize.Result) => void
}

const rules: ReadonlyArray<RuleCase> = [
  {
    rule: "assign_ids",
    level: "low",
    input: { name: "w", steps: [{ type: "intake" }, { id: "b", type: "transform" }] },
    behaviour: undefined,
    check: (r) => expect(r.definition.steps.map((s) => s.id)).toEqual(["step-0", "b"])
  },
  {
    rule: "fix_dependencies",
    level: "low",
    input: dag([{ id: "a", type: "intake" }, { id: "b", type: "transform", depends_on: ["a", "ghost", "a"] }]),
    behaviour: undefined,
    check: (r) => expect(stepOf(r, "b")?.depends_on).toEqual(["a"])
  },
  {
    rule: "transitive_reduction",
    level: "low",
    input: dag([{ id: "a", type: "intake" }, { id: "b", type: "transform", depends_on: ["a"] }, { id: "c", type: "transform", depends_on: ["a", "b"] }]),
    behaviour: undefined,
    check: (r) => expect(stepOf(r, "c")?.depends_on).toEqual(["b"])
  },
  {
    rule: "remove_duplicate_steps",
    level: "low",
    input: dag([
      { id: "a", type: "intake" },
      { id: "b", type: "transform", config: { op: "x" }, depends_on: ["a"] },
      { id: "b2", type: "transform", config: { op: "x" }, depends_on: ["a"] },
      { id: "c", type: "output", depends_on: ["b", "b2"] }
    ]),
    behaviour: "removed_step",
    check: (r) => {
      expect(r.definition.steps.map((s) => s.id)).toEqual(["a", "b", "c"])
      expect(stepOf(r, "c")?.depends_on).toEqual(["b"])
      expect(r.changes.find((c) => c.rule === "remove_duplicate_steps")?.replaced_by).toBe("b")
    }
  },
  {
    rule: "parallelize_chain",
    level: "medium",
    input: {
      name: "w",
      steps: [
        { id: "in", type: "intake" },
        { id: "a", type: "transform", config: { estimated_ms: 1000, op: "x" }, depends_on: ["in"] },
        { id: "b", type: "transform", config: { estimated_ms: 1000, op: "y" }, depends_on: ["in"] },
        { id: "out", type: "output" }
      ]
    },
    behaviour: "parallel_order",
    check: (r) => {
      expect(r.definition.type).toBe("hierarchical_dag")
      expect(stepOf(r, "out")?.depends_on).toEqual(["b"])
      expect(r.metrics_after.critical_path.estimated_ms).toBe(r.metrics_before.critical_path.estimated_ms - 1000)
      expect(r.metrics_after.width).toBe(2)
    }
  },
  {
    rule: "enable_caching",
    level: "medium",
    input: dag([{ id: "c", type: "classify", config: { model: "claude-3-haiku", temperature: 0 } }]),
    behaviour: undefined,
    check: (r) => expect(stepOf(r, "c")?.config["cache"]).toBe(true)
  },
  {
    rule: "batch_ai_calls",
    level: "medium",
    input: dag([
      { id: "in", type: "intake" },
      { id: "s", type: "summarize", config: { model: "claude-3-haiku" }, depends_on: ["in"] },
      { id: "g", type: "generate", config: { model: "claude-3-haiku" }, depends_on: ["in"] },
      { id: "out", type: "output", depends_on: ["s", "g"] }
    ]),
    behaviour: "removed_step",
    check: (r) => {
      expect(r.definition.steps.map((s) => s.id)).toEqual(["in", "s", "out"])
      expect(stepOf(r, "s")?.config["batch"]).toEqual([{ id: "g", type: "generate", config: { model: "claude-3-haiku" } }])
      expect(stepOf(r, "out")?.depends_on).toEqual(["s"])
      expect(r.metrics_after.ai_calls).toBe(1)
      expect(r.metrics_after.estimated_cost_usd).toBeLessThan(r.metrics_before.estimated_cost_usd)
    }
  },
  {
    rule: "cheaper_model",
    level: "high",
    input: dag([{ id: "c", type: "classify", config: { model: "claude-3-sonnet" } }, { id: "s", type: "summarize", config: { model: "claude-3-sonnet" } }]),
    behaviour: "model_change",
    check: (r) => {
      expect(stepOf(r, "c")?.config["model"]).toBe("claude-3-haiku")
      // Only cheap kinds move.
      expect(stepOf(r, "s")?.config["model"]).toBe("claude-3-sonnet")
    }
  },
  {
    rule: "insert_compliance_check",
    level: "high",
    input: { name: "w", steps: [{ id: "in", type: "intake" }, { id: "send", type: "output", config: { destination: "email" } }] },
    behaviour: "added_step",
    check: (r) => {
      expect(r.definition.steps.map((s) => [s.id, s.type])).toEqual([["in", "intake"], ["send-compliance-check", "compliance_check"], ["send", "output"]])
    }
  }
]

describe("OPTIMIZE rewrite rules by level", () => {
  for (const c of rules) {
    for (const level of levels) {
      const applies = rank(level) >= rank(c.level)
      it(`${c.rule} ${applies ? "applies" : "does not apply"} at ${level}`, () => {
        expect(Validate.validate(c.input, options).issues.filter((i) => i.severity === "error")).toEqual(
          c.rule === "fix_dependencies" ? [expect.objectContaining({ code: "unknown_dependency" })] : []
        )
        const r = run(c.input, { optimization_level: level })
        const mine = r.changes.filter((ch) => ch.rule === c.rule)
        expect(mine.length > 0).toBe(applies)
        if (!applies) return
        expect(mine[0]?.level).toBe(c.level)
        expect(mine[0]?.behaviour_change).toBe(c.behaviour)
        expect(r.behaviour_changing).toBe(r.changes.some((ch) => ch.behaviour_change !== undefined))
        expect(r.optimization_applied).toBe(true)
        expect(r.fixed_point).toBe(true)
        expect(Validate.validateDefinition(r.definition, options).valid).toBe(true)
        c.check(r)
      })
    }
  }

  it("auto-fix and compliance mode can be switched off", () => {
    const fix = rules.find((c) => c.rule === "fix_dependencies")?.input
    expect(Either.isLeft(Optimize.optimize(fix, { ...options, enable_auto_fix: false }))).toBe(true)
    const external = rules.find((c) => c.rule === "insert_compliance_check")?.input
    expect(run(external, { optimization_level: "high", enable_compliance_mode: false }).changes.map((c) => c.rule)).not.toContain("insert_compliance_check")
  })

  it("model_downgrades names the cheaper model the catalog marks suitable", () => {
    const r = run(dag([{ id: "c", type: "extract", config: { ai_model: "claude-3-opus" } }]), {
      optimization_level: "high",
      model_downgrades: { "claude-3-opus": "claude-3-sonnet" }
    })
    expect(stepOf(r, "c")?.config["ai_model"]).toBe("claude-3-sonnet")
  })

  it("a clean workflow is left alone", () => {
    const r = run({ name: "w", steps: [{ id: "a", type: "intake" }, { id: "b", type: "output", config: { destination: "s3" } }] }, { optimization_level: "high" })
    expect(r.changes).toEqual([])
    expect(r.optimization_applied).toBe(false)
    expect(r.iterations).toBe(1)
    expect(r.definition).toEqual(r.original)
  })

  it("the review request carries the changes for gateway #2", () => {
    const r = run(rules.find((c) => c.rule === "cheaper_model")?.input, { optimization_level: "high" })
    const review = Optimize.reviewRequest(r)
    expect(review.prompt).toContain("cheaper_model")
    expect(review.system.length).toBeGreaterThan(0)
  })
})

// ---------------------------------------------------------------------------------------------
// Properties

const types = ["intake", "transform", "summarize", "classify", "extract", "output", "compliance_check", "human_approval", "redact"] as const
const models = ["claude-3-sonnet", "claude-3-haiku", "claude-3-opus", "titan-express", "llama2-70b"] as const

const stepArb = (id: string | undefined, earlier: ReadonlyArray<string>, dagMode: boolean) =>
  fc.record({
    type: fc.constantFrom(...types),
    model: fc.constantFrom(...models),
    temperature: fc.constantFrom(undefined, 0, 0.7),
    destination: fc.constantFrom(undefined, "s3", "email"),
    op: fc.constantFrom("x", "y"),
    deps: earlier.length === 0 ? fc.constant<ReadonlyArray<string>>([]) : fc.subarray([...earlier], { maxLength: Math.min(3, earlier.length) }),
    declare: fc.boolean()
  }).map((r): Workflow.StepEncoded => {
    const config: Record<string, unknown> = { op: r.op }
    if (r.type === "summarize" || r.type === "classify" || r.type === "extract") {
      config["model"] = r.model
      if (r.temperature !== undefined) config["temperature"] = r.temperature
    }
    if (r.type === "output" && r.destination !== undefined) config["destination"] = r.destination
    const base: Workflow.StepEncoded = id === undefined ? { type: r.type, config } : { id, type: r.type, config }
    return dagMode || r.declare ? { ...base, depends_on: r.deps } : base
  })

const listArb = (prefix: string, nestedAllowed: boolean): fc.Arbitrary<Workflow.DefinitionEncoded> =>
  fc.record({ n: fc.integer({ min: 1, max: 9 }), dagMode: fc.boolean(), nest: fc.boolean(), seed: fc.integer() }).chain(({ n, dagMode, nest }) => {
    const ids = Array.from({ length: n }, (_, i) => `${prefix}${i}`)
    const steps = ids.map((id, i) => stepArb(i === 1 ? undefined : id, ids.slice(0, i).filter((_, k) => k !== 1), dagMode))
    const nested = nestedAllowed && nest
      ? listArb(`${prefix}n`, false).map((w): ReadonlyArray<Workflow.StepEncoded> => [{ id: `${prefix}sub`, type: "workflow", workflow: w, ...(dagMode ? { depends_on: [ids[0] ?? ""] } : {}) }])
      : fc.constant<ReadonlyArray<Workflow.StepEncoded>>([])
    return fc.tuple(fc.tuple(...steps), nested).map(([s, extra]): Workflow.DefinitionEncoded => ({
      name: prefix,
      type: dagMode ? "hierarchical_dag" : "linear",
      steps: [...s, ...extra]
    }))
  })

const workflowArb = listArb("s", true)
const levelArb = fc.constantFrom<Optimize.Level>("low", "medium", "high")

/** Executable-step ancestors of every output step, by path. */
const outputAncestry = (def: Workflow.Definition) => {
  const graph = Workflow.normalise(def)
  const flat = Workflow.flatten(graph)
  const pathAt = (pos: number) => graph.nodes[flat.nodes[pos] ?? -1]?.path ?? ""
  const out = new Map<string, ReadonlyArray<string>>()
  flat.nodes.forEach((n, pos) => {
    if (graph.nodes[n]?.type !== "output") return
    const seen = reach(flat.preds, [pos])
    out.set(pathAt(pos), flat.nodes.flatMap((_, q) => (seen[q] === 1 ? [pathAt(q)] : [])))
  })
  return out
}

describe("OPTIMIZE properties", () => {
  it("never produces an invalid DAG, never adds a cycle, and reaches a fixed point within the limit", () => {
    fc.assert(fc.property(workflowArb, levelArb, (input, level) => {
      expect(Validate.validate(input, options).valid).toBe(true)
      const r = run(input, { optimization_level: level, max_optimization_iterations: 10 })
      const after = Validate.validateDefinition(r.definition, options)
      expect(after.issues.filter((i) => i.severity === "error")).toEqual([])
      expect(after.issues.some((i) => i.code === "cycle")).toBe(false)
      expect(r.fixed_point).toBe(true)
      expect(r.iterations).toBeLessThanOrEqual(10)
      const again = run(Workflow.encode(r.definition), { optimization_level: level })
      expect(again.changes).toEqual([])
    }), { numRuns: 300 })
  })

  const replacements = (r: Optimize.Result) => {
    const replaced = new Map(r.changes.flatMap((c) => (c.replaced_by === undefined ? [] : c.steps.filter((s) => s !== c.replaced_by).map((s) => [s, c.replaced_by] as const))))
    return (p: string): string => {
      let cur = p
      for (let i = 0; i < 100 && replaced.has(cur); i++) cur = replaced.get(cur) ?? cur
      return cur
    }
  }

  it("never drops a step an output depends on: it stays, or the step that took over its work does", () => {
    fc.assert(fc.property(workflowArb, levelArb, (input, level) => {
      const r = run(input, { optimization_level: level })
      const resolve = replacements(r)
      const before = outputAncestry(Option.getOrThrow(Validate.validate(input, options).definition))
      const present = new Set(Workflow.normalise(r.definition).nodes.map((n) => n.path))
      for (const [output, ancestors] of before) {
        expect(present, `output ${output}`).toContain(resolve(output))
        for (const a of ancestors) expect(present, `${a} feeding ${output}`).toContain(resolve(a))
      }
    }), { numRuns: 300 })
  })

  it("without reordering (low), every step an output depended on still feeds it", () => {
    fc.assert(fc.property(workflowArb, (input) => {
      const r = run(input, { optimization_level: "low" })
      const resolve = replacements(r)
      const before = outputAncestry(Option.getOrThrow(Validate.validate(input, options).definition))
      const after = outputAncestry(r.definition)
      for (const [output, ancestors] of before) {
        const upstream = after.get(resolve(output))
        expect(upstream, `output ${output} survives`).toBeDefined()
        for (const a of ancestors) expect(upstream, `${a} still feeds ${output}`).toContain(resolve(a))
      }
    }), { numRuns: 300 })
  })

  it("the iteration limit bounds the rounds", () => {
    fc.assert(fc.property(workflowArb, fc.integer({ min: 0, max: 3 }), (input, max) => {
      const r = run(input, { optimization_level: "high", max_optimization_iterations: max })
      expect(r.iterations).toBeLessThanOrEqual(max)
      expect(Validate.validateDefinition(r.definition, options).valid).toBe(true)
    }), { numRuns: 100 })
  })
})

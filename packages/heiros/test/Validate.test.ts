import { describe, expect, it } from "@effect/vitest"
import { Option } from "effect"
import * as Validate from "../src/Validate.js"
import * as Workflow from "../src/Workflow.js"
import { catalog, diagnostic, fullSystemTest } from "./fixtures.js"

const options: Validate.Options = { catalog }

const dag = (steps: ReadonlyArray<Workflow.StepEncoded>): Workflow.DefinitionEncoded => ({ name: "w", type: "hierarchical_dag", steps })

const nestedTo = (depth: number): Workflow.DefinitionEncoded => {
  let def: Workflow.DefinitionEncoded = { name: `level ${depth}`, steps: [{ id: "leaf", type: "transform" }] }
  for (let d = depth - 1; d >= 0; d--) def = { name: `level ${d}`, steps: [{ id: `n${d + 1}`, type: "workflow", workflow: def }] }
  return def
}

interface Case {
  readonly name: string
  readonly input: unknown
  readonly code: Validate.IssueCode
  readonly severity: Validate.Severity
  readonly path: string
  readonly members?: ReadonlyArray<string>
  readonly options?: Partial<Validate.Options>
}

const cases: ReadonlyArray<Case> = [
  { name: "missing steps", input: { name: "w" }, code: "schema_error", severity: "error", path: "" },
  { name: "step without type", input: { name: "w", steps: [{ id: "a" }] }, code: "schema_error", severity: "error", path: "a" },
  {
    name: "bad field in a nested step",
    input: { name: "w", steps: [{ id: "sub", type: "workflow", workflow: { name: "s", steps: [{ type: "x" }, { type: 3 }] } }] },
    code: "schema_error",
    severity: "error",
    path: "sub/step-1"
  },
  { name: "negative max_tokens", input: dag([{ id: "a", type: "transform", config: { max_tokens: -1 } }]), code: "schema_error", severity: "error", path: "a" },
  { name: "workflow step without workflow", input: dag([{ id: "w", type: "workflow" }]), code: "schema_error", severity: "error", path: "w" },
  { name: "empty workflow", input: { name: "w", steps: [] }, code: "empty_workflow", severity: "error", path: "" },
  {
    name: "empty nested workflow",
    input: { name: "w", steps: [{ id: "sub", type: "workflow", workflow: { name: "s", steps: [] } }] },
    code: "empty_workflow",
    severity: "error",
    path: "sub"
  },
  { name: "duplicate id", input: dag([{ id: "a", type: "transform" }, { id: "a", type: "transform", depends_on: ["a"] }]), code: "duplicate_id", severity: "error", path: "a" },
  {
    name: "duplicate of a generated id",
    input: { name: "w", steps: [{ type: "transform" }, { id: "step-0", type: "transform" }] },
    code: "duplicate_id",
    severity: "error",
    path: "step-0"
  },
  { name: "unknown dependency", input: dag([{ id: "a", type: "transform" }, { id: "b", type: "transform", depends_on: ["nope"] }]), code: "unknown_dependency", severity: "error", path: "b" },
  {
    name: "cycle",
    input: dag([{ id: "a", type: "transform", depends_on: [] }, { id: "b", type: "transform", depends_on: ["a", "d"] }, { id: "c", type: "transform", depends_on: ["b"] }, { id: "d", type: "transform", depends_on: ["c"] }]),
    code: "cycle",
    severity: "error",
    path: "b",
    members: ["b", "c", "d"]
  },
  { name: "self-dependency", input: dag([{ id: "a", type: "transform", depends_on: ["a"] }]), code: "cycle", severity: "error", path: "a", members: ["a"] },
  {
    name: "unreachable step",
    input: dag([{ id: "a", type: "transform", depends_on: [] }, { id: "b", type: "transform", depends_on: ["a"] }, { id: "lonely", type: "transform", depends_on: [] }]),
    code: "unreachable_step",
    severity: "warning",
    path: "lonely"
  },
  { name: "depth over dag_max_depth", input: nestedTo(3), code: "depth_exceeded", severity: "error", path: "n1/n2/n3", options: { dag_max_depth: 2 } },
  { name: "AI step naming an unknown model", input: dag([{ id: "a", type: "ai_analysis", config: { model: "gpt-99" } }]), code: "unknown_model", severity: "error", path: "a" },
  { name: "process step with an unknown ai_model", input: dag([{ id: "p", type: "process", config: { ai_model: "nope" } }]), code: "unknown_model", severity: "error", path: "p" },
  { name: "AI step naming no model", input: dag([{ id: "s", type: "summarize" }]), code: "missing_model", severity: "error", path: "s" },
  { name: "unknown step type", input: dag([{ id: "x", type: "teleport" }]), code: "unknown_step_type", severity: "warning", path: "x" }
]

describe("VALIDATE", () => {
  for (const c of cases) {
    it(`${c.code}: ${c.name}`, () => {
      const result = Validate.validate(c.input, { ...options, ...c.options })
      const found = result.issues.filter((i) => i.code === c.code)
      expect(found.length, JSON.stringify(result.issues)).toBeGreaterThan(0)
      const [first] = found
      expect(first?.severity).toBe(c.severity)
      expect(first?.path).toBe(c.path)
      expect(first?.message.length).toBeGreaterThan(0)
      if (c.members !== undefined) expect(first?.members).toEqual(c.members)
      expect(result.valid).toBe(c.severity !== "error")
    })
  }

  it("the build guide's examples are valid and raise no issue", () => {
    for (const def of [diagnostic, fullSystemTest]) {
      const result = Validate.validate(def, options)
      expect(result.issues).toEqual([])
      expect(result.valid).toBe(true)
    }
  })

  it("nesting exactly dag_max_depth deep is allowed", () => {
    expect(Validate.validate(nestedTo(10), options).issues).toEqual([])
    expect(Validate.validate(nestedTo(11), options).issues.map((i) => i.code)).toEqual(["depth_exceeded"])
  })

  it("a default model satisfies AI steps naming none, if the catalog knows it", () => {
    const def = dag([{ id: "s", type: "summarize" }])
    expect(Validate.validate(def, { ...options, default_model: "claude-3-haiku" }).issues).toEqual([])
    expect(Validate.validate(def, { ...options, default_model: "nope" }).issues.map((i) => i.code)).toEqual(["unknown_model"])
  })

  it("missing ids become step-<index> and linear lists chain implicitly", () => {
    const result = Validate.validate({ name: "w", steps: [{ type: "intake" }, { type: "transform" }, { id: "out", type: "output" }] }, options)
    const graph = Option.getOrThrow(result.graph)
    expect(graph.nodes.map((n) => [n.path, n.deps.map((d) => graph.nodes[d]?.id)])).toEqual([
      ["step-0", []], ["step-1", ["step-0"]], ["out", ["step-1"]]
    ])
  })

  it("a DAG list where no step names a dependency chains too; one naming any does not", () => {
    const chained = Option.getOrThrow(Validate.validate(dag([{ id: "a", type: "transform" }, { id: "b", type: "transform" }]), options).graph)
    expect(chained.nodes[1]?.deps).toEqual([0])
    const explicit = Option.getOrThrow(Validate.validate(dag([{ id: "a", type: "transform" }, { id: "b", type: "transform" }, { id: "c", type: "transform", depends_on: ["a"] }]), options).graph)
    expect(explicit.nodes.map((n) => n.deps)).toEqual([[], [], [0]])
  })

  it("a linear list adds the implicit predecessor to what a step declares", () => {
    const graph = Option.getOrThrow(Validate.validate({ name: "w", steps: [{ id: "a", type: "transform" }, { id: "b", type: "transform" }, { id: "c", type: "transform", depends_on: ["a"] }] }, options).graph)
    expect(graph.nodes[2]?.deps).toEqual([0, 1])
  })

  it("the fast decoder agrees with the schema", () => {
    for (const def of [diagnostic, fullSystemTest, { name: "w", steps: [{ type: "x", extra: 1 }], owner: "me" }]) {
      expect(Workflow.decode(def)).toEqual(Workflow.decodeWithSchema(def))
    }
  })

  it("unknown keys of the definition survive decoding", () => {
    const result = Validate.validate({ name: "w", owner: "risk-team", steps: [{ id: "a", type: "transform", note: "keep me" }] }, options)
    const def = Option.getOrThrow(result.definition)
    expect(def).toMatchObject({ owner: "risk-team", steps: [{ note: "keep me" }] })
  })
})

/** Definitions of the build guide and hand-checked DAGs shared by the suites. */
import { ModelCatalog } from "@tidyllm/core"
import type * as Workflow from "../src/Workflow.js"

export const catalog = ModelCatalog.make(ModelCatalog.defaultModels)

/** The build guide's three-step diagnostic workflow: intake → ai_analysis → output, linear. */
export const diagnostic: Workflow.DefinitionEncoded = {
  name: "Diagnostic workflow",
  steps: [
    { id: "intake", type: "intake", config: { source: "s3" } },
    { id: "analysis", type: "ai_analysis", config: { model: "claude-3-haiku" } },
    { id: "output", type: "output", config: { destination: "s3", retention_days: 30 } }
  ]
}

/** The five-step "Full System Test" of WORKFLOWS.md. */
export const fullSystemTest: Workflow.DefinitionEncoded = {
  name: "Full System Test",
  type: "hierarchical_dag",
  compliance_required: true,
  steps: [
    { id: "intake", type: "intake", config: { source: "s3" } },
    { id: "ai", type: "ai_analysis", config: { model: "claude-3-sonnet" }, depends_on: ["intake"] },
    {
      id: "sub",
      type: "workflow",
      depends_on: ["ai"],
      workflow: {
        name: "Enrichment",
        steps: [
          { type: "transform", config: {} },
          { type: "summarize", config: { model: "claude-3-haiku" } }
        ]
      }
    },
    { id: "check", type: "compliance_check", config: { frameworks: ["SOX", "GDPR"] }, depends_on: ["sub"] },
    { id: "out", type: "output", config: { destination: "s3" }, depends_on: ["check"] }
  ]
}

/** A step of `ms` milliseconds. */
export const t = (id: string, ms: number, depends_on?: ReadonlyArray<string>): Workflow.StepEncoded =>
  depends_on === undefined ? { id, type: "transform", config: { estimated_ms: ms } } : { id, type: "transform", config: { estimated_ms: ms }, depends_on }

/** a → (b | c) → d, with b slower than c. */
export const diamond: Workflow.DefinitionEncoded = {
  name: "diamond",
  type: "hierarchical_dag",
  steps: [t("a", 10, []), t("b", 50, ["a"]), t("c", 20, ["a"]), t("d", 5, ["b", "c"])]
}

/** One source fanning out to four, fanning in to one. */
export const fanOutIn: Workflow.DefinitionEncoded = {
  name: "fan-out/fan-in",
  type: "hierarchical_dag",
  steps: [
    t("src", 100, []),
    t("w1", 300, ["src"]), t("w2", 700, ["src"]), t("w3", 200, ["src"]), t("w4", 400, ["src"]),
    t("sink", 50, ["w1", "w2", "w3", "w4"])
  ]
}

/**
 * Three levels: root `a → outer → z`, `outer` = `p → (inner | q)`, `inner` = `x → y` (linear).
 * Executable: a, outer/p, outer/inner/x, outer/inner/y, outer/q, z.
 */
export const nested: Workflow.DefinitionEncoded = {
  name: "nested",
  type: "hierarchical_dag",
  steps: [
    t("a", 100, []),
    {
      id: "outer",
      type: "workflow",
      depends_on: ["a"],
      workflow: {
        name: "outer",
        type: "hierarchical_dag",
        steps: [
          t("p", 10, []),
          { id: "inner", type: "workflow", depends_on: ["p"], workflow: { name: "inner", steps: [t("x", 200), t("y", 300)] } },
          t("q", 1000, ["p"])
        ]
      }
    },
    t("z", 1, ["outer"])
  ]
}

/** `tidyllm workflow`, `tidyllm agreements` and `tidyllm diagnose --level 3`, in-process on embedded PGlite and the mock provider. */
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { parseDiagnose, rowOf, sandboxes, type Sandbox } from "./harness.js"

const fresh = sandboxes()

/** Every run opens the embedded database, which takes seconds on a busy machine. */
const slow = { timeout: 240_000 }

const payments = {
  name: "payments",
  type: "hierarchical_dag",
  compliance_required: true,
  steps: [
    { id: "in", type: "intake", config: { pii: true }, depends_on: [] },
    { id: "cls", type: "classify", config: { model: "claude-3-sonnet" }, depends_on: ["in"] },
    { id: "send", type: "output", config: { destination: "webhook" }, depends_on: ["cls"] }
  ]
}

const fullSystemTestYaml = `
name: Full System Test
type: hierarchical_dag
compliance_required: true
steps:
  - { id: intake, type: intake, config: { source: s3 } }
  - { id: ai, type: ai_analysis, config: { model: claude-3-sonnet }, depends_on: [intake] }
  - id: sub
    type: workflow
    depends_on: [ai]
    workflow:
      name: Enrichment
      steps:
        - { type: transform }
        - { type: summarize, config: { model: claude-3-haiku } }
  - { id: check, type: compliance_check, config: { frameworks: [SOX, GDPR] }, depends_on: [sub] }
  - { id: out, type: output, config: { destination: s3 }, depends_on: [check] }
`

const write = (s: Sandbox, name: string, content: string) => writeFileSync(join(s.dir, "work", name), content)

describe("tidyllm workflow validate|analyze|optimize", () => {
  const s = fresh()
  write(s, "fst.yaml", fullSystemTestYaml)
  write(s, "payments.json", JSON.stringify(payments))
  write(s, "cycle.json", JSON.stringify({ name: "c", type: "hierarchical_dag", steps: [{ id: "a", type: "t", depends_on: ["b"] }, { id: "b", type: "t", depends_on: ["a"] }] }))

  it.live("validate: a valid file exits 0; a cycle is reported with its code and exits 1", () =>
    Effect.gen(function*() {
      const ok = yield* s.run(["workflow", "validate", "fst.yaml"])
      expect(ok.code).toBe(0)
      expect(ok.stdout).toContain("✓ Full System Test is valid")
      const bad = yield* s.run(["workflow", "validate", "cycle.json"])
      expect(bad.code).toBe(1)
      expect(bad.stdout).toMatch(/✗ c is invalid: \d+ errors?/)
      expect(bad.stdout).toMatch(/error cycle a/)
      const missing = yield* s.run(["workflow", "validate", "nope.json"])
      expect(missing.code).toBe(2)
      expect(missing.stderr).toContain("cannot read nope.json")
    }), slow)

  it.live("analyze prints the critical path, bottlenecks, compliance verdicts and risk; --json the response", () =>
    Effect.gen(function*() {
      const r = yield* s.run(["workflow", "analyze", "fst.yaml"])
      expect(r.code).toBe(0)
      expect(r.stdout).toContain("Workflow: Full System Test — 7 steps (6 executable), 2 levels")
      expect(r.stdout).toMatch(/Critical path \(.+\): intake → ai → sub\/step-0 → sub\/step-1 → check → out/)
      expect(r.stdout).toContain("Bottlenecks:")
      expect(r.stdout).toContain("✓ SOX: pass")
      expect(r.stdout).toContain("✗ GDPR: fail")
      expect(r.stdout).toMatch(/✗ retention_on_outputs \(out\)/)
      expect(r.stdout).toMatch(/Risk: medium \(score 25/)
      expect(r.stderr).toMatch(/ANALYZE · [0-9.]+ ms · optimization_applied=false · corporate_audit_id=none/)
      const j = yield* s.run(["workflow", "analyze", "fst.yaml", "--json"])
      expect(JSON.parse(j.stdout)).toMatchObject({ status: "success", data: { analysis: { name: "Full System Test" } }, metadata: { operation: "ANALYZE" } })
      const structural = yield* s.run(["workflow", "analyze", "cycle.json"])
      expect(structural.code).toBe(1)
      expect(structural.stderr).toContain("error: invalid_workflow:")
      expect(structural.stderr).toMatch(/error cycle/)
    }), slow)

  it.live("several files: each under a numbered heading, a failing one reported without stopping the rest, exit 1; --json an array", () =>
    Effect.gen(function*() {
      const r = yield* s.run(["workflow", "analyze", "fst.yaml", "cycle.json", "nope.json", "payments.json"], {}, { progress: true })
      expect(r.code).toBe(1)
      const headings = r.stdout.split("\n").filter((l) => l.startsWith("== "))
      expect(headings).toEqual(["== fst.yaml (1/4) ==", "== cycle.json (2/4) ==", "== nope.json (3/4) ==", "== payments.json (4/4) =="])
      expect(r.stdout).toContain("Workflow: Full System Test")
      expect(r.stdout).toContain("Workflow: payments")
      expect(r.stdout.split("\n").at(-1)).toBe("2 of 4 files processed, 2 failed")
      expect(r.stderr).toContain("error: invalid_workflow:")
      expect(r.stderr).toContain("error: usage: cannot read nope.json")
      expect(r.stderr.split("\n").filter((l) => /^\[\d\/4\] [✓✗] /.test(l))).toEqual(["[1/4] ✓ fst.yaml", "[2/4] ✗ cycle.json", "[3/4] ✗ nope.json", "[4/4] ✓ payments.json"])

      const j = yield* s.run(["workflow", "validate", "fst.yaml", "cycle.json", "--json"])
      expect(j.code).toBe(1)
      const out = JSON.parse(j.stdout) as ReadonlyArray<{ file: string; response?: { data: { validation: { valid: boolean } } } }>
      expect(out.map((o) => [o.file, o.response?.data.validation.valid])).toEqual([["fst.yaml", true], ["cycle.json", false]])

      const both = yield* s.run(["workflow", "optimize", "fst.yaml", "payments.json", "--id", "x"])
      expect(both.code).toBe(2)
      expect(both.stderr).toContain("--id stores one definition")
    }), slow)

  it.live("optimize --level high prints changes applied, before → after, and the advisory review's audit id", () =>
    Effect.gen(function*() {
      const r = yield* s.run(["workflow", "optimize", "payments.json", "--level", "high"])
      expect(r.code).toBe(0)
      expect(r.stdout).toContain("Changes applied (2):")
      expect(r.stdout).toContain("[cheaper_model]")
      expect(r.stdout).toContain("[insert_compliance_check]")
      expect(r.stdout).toMatch(/steps\s+3 → 4/)
      expect(r.stdout).toMatch(/cost per run\s+\$[0-9.e-]+ → \$[0-9.e-]+/)
      expect(r.stdout).toMatch(/Review \(advisory, not applied; mock\//)
      expect(r.stderr).toMatch(/OPTIMIZE · .* · optimization_applied=true · corporate_audit_id=[0-9a-f-]{36}/)
    }), slow)
})

describe("tidyllm workflow store|get|list and tidyllm agreements", () => {
  const s = fresh()
  write(s, "payments.json", JSON.stringify(payments))

  it.live("store → optimize --id proposes → self-approval refused → approver + compliance approve → the version is current", () =>
    Effect.gen(function*() {
      const stored = yield* s.run(["workflow", "store", "payments", "payments.json"])
      expect(stored.code).toBe(0)
      expect(stored.stdout).toMatch(/^stored payments v1 \(current\)/)
      const list = yield* s.run(["workflow", "list"])
      expect(list.stdout).toMatch(/payments\s+v1\s+1/)

      const opt = yield* s.run(["workflow", "optimize", "payments.json", "--level", "high", "--id", "payments", "--reason", "cut cost"])
      expect(opt.code).toBe(0)
      expect(opt.stdout).toContain("Stored: payments v2 (proposed, not current; v1 stays current until approved)")
      const id = /Agreement ([0-9a-f-]{36}): proposed, high risk/.exec(opt.stdout)?.[1] ?? ""
      expect(id).not.toBe("")

      const listed = yield* s.run(["agreements", "list"])
      expect(listed.stdout).toMatch(new RegExp(`${id}\\s+payments\\s+proposed\\s+high\\s+user:tester\\s+0`))

      // USER=tester proposed it.
      const self = yield* s.run(["agreements", "approve", id, "--role", "compliance", "--comment", "mine"])
      expect(self.code).toBe(1)
      expect(self.stderr).toContain("error: self_approval:")
      const role = yield* s.run(["agreements", "approve", id, "--as", "bob", "--comment", "ok"])
      expect(role.code).toBe(1)
      expect(role.stderr).toContain("error: forbidden:")
      const noComment = yield* s.run(["agreements", "reject", id, "--as", "bob"])
      expect(noComment.code).toBe(2)

      const first = yield* s.run(["agreements", "approve", id, "--as", "bob", "--role", "approver", "--comment", "model ok"])
      expect(first.code).toBe(0)
      expect(first.stdout).toContain("proposed → proposed")
      expect(first.stdout).toContain("still proposed: a high-risk change needs more approvals")
      const second = yield* s.run(["agreements", "approve", id, "--as", "cora", "--role", "compliance", "--comment", "check added"])
      expect(second.code).toBe(0)
      expect(second.stdout).toContain("proposed → approved")
      expect(second.stdout).toContain("payments v2 is now current")

      const got = yield* s.run(["workflow", "get", "payments"])
      expect(got.code).toBe(0)
      expect(got.stderr).toContain("payments v2 (current)")
      expect(JSON.parse(got.stdout)).toMatchObject({ name: "payments" })
      const v1 = yield* s.run(["workflow", "get", "payments", "--version", "1"])
      expect(v1.stderr).toContain("payments v1 (not current)")
      const missing = yield* s.run(["workflow", "get", "nope"])
      expect(missing.code).toBe(1)
      expect(missing.stderr).toContain("error: not_found:")
    }), slow)
})

describe("tidyllm diagnose --level 3", () => {
  it.live("runs the whole lifecycle and prints a ✓ line per step", () =>
    Effect.gen(function*() {
      const s = fresh()
      const r = yield* s.run(["diagnose", "--level", "3"])
      expect(r.stderr).toBe("")
      const { rows, summary } = parseDiagnose(r.stdout)
      const steps = ["workflow store", "workflow analyze", "workflow optimize", "flow agreement", "agreement approve", "current version"]
      expect(rows.slice(-6).map((x) => [x.name, x.status])).toEqual(steps.map((step) => [step, "ok"]))
      expect(rowOf(rows, "agreement approve").detail).toMatch(/^approved by tidyllm-diagnose-approver \(approver\) and tidyllm-diagnose-compliance \(compliance\)/)
      expect(rowOf(rows, "current version").detail).toMatch(/^diagnose-[0-9a-f]{8} v2 is current \(was v1\)/)
      expect(summary).toBe("all 17 checks passed (4 skipped)")
      expect(r.code).toBe(0)
    }), slow)
})

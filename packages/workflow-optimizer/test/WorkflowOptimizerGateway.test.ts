import { describe, expect, it } from "@effect/vitest"
import { Context, Duration, Effect, Ref, TestClock } from "effect"
import { Errors } from "@tidyllm/core"
import { AgreementStore } from "@tidyllm/heiros"
import { ObjectStore, UnifiedSessionManager, WorkflowAudit } from "@tidyllm/session-manager"
import { WorkflowOptimizerGateway } from "@tidyllm/workflow-optimizer"
import { diagnostic, fullSystemTest } from "../../heiros/test/fixtures.js"
import { as, asCaller, make } from "./harness.js"

/** A workflow whose `high` optimisation changes behaviour (cheaper model, inserted compliance check) and whose risk is high. */
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

/** A workflow whose `high` optimisation changes the model only, at low risk. */
const triage = {
  name: "triage",
  steps: [
    { id: "in", type: "intake", config: { source: "s3" } },
    { id: "cls", type: "classify", config: { model: "claude-3-sonnet" } },
    { id: "out", type: "output", config: { destination: "s3", retention_days: 30 } }
  ]
}

const setup = (overrides: Parameters<typeof make>[0] = {}) =>
  Effect.gen(function*() {
    const { context, llmAudit } = yield* make(overrides)
    return {
      gw: Context.get(context, WorkflowOptimizerGateway.WorkflowOptimizerGateway),
      sm: Context.get(context, UnifiedSessionManager.UnifiedSessionManager),
      audit: Context.get(context, WorkflowAudit.WorkflowAudit),
      agreements: Context.get(context, AgreementStore.AgreementStore),
      objects: Context.get(context, ObjectStore.ObjectStore),
      llmAudit
    }
  })

const alice = as("alice")
const reason = "unit test"

describe("VALIDATE, ANALYZE, OPTIMIZE (the build guide's examples)", () => {
  it.scoped("the three-step diagnostic workflow analyses clean", () =>
    Effect.gen(function*() {
      const { gw } = yield* setup()
      const validated = yield* gw.process({ operation: "VALIDATE", workflow: diagnostic, reason }, alice)
      expect(validated.data.validation).toEqual({ valid: true, issues: [] })
      const r = yield* gw.process({ operation: "ANALYZE", workflow: diagnostic, reason }, alice)
      const a = r.data.analysis
      expect(a?.issues).toEqual([])
      expect(a?.metrics.critical_path.steps).toEqual(["intake", "analysis", "output"])
      expect(a?.compliance.map((v) => [v.framework, v.status])).toEqual([["SOX", "pass"], ["GDPR", "pass"], ["Internal", "pass"]])
      expect(a?.risk).toMatchObject({ level: "low", score: 0 })
      expect(a?.bottlenecks.length).toBeGreaterThan(0)
      expect(r.metadata).toMatchObject({ operation: "ANALYZE", corporate_audit_id: null, optimization_applied: false, workflow_id: null })
      expect(r.metadata.processing_metrics).toMatchObject({ input_steps: 3, output_steps: 3 })
      expect(r.metadata.processing_metrics.input_bytes).toBe(new TextEncoder().encode(JSON.stringify(diagnostic)).length)
    }))

  it.scoped("the five-step Full System Test gets SOX and GDPR verdicts with findings", () =>
    Effect.gen(function*() {
      const { gw } = yield* setup({ compliance_frameworks: ["SOX", "GDPR"] })
      const a = (yield* gw.process({ operation: "ANALYZE", workflow: fullSystemTest, reason }, alice)).data.analysis
      expect(a?.compliance.map((v) => v.framework)).toEqual(["SOX", "GDPR"])
      const sox = a?.compliance.find((v) => v.framework === "SOX")
      const gdpr = a?.compliance.find((v) => v.framework === "GDPR")
      expect(sox?.status).toBe("pass")
      expect(sox?.findings.length).toBeGreaterThan(0)
      expect(gdpr?.status).toBe("fail")
      expect(gdpr?.findings.find((f) => f.rule === "retention_on_outputs")).toMatchObject({ passed: false, steps: ["out"] })
      expect(a?.risk.level).toBe("medium")
      expect(a?.metrics).toMatchObject({ step_count: 7, levels: 2 })
    }))

  it.scoped("OPTIMIZE at high asks gateway #2 for an advisory review: corporate_audit_id, processing_metrics, optimization_applied", () =>
    Effect.gen(function*() {
      const { gw, llmAudit } = yield* setup()
      const r = yield* gw.process({ operation: "OPTIMIZE", workflow: payments, optimization_level: "high", reason }, alice)
      expect(r.metadata.optimization_applied).toBe(true)
      expect(r.metadata.corporate_audit_id).toMatch(/^[0-9a-f-]{36}$/)
      const rows = yield* Ref.get(llmAudit)
      expect(rows.map((row) => row.id)).toContain(r.metadata.corporate_audit_id)
      expect(rows[0]?.reason).toBe("workflow optimisation review: unit test")
      expect(r.data.review).toMatchObject({ status: "success", advisory: true, audit_id: r.metadata.corporate_audit_id })
      const m = r.metadata.processing_metrics
      expect(m).toMatchObject({ input_steps: 3, output_steps: 4, changes: 2 })
      expect(m.iterations).toBeGreaterThanOrEqual(1)
      expect(m.output_bytes).toBeGreaterThan(m.input_bytes)
      expect(typeof m.review_ms).toBe("number")
      const o = r.data.optimization
      expect(o?.changes.map((c) => c.rule)).toEqual(["cheaper_model", "insert_compliance_check"])
      expect(o?.behaviour_changing).toBe(true)
      // The review is advice: the definition is the optimiser's, not the model's.
      expect(o?.definition.steps.map((s) => s.id)).toContain("send")
      // No workflow id: nothing stored, no agreement, but the approval requirement is reported.
      expect(o?.approval_required).toBe(true)
      expect(r.data.stored).toBeUndefined()
      expect(r.data.agreement).toBeUndefined()
    }))

  it.scoped("below high there is no review and corporate_audit_id is null", () =>
    Effect.gen(function*() {
      const { gw, llmAudit } = yield* setup()
      const r = yield* gw.process({ operation: "OPTIMIZE", workflow: fullSystemTest, optimization_level: "medium", reason }, alice)
      expect(r.metadata).toMatchObject({ corporate_audit_id: null, optimization_applied: true, optimization_level: "medium" })
      expect(r.data.review).toBeNull()
      expect(yield* Ref.get(llmAudit)).toEqual([])
    }))

  it.scoped("typed errors: no reason, no workflow, structural errors, unknown stored workflow", () =>
    Effect.gen(function*() {
      const { gw } = yield* setup()
      const noReason = yield* Effect.flip(gw.process({ operation: "ANALYZE", workflow: diagnostic, reason: "  " }, alice))
      expect(noReason).toBeInstanceOf(Errors.InvalidRequest)
      expect(noReason).toMatchObject({ status: 400, field: "reason" })
      // The out-of-band reason (x-tidyllm-reason) counts.
      yield* gw.process({ operation: "ANALYZE", workflow: diagnostic }, { ...alice, reason: "header reason" })
      const none = yield* Effect.flip(gw.process({ operation: "ANALYZE", reason }, alice))
      expect(none).toMatchObject({ _tag: "InvalidRequest", field: "workflow" })
      const cyclic = { name: "c", type: "hierarchical_dag", steps: [{ id: "a", type: "t", depends_on: ["b"] }, { id: "b", type: "t", depends_on: ["a"] }] }
      const invalid = yield* Effect.flip(gw.process({ operation: "ANALYZE", workflow: cyclic, reason }, alice))
      expect(invalid).toMatchObject({ _tag: "InvalidWorkflow", status: 400 })
      const validation = yield* gw.process({ operation: "VALIDATE", workflow: cyclic, reason }, alice)
      expect(validation.data.validation?.valid).toBe(false)
      expect(validation.data.validation?.issues.map((i) => i.code)).toContain("cycle")
      const missing = yield* Effect.flip(gw.process({ operation: "ANALYZE", workflow_id: "nope", reason }, alice))
      expect(missing).toMatchObject({ _tag: "WorkflowNotFound", status: 404 })
    }))
})

describe("storage and flow agreements", () => {
  it.scoped("a non-behaviour-changing optimisation of a stored workflow becomes current at once", () =>
    Effect.gen(function*() {
      const { gw } = yield* setup()
      yield* gw.storeWorkflow("fst", fullSystemTest, alice)
      const r = yield* gw.process({ operation: "OPTIMIZE", workflow_id: "fst", optimization_level: "low", reason }, alice)
      expect(r.metadata.version).toBe(1)
      expect(r.data.stored).toEqual({ workflow_id: "fst", version: 2, current: true, base_version: 1 })
      expect(r.data.agreement).toBeUndefined()
      expect((yield* gw.getWorkflow("fst", undefined, alice)).version).toBe(2)
      // The harness's callers are in team `platform`: the listing names it.
      expect(yield* gw.listWorkflows(alice)).toEqual([{ workflow_id: "fst", team: "platform", versions: [1, 2], current: 2 }])
    }))

  it.scoped("storing an invalid workflow is refused", () =>
    Effect.gen(function*() {
      const { gw } = yield* setup()
      const e = yield* Effect.flip(gw.storeWorkflow("bad", { name: "x", type: "hierarchical_dag", steps: [{ id: "a", type: "t", depends_on: ["zz"] }] }, alice))
      expect(e).toMatchObject({ _tag: "InvalidWorkflow", status: 400 })
      expect(yield* gw.listWorkflows(alice)).toEqual([])
    }))

  it.scoped("high risk: self-approval refused, two approvals incl. compliance, the approved version becomes current, every transition audited", () =>
    Effect.gen(function*() {
      const { gw, audit } = yield* setup()
      yield* gw.storeWorkflow("payments", payments, alice)
      const r = yield* gw.process({ operation: "OPTIMIZE", workflow_id: "payments", optimization_level: "high", reason }, alice)
      expect(r.data.stored).toEqual({ workflow_id: "payments", version: 2, current: false, base_version: 1 })
      const agreement = r.data.agreement
      expect(agreement).toMatchObject({ workflow_id: "payments", team: "platform", status: "proposed", risk_level: "high", proposed_by: "user:alice" })
      const id = agreement?.id ?? ""
      // Still the old version until approved.
      expect((yield* gw.getWorkflow("payments", undefined, alice)).version).toBe(1)

      const self = yield* Effect.flip(gw.approve(id, "lgtm", as("alice", "compliance")))
      expect(self).toMatchObject({ _tag: "SelfApproval", status: 403 })
      const role = yield* Effect.flip(gw.approve(id, "lgtm", as("bob", "user")))
      expect(role).toMatchObject({ _tag: "RoleNotAllowed", status: 403 })
      const anonymous = yield* Effect.flip(gw.approve(id, "lgtm", { request_id: "r", caller: {}, role: "approver" }))
      expect(anonymous).toMatchObject({ _tag: "IdentityRequired", status: 401 })

      const first = yield* gw.approve(id, "model change is fine", as("bob", "approver"))
      expect(first).toMatchObject({ from: "proposed", to: "proposed", current_version: null })
      const twice = yield* Effect.flip(gw.approve(id, "again", as("bob", "approver")))
      expect(twice).toMatchObject({ _tag: "AlreadyDecided", status: 409 })
      const second = yield* gw.approve(id, "compliance check added: ok", as("cora", "compliance"))
      expect(second).toMatchObject({ from: "proposed", to: "approved", current_version: 2 })
      expect(second.agreement.decisions.map((d) => [d.decided_by, d.role])).toEqual([["user:bob", "approver"], ["user:cora", "compliance"]])

      const current = yield* gw.getWorkflow("payments", undefined, alice)
      expect(current).toMatchObject({ version: 2, current: true })
      const late = yield* Effect.flip(gw.reject(id, "too late", as("dave", "approver")))
      expect(late).toMatchObject({ _tag: "AgreementClosed", status: 409 })

      const rows = yield* audit.list({ limit: 200, key: "workflows/teams/platform/payments/" })
      const ops = rows.map((row) => row.operation).reverse()
      expect(ops.filter((o) => o.startsWith("agreement_"))).toEqual([
        "agreement_proposed",
        "agreement_decision_refused",
        "agreement_decision_refused",
        "agreement_approval_recorded",
        "agreement_decision_refused",
        "agreement_approved",
        "agreement_decision_refused"
      ])
      const approved = rows.find((row) => row.operation === "agreement_approved")
      expect(approved).toMatchObject({ actor: "team:platform user:cora", reason: "compliance check added: ok" })
      expect(approved?.detail).toMatchObject({
        agreement_id: id, team: "platform", from: "proposed", to: "approved", role: "compliance", decided_by: "user:cora", caller_team: "platform", caller_key_id: null
      })
      expect(rows.find((row) => row.operation === "agreement_proposed")?.detail).toMatchObject({ team: "platform", caller_team: "platform", caller_key_id: null })
      // Newest first: the first refusal recorded is the last one listed.
      expect([...rows].reverse().find((row) => row.operation === "agreement_decision_refused")?.detail).toMatchObject({
        refusal: "SelfApproval", decided_by: "user:alice", caller_team: "platform", caller_key_id: null
      })
      // The session manager's own rows: the proposal stored not current, then made current.
      expect(ops).toContain("set_current")
      expect(rows.find((row) => row.operation === "set_current")?.detail).toMatchObject({ version: 2, outcome: "success" })
    }))

  it.scoped("a proposal whose base version is no longer current cannot be approved", () =>
    Effect.gen(function*() {
      const { gw } = yield* setup()
      yield* gw.storeWorkflow("payments", payments, alice)
      const first = yield* gw.process({ operation: "OPTIMIZE", workflow_id: "payments", optimization_level: "high", reason }, alice)
      const second = yield* gw.process({ operation: "OPTIMIZE", workflow_id: "payments", optimization_level: "high", reason }, alice)
      expect(second.data.stored).toMatchObject({ version: 3, base_version: 1 })
      yield* gw.approve(first.data.agreement?.id ?? "", "ok", as("bob", "approver"))
      yield* gw.approve(first.data.agreement?.id ?? "", "ok", as("cora", "compliance"))
      expect((yield* gw.getWorkflow("payments", undefined, alice)).version).toBe(2)
      const stale = yield* Effect.flip(gw.approve(second.data.agreement?.id ?? "", "ok", as("bob", "approver")))
      expect(stale).toMatchObject({ _tag: "AgreementConflict", status: 409 })
      expect(stale.message).toContain("version 2 is current now")
      expect((yield* gw.getWorkflow("payments", undefined, alice)).version).toBe(2)
    }))

  it.scoped("low risk: one approval by anyone else; rejection needs a comment and leaves the version as it was", () =>
    Effect.gen(function*() {
      const { gw } = yield* setup()
      yield* gw.storeWorkflow("triage", triage, alice)
      const one = yield* gw.process({ operation: "OPTIMIZE", workflow_id: "triage", optimization_level: "high", reason }, alice)
      expect(one.data.agreement?.risk_level).toBe("low")
      const noComment = yield* Effect.flip(gw.reject(one.data.agreement?.id ?? "", " ", as("bob")))
      expect(noComment).toMatchObject({ _tag: "InvalidRequest", field: "comment" })
      const rejected = yield* gw.reject(one.data.agreement?.id ?? "", "keep sonnet", as("bob"))
      expect(rejected.to).toBe("rejected")
      expect((yield* gw.getWorkflow("triage", undefined, alice)).version).toBe(1)

      const two = yield* gw.process({ operation: "OPTIMIZE", workflow_id: "triage", optimization_level: "high", reason }, alice)
      const approved = yield* gw.approve(two.data.agreement?.id ?? "", undefined, as("bob"))
      expect(approved).toMatchObject({ to: "approved", current_version: 3 })
      expect(yield* gw.listAgreements({ workflow_id: "triage" }, alice)).toHaveLength(2)
      expect((yield* gw.listAgreements({ status: "rejected" }, alice)).map((a) => a.id)).toEqual([one.data.agreement?.id])
    }))

  it.scoped("an agreement expires after approval_timeout_days (TestClock), audited, and can no longer be approved", () =>
    Effect.gen(function*() {
      // 0.01 days = 864 s (a short period keeps gateway #1's reservation reaper from ticking thousands of times).
      const { gw, audit } = yield* setup({ approval_timeout_days: 0.01 })
      yield* gw.storeWorkflow("payments", payments, alice)
      const r = yield* gw.process({ operation: "OPTIMIZE", workflow_id: "payments", optimization_level: "high", reason }, alice)
      const id = r.data.agreement?.id ?? ""
      yield* TestClock.adjust(Duration.seconds(863))
      expect((yield* gw.getAgreement(id, alice)).status).toBe("proposed")
      yield* TestClock.adjust(Duration.seconds(1))
      expect((yield* gw.getAgreement(id, alice)).status).toBe("expired")
      const e = yield* Effect.flip(gw.approve(id, "too late", as("bob", "approver")))
      expect(e).toMatchObject({ _tag: "AgreementClosed", agreement_status: "expired", status: 409 })
      const rows = yield* audit.list({ limit: 100, key: "workflows/teams/platform/payments/", operation: "agreement_expired" })
      expect(rows).toHaveLength(1)
      expect(rows[0]).toMatchObject({ actor: "system", detail: { agreement_id: id, from: "proposed", to: "expired" } })
      expect((yield* gw.getWorkflow("payments", undefined, alice)).version).toBe(1)
    }))

  it.scoped("without approval workflows a behaviour-changing optimisation becomes current at once", () =>
    Effect.gen(function*() {
      const { gw } = yield* setup({ enable_approval_workflows: false })
      yield* gw.storeWorkflow("payments", payments, alice)
      const r = yield* gw.process({ operation: "OPTIMIZE", workflow_id: "payments", optimization_level: "high", reason }, alice)
      expect(r.data.optimization?.approval_required).toBe(false)
      expect(r.data.stored?.current).toBe(true)
      expect(r.data.agreement).toBeUndefined()
    }))

  it.scoped("unknown agreement ids are 404s; health reports the settings and the store", () =>
    Effect.gen(function*() {
      const { gw } = yield* setup()
      expect(yield* Effect.flip(gw.getAgreement("not-a-uuid", alice))).toMatchObject({ _tag: "AgreementNotFound", status: 404 })
      expect(yield* Effect.flip(gw.approve("00000000-0000-4000-8000-000000000000", "x", as("bob")))).toMatchObject({ _tag: "AgreementNotFound" })
      expect(yield* gw.health).toMatchObject({ healthy: true, optimization_level: "medium", flow_agreements: true, agreement_store: { healthy: true } })
    }))
})

describe("teams", () => {
  // Callers as API keys name them: a key per team, and an admin key of no team.
  const alpha = asCaller({ key_id: "k-alpha", team: "alpha", user_id: "ann" })
  const beta = asCaller({ key_id: "k-beta", team: "beta", user_id: "ben" })
  const admin = asCaller({ key_id: "k-admin" }, "compliance")

  it("the actor is the API key when there is one, else the user", () => {
    expect(WorkflowOptimizerGateway.actorOf({ key_id: "k1", user_id: "alice" })).toBe("key:k1")
    expect(WorkflowOptimizerGateway.actorOf({ user_id: "alice", team: "t" })).toBe("user:alice")
    expect(WorkflowOptimizerGateway.actorOf({ team: "t" })).toBeUndefined()
  })

  it.scoped("two teams store the same workflow id independently; a team sees only its own; a teamless caller sees all, each team named", () =>
    Effect.gen(function*() {
      const { gw, objects } = yield* setup()
      const a = yield* gw.storeWorkflow("payments", payments, alpha)
      const b = yield* gw.storeWorkflow("payments", triage, beta)
      const t = yield* gw.storeWorkflow("payments", diagnostic, admin)
      expect([a.key, b.key, t.key]).toEqual(["workflows/teams/alpha/payments/v1.json", "workflows/teams/beta/payments/v1.json", "workflows/payments/v1.json"])
      expect([a.version, b.version, t.version]).toEqual([1, 1, 1])
      yield* gw.storeWorkflow("payments", { ...payments, description: "v2" }, alpha)
      expect(yield* objects.list("workflows/")).toEqual([
        "workflows/payments/current.json",
        "workflows/payments/v1.json",
        "workflows/teams/alpha/payments/current.json",
        "workflows/teams/alpha/payments/v1.json",
        "workflows/teams/alpha/payments/v2.json",
        "workflows/teams/beta/payments/current.json",
        "workflows/teams/beta/payments/v1.json"
      ])

      expect(yield* gw.getWorkflow("payments", undefined, alpha)).toMatchObject({ version: 2, definition: { name: "payments", description: "v2" } })
      expect(yield* gw.getWorkflow("payments", undefined, beta)).toMatchObject({ version: 1, definition: { name: "triage" } })
      expect(yield* gw.getWorkflow("payments", undefined, admin)).toMatchObject({ version: 1, definition: { name: diagnostic.name } })
      // A teamless caller may open a team's workflow by naming the team.
      expect(yield* gw.getWorkflow("payments", 1, admin, { team: "beta" })).toMatchObject({ version: 1, definition: { name: "triage" } })

      expect(yield* gw.listWorkflows(alpha)).toEqual([{ workflow_id: "payments", team: "alpha", versions: [1, 2], current: 2 }])
      expect(yield* gw.listWorkflows(beta)).toEqual([{ workflow_id: "payments", team: "beta", versions: [1], current: 1 }])
      expect(yield* gw.listWorkflows(admin)).toEqual([
        { workflow_id: "payments", versions: [1], current: 1 },
        { workflow_id: "payments", team: "alpha", versions: [1, 2], current: 2 },
        { workflow_id: "payments", team: "beta", versions: [1], current: 1 }
      ])
    }))

  it.scoped("a team cannot read another team's workflow: not found, as if it did not exist", () =>
    Effect.gen(function*() {
      const { gw } = yield* setup()
      yield* gw.storeWorkflow("only-beta", triage, beta)
      const direct = yield* Effect.flip(gw.getWorkflow("only-beta", undefined, alpha))
      const missing = yield* Effect.flip(gw.getWorkflow("never-stored", undefined, alpha))
      expect(direct).toMatchObject({ _tag: "WorkflowNotFound", status: 404 })
      expect(direct.message).toBe(missing.message.replace("never-stored", "only-beta"))
      expect(yield* Effect.flip(gw.getWorkflow("only-beta", 1, alpha))).toMatchObject({ _tag: "VersionNotFound", status: 404 })
      // Naming the other team does not help a team caller.
      expect(yield* Effect.flip(gw.getWorkflow("only-beta", undefined, alpha, { team: "beta" }))).toMatchObject({ _tag: "WorkflowNotFound", status: 404 })
      expect(yield* Effect.flip(gw.process({ operation: "ANALYZE", workflow_id: "only-beta", reason }, alpha))).toMatchObject({ _tag: "WorkflowNotFound" })
      expect(yield* gw.listWorkflows(alpha)).toEqual([])
      // A teamless caller without a team named reads the teamless namespace only.
      expect(yield* Effect.flip(gw.getWorkflow("only-beta", undefined, admin))).toMatchObject({ _tag: "WorkflowNotFound" })
    }))

  it.scoped("a team name that is no single key segment is refused; a teamless workflow named `teams` is no team", () =>
    Effect.gen(function*() {
      const { gw, objects } = yield* setup()
      for (const team of ["../beta", "a/b", "", ".hidden", "sp ace", "x".repeat(65)]) {
        const caller = asCaller({ key_id: "k-bad", team })
        expect(yield* Effect.flip(gw.storeWorkflow("payments", payments, caller))).toMatchObject({ _tag: "InvalidRequest", field: "team", status: 400 })
        expect(yield* Effect.flip(gw.listWorkflows(caller))).toMatchObject({ _tag: "InvalidRequest", field: "team" })
        expect(yield* Effect.flip(gw.getWorkflow("payments", undefined, caller))).toMatchObject({ _tag: "InvalidRequest", field: "team" })
      }
      expect(yield* Effect.flip(gw.getWorkflow("payments", undefined, admin, { team: "../x" }))).toMatchObject({ _tag: "InvalidRequest", field: "team" })
      expect(yield* objects.list("")).toEqual([])

      yield* gw.storeWorkflow("teams", diagnostic, admin)
      yield* gw.storeWorkflow("wf", triage, alpha)
      expect(yield* gw.listWorkflows(admin)).toEqual([
        { workflow_id: "teams", versions: [1], current: 1 },
        { workflow_id: "wf", team: "alpha", versions: [1], current: 1 }
      ])
      expect(yield* gw.listWorkflows(alpha)).toEqual([{ workflow_id: "wf", team: "alpha", versions: [1], current: 1 }])
      expect((yield* gw.getWorkflow("teams", undefined, admin)).definition).toMatchObject({ name: diagnostic.name })
    }))

  it.scoped("a team cannot get, list, approve or reject another team's agreement; a teamless caller sees and decides them all", () =>
    Effect.gen(function*() {
      const { gw, audit } = yield* setup()
      yield* gw.storeWorkflow("payments", triage, alpha)
      yield* gw.storeWorkflow("payments", triage, beta)
      const ra = yield* gw.process({ operation: "OPTIMIZE", workflow_id: "payments", optimization_level: "high", reason }, alpha)
      const rb = yield* gw.process({ operation: "OPTIMIZE", workflow_id: "payments", optimization_level: "high", reason }, beta)
      expect(ra.data.agreement).toMatchObject({ team: "alpha", proposed_by: "key:k-alpha", risk_level: "low" })
      expect(rb.data.agreement).toMatchObject({ team: "beta", proposed_by: "key:k-beta", risk_level: "low" })
      const ida = ra.data.agreement?.id ?? ""
      const idb = rb.data.agreement?.id ?? ""

      expect(yield* Effect.flip(gw.getAgreement(idb, alpha))).toMatchObject({ _tag: "AgreementNotFound", status: 404, message: `no agreement ${idb}` })
      expect((yield* gw.listAgreements({}, alpha)).map((x) => x.id)).toEqual([ida])
      expect((yield* gw.listAgreements({ workflow_id: "payments", status: "proposed" }, alpha)).map((x) => x.id)).toEqual([ida])
      expect(yield* gw.listAgreements({ team: "beta" }, alpha)).toEqual([])
      // Low risk: anyone but the proposer may approve, yet not across teams.
      const ann = asCaller({ key_id: "k-alpha-2", team: "alpha" }, "approver")
      expect(yield* Effect.flip(gw.approve(idb, "mine now", ann))).toMatchObject({ _tag: "AgreementNotFound", status: 404 })
      expect(yield* Effect.flip(gw.reject(idb, "no", ann))).toMatchObject({ _tag: "AgreementNotFound", status: 404 })
      const untouched = yield* gw.getAgreement(idb, beta)
      expect(untouched).toMatchObject({ status: "proposed", decisions: [] })
      const betaRows = yield* audit.list({ limit: 100, key: "workflows/teams/beta/payments/" })
      expect(betaRows.filter((row) => row.operation.startsWith("agreement_")).map((row) => row.operation)).toEqual(["agreement_proposed"])
      expect(betaRows.find((row) => row.operation === "agreement_proposed")?.detail).toMatchObject({
        team: "beta", caller_key_id: "k-beta", caller_team: "beta", proposed_by: "key:k-beta"
      })

      // The teamless admin sees both, may narrow to one team, and decides in the agreement's team.
      expect((yield* gw.listAgreements({}, admin)).map((x) => x.id).sort()).toEqual([ida, idb].sort())
      expect((yield* gw.listAgreements({ team: "beta" }, admin)).map((x) => x.id)).toEqual([idb])
      expect(yield* gw.getAgreement(idb, admin)).toMatchObject({ id: idb, team: "beta" })
      const done = yield* gw.approve(idb, "fine", admin)
      expect(done).toMatchObject({ to: "approved", current_version: 2 })
      expect(done.agreement.decisions.map((d) => d.decided_by)).toEqual(["key:k-admin"])
      expect(yield* gw.getWorkflow("payments", undefined, beta)).toMatchObject({ version: 2, current: true })
      expect(yield* gw.getWorkflow("payments", undefined, alpha)).toMatchObject({ version: 1, current: true })
      const approved = (yield* audit.list({ limit: 100, key: "workflows/teams/beta/payments/", operation: "agreement_approved" }))[0]
      expect(approved).toMatchObject({ actor: "key:k-admin", detail: { team: "beta", decided_by: "key:k-admin", caller_key_id: "k-admin", caller_team: null } })
      expect(yield* audit.list({ limit: 100, key: "workflows/payments/" })).toEqual([])

      // Team alpha's own approver decides alpha's agreement.
      expect(yield* gw.approve(ida, "ok", ann)).toMatchObject({ to: "approved", current_version: 2 })
    }))

  it.scoped("the same key under another user header cannot approve its own proposal", () =>
    Effect.gen(function*() {
      const { gw } = yield* setup()
      const proposer = asCaller({ key_id: "k1", team: "alpha", user_id: "alice" })
      yield* gw.storeWorkflow("triage", triage, proposer)
      const r = yield* gw.process({ operation: "OPTIMIZE", workflow_id: "triage", optimization_level: "high", reason }, proposer)
      const id = r.data.agreement?.id ?? ""
      expect(r.data.agreement).toMatchObject({ proposed_by: "key:k1", risk_level: "low" })
      const disguised = yield* Effect.flip(gw.approve(id, "someone else, honest", asCaller({ key_id: "k1", team: "alpha", user_id: "mallory" }, "compliance")))
      expect(disguised).toMatchObject({ _tag: "SelfApproval", actor: "key:k1", status: 403 })
      // Another key counts as another person, whatever user it names.
      const other = yield* gw.approve(id, "ok", asCaller({ key_id: "k2", team: "alpha", user_id: "alice" }, "approver"))
      expect(other).toMatchObject({ to: "approved" })
      expect(other.agreement.decisions.map((d) => d.decided_by)).toEqual(["key:k2"])
    }))
})

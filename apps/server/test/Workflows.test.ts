/**
 * The workflow and flow-agreement API (gateway #3) on the real server: 127.0.0.1, port 0,
 * embedded PGlite (workflow audit and agreements in Postgres tables), workflows in the local
 * object store under the data directory, the mock provider for the review at `high`.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it, layer } from "@effect/vitest"
import { Effect, Either, Layer, Schema } from "effect"
import { AuditLog } from "@tidyllm/corporate-llm"
import { WorkflowAudit } from "@tidyllm/session-manager"
import * as Load from "../src/config/Load.js"
import * as Testing from "../src/Testing.js"

let dataDir = ""
const tempDir = Effect.acquireRelease(
  Effect.sync(() => (dataDir = mkdtempSync(join(tmpdir(), "tidyllm-workflows-")))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

const ServerLive = Layer.unwrapScoped(Effect.map(tempDir, (dir) => Testing.layer(Testing.config(dir))))

const request = (url: string, path: string, init: RequestInit = {}) =>
  Effect.promise(async () => {
    const response = await fetch(`${url}${path}`, init)
    const text = await response.text()
    return { status: response.status, json: (text === "" ? undefined : JSON.parse(text)) as unknown }
  })

const send = (method: string, url: string, path: string, body: unknown, headers: Record<string, string> = {}) =>
  request(url, path, { method, headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) })

// No team header: these requests and the header-less reads beside them share the teamless namespace
// (a caller with a team sees only its team's workflows and agreements).
const user = (name: string, role?: string): Record<string, string> => ({
  "x-tidyllm-user": name,
  ...(role === undefined ? {} : { "x-tidyllm-role": role })
})

const Envelope = Schema.Struct({ error: Schema.Struct({ type: Schema.String, message: Schema.String, request_id: Schema.String }, { key: Schema.String, value: Schema.Unknown }) })
const errorOf = Schema.decodeUnknownSync(Envelope)

const AgreementView = Schema.Struct({
  id: Schema.String,
  workflow_id: Schema.String,
  status: Schema.String,
  risk_level: Schema.String,
  proposed_by: Schema.String,
  decisions: Schema.Array(Schema.Struct({ decided_by: Schema.String, role: Schema.String }))
})
const OptimizeResponse = Schema.Struct({
  data: Schema.Struct({
    optimization: Schema.Struct({ changes: Schema.Array(Schema.Struct({ rule: Schema.String })), approval_required: Schema.Boolean }),
    review: Schema.Struct({ status: Schema.String, advisory: Schema.Boolean }),
    stored: Schema.Struct({ workflow_id: Schema.String, version: Schema.Number, current: Schema.Boolean, base_version: Schema.NullOr(Schema.Number) }),
    agreement: AgreementView
  }),
  metadata: Schema.Struct({
    corporate_audit_id: Schema.String,
    optimization_applied: Schema.Boolean,
    processing_metrics: Schema.Struct({ total_ms: Schema.Number, input_steps: Schema.Number, output_steps: Schema.Number, iterations: Schema.Number })
  })
})
const Decision = Schema.Struct({ from: Schema.String, to: Schema.String, current_version: Schema.NullOr(Schema.Number), agreement: AgreementView })

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

const fullSystemTest = {
  name: "Full System Test",
  type: "hierarchical_dag",
  compliance_required: true,
  steps: [
    { id: "intake", type: "intake", config: { source: "s3" } },
    { id: "ai", type: "ai_analysis", config: { model: "claude-3-sonnet" }, depends_on: ["intake"] },
    { id: "sub", type: "workflow", depends_on: ["ai"], workflow: { name: "Enrichment", steps: [{ type: "transform" }, { type: "summarize", config: { model: "claude-3-haiku" } }] } },
    { id: "check", type: "compliance_check", config: { frameworks: ["SOX", "GDPR"] }, depends_on: ["sub"] },
    { id: "out", type: "output", config: { destination: "s3" }, depends_on: ["check"] }
  ]
}

layer(ServerLive, { excludeTestServices: true, timeout: "120 seconds" })("workflow API on PGlite", (it) => {
  describe("workflows", () => {
    it.effect("PUT stores versions in the object store under the data directory; GET reads them; the list names them", () =>
      Effect.gen(function*() {
        const url = yield* Testing.ServerUrl
        const put = yield* send("PUT", url, "/v1/workflows/fst", fullSystemTest, user("alice"))
        expect(put.status).toBe(201)
        expect(put.json).toMatchObject({ workflow_id: "fst", version: 1, current: true })
        const envelope = yield* send("PUT", url, "/v1/workflows/fst", { workflow: { ...fullSystemTest, description: "v2" }, reason: "second" }, user("alice"))
        expect(envelope.json).toMatchObject({ version: 2, current: true })
        expect(existsSync(join(dataDir, "objects"))).toBe(true)
        expect((yield* request(url, "/v1/workflows/fst")).json).toMatchObject({ version: 2, current: true, definition: { description: "v2" } })
        expect((yield* request(url, "/v1/workflows/fst?version=1")).json).toMatchObject({ version: 1, current: false, definition: { name: "Full System Test" } })
        const list = yield* request(url, "/v1/workflows")
        expect(list.json).toMatchObject({ workflows: [{ workflow_id: "fst", versions: [1, 2], current: 2 }] })
      }))

    it.effect("typed errors: 404 for a missing workflow or version, 400 for a bad id, version or definition", () =>
      Effect.gen(function*() {
        const url = yield* Testing.ServerUrl
        const missing = yield* request(url, "/v1/workflows/nope")
        expect(missing.status).toBe(404)
        expect(errorOf(missing.json).error.type).toBe("not_found")
        expect((yield* request(url, "/v1/workflows/fst?version=99")).status).toBe(404)
        expect((yield* request(url, "/v1/workflows/fst?version=abc")).status).toBe(400)
        const badId = yield* send("PUT", url, "/v1/workflows/..x", fullSystemTest)
        expect(badId.status).toBe(400)
        const invalid = yield* send("PUT", url, "/v1/workflows/bad", { name: "x", type: "hierarchical_dag", steps: [{ id: "a", type: "t", depends_on: ["zz"] }] })
        expect(invalid.status).toBe(400)
        const e = errorOf(invalid.json).error
        expect(e.type).toBe("invalid_workflow")
        expect(Schema.decodeUnknownSync(Schema.Array(Schema.Struct({ code: Schema.String })))(e["issues"]).map((i) => i.code)).toContain("unknown_dependency")
      }))

    it.effect("validate and analyze: issues with codes, the Full System Test's SOX and GDPR verdicts; a reason is required", () =>
      Effect.gen(function*() {
        const url = yield* Testing.ServerUrl
        const cyclic = { name: "c", type: "hierarchical_dag", steps: [{ id: "a", type: "t", depends_on: ["b"] }, { id: "b", type: "t", depends_on: ["a"] }] }
        const v = yield* send("POST", url, "/v1/workflows/validate", { workflow: cyclic, reason: "api test" })
        expect(v.status).toBe(200)
        expect(v.json).toMatchObject({ data: { validation: { valid: false } }, metadata: { operation: "VALIDATE", corporate_audit_id: null } })
        expect(JSON.stringify(v.json)).toContain("\"code\":\"cycle\"")
        const a = yield* send("POST", url, "/v1/workflows/analyze", { workflow_id: "fst", version: 1, reason: "api test" })
        expect(a.status).toBe(200)
        expect(a.json).toMatchObject({
          data: { analysis: { compliance: [{ framework: "SOX", status: "pass" }, { framework: "GDPR", status: "fail" }, { framework: "Internal" }], risk: { level: "medium" } } },
          metadata: { workflow_id: "fst", version: 1, corporate_audit_id: null, optimization_applied: false }
        })
        const noReason = yield* send("POST", url, "/v1/workflows/analyze", { workflow: fullSystemTest })
        expect(noReason.status).toBe(400)
        expect(errorOf(noReason.json).error).toMatchObject({ type: "invalid_request_error", param: "reason" })
        const typo = yield* send("POST", url, "/v1/workflows/analyze", { workflow: fullSystemTest, reason: "x", levle: "high" })
        expect(typo.status).toBe(400)
        const structural = yield* send("POST", url, "/v1/workflows/analyze", { workflow: cyclic, reason: "x" })
        expect(structural.status).toBe(400)
        expect(errorOf(structural.json).error.type).toBe("invalid_workflow")
      }))
  })

  describe("optimize and flow agreements", () => {
    it.effect("optimize at high proposes under an agreement; self-approval 403; approver + compliance approve; the version becomes current; all audited", () =>
      Effect.gen(function*() {
        const url = yield* Testing.ServerUrl
        expect((yield* send("PUT", url, "/v1/workflows/payments", payments, user("alice"))).status).toBe(201)
        const opt = yield* send("POST", url, "/v1/workflows/optimize", { workflow_id: "payments", optimization_level: "high", reason: "cut cost" }, user("alice"))
        expect(opt.status).toBe(200)
        const r = Schema.decodeUnknownSync(OptimizeResponse)(opt.json)
        expect(r.metadata.optimization_applied).toBe(true)
        expect(r.metadata.processing_metrics).toMatchObject({ input_steps: 3, output_steps: 4 })
        expect(r.data.optimization.changes.map((c) => c.rule)).toEqual(["cheaper_model", "insert_compliance_check"])
        expect(r.data.review).toEqual(expect.objectContaining({ status: "success", advisory: true }))
        expect(r.data.stored).toEqual({ workflow_id: "payments", version: 2, current: false, base_version: 1 })
        expect(r.data.agreement).toMatchObject({ status: "proposed", risk_level: "high", proposed_by: "user:alice" })
        // The review's audit row is in gateway #1's audit log.
        const llmRows = yield* Effect.flatMap(AuditLog.AuditLog, (log) => Effect.orDie(log.list({ limit: 50 })))
        expect(llmRows.find((row) => row.id === r.metadata.corporate_audit_id)).toMatchObject({ reason: "workflow optimisation review: cut cost", status: "success" })

        const id = r.data.agreement.id
        const self = yield* send("POST", url, `/v1/agreements/${id}/approve`, { comment: "mine" }, user("alice", "compliance"))
        expect(self.status).toBe(403)
        expect(errorOf(self.json).error.type).toBe("self_approval")
        const role = yield* send("POST", url, `/v1/agreements/${id}/approve`, { comment: "ok" }, user("bob"))
        expect(role.status).toBe(403)
        const anonymous = yield* send("POST", url, `/v1/agreements/${id}/approve`, { comment: "ok" }, { "x-tidyllm-role": "approver" })
        expect(anonymous.status).toBe(401)
        const noComment = yield* send("POST", url, `/v1/agreements/${id}/reject`, {}, user("bob", "approver"))
        expect(noComment.status).toBe(400)

        const first = Schema.decodeUnknownSync(Decision)((yield* send("POST", url, `/v1/agreements/${id}/approve`, { comment: "model ok" }, user("bob", "approver"))).json)
        expect(first).toMatchObject({ from: "proposed", to: "proposed", current_version: null })
        expect((yield* request(url, "/v1/workflows/payments")).json).toMatchObject({ version: 1 })
        const again = yield* send("POST", url, `/v1/agreements/${id}/approve`, { comment: "again" }, user("bob", "approver"))
        expect(again.status).toBe(409)
        const second = yield* request(url, `/v1/agreements/${id}/approve`, { method: "POST", headers: user("cora", "compliance") })
        expect(second.status).toBe(200)
        expect(Schema.decodeUnknownSync(Decision)(second.json)).toMatchObject({ to: "approved", current_version: 2 })
        expect((yield* request(url, "/v1/workflows/payments")).json).toMatchObject({ version: 2, current: true, definition: { name: "payments" } })

        const got = Schema.decodeUnknownSync(AgreementView)((yield* request(url, `/v1/agreements/${id}`)).json)
        expect(got.status).toBe("approved")
        expect(got.decisions.map((d) => [d.decided_by, d.role])).toEqual([["user:bob", "approver"], ["user:cora", "compliance"]])
        const listed = yield* request(url, "/v1/agreements?workflow_id=payments&status=approved")
        expect(listed.json).toMatchObject({ agreements: [{ id, status: "approved" }] })
        const closed = yield* send("POST", url, `/v1/agreements/${id}/reject`, { comment: "late" }, user("dave", "approver"))
        expect(closed.status).toBe(409)
        expect(errorOf(closed.json).error.type).toBe("agreement_closed")

        // Every transition is in workflow_audit_log (Postgres), under the workflow's key.
        const rows = yield* Effect.flatMap(WorkflowAudit.WorkflowAudit, (a) => Effect.orDie(a.list({ limit: 200, key: "workflows/payments/" })))
        const ops = rows.map((row) => row.operation).reverse().filter((o) => o.startsWith("agreement_"))
        expect(ops).toEqual([
          "agreement_proposed", "agreement_decision_refused", "agreement_decision_refused", "agreement_approval_recorded",
          "agreement_decision_refused", "agreement_approved", "agreement_decision_refused"
        ])
        expect(rows.some((row) => row.operation === "set_current" && row.detail["version"] === 2)).toBe(true)
      }))

    it.effect("unknown agreements are 404; the list filters by status; bad filters are 400", () =>
      Effect.gen(function*() {
        const url = yield* Testing.ServerUrl
        expect((yield* request(url, "/v1/agreements/00000000-0000-4000-8000-000000000000")).status).toBe(404)
        expect((yield* request(url, "/v1/agreements/nope")).status).toBe(404)
        expect((yield* send("POST", url, "/v1/agreements/00000000-0000-4000-8000-000000000000/approve", { comment: "x" }, user("bob"))).status).toBe(404)
        expect((yield* request(url, "/v1/agreements?status=proposed&workflow_id=none")).json).toEqual({ agreements: [] })
        expect((yield* request(url, "/v1/agreements?status=bogus")).status).toBe(400)
      }))
  })

  describe("contract", () => {
    it.effect("/docs/openapi.json documents the workflow and agreement routes", () =>
      Effect.gen(function*() {
        const url = yield* Testing.ServerUrl
        const spec = Schema.decodeUnknownSync(Schema.Struct({ paths: Schema.Record({ key: Schema.String, value: Schema.Unknown }) }))((yield* request(url, "/docs/openapi.json")).json)
        expect(Object.keys(spec.paths)).toEqual(expect.arrayContaining([
          "/v1/workflows/validate", "/v1/workflows/analyze", "/v1/workflows/optimize", "/v1/workflows/{id}", "/v1/workflows",
          "/v1/agreements", "/v1/agreements/{id}", "/v1/agreements/{id}/approve", "/v1/agreements/{id}/reject"
        ]))
      }))
  })

  describe("health", () => {
    it.effect("/health reports workflow_optimizer and session_manager", () =>
      Effect.gen(function*() {
        const url = yield* Testing.ServerUrl
        const h = yield* request(url, "/health")
        expect(h.status).toBe(200)
        expect(h.json).toMatchObject({
          status: "healthy",
          services: {
            workflow_optimizer: { healthy: true, optimization_level: "medium", flow_agreements: true, agreement_store: { healthy: true } },
            session_manager: { healthy: true, prefix: "workflows/" }
          }
        })
      }))
  })
})

describe("S3 settings from the environment", () => {
  it("S3_BUCKET, S3_ENDPOINT, S3_PREFIX, S3_FORCE_PATH_STYLE set storage.s3", () => {
    const r = Load.resolve(undefined, { S3_BUCKET: "wf", S3_ENDPOINT: "http://127.0.0.1:4569", S3_PREFIX: "tidyllm/", S3_FORCE_PATH_STYLE: "true" })
    expect(Either.getOrThrow(r).config.storage.s3).toEqual({ bucket: "wf", endpoint: "http://127.0.0.1:4569", prefix: "tidyllm/", force_path_style: true, region: "us-east-1" })
    expect(Either.getOrThrow(Load.resolve(undefined, {})).config.storage.s3).toBeUndefined()
    const bad = Load.resolve(undefined, { S3_BUCKET: "wf", S3_FORCE_PATH_STYLE: "maybe" })
    expect(Either.isLeft(bad) && bad.left.message).toContain("S3_FORCE_PATH_STYLE")
  })
})

/**
 * Gateway #3: VALIDATE, ANALYZE and OPTIMIZE on workflow definitions (HeirOS does the analysis),
 * a model-assisted review through gateway #2 at `optimization_level: high`, versioned storage
 * through the session manager, and flow agreements that hold a behaviour-changing optimisation
 * back until the stakeholders approve it.
 *
 * Every agreement transition (proposed, an approval recorded, approved, rejected, expired) and
 * every refused decision is written to the workflow audit log under the workflow's key
 * (`workflows/{id}/`), beside the session manager's own rows for the versions.
 *
 * Teams: a caller with a team (`Caller.team`, from its API key) works in its team's namespace
 * only. Its workflows live under `{versions prefix}teams/{team}/{id}/` (`v{n}.json`,
 * `current.json`), so two teams may each keep a workflow `payments`; its agreements carry the
 * team, and another team's workflow or agreement reads as not found. A caller with no team (an
 * admin or compliance key, or open mode) keeps today's keys, `{versions prefix}{id}/`, and sees
 * every team's workflows in the listing and every team's agreements. A workflow id cannot contain
 * a `/`, so no teamless id reaches into `teams/…` (a teamless workflow named `teams` keeps its own
 * `v{n}.json` beside the team folders, which no listing mistakes for one another).
 */
import { Clock, Context, Effect, Either, Layer, Option, Schema, SynchronizedRef } from "effect"
import { AiProcessingGateway } from "@tidyllm/ai-processing"
import { Caller, Errors, Ids, ModelCatalog } from "@tidyllm/core"
import type { Config, LlmRequest } from "@tidyllm/core"
import { AgreementStore, Analyze, FlowAgreement, Optimize, Validate, Workflow } from "@tidyllm/heiros"
import { ObjectStore, UnifiedSessionManager, WorkflowAudit } from "@tidyllm/session-manager"

/** The settings gateway #3 runs with (the `workflow_optimizer` config section). */
export class Settings extends Context.Tag("@tidyllm/workflow-optimizer/Settings")<Settings, Config.WorkflowOptimizerSettings>() {}

// ---------------------------------------------------------------------------------------------
// Requests and responses

/** What to do with the workflow. */
export const Operation = Schema.Literal("VALIDATE", "ANALYZE", "OPTIMIZE")
export type Operation = typeof Operation.Type

/** A request to gateway #3. */
export const WorkflowRequest = Schema.Struct({
  operation: Operation,
  /** The definition; give this or `workflow_id`. Decoded by HeirOS, so VALIDATE can report schema errors with codes. */
  workflow: Schema.optional(Schema.Unknown),
  /** A stored workflow: loaded when `workflow` is absent; OPTIMIZE stores its result there (or proposes it). */
  workflow_id: Schema.optional(Schema.String.pipe(Schema.minLength(1))),
  /** The stored version to load (default: the current one). */
  version: Schema.optional(Schema.Int.pipe(Schema.greaterThanOrEqualTo(1))),
  /** Default: `workflow_optimizer.optimization_level`. */
  optimization_level: Schema.optional(Optimize.Level),
  /** Why: required, non-empty; recorded in the audit rows. */
  reason: Schema.optional(Schema.String),
  /** Model of the advisory review at `high` (default: gateway #1's default model). */
  review_model: Schema.optional(Schema.String.pipe(Schema.minLength(1)))
})
export type WorkflowRequest = typeof WorkflowRequest.Type

/** The call context of gateway #3: gateway #1's, plus the caller's role for agreement decisions. */
export interface CallContext extends LlmRequest.CallContext {
  /** The caller's role (`user`, `approver`, `compliance`, …); default `user`. */
  readonly role?: string | undefined
}

/** The default role of a caller that names none. */
export const DEFAULT_ROLE = "user"

/** Timings (milliseconds), sizes and iterations of one request. */
export interface ProcessingMetrics {
  readonly total_ms: number
  readonly load_ms: number
  readonly validate_ms?: number | undefined
  readonly analyze_ms?: number | undefined
  readonly optimize_ms?: number | undefined
  readonly review_ms?: number | undefined
  readonly store_ms?: number | undefined
  readonly input_steps: number
  readonly output_steps: number
  /** UTF-8 bytes of the definition as JSON, before and after. */
  readonly input_bytes: number
  readonly output_bytes: number
  readonly iterations: number
  readonly changes: number
}

/** `metadata` of every response. */
export interface ResponseMetadata {
  readonly request_id: string
  readonly operation: Operation
  readonly optimization_level: Optimize.Level | null
  readonly workflow_id: string | null
  /** The version loaded, when the workflow came from the store. */
  readonly version: number | null
  /** Audit id (gateway #1's `llm_audit_log`) of the review call; null when there was none. */
  readonly corporate_audit_id: string | null
  readonly processing_metrics: ProcessingMetrics
  readonly optimization_applied: boolean
}

/** The model-assisted review of OPTIMIZE at `high`: advice, never applied. */
export type Review =
  | {
    readonly status: "success"
    readonly advisory: true
    readonly text: string
    readonly model: string
    readonly provider: string
    readonly audit_id: string
    readonly cost_usd: string
    readonly cache_hit: boolean
  }
  | { readonly status: "error"; readonly advisory: true; readonly error: { readonly type: string; readonly message: string } }

/** Where OPTIMIZE put its result. */
export interface StoredResult {
  readonly workflow_id: string
  readonly version: number
  readonly current: boolean
  /** The version current before (the base of the proposal). */
  readonly base_version: number | null
}

/** `data` of a response (the fields of its operation). */
export interface ResponseData {
  readonly workflow_name: string | null
  readonly validation?: { readonly valid: boolean; readonly issues: ReadonlyArray<Validate.Issue> } | undefined
  readonly analysis?: Analyze.Analysis | undefined
  readonly optimization?: {
    readonly level: Optimize.Level
    readonly definition: Workflow.DefinitionEncoded
    readonly changes: ReadonlyArray<Optimize.Change>
    readonly metrics_before: Analyze.Metrics
    readonly metrics_after: Analyze.Metrics
    readonly iterations: number
    readonly fixed_point: boolean
    readonly behaviour_changing: boolean
    readonly behaviour_changes: ReadonlyArray<Optimize.BehaviourChange>
    readonly issues: ReadonlyArray<Validate.Issue>
    /** The risk of the change: the higher of the original's and the optimised definition's. */
    readonly risk: Analyze.Risk
    /** True when the change needs stakeholder approval before it becomes current. */
    readonly approval_required: boolean
  } | undefined
  readonly review?: Review | null | undefined
  readonly stored?: StoredResult | undefined
  readonly agreement?: AgreementJson | undefined
}

/** The response of gateway #3. */
export interface WorkflowResponse {
  readonly status: "success"
  readonly data: ResponseData
  readonly metadata: ResponseMetadata
}

/** An agreement as JSON (dates as ISO strings). */
export type AgreementJson = typeof FlowAgreement.Agreement.Encoded

/** An agreement as JSON. */
export const encodeAgreement: (a: FlowAgreement.Agreement) => AgreementJson = Schema.encodeSync(FlowAgreement.Agreement)

/** The proposal an agreement carries (its `proposal` JSON). */
export const Proposal = Schema.Struct({
  version: Schema.Int,
  base_version: Schema.NullOr(Schema.Int),
  level: Optimize.Level,
  reason: Schema.String,
  request_id: Schema.String,
  behaviour_changes: Schema.Array(Schema.String),
  changes: Schema.Array(Schema.Struct({ rule: Schema.String, steps: Schema.Array(Schema.String), description: Schema.String })),
  risk: Schema.Struct({ level: FlowAgreement.RiskLevel, score: Schema.Number })
})
export type Proposal = typeof Proposal.Type

// ---------------------------------------------------------------------------------------------
// Errors

/** Agreement decisions need an identity (`x-tidyllm-user` or an API key). */
export class IdentityRequired extends Schema.TaggedError<IdentityRequired>()("IdentityRequired", {
  message: Schema.String
}) {
  get type() { return "authentication_required" as const }
  get status() { return 401 }
}

/** Every error `process` can end with. */
export type ProcessError =
  | Errors.InvalidRequest
  | Errors.StoreUnavailable
  | Analyze.InvalidWorkflow
  | Optimize.CannotOptimize
  | UnifiedSessionManager.SessionError
  | FlowAgreement.AgreementConflict

/** Every error an agreement decision can end with. */
export type DecisionError =
  | IdentityRequired
  | Errors.InvalidRequest
  | Errors.StoreUnavailable
  | FlowAgreement.AgreementNotFound
  | FlowAgreement.AgreementConflict
  | FlowAgreement.DecisionError
  | UnifiedSessionManager.SessionError

/** Every error of gateway #3, for API contracts. */
export type WorkflowError = ProcessError | DecisionError

// ---------------------------------------------------------------------------------------------
// Service

/** A stored workflow version as the API returns it. */
export interface StoredWorkflow {
  readonly workflow_id: string
  readonly version: number
  readonly current: boolean
  readonly definition: unknown
}

/** One stored workflow in a listing. */
export interface WorkflowSummary {
  readonly workflow_id: string
  /** The team whose workflow it is; absent for a workflow of no team. */
  readonly team?: string | undefined
  readonly versions: ReadonlyArray<number>
  readonly current: number | null
}

/** Which team's namespace a teamless caller addresses. */
export interface WorkflowScope {
  readonly team?: string | undefined
}

/** The outcome of a decision. */
export interface DecisionResult {
  readonly agreement: AgreementJson
  readonly from: FlowAgreement.Status
  readonly to: FlowAgreement.Status
  /** Set when the approval completed: the version made current. */
  readonly current_version: number | null
}

/** What `/health` reports as `workflow_optimizer`. */
export interface Health {
  readonly healthy: boolean
  readonly optimization_level: Optimize.Level
  readonly flow_agreements: boolean
  readonly approval_workflows: boolean
  readonly compliance_frameworks: ReadonlyArray<string>
  readonly dag_max_depth: number
  readonly agreement_store: { readonly healthy: boolean; readonly detail?: string | undefined }
}

/** The gateway #3 service. */
export interface Service {
  readonly process: (request: WorkflowRequest, context: CallContext) => Effect.Effect<WorkflowResponse, ProcessError>
  /** Validates and stores `definition` as the next version of `id`, made current. */
  readonly storeWorkflow: (
    id: string, definition: unknown, context: CallContext
  ) => Effect.Effect<UnifiedSessionManager.StoredVersion, ProcessError>
  /**
   * A stored version (default: the current one), in the caller's team. A caller with no team may
   * name the team whose workflow it reads (`options.team`); for a caller with a team, another
   * team's workflow is not found.
   */
  readonly getWorkflow: (
    id: string, version: number | undefined, context: CallContext, options?: WorkflowScope
  ) => Effect.Effect<StoredWorkflow, ProcessError>
  /** The stored workflows with their versions: the caller's team's, or (no team) every workflow, each team's named. */
  readonly listWorkflows: (context: CallContext) => Effect.Effect<ReadonlyArray<WorkflowSummary>, ProcessError>
  /** Agreements, newest first (overdue proposals are expired, and audited, first). */
  readonly listAgreements: (filter: AgreementStore.ListFilter, context: CallContext) => Effect.Effect<ReadonlyArray<AgreementJson>, Errors.StoreUnavailable>
  readonly getAgreement: (
    id: string, context: CallContext
  ) => Effect.Effect<AgreementJson, FlowAgreement.AgreementNotFound | Errors.StoreUnavailable>
  /** Approves as the caller (identity and role from the context). */
  readonly approve: (id: string, comment: string | undefined, context: CallContext) => Effect.Effect<DecisionResult, DecisionError>
  /** Rejects as the caller; a comment is required. */
  readonly reject: (id: string, comment: string | undefined, context: CallContext) => Effect.Effect<DecisionResult, DecisionError>
  readonly health: Effect.Effect<Health>
}

/** Gateway #3. */
export class WorkflowOptimizerGateway extends Context.Tag("@tidyllm/workflow-optimizer/WorkflowOptimizerGateway")<WorkflowOptimizerGateway, Service>() {}

// ---------------------------------------------------------------------------------------------
// Helpers

const utf8 = new TextEncoder()
const bytesOf = (u: unknown): number => {
  const text = JSON.stringify(u)
  return text === undefined ? 0 : utf8.encode(text).length
}

/**
 * The identity an agreement records and compares (proposer ≠ approver): the API key when the
 * request was authenticated with one (the user header beside it is only asserted by the caller,
 * so switching it must not make a second person), else the user (open mode).
 */
export const actorOf = (caller: Caller.Caller): string | undefined =>
  caller.key_id !== undefined ? `key:${caller.key_id}` : caller.user_id !== undefined ? `user:${caller.user_id}` : undefined

/** A team name as it may appear in a storage key: 1-64 letters, digits, `.`, `_`, `-`, not starting with `.`. */
export const TEAM_NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$/

/** The folder under the versions prefix that holds one folder per team. */
export const TEAMS_FOLDER = "teams/"

const VERSION_FILE = /^v[1-9][0-9]{0,8}\.json$/

/** Who made an audited agreement event, for the row's detail. */
const callerDetail = (caller: Caller.Caller): WorkflowAudit.Detail => ({
  caller_key_id: caller.key_id ?? null,
  caller_team: caller.team ?? null
})

const auditContext = (context: CallContext, reason: string | undefined): UnifiedSessionManager.AuditContext => ({
  actor: Caller.describe(context.caller),
  reason,
  request_id: context.request_id
})

/** Milliseconds between two `Clock.currentTimeNanos` readings, to the microsecond. */
const msBetween = (start: bigint, end: bigint): number => Math.round(Number(end - start) / 1_000) / 1_000

const timed = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<readonly [A, number], E, R> =>
  Effect.gen(function*() {
    const start = yield* Clock.currentTimeNanos
    const a = yield* self
    return [a, msBetween(start, yield* Clock.currentTimeNanos)] as const
  })

const riskRank: Record<Analyze.RiskLevel, number> = { low: 0, medium: 1, high: 2 }
const higherRisk = (a: Analyze.Risk, b: Analyze.Risk): Analyze.Risk => (riskRank[b.level] > riskRank[a.level] || (b.level === a.level && b.score > a.score) ? b : a)

const nonEmpty = (s: string | undefined): string | undefined => {
  const t = s?.trim()
  return t === undefined || t === "" ? undefined : t
}

// ---------------------------------------------------------------------------------------------
// The gateway

/** Builds gateway #3 on gateway #2, the session manager, the workflow audit and the agreement store. */
export const make = Effect.gen(function*() {
  const settings = yield* Settings
  const gw2 = yield* AiProcessingGateway.AiProcessingGateway
  const sm = yield* UnifiedSessionManager.UnifiedSessionManager
  const audit = yield* WorkflowAudit.WorkflowAudit
  const agreements = yield* AgreementStore.AgreementStore
  const catalog = yield* ModelCatalog.ModelCatalog
  const objects = yield* ObjectStore.ObjectStore

  const teamsPrefix = `${sm.versionsPrefix}${TEAMS_FOLDER}`
  const prefixOf = (team: string | undefined) => (team === undefined ? sm.versionsPrefix : `${teamsPrefix}${team}/`)
  const workflowKey = (team: string | undefined, id: string) => `${prefixOf(team)}${id}/`

  // One session manager per team, over the same object store and audit, rooted at the team's
  // folder: it keeps its own per-workflow locks, so it is made once and kept (teams are few).
  const teamSessions = yield* SynchronizedRef.make<ReadonlyMap<string, UnifiedSessionManager.Service>>(new Map())

  /** The session manager of `team`'s namespace (the shared one for no team); refuses a team name that is no key segment. */
  const sessionsOf = (team: string | undefined): Effect.Effect<UnifiedSessionManager.Service, Errors.InvalidRequest> => {
    if (team === undefined) return Effect.succeed(sm)
    if (!TEAM_NAME.test(team)) {
      return Effect.fail(new Errors.InvalidRequest({
        message: "the caller's team cannot name a workflow folder: a team is 1-64 letters, digits, '.', '_' or '-', not starting with '.'",
        field: "team"
      }))
    }
    return SynchronizedRef.modifyEffect(teamSessions, (made) => {
      const found = made.get(team)
      if (found !== undefined) return Effect.succeed([found, made] as const)
      return UnifiedSessionManager.make({ versionsPrefix: prefixOf(team) }).pipe(
        Effect.provideService(ObjectStore.ObjectStore, objects),
        Effect.provideService(WorkflowAudit.WorkflowAudit, audit),
        Effect.map((created) => [created, new Map(made).set(team, created)] as const)
      )
    })
  }

  const optionsFor = (level: Optimize.Level): Analyze.Options => ({
    catalog,
    dag_max_depth: settings.enable_hierarchical_dag ? settings.dag_max_depth : 0,
    enable_auto_fix: settings.enable_auto_fix,
    enable_compliance_mode: settings.enable_compliance_mode,
    compliance_frameworks: settings.compliance_frameworks,
    bottleneck_threshold: settings.bottleneck_threshold,
    max_optimization_iterations: settings.max_optimization_iterations,
    optimization_level: level
  })

  /** Behaviour-changing optimisations wait for stakeholder approval. */
  const approvalGated = settings.enable_approval_workflows && settings.enable_flow_agreements &&
    settings.flow_config.require_stakeholder_approval

  const requireReason = (request: WorkflowRequest, context: CallContext) => {
    const reason = nonEmpty(request.reason) ?? nonEmpty(context.reason)
    return reason === undefined
      ? Effect.fail(new Errors.InvalidRequest({ message: "a reason is required: say why this workflow operation is made (body `reason` or header x-tidyllm-reason)", field: "reason" }))
      : Effect.succeed(reason)
  }

  /** One audit row of an agreement event under the workflow's key. */
  const record = (
    operation: string,
    agreement: FlowAgreement.Agreement,
    actor: string,
    reason: string | null,
    detail: WorkflowAudit.Detail
  ) =>
    Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      yield* audit.record({
        id: Ids.randomUuid(),
        created_at: new Date(now),
        operation,
        key: workflowKey(agreement.team, agreement.workflow_id),
        actor,
        reason,
        detail: {
          agreement_id: agreement.id,
          workflow_id: agreement.workflow_id,
          team: agreement.team ?? null,
          risk_level: agreement.risk_level,
          status: agreement.status,
          ...detail
        }
      })
    })

  const recordTransition = (t: FlowAgreement.Transition, actor: string, reason: string | null, requestId: string | undefined, caller?: Caller.Caller) => {
    const operation = t.to === "approved"
      ? "agreement_approved"
      : t.to === "rejected"
      ? "agreement_rejected"
      : t.to === "expired"
      ? "agreement_expired"
      : "agreement_approval_recorded"
    return record(operation, t.agreement, actor, reason, {
      from: t.from,
      to: t.to,
      ...(requestId === undefined ? {} : { request_id: requestId }),
      ...(caller === undefined ? {} : callerDetail(caller)),
      ...(t.decision === undefined ? {} : { decision: t.decision.decision, decided_by: t.decision.decided_by, role: t.decision.role, decision_id: t.decision.id }),
      ...(t.to === "expired" ? { expires_at: t.agreement.expires_at.toISOString() } : {})
    })
  }

  /** Marks overdue proposals expired and audits each expiry. */
  const sweep = Effect.gen(function*() {
    const expired = yield* agreements.expireDue
    for (const t of expired) yield* recordTransition(t, "system", "approval_timeout_days elapsed", undefined)
  })

  /** The definition to work on: the request's, or the stored version. */
  const load = (request: WorkflowRequest, context: CallContext, reason: string) =>
    Effect.gen(function*() {
      if (request.workflow !== undefined) return { input: request.workflow, version: null as number | null }
      if (request.workflow_id === undefined) {
        return yield* new Errors.InvalidRequest({ message: "give the definition as `workflow`, or a stored workflow's `workflow_id`", field: "workflow" })
      }
      const sessions = yield* sessionsOf(context.caller.team)
      const stored = yield* sessions.getVersion(auditContext(context, reason), request.workflow_id, request.version)
      return { input: stored.data, version: stored.version }
    })

  const review = (result: Optimize.Result, request: WorkflowRequest, context: CallContext, reason: string) =>
    Effect.gen(function*() {
      const { system, prompt } = Optimize.reviewRequest(result)
      const ai: LlmRequest.AIRequest = {
        messages: [{ role: "system", content: system }, { role: "user", content: prompt }],
        reason: `workflow optimisation review: ${reason}`,
        temperature: 0,
        max_tokens: 512,
        metadata: { workflow: result.original.name, ...(request.workflow_id === undefined ? {} : { workflow_id: request.workflow_id }) },
        ...(request.review_model === undefined ? {} : { model: request.review_model }),
        ...(context.caller.user_id === undefined ? {} : { user_id: context.caller.user_id })
      }
      // The review is advice: its failure is reported, not the request's.
      return yield* gw2.process(ai, context).pipe(
        Effect.map((r): Review => ({
          status: "success",
          advisory: true,
          text: r.data?.response ?? "",
          model: r.metadata.model,
          provider: r.metadata.provider,
          audit_id: r.metadata.audit_id,
          cost_usd: r.metadata.cost_usd,
          cache_hit: r.metadata.cache_hit ?? false
        })),
        Effect.catchAll((e) => Effect.succeed<Review>({ status: "error", advisory: true, error: { type: e.type, message: e.message } }))
      )
    })

  /** Stores the optimised definition: current at once, or proposed under a new agreement. */
  const storeResult = (
    workflowId: string,
    original: unknown,
    result: Optimize.Result,
    gated: boolean,
    risk: Analyze.Risk,
    level: Optimize.Level,
    context: CallContext,
    reason: string
  ) =>
    Effect.gen(function*() {
      const ctx = auditContext(context, reason)
      const team = context.caller.team
      const sessions = yield* sessionsOf(team)
      let versions = yield* sessions.listVersions(ctx, workflowId)
      if (versions.current === null) {
        // The baseline the proposal is compared against: the definition as given.
        yield* sessions.putVersion(ctx, workflowId, original, { makeCurrent: true })
        versions = yield* sessions.listVersions(ctx, workflowId)
      }
      const base = versions.current
      const stored = yield* sessions.putVersion(ctx, workflowId, Workflow.encode(result.definition), { makeCurrent: !gated })
      const storedResult: StoredResult = { workflow_id: workflowId, version: stored.version, current: stored.current, base_version: base }
      if (!gated) return { stored: storedResult, agreement: undefined }
      const proposedBy = actorOf(context.caller) ?? "anonymous"
      const proposal: Proposal = {
        version: stored.version,
        base_version: base,
        level,
        reason,
        request_id: context.request_id,
        behaviour_changes: result.behaviour_changes,
        changes: result.changes.map((c) => ({ rule: c.rule, steps: c.steps, description: c.description })),
        risk: { level: risk.level, score: risk.score }
      }
      const proposed = yield* FlowAgreement.propose(
        // Without a required risk assessment every proposal needs the base approval (one approver).
        {
          workflow_id: workflowId,
          risk_level: settings.risk_assessment_required ? risk.level : "low",
          proposal: Schema.encodeSync(Proposal)(proposal),
          proposed_by: proposedBy,
          ...(team === undefined ? {} : { team })
        },
        { approval_timeout_days: settings.approval_timeout_days }
      )
      const agreement = yield* agreements.create(proposed)
      yield* record("agreement_proposed", agreement, Caller.describe(context.caller), reason, {
        request_id: context.request_id,
        ...callerDetail(context.caller),
        proposed_by: proposedBy,
        version: stored.version,
        base_version: base,
        behaviour_changes: result.behaviour_changes,
        approvals_needed: FlowAgreement.requirement(risk.level).approvals,
        expires_at: agreement.expires_at.toISOString()
      })
      return { stored: storedResult, agreement }
    })

  const process = Effect.fn("WorkflowOptimizerGateway.process")(function*(request: WorkflowRequest, context: CallContext) {
    const started = yield* Clock.currentTimeNanos
    const reason = yield* requireReason(request, context)
    const level = request.optimization_level ?? settings.optimization_level
    const options = optionsFor(level)
    const [loaded, load_ms] = yield* timed(load(request, context, reason))
    const input_bytes = bytesOf(loaded.input)
    const finish = (data: ResponseData, extra: Partial<ProcessingMetrics> & { readonly input_steps: number; readonly output_steps: number }, meta: {
      readonly corporate_audit_id: string | null
      readonly optimization_applied: boolean
      readonly output: unknown
    }) =>
      Effect.map(Clock.currentTimeNanos, (end): WorkflowResponse => ({
        status: "success",
        data,
        metadata: {
          request_id: context.request_id,
          operation: request.operation,
          optimization_level: request.operation === "VALIDATE" ? null : level,
          workflow_id: request.workflow_id ?? null,
          version: loaded.version,
          corporate_audit_id: meta.corporate_audit_id,
          processing_metrics: {
            total_ms: msBetween(started, end),
            load_ms,
            iterations: 0,
            changes: 0,
            ...extra,
            input_bytes,
            output_bytes: bytesOf(meta.output)
          },
          optimization_applied: meta.optimization_applied
        }
      }))

    if (request.operation === "VALIDATE") {
      const [result, validate_ms] = yield* timed(Effect.sync(() => Validate.validate(loaded.input, options)))
      const steps = Option.match(result.graph, { onNone: () => 0, onSome: (g) => g.nodes.length })
      return yield* finish(
        { workflow_name: Option.match(result.definition, { onNone: () => null, onSome: (d) => d.name }), validation: { valid: result.valid, issues: result.issues } },
        { validate_ms, input_steps: steps, output_steps: steps },
        { corporate_audit_id: null, optimization_applied: false, output: result.issues }
      )
    }

    if (request.operation === "ANALYZE") {
      const [analysis, analyze_ms] = yield* timed(Effect.suspend(() => Analyze.analyze(loaded.input, options)))
      return yield* finish(
        { workflow_name: analysis.name, analysis },
        { analyze_ms, input_steps: analysis.metrics.step_count, output_steps: analysis.metrics.step_count },
        { corporate_audit_id: null, optimization_applied: false, output: analysis }
      )
    }

    // OPTIMIZE
    const [result, optimize_ms] = yield* timed(Effect.suspend(() => Optimize.optimize(loaded.input, options)))
    const [risk, analyze_ms] = yield* timed(Effect.sync(() => {
      const noSuggestions = { ...options, suggestions: false }
      const before = Analyze.analyzeDefinition(result.original, noSuggestions)
      const after = Analyze.analyzeDefinition(result.definition, noSuggestions)
      const risks = [before, after].flatMap((e) => (Either.isRight(e) ? [e.right.risk] : []))
      return risks.reduce(higherRisk, { level: "low", score: 0, factors: [] } satisfies Analyze.Risk)
    }))
    const [reviewed, review_ms] = level === "high"
      ? yield* timed(review(result, request, context, reason))
      : [null, undefined] as const
    const gated = approvalGated && result.behaviour_changing
    const [persisted, store_ms] = request.workflow_id !== undefined && result.optimization_applied
      ? yield* timed(Effect.map(storeResult(request.workflow_id, loaded.input, result, gated, risk, level, context, reason), Option.some))
      : [Option.none<{ stored: StoredResult; agreement: FlowAgreement.Agreement | undefined }>(), undefined] as const
    const definition = Workflow.encode(result.definition)
    const data: ResponseData = {
      workflow_name: result.original.name,
      optimization: {
        level,
        definition,
        changes: result.changes,
        metrics_before: result.metrics_before,
        metrics_after: result.metrics_after,
        iterations: result.iterations,
        fixed_point: result.fixed_point,
        behaviour_changing: result.behaviour_changing,
        behaviour_changes: result.behaviour_changes,
        issues: result.issues,
        risk,
        approval_required: gated
      },
      review: reviewed,
      ...Option.match(persisted, {
        onNone: () => ({}),
        onSome: (p) => ({ stored: p.stored, ...(p.agreement === undefined ? {} : { agreement: encodeAgreement(p.agreement) }) })
      })
    }
    return yield* finish(data, {
      optimize_ms,
      analyze_ms,
      ...(review_ms === undefined ? {} : { review_ms }),
      ...(store_ms === undefined ? {} : { store_ms }),
      input_steps: result.metrics_before.step_count,
      output_steps: result.metrics_after.step_count,
      iterations: result.iterations,
      changes: result.changes.length
    }, {
      corporate_audit_id: reviewed?.status === "success" ? reviewed.audit_id : null,
      optimization_applied: result.optimization_applied,
      output: definition
    })
  })

  const storeWorkflow = Effect.fn("WorkflowOptimizerGateway.storeWorkflow")(function*(id: string, definition: unknown, context: CallContext) {
    const validated = Validate.validate(definition, optionsFor(settings.optimization_level))
    if (Option.isNone(validated.definition) || Validate.hasStructuralErrors(validated.issues)) {
      return yield* new Analyze.InvalidWorkflow({ message: "the workflow is not valid; nothing was stored", issues: validated.issues })
    }
    const sessions = yield* sessionsOf(context.caller.team)
    return yield* sessions.putVersion(auditContext(context, nonEmpty(context.reason)), id, definition, { makeCurrent: true })
  })

  const getWorkflow = Effect.fn("WorkflowOptimizerGateway.getWorkflow")(function*(
    id: string, version: number | undefined, context: CallContext, options: WorkflowScope = {}
  ) {
    const own = context.caller.team
    if (own !== undefined && options.team !== undefined && options.team !== own) {
      // The same answer as for a workflow that does not exist: another team's is not to be seen.
      return yield* new UnifiedSessionManager.WorkflowNotFound({ message: `workflow ${id} has no current version`, key: `${workflowKey(own, id)}current.json` })
    }
    const sessions = yield* sessionsOf(own ?? options.team)
    const v = yield* sessions.getVersion(auditContext(context, nonEmpty(context.reason)), id, version)
    return { workflow_id: v.workflow_id, version: v.version, current: v.current, definition: v.data } satisfies StoredWorkflow
  })

  /** The workflows of one namespace with their versions. */
  const summaries = (sessions: UnifiedSessionManager.Service, ctx: UnifiedSessionManager.AuditContext, team: string | undefined, ids: ReadonlyArray<string>) =>
    Effect.forEach(ids, (id) =>
      Effect.map(sessions.listVersions(ctx, id), (v): WorkflowSummary => ({
        workflow_id: id,
        ...(team === undefined ? {} : { team }),
        versions: v.versions,
        current: v.current
      })))

  /** Every team's versioned workflows, as (team, id) pairs sorted by team, then id, from one listing of the teams folder. */
  const teamWorkflows = (ctx: UnifiedSessionManager.AuditContext) =>
    Effect.map(sm.listWorkflows(ctx, teamsPrefix), (keys) => {
      const byTeam = new Map<string, Set<string>>()
      for (const key of keys) {
        const [team, id, file, ...rest] = key.slice(teamsPrefix.length).split("/")
        if (team === undefined || id === undefined || file === undefined || rest.length > 0) continue
        if (!TEAM_NAME.test(team) || !UnifiedSessionManager.WORKFLOW_ID.test(id) || !VERSION_FILE.test(file)) continue
        byTeam.set(team, (byTeam.get(team) ?? new Set<string>()).add(id))
      }
      return [...byTeam.keys()].sort().map((team) => [team, [...(byTeam.get(team) ?? [])].sort()] as const)
    })

  const listWorkflows = Effect.fn("WorkflowOptimizerGateway.listWorkflows")(function*(context: CallContext) {
    const ctx = auditContext(context, nonEmpty(context.reason))
    const team = context.caller.team
    if (team !== undefined) {
      const sessions = yield* sessionsOf(team)
      return yield* summaries(sessions, ctx, team, yield* sessions.listVersionedWorkflows(ctx))
    }
    const own = yield* summaries(sm, ctx, undefined, yield* sm.listVersionedWorkflows(ctx))
    const teams = yield* Effect.forEach(yield* teamWorkflows(ctx), ([t, ids]) =>
      Effect.flatMap(sessionsOf(t), (sessions) => summaries(sessions, ctx, t, ids)))
    return [...own, ...teams.flat()]
  })

  /** What a caller may see of the agreements: its team's, or (no team) every one. */
  const scopeOf = (context: CallContext): AgreementStore.Scope => (context.caller.team === undefined ? {} : { team: context.caller.team })

  const listAgreements = Effect.fn("WorkflowOptimizerGateway.listAgreements")(function*(filter: AgreementStore.ListFilter, context: CallContext) {
    yield* sweep
    const own = context.caller.team
    // A teamless caller may narrow the list to one team; a team caller asking for another team's gets none.
    if (own !== undefined && filter.team !== undefined && filter.team !== own) return []
    return (yield* agreements.list({ ...filter, team: own ?? filter.team })).map(encodeAgreement)
  })

  const getAgreement = Effect.fn("WorkflowOptimizerGateway.getAgreement")(function*(id: string, context: CallContext) {
    yield* sweep
    const agreementId = yield* Schema.decodeUnknown(Ids.AgreementId)(id).pipe(Effect.mapError(() => AgreementStore.notFound(id)))
    return encodeAgreement(yield* agreements.get(agreementId, scopeOf(context)))
  })

  /**
   * An approval applies a proposal to the version it was computed from: when the workflow's
   * current version has moved since (another proposal was approved, or a new version stored),
   * approving would silently undo that change, so it is refused and must be proposed again.
   */
  const ensureNotStale = (agreement: FlowAgreement.Agreement, sessions: UnifiedSessionManager.Service, context: CallContext) =>
    Effect.gen(function*() {
      const agreementId = agreement.id
      if (agreement.status !== "proposed") return
      const proposal = Schema.decodeUnknownOption(Proposal)(agreement.proposal)
      if (Option.isNone(proposal) || proposal.value.base_version === null) return
      const versions = yield* sessions.listVersions(auditContext(context, `check agreement ${agreementId}`), agreement.workflow_id)
      if (versions.current !== proposal.value.base_version) {
        return yield* new FlowAgreement.AgreementConflict({
          id: agreementId,
          message: `agreement ${agreementId} proposes a change to version ${proposal.value.base_version} of '${agreement.workflow_id}', but version ${versions.current ?? "none"} is current now: optimise again to propose a change to it`
        })
      }
    })

  const decide = (decision: FlowAgreement.DecisionKind) =>
    Effect.fn(`WorkflowOptimizerGateway.${decision}`)(function*(id: string, comment: string | undefined, context: CallContext) {
      const actor = actorOf(context.caller)
      if (actor === undefined) {
        return yield* new IdentityRequired({ message: "deciding on an agreement needs an identity (x-tidyllm-user header, or --as in the CLI)" })
      }
      const text = nonEmpty(comment)
      if (decision === "reject" && text === undefined) {
        return yield* new Errors.InvalidRequest({ message: "a rejection needs a comment saying why", field: "comment" })
      }
      const role = nonEmpty(context.role) ?? DEFAULT_ROLE
      const agreementId = yield* Schema.decodeUnknown(Ids.AgreementId)(id).pipe(Effect.mapError(() => AgreementStore.notFound(id)))
      yield* sweep
      const scope = scopeOf(context)
      // Another team's agreement is not found, before anything about it is checked or recorded.
      const found = yield* agreements.get(agreementId, scope)
      // The agreement's workflow lives in its own team's namespace, whoever decides (a teamless caller may decide any).
      const sessions = yield* sessionsOf(found.team)
      const who = Caller.describe(context.caller)
      if (decision === "approve") yield* ensureNotStale(found, sessions, context)
      const outcome = yield* Effect.either(agreements.decide(agreementId, { decision, decided_by: actor, role, ...(text === undefined ? {} : { comment: text }) }, scope))
      if (Either.isLeft(outcome)) {
        const e = outcome.left
        if (e._tag === "AgreementExpired") {
          // The store has just recorded the expiry: audit that transition.
          const current = yield* agreements.get(agreementId, scope)
          yield* recordTransition({ agreement: current, decision: undefined, from: "proposed", to: "expired" }, "system", "approval_timeout_days elapsed", context.request_id)
        }
        if (e._tag === "SelfApproval" || e._tag === "RoleNotAllowed" || e._tag === "AlreadyDecided" || e._tag === "AgreementClosed" || e._tag === "AgreementExpired") {
          const current = yield* agreements.get(agreementId, scope)
          yield* record("agreement_decision_refused", current, who, text ?? null, {
            request_id: context.request_id, ...callerDetail(context.caller), decision, decided_by: actor, role, refusal: e._tag, message: e.message
          })
        }
        return yield* Effect.fail(e)
      }
      const t = outcome.right
      yield* recordTransition(t, who, text ?? null, context.request_id, context.caller)
      let current_version: number | null = null
      if (t.to === "approved") {
        const proposal = yield* Schema.decodeUnknown(Proposal)(t.agreement.proposal).pipe(
          Effect.mapError(() => new FlowAgreement.AgreementConflict({ id, message: `agreement ${id} carries no proposed version to make current` }))
        )
        yield* sessions.setCurrent(auditContext(context, `agreement ${id} approved`), t.agreement.workflow_id, proposal.version)
        current_version = proposal.version
      }
      return { agreement: encodeAgreement(t.agreement), from: t.from, to: t.to, current_version } satisfies DecisionResult
    })

  const health: Effect.Effect<Health> = agreements.list({ limit: 1 }).pipe(
    Effect.timeout("5 seconds"),
    Effect.match({
      onSuccess: () => ({ healthy: true }),
      onFailure: (e) => ({ healthy: false, detail: e.message })
    }),
    Effect.map((store): Health => ({
      healthy: store.healthy,
      optimization_level: settings.optimization_level,
      flow_agreements: settings.enable_flow_agreements,
      approval_workflows: settings.enable_approval_workflows,
      compliance_frameworks: settings.compliance_frameworks,
      dag_max_depth: settings.dag_max_depth,
      agreement_store: store
    })),
    Effect.withSpan("WorkflowOptimizerGateway.health")
  )

  return WorkflowOptimizerGateway.of({
    process,
    storeWorkflow,
    getWorkflow,
    listWorkflows,
    listAgreements,
    getAgreement,
    approve: decide("approve"),
    reject: decide("reject"),
    health
  })
})

/**
 * Gateway #3 as a layer: requires gateway #2 (and so #1) beneath it, the session manager with its
 * object store and audit (a team's namespace is a session manager of its own on the same two),
 * the agreement store, its settings and the model catalog.
 */
export const layer: Layer.Layer<
  WorkflowOptimizerGateway,
  never,
  | AiProcessingGateway.AiProcessingGateway
  | UnifiedSessionManager.UnifiedSessionManager
  | ObjectStore.ObjectStore
  | WorkflowAudit.WorkflowAudit
  | AgreementStore.AgreementStore
  | Settings
  | ModelCatalog.ModelCatalog
> = Layer.effect(WorkflowOptimizerGateway, make)

/** The default settings (the config schema's defaults) with `overrides`. */
export const settingsOf = (overrides: Partial<Config.WorkflowOptimizerSettings> = {}): Config.WorkflowOptimizerSettings => ({
  optimization_level: "medium",
  enable_auto_fix: true,
  enable_compliance_mode: true,
  max_optimization_iterations: 10,
  enable_hierarchical_dag: true,
  dag_max_depth: 10,
  enable_flow_agreements: true,
  bottleneck_threshold: 0.8,
  compliance_frameworks: ["SOX", "GDPR", "Internal"],
  enable_approval_workflows: true,
  risk_assessment_required: true,
  approval_timeout_days: 7,
  flow_config: { require_stakeholder_approval: true },
  ...overrides
})

/**
 * Gateway #3 on in-memory stores (objects, workflow audit, agreements) and the default catalog,
 * for unit tests; it still needs gateway #2 beneath it. The stores are in the output, so a test
 * can read the audit rows and the agreements.
 */
export const layerMemory = (overrides: Partial<Config.WorkflowOptimizerSettings> = {}): Layer.Layer<
  | WorkflowOptimizerGateway
  | UnifiedSessionManager.UnifiedSessionManager
  | ObjectStore.ObjectStore
  | WorkflowAudit.WorkflowAudit
  | AgreementStore.AgreementStore
  | ModelCatalog.ModelCatalog,
  never,
  AiProcessingGateway.AiProcessingGateway
> =>
  layer.pipe(Layer.provideMerge(Layer.mergeAll(
    UnifiedSessionManager.layerMemory(),
    AgreementStore.layerMemory,
    ModelCatalog.layer(),
    Layer.succeed(Settings, settingsOf(overrides))
  )))

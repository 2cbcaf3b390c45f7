/**
 * Flow agreements: one proposed version of a workflow bound to the approvals it needs.
 *
 * `proposed` → `approved` | `rejected` | `expired`. Approvals needed follow the risk level: `low`
 * one approval (any role), `medium` one by role `approver`, `high` two by different people with
 * roles `approver` or `compliance`, at least one of them `compliance`. No one approves their own
 * proposal; one rejection by an eligible reviewer (or the proposer, withdrawing) rejects it. A
 * proposal not decided within `approval_timeout_days` expires. The functions here are pure
 * (time is an argument); {@link propose} reads the Effect `Clock`.
 */
import { Ids } from "@tidyllm/core"
import { Clock, Effect, Either, Option, Schema } from "effect"

/** Where an agreement stands. */
export const Status = Schema.Literal("proposed", "approved", "rejected", "expired")
export type Status = typeof Status.Type

/** The risk level of the proposed change (from ANALYZE). */
export const RiskLevel = Schema.Literal("low", "medium", "high")
export type RiskLevel = typeof RiskLevel.Type

/** What a reviewer decided. */
export const DecisionKind = Schema.Literal("approve", "reject")
export type DecisionKind = typeof DecisionKind.Type

/** One recorded decision: who, when, in which role, why. */
export const Decision = Schema.Struct({
  id: Schema.String,
  agreement_id: Ids.AgreementId,
  decision: DecisionKind,
  decided_by: Schema.String,
  role: Schema.String,
  comment: Schema.NullOr(Schema.String),
  created_at: Schema.Date
})
export type Decision = typeof Decision.Type

/** One agreement. */
export const Agreement = Schema.Struct({
  id: Ids.AgreementId,
  workflow_id: Schema.String,
  status: Status,
  risk_level: RiskLevel,
  /** The proposed version and what it changes (the optimised definition, the changes, the analysis): JSON. */
  proposal: Schema.Unknown,
  proposed_by: Schema.String,
  /** The team whose workflow it changes; absent for a workflow of no team (a teamless caller's). */
  team: Schema.optional(Schema.String),
  created_at: Schema.Date,
  expires_at: Schema.Date,
  /** When it left `proposed`. */
  decided_at: Schema.NullOr(Schema.Date),
  /** Oldest first. */
  decisions: Schema.Array(Decision)
})
export type Agreement = typeof Agreement.Type

/** What a proposal needs. */
export interface Requirement {
  /** Approvals by different people. */
  readonly approvals: number
  /** Roles whose approval counts (`undefined`: any role). */
  readonly roles: ReadonlyArray<string> | undefined
  /** A role at least one approver must have. */
  readonly mandatory_role: string | undefined
}

/** The approvals a risk level needs. */
export const requirement = (risk: RiskLevel): Requirement =>
  risk === "low"
    ? { approvals: 1, roles: undefined, mandatory_role: undefined }
    : risk === "medium"
    ? { approvals: 1, roles: ["approver"], mandatory_role: "approver" }
    : { approvals: 2, roles: ["approver", "compliance"], mandatory_role: "compliance" }

// ---------------------------------------------------------------------------------------------
// Errors

/** No agreement has this id (HTTP 404). */
export class AgreementNotFound extends Schema.TaggedError<AgreementNotFound>()("AgreementNotFound", {
  id: Schema.String,
  message: Schema.String
}) {
  get type() { return "not_found" as const }
  get status() { return 404 }
}

/** A concurrent change got there first, or the id is taken (HTTP 409). */
export class AgreementConflict extends Schema.TaggedError<AgreementConflict>()("AgreementConflict", {
  id: Schema.String,
  message: Schema.String
}) {
  get type() { return "conflict" as const }
  get status() { return 409 }
}

/** The agreement is no longer `proposed` (HTTP 409). */
export class AgreementClosed extends Schema.TaggedError<AgreementClosed>()("AgreementClosed", {
  id: Schema.String,
  agreement_status: Status,
  message: Schema.String
}) {
  get type() { return "agreement_closed" as const }
  get status() { return 409 }
}

/** The approval period ran out; the agreement is now `expired` (HTTP 409). */
export class AgreementExpired extends Schema.TaggedError<AgreementExpired>()("AgreementExpired", {
  id: Schema.String,
  expires_at: Schema.Date,
  message: Schema.String
}) {
  get type() { return "agreement_expired" as const }
  get status() { return 409 }
}

/** The proposer tried to approve their own proposal (HTTP 403). */
export class SelfApproval extends Schema.TaggedError<SelfApproval>()("SelfApproval", {
  id: Schema.String,
  actor: Schema.String,
  message: Schema.String
}) {
  get type() { return "self_approval" as const }
  get status() { return 403 }
}

/** The reviewer's role cannot decide at this risk level (HTTP 403). */
export class RoleNotAllowed extends Schema.TaggedError<RoleNotAllowed>()("RoleNotAllowed", {
  id: Schema.String,
  actor: Schema.String,
  role: Schema.String,
  allowed: Schema.Array(Schema.String),
  message: Schema.String
}) {
  get type() { return "forbidden" as const }
  get status() { return 403 }
}

/** The reviewer already decided on this agreement (HTTP 409). */
export class AlreadyDecided extends Schema.TaggedError<AlreadyDecided>()("AlreadyDecided", {
  id: Schema.String,
  actor: Schema.String,
  message: Schema.String
}) {
  get type() { return "conflict" as const }
  get status() { return 409 }
}

/** Why a decision was refused. */
export type DecisionError = AgreementClosed | AgreementExpired | SelfApproval | RoleNotAllowed | AlreadyDecided

// ---------------------------------------------------------------------------------------------
// Transitions

/** A new proposal. */
export interface ProposeInput {
  readonly workflow_id: string
  readonly risk_level: RiskLevel
  readonly proposal: unknown
  readonly proposed_by: string
  /** The team whose workflow it changes (none: a workflow of no team). */
  readonly team?: string | undefined
  /** Default: a random UUID. */
  readonly id?: Ids.AgreementId | undefined
}

/** A reviewer's decision. */
export interface DecisionInput {
  readonly decision: DecisionKind
  readonly decided_by: string
  readonly role: string
  readonly comment?: string | undefined
}

/** One applied transition (for the workflow audit log). */
export interface Transition {
  readonly agreement: Agreement
  /** The decision recorded (none for an expiry). */
  readonly decision: Decision | undefined
  readonly from: Status
  readonly to: Status
}

/** Default of `approval_timeout_days`. */
export const defaultTimeoutDays = 7
const DAY_MS = 86_400_000

/** A proposal made at `now`, expiring after `timeoutDays`. */
export const proposeAt = (input: ProposeInput & { readonly id: Ids.AgreementId }, now: Date, timeoutDays: number): Agreement => ({
  id: input.id,
  workflow_id: input.workflow_id,
  status: "proposed",
  risk_level: input.risk_level,
  proposal: input.proposal,
  proposed_by: input.proposed_by,
  ...(input.team === undefined ? {} : { team: input.team }),
  created_at: now,
  expires_at: new Date(now.getTime() + timeoutDays * DAY_MS),
  decided_at: null,
  decisions: []
})

/** A proposal made now (Effect `Clock`), expiring after `approval_timeout_days` (default 7). */
export const propose = (input: ProposeInput, options: { readonly approval_timeout_days?: number | undefined } = {}): Effect.Effect<Agreement> =>
  Effect.map(Clock.currentTimeMillis, (ms) =>
    proposeAt({ ...input, id: input.id ?? Ids.AgreementId.make(Ids.randomUuid()) }, new Date(ms), options.approval_timeout_days ?? defaultTimeoutDays))

/** True when the agreement is `proposed` and its period has run out at `now`. */
export const isOverdue = (agreement: Agreement, now: Date): boolean =>
  agreement.status === "proposed" && now.getTime() >= agreement.expires_at.getTime()

/** The agreement as it stands at `now`: an overdue proposal shows as `expired`. */
export const view = (agreement: Agreement, now: Date): Agreement =>
  isOverdue(agreement, now) ? { ...agreement, status: "expired", decided_at: agreement.expires_at } : agreement

/** The expiry transition, when the agreement is overdue at `now`. */
export const expire = (agreement: Agreement, now: Date): Option.Option<Transition> =>
  isOverdue(agreement, now)
    ? Option.some({ agreement: view(agreement, now), decision: undefined, from: "proposed", to: "expired" })
    : Option.none()

/** True when the approvals recorded satisfy the risk level's requirement. */
export const isSatisfied = (risk: RiskLevel, decisions: ReadonlyArray<Decision>): boolean => {
  const req = requirement(risk)
  const approvals = decisions.filter((d) => d.decision === "approve" && (req.roles === undefined || req.roles.includes(d.role)))
  const people = new Set(approvals.map((d) => d.decided_by))
  return people.size >= req.approvals &&
    (req.mandatory_role === undefined || approvals.some((d) => d.role === req.mandatory_role))
}

/**
 * Applies a decision made at `now`. Fails when the agreement is closed or overdue (the caller
 * then records the expiry: see {@link expire}), when the proposer approves, when the role cannot
 * decide at this risk level, or when the reviewer already decided.
 */
export const decide = (
  agreement: Agreement,
  input: DecisionInput,
  now: Date,
  decisionId: string
): Either.Either<Transition, DecisionError> => {
  const id = agreement.id
  if (agreement.status !== "proposed") {
    return Either.left(new AgreementClosed({ id, agreement_status: agreement.status, message: `agreement ${id} is already ${agreement.status}` }))
  }
  if (isOverdue(agreement, now)) {
    return Either.left(new AgreementExpired({ id, expires_at: agreement.expires_at, message: `agreement ${id} expired at ${agreement.expires_at.toISOString()}` }))
  }
  const own = input.decided_by === agreement.proposed_by
  if (own && input.decision === "approve") {
    return Either.left(new SelfApproval({ id, actor: input.decided_by, message: `${input.decided_by} proposed agreement ${id} and cannot approve it` }))
  }
  const req = requirement(agreement.risk_level)
  if (!own && req.roles !== undefined && !req.roles.includes(input.role)) {
    return Either.left(new RoleNotAllowed({
      id,
      actor: input.decided_by,
      role: input.role,
      allowed: req.roles,
      message: `a ${agreement.risk_level}-risk agreement needs a reviewer with role ${req.roles.join(" or ")}; ${input.decided_by} has role ${input.role}`
    }))
  }
  if (agreement.decisions.some((d) => d.decided_by === input.decided_by)) {
    return Either.left(new AlreadyDecided({ id, actor: input.decided_by, message: `${input.decided_by} already decided on agreement ${id}` }))
  }
  const decision: Decision = {
    id: decisionId,
    agreement_id: id,
    decision: input.decision,
    decided_by: input.decided_by,
    role: input.role,
    comment: input.comment ?? null,
    created_at: now
  }
  const decisions = [...agreement.decisions, decision]
  const to: Status = input.decision === "reject" ? "rejected" : isSatisfied(agreement.risk_level, decisions) ? "approved" : "proposed"
  return Either.right({
    agreement: { ...agreement, decisions, status: to, decided_at: to === "proposed" ? null : now },
    decision,
    from: "proposed",
    to
  })
}

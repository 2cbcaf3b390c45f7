/**
 * The `AgreementStore` port on SQL (`flow_agreements`, `agreement_decisions`, see
 * `sql/0002_agreements.sql` for the risk level and the decision's role, `sql/0004_keys_limits.sql`
 * for the team).
 *
 * An agreement's team is a column (`NULL`: a workflow of no team). A scope with a team adds
 * `team = $team` to every read, the locked read of a decision included, so another team's
 * agreement is not found whichever way it is asked for.
 *
 * A decision is one transaction: the agreement row is locked (`SELECT … FOR UPDATE`), the pure
 * state machine (`FlowAgreement.decide`) runs on what the transaction sees, and the decision row
 * and the status change are written together; the status update only applies while the row is
 * still `proposed`. Two reviewers approving at once therefore queue on the row lock, and the
 * second one sees the first's decision; the unique index on (agreement, decider) stops one person
 * from deciding twice even across replicas. An overdue proposal is marked `expired` (committed)
 * before the decision is refused. Times come from the Effect `Clock`.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { SqlError } from "@effect/sql/SqlError"
import * as SqlSchema from "@effect/sql/SqlSchema"
import { Ids } from "@tidyllm/core"
import { AgreementStore, FlowAgreement } from "@tidyllm/heiros"
import { Clock, Effect, Either, Layer, Option, Schema } from "effect"
import { orUnavailable, sqlState } from "./internal/sqlErrors.js"

const STORE = "postgres"
const MAX_LIST = 1_000

const AgreementRow = Schema.Struct({
  id: Ids.AgreementId,
  workflow_id: Schema.String,
  status: FlowAgreement.Status,
  risk_level: FlowAgreement.RiskLevel,
  proposal: Schema.parseJson(),
  proposed_by: Schema.String,
  team: Schema.NullOr(Schema.String),
  created_at: Schema.DateFromSelf,
  expires_at: Schema.DateFromSelf,
  decided_at: Schema.NullOr(Schema.DateFromSelf)
})
type AgreementRow = typeof AgreementRow.Type

const DecisionRow = Schema.Struct({
  id: Schema.String,
  agreement_id: Ids.AgreementId,
  decision: FlowAgreement.DecisionKind,
  decided_by: Schema.String,
  role: Schema.String,
  comment: Schema.NullOr(Schema.String),
  created_at: Schema.DateFromSelf
})

const Filter = Schema.Struct({
  workflow_id: Schema.optional(Schema.String),
  team: Schema.optional(Schema.String),
  status: Schema.optional(FlowAgreement.Status),
  limit: Schema.Number,
  now: Schema.DateFromSelf
})

const Lookup = Schema.Struct({
  id: Schema.String,
  team: Schema.optional(Schema.String)
})

const AGREEMENT_COLUMNS = "id, workflow_id, status, risk_level, proposal::text AS proposal, proposed_by, team, created_at, expires_at, decided_at"

const withDecisions = ({ team, ...row }: AgreementRow, decisions: ReadonlyArray<FlowAgreement.Decision>): FlowAgreement.Agreement => ({
  ...row,
  ...(team === null ? {} : { team }),
  decisions: decisions.filter((d) => d.agreement_id === row.id)
})

/** The store over the `SqlClient` in context. */
export const make: Effect.Effect<AgreementStore.Service, never, SqlClient.SqlClient> = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const now = Effect.map(Clock.currentTimeMillis, (ms) => new Date(ms))

  const findRow = (lock: boolean) =>
    SqlSchema.findOne({
      Request: Lookup,
      Result: AgreementRow,
      execute: ({ id, team }) => {
        const where = sql.and([sql`id = ${id}`, ...(team === undefined ? [] : [sql`team = ${team}`])])
        return lock
          ? sql`SELECT ${sql.literal(AGREEMENT_COLUMNS)} FROM flow_agreements WHERE ${where} FOR UPDATE`
          : sql`SELECT ${sql.literal(AGREEMENT_COLUMNS)} FROM flow_agreements WHERE ${where}`
      }
    })
  const findRowLocked = findRow(true)
  const findRowPlain = findRow(false)
  const lookup = (id: string, scope: AgreementStore.Scope | undefined) => (scope?.team === undefined ? { id } : { id, team: scope.team })

  const decisionsOf = SqlSchema.findAll({
    Request: Schema.Array(Schema.String),
    Result: DecisionRow,
    execute: (ids) =>
      ids.length === 0
        ? sql`SELECT id, agreement_id, decision, decided_by, role, comment, created_at FROM agreement_decisions WHERE false`
        : sql`SELECT id, agreement_id, decision, decided_by, role, comment, created_at FROM agreement_decisions
            WHERE ${sql.in("agreement_id", ids)} ORDER BY created_at, seq`
  })

  const listRows = SqlSchema.findAll({
    Request: Filter,
    Result: AgreementRow,
    execute: (f) => {
      const status = f.status === undefined
        ? []
        : f.status === "proposed"
        ? [sql`status = 'proposed' AND expires_at > ${f.now}`]
        : f.status === "expired"
        ? [sql`(status = 'expired' OR (status = 'proposed' AND expires_at <= ${f.now}))`]
        : [sql`status = ${f.status}`]
      const where = [
        ...(f.workflow_id === undefined ? [] : [sql`workflow_id = ${f.workflow_id}`]),
        ...(f.team === undefined ? [] : [sql`team = ${f.team}`]),
        ...status
      ]
      const limit = Math.max(0, Math.min(MAX_LIST, Math.floor(f.limit)))
      return sql`SELECT ${sql.literal(AGREEMENT_COLUMNS)} FROM flow_agreements WHERE ${sql.and(where)}
        ORDER BY created_at DESC, id DESC LIMIT ${limit}`
    }
  })

  const insertDecision = (d: FlowAgreement.Decision) =>
    sql`INSERT INTO agreement_decisions (id, agreement_id, decision, decided_by, role, comment, created_at)
      VALUES (${d.id}, ${d.agreement_id}, ${d.decision}, ${d.decided_by}, ${d.role}, ${d.comment}, ${d.created_at})`

  /** Sets the status of a still-`proposed` agreement; false when someone else closed it first. */
  const close = (id: string, status: FlowAgreement.Status, decidedAt: Date) =>
    sql<{ readonly id: string }>`UPDATE flow_agreements SET status = ${status}, decided_at = ${decidedAt}
      WHERE id = ${id} AND status = 'proposed' RETURNING id`.pipe(Effect.map((rows) => rows.length > 0))

  const conflict = (id: string, message: string) => new FlowAgreement.AgreementConflict({ id, message })

  const create = (agreement: FlowAgreement.Agreement) =>
    sql.withTransaction(Effect.gen(function*() {
      const inserted = yield* sql<{ readonly id: string }>`
        INSERT INTO flow_agreements (id, workflow_id, status, risk_level, proposal, proposed_by, team, created_at, expires_at, decided_at)
        VALUES (${agreement.id}, ${agreement.workflow_id}, ${agreement.status}, ${agreement.risk_level},
          ${JSON.stringify(agreement.proposal ?? null)}::jsonb, ${agreement.proposed_by}, ${agreement.team ?? null}, ${agreement.created_at},
          ${agreement.expires_at}, ${agreement.decided_at})
        ON CONFLICT (id) DO NOTHING RETURNING id`
      if (inserted.length === 0) return yield* conflict(agreement.id, `agreement ${agreement.id} already exists`)
      for (const d of agreement.decisions) yield* insertDecision(d)
      return agreement
    }))

  const get = (id: Ids.AgreementId, scope: AgreementStore.Scope | undefined) =>
    Effect.gen(function*() {
      const at = yield* now
      const row = yield* findRowPlain(lookup(id, scope))
      if (Option.isNone(row)) return yield* AgreementStore.notFound(id)
      const decisions = yield* decisionsOf([id])
      return FlowAgreement.view(withDecisions(row.value, decisions), at)
    })

  const list = (filter: AgreementStore.ListFilter) =>
    Effect.gen(function*() {
      const at = yield* now
      const rows = yield* listRows({
        ...(filter.workflow_id === undefined ? {} : { workflow_id: filter.workflow_id }),
        ...(filter.team === undefined ? {} : { team: filter.team }),
        ...(filter.status === undefined ? {} : { status: filter.status }),
        limit: filter.limit ?? AgreementStore.defaultListLimit,
        now: at
      })
      const decisions = yield* decisionsOf(rows.map((r) => r.id))
      return rows.map((r) => FlowAgreement.view(withDecisions(r, decisions), at))
    })

  type Refused = FlowAgreement.AgreementNotFound | FlowAgreement.DecisionError

  const decide = (id: Ids.AgreementId, input: FlowAgreement.DecisionInput, scope: AgreementStore.Scope | undefined) =>
    Effect.gen(function*() {
      const at = yield* now
      const decisionId = Ids.randomUuid()
      // The refusal travels out of the transaction as a value, so that an expiry it records commits.
      const outcome = yield* sql.withTransaction(Effect.gen(function*() {
        const row = yield* findRowLocked(lookup(id, scope))
        if (Option.isNone(row)) return Either.left<Refused>(AgreementStore.notFound(id))
        const current = withDecisions(row.value, yield* decisionsOf([id]))
        const expired = FlowAgreement.expire(current, at)
        if (Option.isSome(expired)) yield* close(id, "expired", current.expires_at)
        const result = FlowAgreement.decide(current, input, at, decisionId)
        if (Either.isLeft(result)) return Either.left<Refused>(result.left)
        const transition = result.right
        if (transition.decision !== undefined) {
          yield* insertDecision(transition.decision).pipe(
            Effect.catchIf(
              (e): e is SqlError => e instanceof SqlError && sqlState(e) === "23505",
              () => conflict(id, `${input.decided_by} already decided on agreement ${id}`)
            )
          )
        }
        if (transition.to !== "proposed" && !(yield* close(id, transition.to, at))) {
          return yield* conflict(id, `agreement ${id} was closed by a concurrent decision`)
        }
        return Either.right<FlowAgreement.Transition>(transition)
      }))
      return yield* outcome
    })

  const expireDue = Effect.gen(function*() {
    const at = yield* now
    const ids = yield* sql<{ readonly id: string }>`UPDATE flow_agreements SET status = 'expired', decided_at = expires_at
      WHERE status = 'proposed' AND expires_at <= ${at} RETURNING id`
    if (ids.length === 0) return []
    const rows = yield* Effect.forEach(ids, (r) => findRowPlain({ id: r.id }))
    const decisions = yield* decisionsOf(ids.map((r) => r.id))
    return rows.flatMap((row) =>
      Option.toArray(Option.map(row, (r): FlowAgreement.Transition => ({
        agreement: withDecisions(r, decisions),
        decision: undefined,
        from: "proposed",
        to: "expired"
      })))
    )
  })

  // Decoding our own rows fails only on a bug: that is a defect, not an outage.
  return AgreementStore.AgreementStore.of({
    create: (agreement) => create(agreement).pipe(orUnavailable(STORE), Effect.withSpan("PgAgreementStore.create")),
    get: (id, scope) => get(id, scope).pipe(Effect.catchTag("ParseError", (e) => Effect.die(e)), orUnavailable(STORE), Effect.withSpan("PgAgreementStore.get")),
    list: (filter) => list(filter).pipe(Effect.catchTag("ParseError", (e) => Effect.die(e)), orUnavailable(STORE), Effect.withSpan("PgAgreementStore.list")),
    decide: (id, input, scope) => decide(id, input, scope).pipe(Effect.catchTag("ParseError", (e) => Effect.die(e)), orUnavailable(STORE), Effect.withSpan("PgAgreementStore.decide")),
    expireDue: expireDue.pipe(Effect.catchTag("ParseError", (e) => Effect.die(e)), orUnavailable(STORE), Effect.withSpan("PgAgreementStore.expireDue"))
  })
})

/** The `AgreementStore` on the `SqlClient` in context. */
export const layer: Layer.Layer<AgreementStore.AgreementStore, never, SqlClient.SqlClient> = Layer.effect(AgreementStore.AgreementStore, make)

/**
 * The port where flow agreements live. A decision is one atomic step: the store reads the
 * agreement, applies {@link FlowAgreement.decide} at the `Clock`'s now, and writes the decision
 * and the new status together, so two concurrent approvals can never both count on a stale view.
 * An overdue proposal reads as `expired`; deciding on one records the expiry and fails.
 *
 * Teams: an agreement belongs to the team of its workflow (`Agreement.team`, none for a workflow
 * of no team). A {@link Scope} with a team sees only that team's agreements: another team's reads
 * as not found, for `get`, `list` and `decide` alike, so a team learns nothing of another's. A
 * scope without a team (an admin or compliance caller, open mode) sees every agreement.
 */
import { Errors, Ids } from "@tidyllm/core"
import { Clock, Context, Effect, Either, Layer, Option, Ref } from "effect"
import * as FlowAgreement from "./FlowAgreement.js"

/** Whose agreements an operation may see. */
export interface Scope {
  /** Only this team's agreements; absent: every team's and the teamless ones. */
  readonly team?: string | undefined
}

/** Which agreements to list (newest first). */
export interface ListFilter extends Scope {
  readonly workflow_id?: string | undefined
  /** As seen now: an overdue proposal is `expired`. */
  readonly status?: FlowAgreement.Status | undefined
  /** Default 100. */
  readonly limit?: number | undefined
}

/** The store. */
export interface Service {
  /** Stores a new agreement (its `team` with it); fails with a conflict when its id is taken. */
  readonly create: (
    agreement: FlowAgreement.Agreement
  ) => Effect.Effect<FlowAgreement.Agreement, FlowAgreement.AgreementConflict | Errors.StoreUnavailable>
  /** The agreement as it stands now; not found when it is outside `scope`. */
  readonly get: (
    id: Ids.AgreementId,
    scope?: Scope
  ) => Effect.Effect<FlowAgreement.Agreement, FlowAgreement.AgreementNotFound | Errors.StoreUnavailable>
  readonly list: (filter: ListFilter) => Effect.Effect<ReadonlyArray<FlowAgreement.Agreement>, Errors.StoreUnavailable>
  /** Records a decision and the status it leads to, atomically; not found when the agreement is outside `scope`. */
  readonly decide: (
    id: Ids.AgreementId,
    input: FlowAgreement.DecisionInput,
    scope?: Scope
  ) => Effect.Effect<
    FlowAgreement.Transition,
    FlowAgreement.AgreementNotFound | FlowAgreement.AgreementConflict | FlowAgreement.DecisionError | Errors.StoreUnavailable
  >
  /** Marks every overdue proposal `expired`; returns the transitions (for the audit log). */
  readonly expireDue: Effect.Effect<ReadonlyArray<FlowAgreement.Transition>, Errors.StoreUnavailable>
}

/** The agreement store in use. */
export class AgreementStore extends Context.Tag("@tidyllm/heiros/AgreementStore")<AgreementStore, Service>() {}

/** Default of {@link ListFilter.limit}. */
export const defaultListLimit = 100

/** The not-found error for `id`. */
export const notFound = (id: string): FlowAgreement.AgreementNotFound =>
  new FlowAgreement.AgreementNotFound({ id, message: `no agreement ${id}` })

const now = Effect.map(Clock.currentTimeMillis, (ms) => new Date(ms))

/** True when `agreement` is visible in `scope`. */
export const inScope = (scope: Scope | undefined, agreement: FlowAgreement.Agreement): boolean =>
  scope?.team === undefined || agreement.team === scope.team

/** True when `agreement` (as seen at `at`) passes `filter`. */
export const matches = (filter: ListFilter, agreement: FlowAgreement.Agreement): boolean =>
  inScope(filter, agreement) &&
  (filter.workflow_id === undefined || agreement.workflow_id === filter.workflow_id) &&
  (filter.status === undefined || agreement.status === filter.status)

/** An in-memory store over the given map (exposed so tests can look inside). */
export const makeMemory = (ref: Ref.Ref<ReadonlyMap<string, FlowAgreement.Agreement>>): Service => ({
  create: (agreement) =>
    Ref.modify(ref, (all): readonly [Either.Either<FlowAgreement.Agreement, FlowAgreement.AgreementConflict>, ReadonlyMap<string, FlowAgreement.Agreement>] =>
      all.has(agreement.id)
        ? [Either.left(new FlowAgreement.AgreementConflict({ id: agreement.id, message: `agreement ${agreement.id} already exists` })), all]
        : [Either.right(agreement), new Map(all).set(agreement.id, agreement)]
    ).pipe(Effect.flatMap((e) => e)),
  get: (id, scope) =>
    Effect.gen(function*() {
      const at = yield* now
      const found = (yield* Ref.get(ref)).get(id)
      return found === undefined || !inScope(scope, found) ? yield* notFound(id) : FlowAgreement.view(found, at)
    }),
  list: (filter) =>
    Effect.gen(function*() {
      const at = yield* now
      const all = [...(yield* Ref.get(ref)).values()].map((a) => FlowAgreement.view(a, at))
      return all
        .filter((a) => matches(filter, a))
        .sort((a, b) => b.created_at.getTime() - a.created_at.getTime())
        .slice(0, filter.limit ?? defaultListLimit)
    }),
  decide: (id, input, scope) =>
    Effect.gen(function*() {
      const at = yield* now
      const decisionId = Ids.randomUuid()
      type Outcome = Either.Either<FlowAgreement.Transition, FlowAgreement.AgreementNotFound | FlowAgreement.DecisionError>
      const outcome = yield* Ref.modify(ref, (all): readonly [Outcome, ReadonlyMap<string, FlowAgreement.Agreement>] => {
        const current = all.get(id)
        if (current === undefined || !inScope(scope, current)) return [Either.left(notFound(id)), all]
        const expired = FlowAgreement.expire(current, at)
        const result = FlowAgreement.decide(current, input, at, decisionId)
        if (Option.isSome(expired)) return [result, new Map(all).set(id, expired.value.agreement)]
        return Either.isRight(result) ? [result, new Map(all).set(id, result.right.agreement)] : [result, all]
      })
      return yield* outcome
    }),
  expireDue: Effect.gen(function*() {
    const at = yield* now
    return yield* Ref.modify(ref, (all): readonly [ReadonlyArray<FlowAgreement.Transition>, ReadonlyMap<string, FlowAgreement.Agreement>] => {
      const transitions = [...all.values()].flatMap((a) => Option.toArray(FlowAgreement.expire(a, at)))
      if (transitions.length === 0) return [transitions, all]
      const next = new Map(all)
      for (const t of transitions) next.set(t.agreement.id, t.agreement)
      return [transitions, next]
    })
  })
})

/** An in-memory store, for unit tests and single-process demos. */
export const layerMemory: Layer.Layer<AgreementStore> = Layer.effect(
  AgreementStore,
  Effect.map(Ref.make<ReadonlyMap<string, FlowAgreement.Agreement>>(new Map()), makeMemory)
)

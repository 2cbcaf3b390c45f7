/**
 * The contract every `AgreementStore` adapter passes (memory here, SQL in store-pg): run it with
 * the adapter's layer. The layer is built once per suite with the test services, so the suite
 * shares one TestClock; each test works on agreements of its own workflow id.
 */
import { expect, layer } from "@effect/vitest"
import { Ids } from "@tidyllm/core"
import { Effect, Either, Exit, type Layer, TestClock } from "effect"
import * as AgreementStore from "../src/AgreementStore.js"
import * as FlowAgreement from "../src/FlowAgreement.js"

const fresh = (name: string) => `wf-${name}-${Ids.randomUuid().slice(0, 8)}`

const proposeIn = (store: AgreementStore.Service, workflow_id: string, risk_level: FlowAgreement.RiskLevel, timeoutDays = 7, team?: string) =>
  Effect.flatMap(
    FlowAgreement.propose({
      workflow_id,
      risk_level,
      proposed_by: "alice",
      proposal: { version: 2, changes: ["cheaper_model"] },
      ...(team === undefined ? {} : { team })
    }, {
      approval_timeout_days: timeoutDays
    }),
    (agreement) => store.create(agreement)
  )

const approve = (decided_by: string, role: string, comment?: string): FlowAgreement.DecisionInput =>
  comment === undefined ? { decision: "approve", decided_by, role } : { decision: "approve", decided_by, role, comment }

/** Runs the contract against `store`. */
export const agreementStoreContract = <E>(name: string, store: Layer.Layer<AgreementStore.AgreementStore, E>) =>
  layer(store, { timeout: "60 seconds" })(`AgreementStore contract: ${name}`, (it) => {
    it.effect("creates, gets and refuses a second agreement with the same id", () =>
      Effect.gen(function*() {
        const s = yield* AgreementStore.AgreementStore
        const a = yield* proposeIn(s, fresh("create"), "low")
        const got = yield* s.get(a.id)
        expect(got).toEqual(a)
        expect(got.proposal).toEqual({ version: 2, changes: ["cheaper_model"] })
        expect(got.status).toBe("proposed")
        const again = yield* Effect.either(s.create(a))
        expect(Either.isLeft(again) && again.left._tag).toBe("AgreementConflict")
        const missing = yield* Effect.either(s.get(Ids.AgreementId.make(Ids.randomUuid())))
        expect(Either.isLeft(missing) && missing.left._tag).toBe("AgreementNotFound")
      }))

    it.effect("no one approves their own proposal", () =>
      Effect.gen(function*() {
        const s = yield* AgreementStore.AgreementStore
        const a = yield* proposeIn(s, fresh("self"), "low")
        const own = yield* Effect.either(s.decide(a.id, approve("alice", "approver")))
        expect(Either.isLeft(own) && own.left._tag).toBe("SelfApproval")
        expect((yield* s.get(a.id)).decisions).toEqual([])
      }))

    it.effect("low risk: one approval by anyone approves, recording who, when, role and comment", () =>
      Effect.gen(function*() {
        const s = yield* AgreementStore.AgreementStore
        const a = yield* proposeIn(s, fresh("low"), "low")
        yield* TestClock.adjust("1 hour")
        const t = yield* s.decide(a.id, approve("bob", "engineer", "looks right"))
        expect([t.from, t.to]).toEqual(["proposed", "approved"])
        const got = yield* s.get(a.id)
        expect(got.status).toBe("approved")
        expect(got.decided_at?.getTime()).toBe(a.created_at.getTime() + 3_600_000)
        expect(got.decisions).toHaveLength(1)
        expect(got.decisions[0]).toMatchObject({ decision: "approve", decided_by: "bob", role: "engineer", comment: "looks right", agreement_id: a.id })
        expect(got.decisions[0]?.created_at.getTime()).toBe(a.created_at.getTime() + 3_600_000)
      }))

    it.effect("medium risk: only the role approver counts", () =>
      Effect.gen(function*() {
        const s = yield* AgreementStore.AgreementStore
        const a = yield* proposeIn(s, fresh("medium"), "medium")
        const viewer = yield* Effect.either(s.decide(a.id, approve("vic", "viewer")))
        expect(Either.isLeft(viewer) && viewer.left._tag).toBe("RoleNotAllowed")
        expect((yield* s.decide(a.id, approve("bob", "approver"))).to).toBe("approved")
      }))

    it.effect("high risk: two approvals by different people, one of them compliance", () =>
      Effect.gen(function*() {
        const s = yield* AgreementStore.AgreementStore
        const a = yield* proposeIn(s, fresh("high"), "high")
        expect((yield* s.decide(a.id, approve("bob", "approver"))).to).toBe("proposed")
        const twice = yield* Effect.either(s.decide(a.id, approve("bob", "approver")))
        expect(Either.isLeft(twice) && twice.left._tag).toBe("AlreadyDecided")
        // Two approvers are not enough without compliance.
        expect((yield* s.decide(a.id, approve("dan", "approver"))).to).toBe("proposed")
        const t = yield* s.decide(a.id, approve("cora", "compliance", "SOX reviewed"))
        expect(t.to).toBe("approved")
        const got = yield* s.get(a.id)
        expect(got.status).toBe("approved")
        expect(got.decisions.map((d) => [d.decided_by, d.role])).toEqual([["bob", "approver"], ["dan", "approver"], ["cora", "compliance"]])
      }))

    it.effect("a rejection closes the agreement; later decisions are refused", () =>
      Effect.gen(function*() {
        const s = yield* AgreementStore.AgreementStore
        const a = yield* proposeIn(s, fresh("reject"), "medium")
        const t = yield* s.decide(a.id, { decision: "reject", decided_by: "bob", role: "approver", comment: "too risky" })
        expect(t.to).toBe("rejected")
        const late = yield* Effect.either(s.decide(a.id, approve("dan", "approver")))
        expect(Either.isLeft(late) && late.left._tag).toBe("AgreementClosed")
        expect((yield* s.get(a.id)).status).toBe("rejected")
      }))

    it.effect("expires after approval_timeout_days (TestClock)", () =>
      Effect.gen(function*() {
        const s = yield* AgreementStore.AgreementStore
        const wf = fresh("expiry")
        const a = yield* proposeIn(s, wf, "low", 3)
        const b = yield* proposeIn(s, wf, "low", 3)
        expect(a.expires_at.getTime() - a.created_at.getTime()).toBe(3 * 86_400_000)
        yield* TestClock.adjust(3 * 86_400_000 - 1)
        expect((yield* s.get(a.id)).status).toBe("proposed")
        expect((yield* s.list({ workflow_id: wf, status: "proposed" })).length).toBe(2)
        yield* TestClock.adjust(1)
        expect((yield* s.get(a.id)).status).toBe("expired")
        expect((yield* s.list({ workflow_id: wf, status: "expired" })).length).toBe(2)
        expect(yield* s.list({ workflow_id: wf, status: "proposed" })).toEqual([])
        const late = yield* Effect.either(s.decide(a.id, approve("bob", "approver")))
        expect(Either.isLeft(late) && late.left._tag).toBe("AgreementExpired")
        const expired = (yield* s.expireDue).filter((t) => t.agreement.workflow_id === wf)
        expect(expired.map((t) => [t.agreement.id, t.to])).toEqual([[b.id, "expired"]])
        expect((yield* s.get(b.id)).status).toBe("expired")
        // Expiry persists: a later decision still finds it closed.
        const after = yield* Effect.either(s.decide(a.id, approve("bob", "approver")))
        expect(Either.isLeft(after) && after.left._tag).toBe("AgreementClosed")
      }))

    it.effect("lists by workflow and status, newest first", () =>
      Effect.gen(function*() {
        const s = yield* AgreementStore.AgreementStore
        const wf = fresh("list")
        const first = yield* proposeIn(s, wf, "low")
        yield* TestClock.adjust("1 second")
        const second = yield* proposeIn(s, wf, "low")
        yield* s.decide(first.id, approve("bob", "approver"))
        expect((yield* s.list({ workflow_id: wf })).map((a) => a.id)).toEqual([second.id, first.id])
        expect((yield* s.list({ workflow_id: wf, status: "approved" })).map((a) => a.id)).toEqual([first.id])
        expect((yield* s.list({ workflow_id: wf, limit: 1 })).map((a) => a.id)).toEqual([second.id])
        expect((yield* s.list({ workflow_id: wf, status: "approved" }))[0]?.decisions).toHaveLength(1)
      }))

    it.effect("a team scope sees and decides only its team's agreements; no scope sees every one", () =>
      Effect.gen(function*() {
        const s = yield* AgreementStore.AgreementStore
        // One workflow id in two teams and in no team: three separate agreements.
        const wf = fresh("teams")
        const a = yield* proposeIn(s, wf, "low", 7, "alpha")
        yield* TestClock.adjust("1 second")
        const b = yield* proposeIn(s, wf, "low", 7, "beta")
        yield* TestClock.adjust("1 second")
        const none = yield* proposeIn(s, wf, "low")
        expect(a.team).toBe("alpha")
        expect(none.team).toBeUndefined()
        expect(yield* s.get(a.id, { team: "alpha" })).toEqual(a)
        expect((yield* s.get(none.id)).team).toBeUndefined()
        expect("team" in (yield* s.get(none.id))).toBe(false)

        for (const id of [b.id, none.id]) {
          const hidden = yield* Effect.either(s.get(id, { team: "alpha" }))
          expect(Either.isLeft(hidden) && hidden.left._tag).toBe("AgreementNotFound")
        }
        expect((yield* s.list({ workflow_id: wf, team: "alpha" })).map((x) => x.id)).toEqual([a.id])
        expect((yield* s.list({ workflow_id: wf, team: "beta", status: "proposed" })).map((x) => x.id)).toEqual([b.id])
        expect(yield* s.list({ workflow_id: wf, team: "gamma" })).toEqual([])
        expect((yield* s.list({ workflow_id: wf })).map((x) => [x.id, x.team])).toEqual([[none.id, undefined], [b.id, "beta"], [a.id, "alpha"]])

        // Deciding on another team's agreement: not found, and nothing recorded.
        const across = yield* Effect.either(s.decide(b.id, approve("bob", "approver"), { team: "alpha" }))
        expect(Either.isLeft(across) && across.left._tag).toBe("AgreementNotFound")
        const teamless = yield* Effect.either(s.decide(none.id, approve("bob", "approver"), { team: "alpha" }))
        expect(Either.isLeft(teamless) && teamless.left._tag).toBe("AgreementNotFound")
        expect(yield* s.get(b.id)).toMatchObject({ status: "proposed", decisions: [] })
        expect((yield* s.decide(b.id, approve("bob", "approver"), { team: "beta" })).agreement).toMatchObject({ status: "approved", team: "beta" })
        // No scope: any agreement.
        expect((yield* s.decide(a.id, approve("admin", "compliance"))).to).toBe("approved")
        expect((yield* s.list({ workflow_id: wf, status: "approved" })).map((x) => x.id)).toEqual([b.id, a.id])
      }))

    it.effect("expiry keeps the team", () =>
      Effect.gen(function*() {
        const s = yield* AgreementStore.AgreementStore
        const wf = fresh("team-expiry")
        const a = yield* proposeIn(s, wf, "low", 1, "alpha")
        yield* TestClock.adjust(86_400_000)
        const expired = (yield* s.expireDue).filter((t) => t.agreement.workflow_id === wf)
        expect(expired.map((t) => [t.agreement.id, t.agreement.team, t.to])).toEqual([[a.id, "alpha", "expired"]])
        expect(yield* s.get(a.id, { team: "alpha" })).toMatchObject({ status: "expired", team: "alpha" })
      }))

    it.effect("concurrent approvals: exactly one closes the agreement, the others are refused", () =>
      Effect.gen(function*() {
        const s = yield* AgreementStore.AgreementStore
        const a = yield* proposeIn(s, fresh("race"), "medium")
        const exits = yield* Effect.forEach(
          ["r1", "r2", "r3", "r4", "r5"],
          (who) => Effect.exit(s.decide(a.id, approve(who, "approver"))),
          { concurrency: "unbounded" }
        )
        expect(exits.filter(Exit.isSuccess)).toHaveLength(1)
        const got = yield* s.get(a.id)
        expect(got.status).toBe("approved")
        expect(got.decisions).toHaveLength(1)
      }))
  })

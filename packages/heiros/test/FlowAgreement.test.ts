import { describe, expect, it } from "@effect/vitest"
import { Ids } from "@tidyllm/core"
import { Effect, Either, Option, TestClock } from "effect"
import * as AgreementStore from "../src/AgreementStore.js"
import * as FlowAgreement from "../src/FlowAgreement.js"
import { agreementStoreContract } from "./agreementStoreContract.js"

const t0 = new Date("2024-01-01T00:00:00Z")
const agreement = (risk: FlowAgreement.RiskLevel) =>
  FlowAgreement.proposeAt({ id: Ids.AgreementId.make(Ids.randomUuid()), workflow_id: "wf", risk_level: risk, proposal: {}, proposed_by: "alice" }, t0, 7)

const step = (a: FlowAgreement.Agreement, decided_by: string, role: string, decision: FlowAgreement.DecisionKind = "approve") =>
  FlowAgreement.decide(a, { decision, decided_by, role }, new Date(t0.getTime() + 1000), Ids.randomUuid())

describe("FlowAgreement transitions (pure)", () => {
  it("the requirement follows the risk level", () => {
    expect(FlowAgreement.requirement("low")).toEqual({ approvals: 1, roles: undefined, mandatory_role: undefined })
    expect(FlowAgreement.requirement("medium")).toEqual({ approvals: 1, roles: ["approver"], mandatory_role: "approver" })
    expect(FlowAgreement.requirement("high")).toEqual({ approvals: 2, roles: ["approver", "compliance"], mandatory_role: "compliance" })
  })

  it("high risk: compliance alone is not enough, approver + compliance is", () => {
    const a = agreement("high")
    const one = Either.getOrThrow(step(a, "cora", "compliance"))
    expect(one.to).toBe("proposed")
    const two = Either.getOrThrow(step(one.agreement, "bob", "approver"))
    expect(two.to).toBe("approved")
    expect(two.agreement.decided_at).not.toBeNull()
  })

  it("refusals are typed", () => {
    const a = agreement("medium")
    const self = step(a, "alice", "approver")
    expect(Either.isLeft(self) && self.left._tag).toBe("SelfApproval")
    const role = step(a, "vic", "viewer")
    expect(Either.isLeft(role) && role.left).toMatchObject({ _tag: "RoleNotAllowed", allowed: ["approver"], status: 403 })
    // The proposer may withdraw (reject) their own proposal.
    expect(Either.getOrThrow(step(a, "alice", "author", "reject")).to).toBe("rejected")
    const late = FlowAgreement.decide(a, { decision: "approve", decided_by: "bob", role: "approver" }, new Date(t0.getTime() + 7 * 86_400_000), "d")
    expect(Either.isLeft(late) && late.left._tag).toBe("AgreementExpired")
  })

  it("expire and view turn an overdue proposal into expired", () => {
    const a = agreement("low")
    expect(Option.isNone(FlowAgreement.expire(a, new Date(t0.getTime() + 7 * 86_400_000 - 1)))).toBe(true)
    const at = new Date(t0.getTime() + 7 * 86_400_000)
    expect(Option.getOrThrow(FlowAgreement.expire(a, at)).agreement.status).toBe("expired")
    expect(FlowAgreement.view(a, at).status).toBe("expired")
  })

  it.effect("propose reads the Clock and approval_timeout_days", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(t0.getTime())
      const a = yield* FlowAgreement.propose({ workflow_id: "wf", risk_level: "low", proposal: null, proposed_by: "alice" }, { approval_timeout_days: 2 })
      expect(a.created_at).toEqual(t0)
      expect(a.expires_at.getTime()).toBe(t0.getTime() + 2 * 86_400_000)
    }))
})

agreementStoreContract("memory", AgreementStore.layerMemory)

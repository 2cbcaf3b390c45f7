import { describe, expect, it } from "@effect/vitest"
import { Effect, Option, Ref, Stream, TestClock } from "effect"
import { Money } from "@tidyllm/core"
import type { Caller } from "@tidyllm/core"
import { ApiKeys, RateLimits } from "@tidyllm/corporate-llm"
import { make, ok, scripted } from "./harness.js"

const as = (caller: Caller.Caller, request_id = "r") => ({ request_id, caller })
const ask = { prompt: "Summarise the quarter", reason: "test", max_tokens: 100 }
// Opus: about $0.0075 of worst case per request, so a few cents of budget hold a handful of requests.
const dear = { ...ask, model: "claude-3-opus" }

describe("team and key budgets", () => {
  it.effect("a request reserves against global, team and key scopes, daily and monthly, and each refuses on its own", () =>
    Effect.gen(function*() {
      const { gateway, ledger, rows } = yield* make({
        budget_limit_monthly_usd: 1000,
        teams: { risk: { budget_daily_usd: 0.05, budget_monthly_usd: 5 } }
      })
      const caller: Caller.Caller = { team: "risk", key_id: "k1", limits: { budget_daily_usd: 0.2 } }
      expect(gateway.scopes(caller).map((s) => `${s.key}/${s.period}`)).toEqual(["global/day", "global/month", "team:risk/day", "team:risk/month", "key:k1/day"])
      // The team's $0.05 a day runs out first: requests stop at it, never above it.
      let refused = Option.none<string>()
      for (let i = 0; i < 200 && Option.isNone(refused); i++) {
        const exit = yield* Effect.either(gateway.process(dear, as(caller, `r${i}`)))
        if (exit._tag === "Left") refused = Option.some(exit.left._tag === "BudgetExceeded" ? exit.left.scope : exit.left._tag)
      }
      expect(refused).toEqual(Option.some("team:risk"))
      const status = yield* ledger.status(gateway.scopes(caller))
      const team = status.find((s) => s.scope === "team:risk" && s.period === "day")!
      expect(team.spent).toBeLessThanOrEqual(Money.fromUsd(0.05))
      expect(team.spent).toBeGreaterThan(0)
      expect(yield* ledger.openReservations).toBe(0)
      // Every scope saw the same spend.
      for (const s of status) expect(s.spent).toBe(team.spent)
      expect((yield* Ref.get(rows)).at(-1)).toMatchObject({ status: "rejected_budget", team: "risk", key_id: "k1" })
      // Another team is not touched by risk's budget.
      yield* gateway.process(ask, as({ team: "other" }))
    }))

  it.effect("a key's own daily budget stops it while its team still has room", () =>
    Effect.gen(function*() {
      const { gateway } = yield* make({ teams: { risk: { budget_daily_usd: 10 } } })
      const small: Caller.Caller = { team: "risk", key_id: "small", limits: { budget_daily_usd: 0.02 } }
      const errors = []
      for (let i = 0; i < 100; i++) {
        const e = yield* Effect.flip(gateway.process(dear, as(small))).pipe(Effect.option)
        if (Option.isSome(e)) { errors.push(e.value); break }
      }
      expect(errors[0]).toMatchObject({ _tag: "BudgetExceeded", scope: "key:small" })
      yield* gateway.process(ask, as({ team: "risk", key_id: "other" }))
    }))
})

describe("model allow-lists", () => {
  it.effect("a team calls only the models on its list; others are refused with 403 and audited", () =>
    Effect.gen(function*() {
      const { gateway, rows } = yield* make({ teams: { interns: { models: ["claude-3-haiku"] } } })
      yield* gateway.process({ ...ask, model: "claude-3-haiku" }, as({ team: "interns" }))
      const e = yield* Effect.flip(gateway.process({ ...ask, model: "claude-3-opus" }, as({ team: "interns" })))
      expect(e).toMatchObject({ _tag: "Forbidden", rule: "model_allow_list", status: 403 })
      expect(e.message).toContain("'claude-3-opus'")
      expect((yield* Ref.get(rows)).map((r) => r.status)).toEqual(["success", "rejected_policy"])
      // Streams and teams without a list.
      const streamed = yield* Effect.flip(Stream.runDrain(gateway.processStream({ ...ask, model: "claude-3-opus" }, as({ team: "interns" }))))
      expect(streamed._tag).toBe("Forbidden")
      yield* gateway.process({ ...ask, model: "claude-3-opus" }, as({ team: "quants" }))
    }))

  it.effect("a cache hit for a model off the list is refused too", () =>
    Effect.gen(function*() {
      const { gateway, rows } = yield* make({ teams: { interns: { models: ["claude-3-haiku"] } } })
      const e = yield* Effect.flip(gateway.recordCacheHit({ ...ask, model: "claude-3-opus" }, as({ team: "interns" }), {
        provider: "mock", model: "claude-3-opus", usage: { input_tokens: 1, output_tokens: 1 }
      }))
      expect(e._tag).toBe("Forbidden")
      expect((yield* Ref.get(rows)).map((r) => [r.status, r.model])).toEqual([["rejected_policy", "claude-3-opus"]])
    }))
})

describe("rate limits", () => {
  it.effect("requests per minute: the key's limit refuses with a retry-after, other keys go on, the next minute has room", () =>
    Effect.gen(function*() {
      const { gateway, rows } = yield* make()
      const limited: Caller.Caller = { key_id: "k1", limits: { requests_per_minute: 3 } }
      for (let i = 0; i < 3; i++) yield* gateway.process(ask, as(limited))
      const e = yield* Effect.flip(gateway.process(ask, as(limited)))
      expect(e).toMatchObject({ _tag: "RateLimited", limit_type: "requests_per_minute", limit: 3, status: 429 })
      if (e._tag !== "RateLimited") throw new Error("unreachable")
      expect(e.retry_after_seconds).toBeGreaterThan(0)
      expect(e.retry_after_seconds).toBeLessThanOrEqual(60)
      expect((yield* Ref.get(rows)).at(-1)).toMatchObject({ status: "rejected_policy", error_type: "rate_limit_exceeded", key_id: "k1" })
      yield* gateway.process(ask, as({ key_id: "k2", limits: { requests_per_minute: 3 } }))
      yield* TestClock.adjust("61 seconds")
      yield* gateway.process(ask, as(limited))
    }))

  it.effect("tokens per minute: input taken at admission, output added after the call", () =>
    Effect.gen(function*() {
      const { provider } = yield* scripted("p1", () => Effect.succeed(ok("x", 10, 900)))
      const { gateway } = yield* make({}, [provider])
      const caller: Caller.Caller = { key_id: "t1", limits: { tokens_per_minute: 1000 } }
      yield* gateway.process({ ...ask, provider: "p1", max_tokens: 1000 }, as(caller))
      // 900 output tokens were added: the next request's input estimate no longer fits.
      const e = yield* Effect.flip(gateway.process({ ...ask, provider: "p1", prompt: "x".repeat(800) }, as(caller)))
      expect(e).toMatchObject({ _tag: "RateLimited", limit_type: "tokens_per_minute" })
    }))
})

describe("ApiKeys helpers", () => {
  it("generates tlk_ secrets whose id parses back and whose hash is stable", () => {
    const k = ApiKeys.generate()
    expect(k.secret).toMatch(/^tlk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/)
    expect(ApiKeys.idOfSecret(k.secret)).toEqual(Option.some(k.id))
    expect(ApiKeys.hashSecret(k.secret)).toBe(k.hash)
    expect(k.hash).not.toContain(k.secret.slice(21))
    expect(ApiKeys.idOfSecret("Bearer nonsense")).toEqual(Option.none())
    expect(ApiKeys.sameHash(k.hash, ApiKeys.hashSecret(k.secret))).toBe(true)
    expect(ApiKeys.sameHash(k.hash, ApiKeys.generate().hash)).toBe(false)
  })

  it("a key is unusable once revoked or expired", () => {
    const base: ApiKeys.ApiKey = { id: "a", role: "user", created_at: new Date(0), created_by: "cli", limits: {} }
    const now = new Date(10_000)
    expect(ApiKeys.unusable(base, now)).toEqual(Option.none())
    expect(ApiKeys.unusable({ ...base, revoked_at: new Date(5_000) }, now)).toEqual(Option.some("revoked"))
    expect(ApiKeys.unusable({ ...base, expires_at: new Date(10_000) }, now)).toEqual(Option.some("expired"))
    expect(ApiKeys.unusable({ ...base, expires_at: new Date(10_001) }, now)).toEqual(Option.none())
  })

  it.effect("the memory rate limiter refuses what does not fit and takes nothing then", () =>
    Effect.gen(function*() {
      const rl = yield* RateLimits.makeMemory
      const limit: RateLimits.Limit = { key: "tpm:x", limit_type: "tokens_per_minute", limit: 10 }
      yield* rl.take(limit, 6)
      expect((yield* Effect.flip(rl.take(limit, 5)))._tag).toBe("RateLimited")
      yield* rl.take(limit, 4)
      yield* rl.add(limit, 50)
      expect((yield* Effect.flip(rl.take(limit, 1)))._tag).toBe("RateLimited")
    }))
})

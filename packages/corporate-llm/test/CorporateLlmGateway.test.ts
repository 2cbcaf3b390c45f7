import { describe, expect, it } from "@effect/vitest"
import { Chunk, Duration, Effect, Exit, Fiber, Option, Ref, Stream, TestClock } from "effect"
import { ModelCatalog, Money } from "@tidyllm/core"
import { ctx, make, ok, providerError, scripted } from "./harness.js"

const haiku = Option.getOrThrow(ModelCatalog.make(ModelCatalog.defaultModels).resolve("claude-3-haiku"))

describe("CorporateLlmGateway", () => {
  it.effect("answers through the provider, charges the real usage and writes one audit row", () =>
    Effect.gen(function*() {
      const { provider } = yield* scripted("p1", () => Effect.succeed(ok("hi", 1000, 200)))
      const { gateway, rows, ledger } = yield* make({}, [provider])
      const { response } = yield* gateway.process({ prompt: "Say hi", provider: "p1", model: "claude-3-haiku", reason: "test" }, ctx())
      expect(response.data?.response).toBe("hi")
      const expected = ModelCatalog.cost(haiku, { input_tokens: 1000, output_tokens: 200 })
      expect(expected).toBe(Money.fromUsd(0.25 * 1000 / 1e6 + 1.25 * 200 / 1e6))
      expect(response.metadata.cost_usd).toBe(Money.toUsdString(expected))
      const audit = yield* Ref.get(rows)
      expect(audit).toHaveLength(1)
      expect(audit[0]).toMatchObject({ status: "success", provider: "p1", model: "claude-3-haiku", input_tokens: 1000, output_tokens: 200, cost: expected, reason: "test", team: "risk", user_id: "alice" })
      expect(audit[0]?.id).toBe(response.metadata.audit_id)
      const [global] = yield* ledger.status([{ key: "global", period: "day", limit: Money.fromUsd(100) }])
      expect(global?.spent).toBe(expected)
      expect(global?.reserved).toBe(0)
      expect(yield* ledger.openReservations).toBe(0)
    }))

  it.effect("the mock provider is labelled and reports usage", () =>
    Effect.gen(function*() {
      const { gateway } = yield* make()
      const { response } = yield* gateway.process({ prompt: "Summarise the quarter", reason: "demo" }, ctx())
      expect(response.metadata.mock).toBe(true)
      expect(response.metadata.provider).toBe("mock")
      expect(response.data?.response).toContain("[mock claude-3-haiku]")
      expect(response.data?.usage.output_tokens).toBeGreaterThan(0)
      expect(Number(response.metadata.cost_usd)).toBeGreaterThan(0)
    }))

  it.effect("a request without a reason is rejected by policy and audited", () =>
    Effect.gen(function*() {
      const { gateway, rows } = yield* make()
      const error = yield* Effect.flip(gateway.process({ prompt: "hi" }, ctx()))
      expect(error._tag).toBe("PolicyRejected")
      expect(error.message).toContain("reason is required")
      expect((yield* Ref.get(rows)).map((r) => r.status)).toEqual(["rejected_policy"])
    }))

  it.effect("require_reason: false relaxes the rule; the header reason is used when the body has none", () =>
    Effect.gen(function*() {
      const relaxed = yield* make({ require_reason: false })
      yield* relaxed.gateway.process({ prompt: "hi" }, ctx())
      const strict = yield* make()
      yield* strict.gateway.process({ prompt: "hi" }, { ...ctx(), reason: "from header" })
      expect((yield* Ref.get(strict.rows))[0]?.reason).toBe("from header")
    }))

  it.effect("unknown model, unknown provider and empty prompts are typed 4xx errors, each audited", () =>
    Effect.gen(function*() {
      const { gateway, rows } = yield* make()
      const unknownModel = yield* Effect.flip(gateway.process({ prompt: "x", model: "gpt-9", reason: "r" }, ctx()))
      expect(unknownModel._tag).toBe("UnknownModel")
      expect(unknownModel.status).toBe(400)
      const unknownProvider = yield* Effect.flip(gateway.process({ prompt: "x", provider: "nope", reason: "r" }, ctx()))
      expect(unknownProvider).toMatchObject({ _tag: "InvalidRequest", field: "provider" })
      const empty = yield* Effect.flip(gateway.process({ messages: [], reason: "r" }, ctx()))
      expect(empty).toMatchObject({ _tag: "InvalidRequest", field: "messages" })
      const tooMany = yield* Effect.flip(gateway.process({ prompt: "x", max_tokens: 100_000, reason: "r" }, ctx()))
      expect(tooMany).toMatchObject({ _tag: "InvalidRequest", field: "max_tokens" })
      expect((yield* Ref.get(rows)).map((r) => r.status)).toEqual(["rejected_policy", "rejected_policy", "rejected_policy", "rejected_policy"])
    }))

  it.effect("the per-request cap is checked on the worst case before any call", () =>
    Effect.gen(function*() {
      const { provider, calls } = yield* scripted("p1", () => Effect.succeed(ok()))
      const { gateway, rows, ledger } = yield* make({ max_cost_per_request_usd: 0.001 }, [provider])
      // claude-3-opus: 4096 output tokens at $75/M is ~$0.31 worst case.
      const error = yield* Effect.flip(gateway.process({ prompt: "x", provider: "p1", model: "claude-3-opus", max_tokens: 4096, reason: "r" }, ctx()))
      expect(error._tag).toBe("CostCapExceeded")
      expect(error.status).toBe(402)
      expect(yield* Ref.get(calls)).toBe(0)
      expect((yield* Ref.get(rows))[0]?.status).toBe("rejected_policy")
      expect(yield* ledger.openReservations).toBe(0)
    }))

  it.effect("the daily budget refuses what does not fit and never overshoots", () =>
    Effect.gen(function*() {
      const { provider, calls } = yield* scripted("p1", () => Effect.succeed(ok("x", 100, 1000)))
      // Worst case of a 1000-token answer on sonnet is ~$0.0156; $0.05 fits three reservations at most.
      const { gateway, rows, ledger } = yield* make({ budget_limit_daily_usd: 0.05 }, [provider])
      const results = yield* Effect.forEach(Array.from({ length: 10 }, (_, i) => i), (i) =>
        Effect.either(gateway.process({ prompt: "x", provider: "p1", model: "claude-3-sonnet", max_tokens: 1000, reason: "r" }, ctx(`r${i}`))), { concurrency: "unbounded" })
      const accepted = results.filter((r) => r._tag === "Right").length
      expect(accepted).toBeGreaterThan(0)
      expect(accepted).toBeLessThan(10)
      expect(yield* Ref.get(calls)).toBe(accepted)
      const [global] = yield* ledger.status([{ key: "global", period: "day", limit: Money.fromUsd(0.05) }])
      expect(global!.spent).toBeLessThanOrEqual(Money.fromUsd(0.05))
      expect(global!.reserved).toBe(0)
      const audit = yield* Ref.get(rows)
      expect(audit).toHaveLength(10)
      expect(audit.filter((r) => r.status === "rejected_budget")).toHaveLength(10 - accepted)
      const refused = results.find((r) => r._tag === "Left")
      expect(refused?._tag === "Left" && refused.left._tag).toBe("BudgetExceeded")
    }))

  it.effect("a provider failure releases the reservation and is audited as an error", () =>
    Effect.gen(function*() {
      const { provider } = yield* scripted("p1", () => Effect.fail(providerError("server")))
      const { gateway, rows, ledger } = yield* make({}, [provider])
      const error = yield* Effect.flip(gateway.process({ prompt: "x", provider: "p1", reason: "r" }, ctx()))
      expect(error).toMatchObject({ _tag: "ProviderError", kind: "server", retryable: true })
      expect((yield* Ref.get(rows))[0]).toMatchObject({ status: "error", error_type: "upstream_error:server", cost: 0 })
      const [global] = yield* ledger.status([{ key: "global", period: "day", limit: Money.fromUsd(100) }])
      expect(global).toMatchObject({ spent: 0, reserved: 0 })
    }))

  it.effect("an interrupted request (client gone) is audited as cancelled and its reservation released", () =>
    Effect.gen(function*() {
      const { provider } = yield* scripted("p1", () => Effect.sleep(Duration.seconds(30)).pipe(Effect.as(ok())))
      const { gateway, rows, ledger } = yield* make({}, [provider])
      const fiber = yield* Effect.fork(gateway.process({ prompt: "x", provider: "p1", reason: "r" }, ctx()))
      yield* TestClock.adjust(Duration.seconds(1))
      expect(yield* ledger.openReservations).toBe(1)
      yield* Fiber.interrupt(fiber)
      expect((yield* Ref.get(rows)).map((r) => r.status)).toEqual(["cancelled"])
      expect(yield* ledger.openReservations).toBe(0)
    }))

  it.effect("a provider call over its timeout fails with a retryable timeout error", () =>
    Effect.gen(function*() {
      const { provider } = yield* scripted("p1", () => Effect.sleep(Duration.seconds(30)).pipe(Effect.as(ok())))
      const { gateway, rows, ledger } = yield* make({}, [provider])
      const fiber = yield* Effect.fork(gateway.process({ prompt: "x", provider: "p1", reason: "r" }, { ...ctx(), timeout_ms: 2000 }))
      yield* TestClock.adjust(Duration.seconds(3))
      const exit = yield* Fiber.await(fiber)
      expect(Exit.isFailure(exit)).toBe(true)
      const error = Exit.isFailure(exit) ? Option.getOrUndefined(Exit.causeOption(exit).pipe(Option.flatMap((c) => Option.fromNullable(c)), Option.map((c) => JSON.stringify(c)))) : undefined
      expect(error).toContain("timeout")
      expect((yield* Ref.get(rows))[0]?.status).toBe("error")
      expect(yield* ledger.openReservations).toBe(0)
    }))

  it.effect("audit levels: hash stores a digest, redacted masks PII", () =>
    Effect.gen(function*() {
      const hashed = yield* make({ audit_level: "hash" })
      yield* hashed.gateway.process({ prompt: "mail bob@example.com", reason: "r" }, ctx())
      const h = (yield* Ref.get(hashed.rows))[0]!
      expect(h.prompt).toMatch(/^sha256:[0-9a-f]{64}$/)
      expect(h.audit_level).toBe("hash")
      const redacted = yield* make({ audit_level: "redacted" })
      yield* redacted.gateway.process({ prompt: "mail bob@example.com, card 4111 1111 1111 1111", reason: "r" }, ctx())
      const r = (yield* Ref.get(redacted.rows))[0]!
      expect(r.prompt).toContain("[EMAIL]")
      expect(r.prompt).toContain("[CARD]")
      expect(r.prompt).not.toContain("bob@example.com")
    }))

  it.effect("fails closed when the audit log is unreachable", () =>
    Effect.gen(function*() {
      const { Layer } = yield* Effect.promise(() => import("effect"))
      const { AuditLog, BudgetLedger, CorporateLlmGateway, LlmProviders, RateLimits } = yield* Effect.promise(() => import("@tidyllm/corporate-llm"))
      const { Errors } = yield* Effect.promise(() => import("@tidyllm/core"))
      const { settings } = yield* Effect.promise(() => import("./harness.js"))
      const down = Layer.succeed(AuditLog.AuditLog, {
        write: () => Effect.fail(new Errors.StoreUnavailable({ message: "db down", store: "postgres" })),
        list: () => Effect.succeed([]),
        query: () => Effect.succeed({ rows: [], next_cursor: null }),
        purge: () => Effect.succeed({ removed: 0, kept_under_agreement: 0, by_status: {} })
      })
      const gateway = yield* Effect.provide(CorporateLlmGateway.CorporateLlmGateway, CorporateLlmGateway.layer.pipe(Layer.provide(Layer.mergeAll(
        Layer.succeed(CorporateLlmGateway.Settings, settings()), ModelCatalog.layer(), LlmProviders.layerMock(), down, BudgetLedger.layerMemory, RateLimits.layerMemory
      ))))
      const error = yield* Effect.flip(gateway.process({ prompt: "x", reason: "r" }, ctx()))
      expect(error._tag).toBe("StoreUnavailable")
      expect(error.status).toBe(503)
    }))

  describe("streams", () => {
    it.effect("stream deltas, then Done with usage; settled and audited before Done", () =>
      Effect.gen(function*() {
        const { gateway, rows, ledger } = yield* make()
        const events = Chunk.toReadonlyArray(yield* Stream.runCollect(gateway.processStream({ prompt: "Tell me a story", reason: "r" }, ctx())))
        const text = events.flatMap((e) => (e._tag === "Delta" ? [e.text] : [])).join("")
        expect(text).toContain("[mock claude-3-haiku]")
        const done = events.at(-1)
        expect(done?._tag).toBe("Done")
        if (done?._tag !== "Done") return
        expect(done.response.data?.usage.output_tokens).toBeGreaterThan(0)
        expect((yield* Ref.get(rows)).map((r) => r.status)).toEqual(["success"])
        expect(yield* ledger.openReservations).toBe(0)
      }))

    it.effect("a consumer that stops early cancels: audited as cancelled, reservation settled", () =>
      Effect.gen(function*() {
        const { gateway, rows, ledger } = yield* make()
        yield* Stream.runCollect(gateway.processStream({ prompt: "Tell me a long story please", reason: "r" }, ctx()).pipe(Stream.take(1)))
        expect((yield* Ref.get(rows)).map((r) => r.status)).toEqual(["cancelled"])
        expect(yield* ledger.openReservations).toBe(0)
      }))

    it.effect("a failure after content is audited as stream_error and charged for what was delivered", () =>
      Effect.gen(function*() {
        const { provider } = yield* scripted("p1", () => Effect.succeed(ok()), () =>
          Stream.make({ _tag: "TextDelta" as const, text: "partial answer " }).pipe(Stream.concat(Stream.fail(providerError("stream")))))
        const { gateway, rows, ledger } = yield* make({}, [provider])
        const exit = yield* Effect.exit(Stream.runCollect(gateway.processStream({ prompt: "x", provider: "p1", reason: "r" }, ctx())))
        expect(Exit.isFailure(exit)).toBe(true)
        const row = (yield* Ref.get(rows))[0]!
        expect(row.status).toBe("stream_error")
        expect(row.output_tokens).toBeGreaterThan(0)
        expect(row.cost).toBeGreaterThan(0)
        expect(yield* ledger.openReservations).toBe(0)
      }))
  })
})

import { describe, expect, it } from "@effect/vitest"
import { Chunk, Duration, Effect, Fiber, Ref, Stream, TestClock } from "effect"
import { Errors } from "@tidyllm/core"
import { ctx, ok, providerError, scripted } from "../../corporate-llm/test/harness.js"
import type { LlmProvider } from "@tidyllm/corporate-llm"
import { make, req, runWithClock } from "./harness.js"

describe("AiProcessingGateway", () => {
  it.effect("the second identical request is a cache hit: no provider call, audited as a hit, zero cost", () =>
    Effect.gen(function*() {
      const { provider, calls } = yield* scripted("p1", () => Effect.succeed(ok("VaR is value at risk")))
      const { gateway, rows } = yield* make([provider])
      const first = yield* gateway.process(req, ctx("a"))
      expect(first.metadata).toMatchObject({ cache_hit: false, backend_used: "p1", attempts: 1 })
      // A different user, reason and metadata do not change the answer, so they hit the same entry.
      const second = yield* gateway.process({ ...req, reason: "again", user_id: "bob", metadata: { x: 1 } }, ctx("b"))
      expect(second.metadata).toMatchObject({ cache_hit: true, cost_usd: "0.000000000" })
      expect(second.data?.response).toBe("VaR is value at risk")
      expect(yield* Ref.get(calls)).toBe(1)
      const audit = yield* Ref.get(rows)
      expect(audit.map((r) => r.status)).toEqual(["success", "cache_hit"])
      expect(audit[1]?.id).toBe(second.metadata.audit_id)
    }))

  it.effect("a different temperature, model or prompt is a miss", () =>
    Effect.gen(function*() {
      const { provider, calls } = yield* scripted("p1", () => Effect.succeed(ok()))
      const { gateway } = yield* make([provider])
      yield* gateway.process(req, ctx())
      yield* gateway.process({ ...req, temperature: 0.3 }, ctx())
      yield* gateway.process({ ...req, model: "claude-3-sonnet" }, ctx())
      yield* gateway.process({ ...req, prompt: "What is CVaR?" }, ctx())
      yield* gateway.process({ ...req, max_tokens: 17 }, ctx())
      expect(yield* Ref.get(calls)).toBe(5)
      // An alias and the provider model id of the same model share the entry.
      yield* gateway.process({ ...req, model: "anthropic.claude-3-haiku-20240307-v1:0" }, ctx())
      expect(yield* Ref.get(calls)).toBe(5)
    }))

  it.effect("entries expire after cache_ttl_seconds (TestClock)", () =>
    Effect.gen(function*() {
      const { provider, calls } = yield* scripted("p1", () => Effect.succeed(ok()))
      const { gateway } = yield* make([provider], { cache_ttl_seconds: 60 })
      yield* gateway.process(req, ctx())
      yield* TestClock.adjust(Duration.seconds(59))
      expect((yield* gateway.process(req, ctx())).metadata.cache_hit).toBe(true)
      yield* TestClock.adjust(Duration.seconds(2))
      expect((yield* gateway.process(req, ctx())).metadata.cache_hit).toBe(false)
      expect(yield* Ref.get(calls)).toBe(2)
    }))

  it.effect("use_cache: false and enable_caching: false bypass the cache", () =>
    Effect.gen(function*() {
      const { provider, calls } = yield* scripted("p1", () => Effect.succeed(ok()))
      const { gateway } = yield* make([provider])
      yield* gateway.process(req, ctx())
      yield* gateway.process({ ...req, use_cache: false }, ctx())
      const off = yield* make([provider], { enable_caching: false })
      yield* off.gateway.process(req, ctx())
      yield* off.gateway.process(req, ctx())
      expect(yield* Ref.get(calls)).toBe(4)
    }))

  it.effect("retryable failures are retried with backoff, then succeed", () =>
    Effect.gen(function*() {
      const { provider, calls } = yield* scripted("p1", (n) => (n < 3 ? Effect.fail(providerError("throttled")) : Effect.succeed(ok())))
      const { gateway, rows } = yield* make([provider])
      const response = yield* runWithClock(gateway.process(req, ctx()))
      expect(response.metadata).toMatchObject({ backend_used: "p1", attempts: 3, cache_hit: false })
      expect(yield* Ref.get(calls)).toBe(3)
      expect((yield* Ref.get(rows)).map((r) => [r.status, r.attempt])).toEqual([["error", 1], ["error", 2], ["success", 3]])
    }))

  it.effect("backoff waits grow exponentially: nothing is retried before the base delay", () =>
    Effect.gen(function*() {
      const { provider, calls } = yield* scripted("p1", (n) => (n < 2 ? Effect.fail(providerError("server")) : Effect.succeed(ok())))
      const { gateway } = yield* make([provider], { retry_delay_base: 10 })
      const fiber = yield* Effect.fork(gateway.process(req, ctx()))
      yield* TestClock.adjust(Duration.seconds(4))
      expect(yield* Ref.get(calls)).toBe(1)
      yield* TestClock.adjust(Duration.seconds(7))
      yield* Fiber.join(fiber)
      expect(yield* Ref.get(calls)).toBe(2)
    }))

  it.effect("an upstream's Retry-After is honoured when longer than the backoff; one longer than an attempt's timeout fails over at once", () =>
    Effect.gen(function*() {
      const throttled = (ms: number) =>
        new Errors.ProviderError({ message: "slow down", provider: "p1", model: "claude-3-haiku", kind: "throttled", retryable: true, retry_after_ms: ms })
      // Backoff base 1 s (0.5-1 s for the first retry); the upstream asks for 8 s.
      const p1 = yield* scripted("p1", (n) => (n < 2 ? Effect.fail(throttled(8_000)) : Effect.succeed(ok("after the wait"))))
      const { gateway } = yield* make([p1.provider], { retry_delay_base: 1, timeout_seconds: 30 })
      const fiber = yield* Effect.fork(gateway.process(req, ctx()))
      yield* TestClock.adjust(Duration.seconds(7))
      expect(yield* Ref.get(p1.calls)).toBe(1)
      yield* TestClock.adjust(Duration.seconds(1))
      expect((yield* Fiber.join(fiber)).data?.response).toBe("after the wait")
      expect(yield* Ref.get(p1.calls)).toBe(2)

      // Asked to wait past the attempt timeout (30 s): no retry there, the fallback answers now.
      const q1 = yield* scripted("p1", () => Effect.fail(throttled(120_000)))
      const q2 = yield* scripted("p2", () => Effect.succeed(ok("from p2")))
      const other = yield* make([q1.provider, q2.provider], { fallback_backends: ["p2"], timeout_seconds: 30 })
      const response = yield* other.gateway.process(req, ctx())
      expect(response.metadata).toMatchObject({ backend_used: "p2", attempts: 2 })
      expect(yield* Ref.get(q1.calls)).toBe(1)

      // Every backend throttling: 429, with the soonest wait any of them asked for.
      const r1 = yield* scripted("p1", () => Effect.fail(throttled(120_000)))
      const r2 = yield* scripted("p2", () => Effect.fail(new Errors.ProviderError({ message: "slow down", provider: "p2", model: "claude-3-haiku", kind: "throttled", retryable: true, retry_after_ms: 45_000 })))
      const busy = yield* make([r1.provider, r2.provider], { fallback_backends: ["p2"], timeout_seconds: 30 })
      const error = yield* Effect.flip(busy.gateway.process(req, ctx()))
      expect(error).toMatchObject({ _tag: "AllBackendsFailed", status: 429, retry_after_seconds: 45 })
      if (error._tag === "AllBackendsFailed") expect(error.attempts.map((a) => a.retry_after_ms)).toEqual([120_000, 45_000])
    }))

  it.effect("a validation error is not retried; the fallback backend answers and backend_used says so", () =>
    Effect.gen(function*() {
      const p1 = yield* scripted("p1", () => Effect.fail(providerError("validation")))
      const p2 = yield* scripted("p2", () => Effect.succeed(ok("from p2")))
      const { gateway } = yield* make([p1.provider, p2.provider], { fallback_backends: ["p2"] })
      const response = yield* runWithClock(gateway.process(req, ctx()))
      expect(response.metadata).toMatchObject({ backend_used: "p2", attempts: 2 })
      expect(response.data?.response).toBe("from p2")
      expect(yield* Ref.get(p1.calls)).toBe(1)
    }))

  it.effect("a request's own fallback list is used in order", () =>
    Effect.gen(function*() {
      const p1 = yield* scripted("p1", () => Effect.fail(providerError("server")))
      const p2 = yield* scripted("p2", () => Effect.succeed(ok("p2")))
      const { gateway } = yield* make([p1.provider, p2.provider], { max_retries: 0 })
      const response = yield* gateway.process({ ...req, backend: "p1", fallback_backends: ["p2"] }, ctx())
      expect(response.metadata.backend_used).toBe("p2")
    }))

  it.effect("every backend failing gives AllBackendsFailed listing each attempt", () =>
    Effect.gen(function*() {
      const p1 = yield* scripted("p1", () => Effect.fail(providerError("server")))
      const p2 = yield* scripted("p2", () => Effect.fail(providerError("throttled", "p2")))
      const { gateway, rows, ledger } = yield* make([p1.provider, p2.provider], { fallback_backends: ["p2"], max_retries: 1 })
      const error = yield* Effect.flip(runWithClock(gateway.process(req, ctx())))
      expect(error._tag).toBe("AllBackendsFailed")
      if (error._tag !== "AllBackendsFailed") return
      expect(error.status).toBe(502)
      expect(error.attempts.map((a) => [a.backend, a.attempt, a.kind])).toEqual([["p1", 1, "server"], ["p1", 2, "server"], ["p2", 3, "throttled"], ["p2", 4, "throttled"]])
      expect(yield* Ref.get(rows)).toHaveLength(4)
      expect(yield* ledger.openReservations).toBe(0)
    }))

  it.effect("every backend refusing the request as invalid is that refusal (400), not AllBackendsFailed; a mix stays AllBackendsFailed", () =>
    Effect.gen(function*() {
      const p1 = yield* scripted("p1", () => Effect.fail(providerError("validation")))
      const p2 = yield* scripted("p2", () => Effect.fail(providerError("validation", "p2")))
      const { gateway, rows } = yield* make([p1.provider, p2.provider], { fallback_backends: ["p2"], max_retries: 2 })
      const refused = yield* Effect.flip(runWithClock(gateway.process(req, ctx())))
      expect(refused).toMatchObject({ _tag: "ProviderError", kind: "validation", provider: "p2", status: 400 })
      // Not retried (not retryable), but each backend was asked once, and each attempt audited.
      expect(yield* Ref.get(p1.calls)).toBe(1)
      expect(yield* Ref.get(p2.calls)).toBe(1)
      expect(yield* Ref.get(rows)).toHaveLength(2)
      const p3 = yield* scripted("p3", () => Effect.fail(providerError("validation")))
      const p4 = yield* scripted("p4", () => Effect.fail(providerError("server", "p4")))
      const mixed = yield* make([p3.provider, p4.provider], { fallback_backends: ["p4"], max_retries: 0 })
      const error = yield* Effect.flip(runWithClock(mixed.gateway.process({ ...req, backend: "p3" }, ctx())))
      expect(error).toMatchObject({ _tag: "AllBackendsFailed", status: 502 })
    }))

  it.effect("embeddings: retried on a throttle, failed over to the next backend, each attempt audited and charged once", () =>
    Effect.gen(function*() {
      const embedder = (name: string, fail: (n: number) => Errors.ProviderErrorKind | undefined) =>
        Effect.map(Ref.make(0), (calls) => ({
          calls,
          provider: {
            name, mock: false,
            complete: () => Effect.die("not a chat provider"),
            stream: () => Stream.die("not a chat provider"),
            embed: (call: LlmProvider.EmbedCall) =>
              Effect.flatMap(Ref.updateAndGet(calls, (n) => n + 1), (n) => {
                const kind = fail(n)
                return kind === undefined
                  ? Effect.succeed({ vectors: call.input.map(() => [0.1, 0.2]), input_tokens: 4 })
                  : Effect.fail(providerError(kind, name))
              }),
            health: Effect.succeed({ configured: true, detail: "scripted" })
          } satisfies LlmProvider.LlmProvider
        }))
      const p1 = yield* embedder("p1", () => "server")
      const p2 = yield* embedder("p2", (n) => (n === 1 ? "throttled" : undefined))
      const { gateway, rows, ledger } = yield* make([p1.provider, p2.provider], { fallback_backends: ["p2"], max_retries: 1 })
      const answer = yield* runWithClock(gateway.embed({ input: ["a", "b"], model: "titan-embed-v2", reason: "index" }, ctx()))
      expect(answer).toMatchObject({ backend_used: "p2", attempts: 4 })
      expect(answer.vectors).toHaveLength(2)
      expect(yield* Ref.get(p1.calls)).toBe(2)
      expect(yield* Ref.get(p2.calls)).toBe(2)
      const audit = yield* Ref.get(rows)
      expect(audit.map((r) => [r.provider, r.status, r.attempt])).toEqual([["p1", "error", 1], ["p1", "error", 2], ["p2", "error", 3], ["p2", "success", 4]])
      expect(yield* ledger.openReservations).toBe(0)
    }))

  it.effect("policy and budget rejections are not retried or failed over", () =>
    Effect.gen(function*() {
      const p1 = yield* scripted("p1", () => Effect.succeed(ok()))
      const p2 = yield* scripted("p2", () => Effect.succeed(ok()))
      const { gateway } = yield* make([p1.provider, p2.provider], { fallback_backends: ["p2"] }, { max_cost_per_request_usd: 0 })
      const error = yield* Effect.flip(gateway.process(req, ctx()))
      expect(error._tag).toBe("CostCapExceeded")
      expect((yield* Ref.get(p1.calls)) + (yield* Ref.get(p2.calls))).toBe(0)
    }))

  it.effect("a model the catalog does not know is not failed over; one the backend does not serve is", () =>
    Effect.gen(function*() {
      const p1 = yield* scripted("p1", () => Effect.succeed(ok()))
      const { gateway, rows } = yield* make([p1.provider], { fallback_backends: ["mock"] })
      const unknown = yield* Effect.flip(gateway.process({ ...req, model: "gpt-9" }, ctx()))
      expect(unknown._tag).toBe("UnknownModel")
      expect((yield* Ref.get(rows))).toHaveLength(1)
      // `p9` is not configured at all: the next backend answers.
      const response = yield* gateway.process({ ...req, backend: "p9", fallback_backends: ["p1"] }, ctx())
      expect(response.metadata.backend_used).toBe("p1")
    }))

  it.effect("a slow backend times out per attempt and the next backend answers", () =>
    Effect.gen(function*() {
      const p1 = yield* scripted("p1", () => Effect.sleep(Duration.minutes(5)).pipe(Effect.as(ok("late"))))
      const p2 = yield* scripted("p2", () => Effect.succeed(ok("p2 in time")))
      const { gateway, rows } = yield* make([p1.provider, p2.provider], { fallback_backends: ["p2"], max_retries: 0, timeout_seconds: 2 })
      const response = yield* runWithClock(gateway.process(req, ctx()))
      expect(response.metadata.backend_used).toBe("p2")
      expect((yield* Ref.get(rows))[0]).toMatchObject({ status: "error", error_type: "upstream_error:timeout" })
    }))

  describe("streams", () => {
    const streamOf = (text: string): Stream.Stream<LlmProvider.StreamEvent, never> =>
      Stream.make(
        { _tag: "TextDelta" as const, text },
        { _tag: "Usage" as const, usage: { input_tokens: 5, output_tokens: 2 } },
        { _tag: "Finish" as const, finish_reason: "stop" }
      )

    it.effect("fails over before the first token; Done carries backend_used and attempts; then served from cache", () =>
      Effect.gen(function*() {
        const p1 = yield* scripted("p1", () => Effect.succeed(ok()), () => Stream.fail(providerError("server")))
        const p2 = yield* scripted("p2", () => Effect.succeed(ok()), () => streamOf("streamed"))
        const { gateway, rows, ledger } = yield* make([p1.provider, p2.provider], { fallback_backends: ["p2"], max_retries: 0 })
        const events = Chunk.toReadonlyArray(yield* Stream.runCollect(gateway.processStream(req, ctx())))
        expect(events.filter((e) => e._tag === "Delta").map((e) => (e._tag === "Delta" ? e.text : ""))).toEqual(["streamed"])
        const done = events.at(-1)
        expect(done?._tag === "Done" && done.response.metadata).toMatchObject({ backend_used: "p2", attempts: 2, cache_hit: false })
        expect((yield* Ref.get(rows)).map((r) => r.status)).toEqual(["error", "success"])
        expect(yield* ledger.openReservations).toBe(0)
        const again = Chunk.toReadonlyArray(yield* Stream.runCollect(gateway.processStream(req, ctx())))
        expect(again[0]).toEqual({ _tag: "Delta", text: "streamed" })
        expect(again.at(-1)?._tag === "Done" && again.at(-1)).toMatchObject({ response: { metadata: { cache_hit: true } } })
        expect(yield* Ref.get(p2.calls)).toBe(1)
      }))
  })
})

import { describe, expect, it } from "@effect/vitest"
import { Chunk, Deferred, Duration, Effect, Fiber, Ref, Stream, TestClock } from "effect"
import type { Errors } from "@tidyllm/core"
import type { LlmProvider } from "@tidyllm/corporate-llm"
import { ctx, ok, providerError, scripted } from "../../corporate-llm/test/harness.js"
import { make, req } from "./harness.js"

/** No retries, no cache: each request is exactly one call per backend, so call counts are exact. */
const breaker = { max_retries: 0, enable_caching: false, circuit_breaker_failures: 3, circuit_breaker_cooldown_seconds: 30 }

const failures = (e: Errors.GatewayError) => (e._tag === "AllBackendsFailed" ? e.attempts.map((a) => [a.backend, a.attempt, a.error_type]) : e._tag)

const streamOf = (text: string): Stream.Stream<LlmProvider.StreamEvent, never> =>
  Stream.make({ _tag: "TextDelta" as const, text }, { _tag: "Finish" as const, finish_reason: "stop" })

/** A provider that fails with `kind` while `failing` is set, and answers otherwise. */
const switchable = (name: string, kind: Errors.ProviderErrorKind = "server") =>
  Effect.gen(function*() {
    const failing = yield* Ref.make(true)
    const p = yield* scripted(
      name,
      () => Effect.flatMap(Ref.get(failing), (f) => (f ? Effect.fail(providerError(kind, name)) : Effect.succeed(ok(`from ${name}`)))),
      () => Stream.unwrap(Effect.map(Ref.get(failing), (f) => (f ? Stream.fail(providerError(kind, name)) : streamOf(`from ${name}`))))
    )
    return { ...p, failing }
  })

describe("circuit breaker per backend and model", () => {
  it.effect("opens after N consecutive counted failures, then fails fast without calling the provider", () =>
    Effect.gen(function*() {
      const p1 = yield* switchable("p1")
      const { gateway, rows } = yield* make([p1.provider], breaker)
      for (let i = 0; i < 3; i++) expect(failures(yield* Effect.flip(gateway.process(req, ctx())))).toEqual([["p1", 1, "upstream_error"]])
      expect(yield* Ref.get(p1.calls)).toBe(3)
      const error = yield* Effect.flip(gateway.process(req, ctx("refused")))
      expect(failures(error)).toEqual([["p1", 0, "circuit_open"]])
      expect(error.message).toContain("after 0 attempt(s)")
      expect(yield* Ref.get(p1.calls)).toBe(3)
      // The refused request still has its audit row.
      const refused = (yield* Ref.get(rows)).filter((r) => r.request_id === "refused")
      expect(refused.map((r) => [r.status, r.error_type])).toEqual([["error", "circuit_open"]])
      const health = yield* gateway.health
      expect(health.healthy).toBe(true)
      expect(health.circuit_breakers).toEqual([{ backend: "p1", model: "claude-3-haiku", state: "open", consecutive_failures: 3, opened_at: new Date(0).toISOString() }])
    }))

  it.effect("after the cool-down one probe goes through; others fail fast meanwhile; success closes it", () =>
    Effect.gen(function*() {
      const started = yield* Deferred.make<void>()
      const mode = yield* Ref.make<"fail" | "slow" | "ok">("fail")
      const p1 = yield* scripted("p1", () =>
        Effect.flatMap(Ref.get(mode), (m) =>
          m === "fail"
            ? Effect.fail(providerError("timeout"))
            : m === "ok"
            ? Effect.succeed(ok("fine"))
            : Deferred.succeed(started, undefined).pipe(Effect.zipRight(Effect.sleep(Duration.seconds(2))), Effect.as(ok("probe ok"))))
      )
      const { gateway } = yield* make([p1.provider], breaker)
      for (let i = 0; i < 3; i++) yield* Effect.flip(gateway.process(req, ctx()))
      yield* TestClock.adjust(Duration.seconds(29))
      expect(failures(yield* Effect.flip(gateway.process(req, ctx())))).toEqual([["p1", 0, "circuit_open"]])
      yield* TestClock.adjust(Duration.seconds(1))
      yield* Ref.set(mode, "slow")
      const probe = yield* Effect.fork(gateway.process(req, ctx("probe")))
      yield* Deferred.await(started)
      expect((yield* gateway.breakers).map((b) => b.state)).toEqual(["half_open"])
      // While the probe is in flight, every other request fails fast.
      const during = yield* Effect.flip(gateway.process(req, ctx()))
      expect(failures(during)).toEqual([["p1", 0, "circuit_open"]])
      expect(during.message).toMatch(/every backend failed/)
      expect(yield* Ref.get(p1.calls)).toBe(4)
      yield* TestClock.adjust(Duration.seconds(2))
      expect((yield* Fiber.join(probe)).data?.response).toBe("probe ok")
      expect(yield* gateway.breakers).toEqual([{ backend: "p1", model: "claude-3-haiku", state: "closed", consecutive_failures: 0 }])
      expect((yield* gateway.health).circuit_breakers).toEqual([])
      yield* Ref.set(mode, "ok")
      expect((yield* gateway.process(req, ctx())).data?.response).toBe("fine")
      expect(yield* Ref.get(p1.calls)).toBe(5)
    }))

  it.effect("a failed probe re-opens the breaker for another cool-down", () =>
    Effect.gen(function*() {
      const p1 = yield* switchable("p1", "connection")
      const { gateway } = yield* make([p1.provider], breaker)
      for (let i = 0; i < 3; i++) yield* Effect.flip(gateway.process(req, ctx()))
      yield* TestClock.adjust(Duration.seconds(30))
      // The probe: one call, which fails, so the breaker opens again at t = 30 s.
      expect(failures(yield* Effect.flip(gateway.process(req, ctx())))).toEqual([["p1", 1, "upstream_error"]])
      expect(yield* Ref.get(p1.calls)).toBe(4)
      expect(yield* gateway.breakers).toEqual([{ backend: "p1", model: "claude-3-haiku", state: "open", consecutive_failures: 4, opened_at: new Date(30_000).toISOString() }])
      yield* TestClock.adjust(Duration.seconds(29))
      yield* Effect.flip(gateway.process(req, ctx()))
      expect(yield* Ref.get(p1.calls)).toBe(4)
      yield* TestClock.adjust(Duration.seconds(1))
      yield* Ref.set(p1.failing, false)
      expect((yield* gateway.process(req, ctx())).data?.response).toBe("from p1")
      expect(yield* Ref.get(p1.calls)).toBe(5)
    }))

  it.effect("errors that do not say the backend is unwell never open it: validation, auth, throttled, budget", () =>
    Effect.gen(function*() {
      for (const kind of ["validation", "auth", "throttled", "model", "not_found"] as const) {
        const p1 = yield* switchable("p1", kind)
        const { gateway } = yield* make([p1.provider], breaker)
        for (let i = 0; i < 6; i++) yield* Effect.flip(gateway.process(req, ctx()))
        expect(yield* Ref.get(p1.calls), kind).toBe(6)
        expect((yield* gateway.health).circuit_breakers, kind).toEqual([])
      }
      // Refused by gateway #1's policy before any call: not the provider's fault either.
      const p1 = yield* switchable("p1")
      const { gateway } = yield* make([p1.provider], breaker, { max_cost_per_request_usd: 0 })
      for (let i = 0; i < 6; i++) expect((yield* Effect.flip(gateway.process(req, ctx())))._tag).toBe("CostCapExceeded")
      expect(yield* gateway.breakers).toEqual([{ backend: "p1", model: "claude-3-haiku", state: "closed", consecutive_failures: 0 }])
    }))

  it.effect("a success in between resets the count: failures must be consecutive", () =>
    Effect.gen(function*() {
      const p1 = yield* switchable("p1")
      const { gateway } = yield* make([p1.provider], breaker)
      for (let i = 0; i < 2; i++) yield* Effect.flip(gateway.process(req, ctx()))
      expect((yield* gateway.health).circuit_breakers).toMatchObject([{ state: "closed", consecutive_failures: 2 }])
      yield* Ref.set(p1.failing, false)
      yield* gateway.process(req, ctx())
      yield* Ref.set(p1.failing, true)
      for (let i = 0; i < 2; i++) yield* Effect.flip(gateway.process(req, ctx()))
      expect((yield* gateway.breakers).map((b) => b.state)).toEqual(["closed"])
      expect(yield* Ref.get(p1.calls)).toBe(5)
    }))

  it.effect("while p1's breaker is open, requests go straight to the next backend", () =>
    Effect.gen(function*() {
      const p1 = yield* switchable("p1")
      const p2 = yield* scripted("p2", () => Effect.succeed(ok("from p2")))
      const { gateway } = yield* make([p1.provider, p2.provider], { ...breaker, fallback_backends: ["p2"] })
      for (let i = 0; i < 3; i++) expect((yield* gateway.process(req, ctx())).metadata).toMatchObject({ backend_used: "p2", attempts: 2 })
      const response = yield* gateway.process(req, ctx())
      expect(response.metadata).toMatchObject({ backend_used: "p2", attempts: 1 })
      expect(yield* Ref.get(p1.calls)).toBe(3)
      // Breakers are per model: another model on p1 is still tried.
      yield* Effect.flip(gateway.process({ ...req, model: "claude-3-sonnet", fallback_backends: [] }, ctx()))
      expect(yield* Ref.get(p1.calls)).toBe(4)
    }))

  it.effect("retries on one backend stop as soon as its breaker opens", () =>
    Effect.gen(function*() {
      const p1 = yield* switchable("p1")
      const p2 = yield* scripted("p2", () => Effect.succeed(ok("from p2")))
      const { gateway } = yield* make([p1.provider, p2.provider], { ...breaker, max_retries: 5, retry_delay_base: 0, fallback_backends: ["p2"] })
      const response = yield* gateway.process(req, ctx())
      expect(response.metadata).toMatchObject({ backend_used: "p2", attempts: 4 })
      expect(yield* Ref.get(p1.calls)).toBe(3)
    }))

  it.effect("circuit_breaker_failures: 0 turns breakers off", () =>
    Effect.gen(function*() {
      const p1 = yield* switchable("p1")
      const { gateway } = yield* make([p1.provider], { ...breaker, circuit_breaker_failures: 0 })
      for (let i = 0; i < 10; i++) yield* Effect.flip(gateway.process(req, ctx()))
      expect(yield* Ref.get(p1.calls)).toBe(10)
      expect(yield* gateway.breakers).toEqual([])
    }))

  it.effect("settings without the breaker fields get the defaults: 5 failures, 30 s", () =>
    Effect.gen(function*() {
      const p1 = yield* switchable("p1")
      const { gateway } = yield* make([p1.provider], { max_retries: 0, enable_caching: false })
      expect(yield* gateway.health).toMatchObject({ circuit_breaker_failures: 5, circuit_breaker_cooldown_seconds: 30 })
      for (let i = 0; i < 6; i++) yield* Effect.flip(gateway.process(req, ctx()))
      expect(yield* Ref.get(p1.calls)).toBe(5)
    }))

  it.effect("an interrupted probe gives its slot back: the next request probes", () =>
    Effect.gen(function*() {
      const started = yield* Deferred.make<void>()
      const mode = yield* Ref.make<"fail" | "hang" | "ok">("fail")
      const p1 = yield* scripted("p1", () =>
        Effect.flatMap(Ref.get(mode), (m) =>
          m === "fail" ? Effect.fail(providerError("server")) : m === "hang" ? Deferred.succeed(started, undefined).pipe(Effect.zipRight(Effect.never)) : Effect.succeed(ok("back")))
      )
      const { gateway } = yield* make([p1.provider], breaker)
      for (let i = 0; i < 3; i++) yield* Effect.flip(gateway.process(req, ctx()))
      yield* TestClock.adjust(Duration.seconds(30))
      yield* Ref.set(mode, "hang")
      const probe = yield* Effect.fork(gateway.process(req, ctx()))
      yield* Deferred.await(started)
      yield* Fiber.interrupt(probe)
      yield* Ref.set(mode, "ok")
      expect((yield* gateway.process(req, ctx())).data?.response).toBe("back")
      expect((yield* gateway.breakers).map((b) => b.state)).toEqual(["closed"])
    }))

  describe("streams", () => {
    it.effect("failures before the first token open the breaker; the open stream fails over to the next backend without a call", () =>
      Effect.gen(function*() {
        const p1 = yield* switchable("p1")
        const p2 = yield* switchable("p2")
        yield* Ref.set(p2.failing, false)
        const { gateway } = yield* make([p1.provider, p2.provider], { ...breaker, fallback_backends: ["p2"] })
        for (let i = 0; i < 3; i++) yield* Stream.runDrain(gateway.processStream(req, ctx()))
        expect(yield* Ref.get(p1.calls)).toBe(3)
        const events = Chunk.toReadonlyArray(yield* Stream.runCollect(gateway.processStream(req, ctx())))
        expect(events[0]).toEqual({ _tag: "Delta", text: "from p2" })
        expect(events.at(-1)?._tag === "Done" && events.at(-1)).toMatchObject({ response: { metadata: { backend_used: "p2", attempts: 1 } } })
        expect(yield* Ref.get(p1.calls)).toBe(3)
        // After the cool-down the probe is a stream too, and its first token closes the breaker.
        yield* TestClock.adjust(Duration.seconds(30))
        yield* Ref.set(p1.failing, false)
        const back = Chunk.toReadonlyArray(yield* Stream.runCollect(gateway.processStream(req, ctx())))
        expect(back[0]).toEqual({ _tag: "Delta", text: "from p1" })
        expect((yield* gateway.breakers).find((b) => b.backend === "p1")?.state).toBe("closed")
      }))

    it.effect("failures after the first token count too", () =>
      Effect.gen(function*() {
        const p1 = yield* scripted("p1", () => Effect.succeed(ok()), () =>
          Stream.concat(Stream.make({ _tag: "TextDelta" as const, text: "half" }), Stream.fail(providerError("stream"))))
        const { gateway } = yield* make([p1.provider], breaker)
        for (let i = 0; i < 3; i++) expect((yield* Effect.flip(Stream.runDrain(gateway.processStream(req, ctx()))))._tag).toBe("ProviderError")
        expect((yield* gateway.breakers).map((b) => [b.state, b.consecutive_failures])).toEqual([["open", 3]])
        expect(failures(yield* Effect.flip(Stream.runDrain(gateway.processStream(req, ctx()))))).toEqual([["p1", 0, "circuit_open"]])
        expect(yield* Ref.get(p1.calls)).toBe(3)
      }))

    it.effect("opened for pulling, as the handler reads it: a failure after the first token counts although the reader ends quietly", () =>
      Effect.gen(function*() {
        const p1 = yield* scripted("p1", () => Effect.succeed(ok()), () =>
          Stream.concat(Stream.make({ _tag: "TextDelta" as const, text: "half" }), Stream.fail(providerError("stream"))))
        const { gateway, rows } = yield* make([p1.provider], breaker)
        for (let i = 0; i < 3; i++) {
          // The handler sends the failure as an error event and closes its scope successfully.
          const error = yield* Effect.scoped(Effect.gen(function*() {
            const pull = yield* gateway.openStream(req, ctx(`pulled-${i}`))
            expect(Chunk.toReadonlyArray(yield* pull)).toEqual([{ _tag: "Delta", text: "half" }])
            return yield* Effect.flip(pull)
          }))
          expect(error._tag).toBe("Some")
        }
        expect((yield* gateway.breakers).map((b) => [b.state, b.consecutive_failures])).toEqual([["open", 3]])
        // Gateway #1 audited each as the stream error it was, not as a client gone.
        const pulled = (yield* Ref.get(rows)).filter((r) => r.request_id.startsWith("pulled-"))
        expect(pulled.map((r) => r.status)).toEqual(["stream_error", "stream_error", "stream_error"])
      }))
  })
})

/** Gateway #2 over gateway #1's test harness: settings, a cache of the test's choosing, clock helpers. */
import { Duration, Effect, Fiber, Layer, TestClock } from "effect"
import { AiProcessingGateway, ResponseCache } from "@tidyllm/ai-processing"
import type { Config } from "@tidyllm/core"
import type { LlmProvider } from "@tidyllm/corporate-llm"
import { make as makeGw1 } from "../../corporate-llm/test/harness.js"

export const aiSettings = (over: Partial<AiProcessingGateway.SettingsShape> = {}): AiProcessingGateway.SettingsShape => ({
  enable_caching: true, cache_dir: ".bedrock_cache", cache_ttl_seconds: 60, max_retries: 2, retry_delay_base: 0.1,
  timeout_seconds: 5, fallback_backends: [], ...over
})

/** Gateway #2 over gateway #1 with `providers`, and a memory cache unless the test brings one. */
export const make = (
  providers: ReadonlyArray<LlmProvider.LlmProvider>,
  over: Partial<AiProcessingGateway.SettingsShape> = {},
  gw1: Partial<Config.CorporateLlmSettings> = {},
  cacheService?: ResponseCache.Service
) =>
  Effect.gen(function*() {
    const base = yield* makeGw1({ default_provider: "p1", ...gw1 }, providers)
    const cache = cacheService ?? (yield* ResponseCache.makeMemory)
    const gateway = yield* Effect.provide(AiProcessingGateway.AiProcessingGateway, AiProcessingGateway.layer.pipe(Layer.provide(Layer.mergeAll(
      base.layer, Layer.succeed(AiProcessingGateway.Settings, aiSettings(over)), Layer.succeed(ResponseCache.ResponseCache, cache)
    ))))
    return { ...base, gateway, cache }
  })

/** Runs an effect that sleeps (backoff, timeouts) under the TestClock, advancing time until it completes. */
export const runWithClock = <A, E>(self: Effect.Effect<A, E>, steps = 50, step: Duration.DurationInput = Duration.seconds(1)) =>
  Effect.gen(function*() {
    const fiber = yield* Effect.fork(self)
    for (let i = 0; i < steps; i++) yield* TestClock.adjust(step)
    return yield* Fiber.join(fiber)
  })

export const req = { prompt: "What is VaR?", reason: "risk report", model: "claude-3-haiku", temperature: 0.2 }

/** Gateway #3 over memory layers, on gateway #2 over gateway #1 (mock provider, memory audit log). */
import { Effect, Layer } from "effect"
import { AiProcessingGateway, ResponseCache } from "@tidyllm/ai-processing"
import type { Caller, Config } from "@tidyllm/core"
import { WorkflowOptimizerGateway } from "@tidyllm/workflow-optimizer"
import { make as makeGw1 } from "../../corporate-llm/test/harness.js"

export const aiSettings: Config.AiProcessingSettings = {
  enable_caching: true, cache_dir: ".c", cache_ttl_seconds: 60, max_retries: 0, retry_delay_base: 0, timeout_seconds: 5, fallback_backends: [],
  circuit_breaker_failures: 5, circuit_breaker_cooldown_seconds: 30
}

/** Gateway #2 over gateway #1 (its audit rows readable through `rows`). */
export const gateway2 = Effect.gen(function*() {
  const gw1 = yield* makeGw1()
  const layer = AiProcessingGateway.layer.pipe(
    Layer.provide(Layer.mergeAll(gw1.layer, Layer.succeed(AiProcessingGateway.Settings, aiSettings), ResponseCache.layerMemory))
  )
  return { layer, rows: gw1.rows }
})

/** Gateway #3 and its memory stores, with handles on gateway #1's audit rows. */
export const make = (overrides: Partial<Config.WorkflowOptimizerSettings> = {}) =>
  Effect.gen(function*() {
    const gw2 = yield* gateway2
    const context = yield* Layer.build(WorkflowOptimizerGateway.layerMemory(overrides).pipe(Layer.provide(gw2.layer)))
    return { context, llmAudit: gw2.rows }
  })

/** A call context for `user` in `role`. */
export const as = (user: string, role = "user", request_id = `req-${user}`): WorkflowOptimizerGateway.CallContext => ({
  request_id,
  caller: { user_id: user, team: "platform" },
  role
})

/** A call context for any caller (an API key's: key id, team) in `role`. */
export const asCaller = (caller: Caller.Caller, role = "user", request_id = "req-caller"): WorkflowOptimizerGateway.CallContext => ({
  request_id,
  caller,
  role
})

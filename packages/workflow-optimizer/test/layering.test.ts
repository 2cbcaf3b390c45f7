import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { AiProcessingGateway, ResponseCache } from "@tidyllm/ai-processing"
import { WorkflowOptimizerGateway } from "@tidyllm/workflow-optimizer"
import { make as makeGw1 } from "../../corporate-llm/test/harness.js"
import { aiSettings } from "./harness.js"

const settings = Layer.succeed(AiProcessingGateway.Settings, aiSettings)
/** Gateway #1 over memory ports and the mock provider. */
const gateway1 = Layer.unwrapEffect(Effect.map(makeGw1(), (h) => h.layer))

describe("the dependency order is a type", () => {
  it("gateway #3 composes over gateway #2 over gateway #1", () => {
    const complete: Layer.Layer<WorkflowOptimizerGateway.WorkflowOptimizerGateway> = WorkflowOptimizerGateway.layerMemory().pipe(
      Layer.provide(AiProcessingGateway.layer.pipe(Layer.provide(Layer.mergeAll(gateway1, settings, ResponseCache.layerMemory))))
    )
    expect(Layer.isLayer(complete)).toBe(true)
  })

  it("gateway #3 without gateway #1 beneath it does not compile", () => {
    // @ts-expect-error CorporateLlmGateway is still required: the layer's requirement type is not `never`.
    const missing: Layer.Layer<WorkflowOptimizerGateway.WorkflowOptimizerGateway> = WorkflowOptimizerGateway.layerMemory().pipe(
      Layer.provide(AiProcessingGateway.layer.pipe(Layer.provide(Layer.mergeAll(settings, ResponseCache.layerMemory))))
    )
    expect(Layer.isLayer(missing)).toBe(true)
  })

  it("gateway #3 without gateway #2 does not compile", () => {
    // @ts-expect-error AiProcessingGateway is still required.
    const missing: Layer.Layer<WorkflowOptimizerGateway.WorkflowOptimizerGateway> = WorkflowOptimizerGateway.layerMemory()
    expect(Layer.isLayer(missing)).toBe(true)
  })
})

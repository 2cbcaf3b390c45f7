import { describe, expect, it } from "@effect/vitest"
import { Layer } from "effect"
import { AiProcessingGateway, ResponseCache } from "@tidyllm/ai-processing"
import { CorporateLlmGateway } from "@tidyllm/corporate-llm"

const settings = Layer.succeed(AiProcessingGateway.Settings, {
  enable_caching: true, cache_dir: ".c", cache_ttl_seconds: 1, max_retries: 0, retry_delay_base: 0, timeout_seconds: 1, fallback_backends: []
})

describe("the dependency order is a type", () => {
  it("gateway #2 composes over gateway #1", () => {
    const complete: Layer.Layer<AiProcessingGateway.AiProcessingGateway> = AiProcessingGateway.layer.pipe(
      Layer.provide(Layer.mergeAll(CorporateLlmGateway.layerTest(), settings, ResponseCache.layerMemory))
    )
    expect(Layer.isLayer(complete)).toBe(true)
  })

  it("gateway #2 without gateway #1 beneath it does not compile", () => {
    // @ts-expect-error CorporateLlmGateway is still required: the layer's requirement type is not `never`.
    const missing: Layer.Layer<AiProcessingGateway.AiProcessingGateway> = AiProcessingGateway.layer.pipe(
      Layer.provide(Layer.mergeAll(settings, ResponseCache.layerMemory))
    )
    expect(Layer.isLayer(missing)).toBe(true)
  })
})

import { describe, expect, it } from "@effect/vitest"
import { BedrockProvider, MockProvider } from "../src/index.js"

describe("index", () => {
  it("exports the Bedrock adapter and the mock provider", () => {
    expect(BedrockProvider.make).toBeTypeOf("function")
    expect(MockProvider.make()).toMatchObject({ name: "mock", mock: true })
  })
})

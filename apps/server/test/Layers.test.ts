/** The composition root's start-up checks. */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Exit, Layer } from "effect"
import { LlmProviders } from "@tidyllm/corporate-llm"
import * as Layers from "../src/Layers.js"
import * as Testing from "../src/Testing.js"

const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "tidyllm-layers-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

describe("Layers", () => {
  it.scoped("a provider name no adapter serves stops start-up, naming it", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const config = Testing.config(dir, { corporate_llm: { fallback_provider: "openia" } })
      const error = yield* Effect.flip(Layer.build(Layers.providers(config)))
      expect(error.message).toContain("provider 'openia'")
    }))

  it.scoped("every built-in provider is registered; without credentials each is reported unconfigured, not an error", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const config = Testing.config(dir, {
        corporate_llm: { fallback_provider: "bedrock" },
        providers: { openai_compatible: { ollama: { base_url: "http://127.0.0.1:9/v1" } } }
      })
      const ctx = yield* Layer.build(Layers.providers(config, { awsCredentials: "none" }))
      const registry = Context.get(ctx, LlmProviders.LlmProviders)
      expect(registry.all.map((p) => p.name)).toEqual(["mock", "bedrock", "openai", "anthropic", "ollama"])
      const health = yield* Effect.forEach(registry.all, (p) => Effect.map(p.health, (h) => [p.name, h.configured] as const))
      expect(Object.fromEntries(health)).toEqual({ mock: true, bedrock: false, openai: false, anthropic: false, ollama: true })
    }))

  it.scoped("MLflow is registered with its gateway URL; routing to it without one stops start-up with the key to set", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const missing = Testing.config(dir, { corporate_llm: { fallback_provider: "mlflow" } })
      const error = yield* Effect.flip(Layer.build(Layers.providers(missing)))
      expect(error.message).toContain("MLFLOW_GATEWAY_URL")
      const config = Testing.config(dir, { providers: { mlflow: { gateway_url: "http://127.0.0.1:9" } } })
      const ctx = yield* Layer.build(Layers.providers(config))
      expect(Context.get(ctx, LlmProviders.LlmProviders).all.map((p) => p.name)).toContain("mlflow")
    }))

  it.live("the embedded database serves one process: a second open of the same directory is refused", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const config = Testing.config(dir)
      yield* Layer.build(Layers.sqlClient(config))
      const second = yield* Effect.exit(Layer.build(Layer.fresh(Layers.sqlClient(config))))
      expect(Exit.isFailure(second)).toBe(true)
      if (Exit.isFailure(second)) expect(String(second.cause)).toContain("in use by this process")
    }).pipe(Effect.scoped))
})

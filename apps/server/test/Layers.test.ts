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

  it.scoped("Bedrock is registered when named, and reported unconfigured without credentials", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const config = Testing.config(dir, { corporate_llm: { fallback_provider: "bedrock" } })
      const ctx = yield* Layer.build(Layers.providers(config, { awsCredentials: "none" }))
      const registry = Context.get(ctx, LlmProviders.LlmProviders)
      expect(registry.all.map((p) => p.name)).toEqual(["mock", "bedrock"])
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

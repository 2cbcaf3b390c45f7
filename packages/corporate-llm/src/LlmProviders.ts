/** The providers gateway #1 can route to, by name. */
import { Context, Effect, Layer, Option } from "effect"
import type { LlmProvider } from "./LlmProvider.js"
import * as MockProvider from "./MockProvider.js"

/** The registry service. */
export interface Service {
  readonly get: (name: string) => Option.Option<LlmProvider>
  readonly all: ReadonlyArray<LlmProvider>
}

/** The providers in use. */
export class LlmProviders extends Context.Tag("@tidyllm/corporate-llm/LlmProviders")<LlmProviders, Service>() {}

/** A registry of the given providers (a later one with the same name wins). */
export const make = (providers: ReadonlyArray<LlmProvider>): Service => {
  const byName = new Map(providers.map((p) => [p.name, p] as const))
  return { get: (name) => Option.fromNullable(byName.get(name)), all: [...byName.values()] }
}

/** A layer holding the given providers. */
export const layer = (providers: ReadonlyArray<LlmProvider>) => Layer.succeed(LlmProviders, make(providers))

/** A layer built from effects that construct providers (e.g. adapters that need a scope). */
export const layerEffect = <E, R>(providers: Effect.Effect<ReadonlyArray<LlmProvider>, E, R>) =>
  Layer.effect(LlmProviders, Effect.map(providers, make))

/** Only the offline mock provider, for unit tests and demos. */
export const layerMock = (options?: MockProvider.Options) => layer([MockProvider.make(options)])

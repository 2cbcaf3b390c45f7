import { Effect, Layer, Ref, Stream } from "effect"
import { Errors, ModelCatalog } from "@tidyllm/core"
import type { Config } from "@tidyllm/core"
import { AuditLog, BudgetLedger, CorporateLlmGateway, LlmProviders, MockProvider, RateLimits } from "@tidyllm/corporate-llm"
import type { LlmProvider } from "@tidyllm/corporate-llm"

export const settings = (over: Partial<Config.CorporateLlmSettings> = {}): Config.CorporateLlmSettings => ({
  default_provider: "mock", budget_limit_daily_usd: 100, max_cost_per_request_usd: 5, audit_level: "full",
  audit_durability: "sync", audit_retention_days: 365, require_reason: true, default_max_tokens: 256, default_model: "claude-3-haiku",
  reservation_ttl_seconds: 900, budget_slice_fraction: 0, teams: {}, ...over
})

/** The built-in catalog, with every model also served by the scripted providers `p1` and `p2`. */
export const testModels = ModelCatalog.defaultModels.map((m) => ({ ...m, provider_ids: { ...m.provider_ids, p1: m.id, p2: m.id } }))

/** A provider whose behaviour a test scripts, counting its calls. */
export const scripted = (
  name: string,
  complete: (n: number) => Effect.Effect<LlmProvider.Completion, Errors.ProviderError>,
  stream?: (n: number) => Stream.Stream<LlmProvider.StreamEvent, Errors.ProviderError>
) =>
  Effect.gen(function*() {
    const calls = yield* Ref.make(0)
    const provider: LlmProvider.LlmProvider = {
      name,
      mock: false,
      complete: () => Ref.updateAndGet(calls, (n) => n + 1).pipe(Effect.flatMap(complete)),
      stream: () => Stream.unwrap(Ref.updateAndGet(calls, (n) => n + 1).pipe(Effect.map((n) => stream?.(n) ?? Stream.empty))),
      health: Effect.succeed({ configured: true, detail: "scripted" })
    }
    return { provider, calls }
  })

export const providerError = (kind: Errors.ProviderErrorKind, provider = "p1") =>
  new Errors.ProviderError({ message: `scripted ${kind}`, provider, model: "claude-3-haiku", kind, retryable: Errors.retryableKinds.has(kind) })

export const ok = (text = "hello there", input_tokens = 10, output_tokens = 4): LlmProvider.Completion => ({
  text, usage: { input_tokens, output_tokens }, finish_reason: "stop"
})

/** Gateway #1 over memory ports; returns the layer and handles on its state. */
export const make = (over: Partial<Config.CorporateLlmSettings> = {}, providers: ReadonlyArray<LlmProvider.LlmProvider> = []) =>
  Effect.gen(function*() {
    const rows = yield* Ref.make<ReadonlyArray<AuditLog.AuditEntry>>([])
    const ledger = yield* BudgetLedger.makeMemory
    const layer = CorporateLlmGateway.layer.pipe(Layer.provide(Layer.mergeAll(
      Layer.succeed(CorporateLlmGateway.Settings, settings(over)),
      ModelCatalog.layer(testModels),
      LlmProviders.layer([MockProvider.make(), ...providers]),
      Layer.succeed(AuditLog.AuditLog, AuditLog.makeMemory(rows)),
      Layer.succeed(BudgetLedger.BudgetLedger, ledger),
      RateLimits.layerMemory
    )))
    const gateway = yield* Effect.provide(CorporateLlmGateway.CorporateLlmGateway, layer)
    return { gateway, rows, ledger, layer }
  })

export const ctx = (request_id = "req-1") => ({ request_id, caller: { user_id: "alice", team: "risk" } })

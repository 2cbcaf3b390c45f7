/**
 * Gateway #1: policy at the door. Resolves the model, checks the per-request cap on the worst
 * case, reserves the worst case against the budgets, calls the provider, settles with the real
 * usage, and writes exactly one audit row whatever the outcome.
 */
import { Cause, Clock, Context, Duration, Effect, Exit, FiberId, Layer, Option, Ref, Schedule, Stream } from "effect"
import { Caller, Errors, Ids, LlmRequest, ModelCatalog, Money } from "@tidyllm/core"
import type { Config, Usage } from "@tidyllm/core"
import * as AuditLog from "./AuditLog.js"
import * as BudgetLedger from "./BudgetLedger.js"
import type { Completion, LlmProvider, ProviderCall, StreamEvent as ProviderStreamEvent } from "./LlmProvider.js"
import * as LlmProviders from "./LlmProviders.js"
import { auditPrompt } from "./internal/prompt.js"
import { inputTokensTypical, inputTokensUpperBound } from "./internal/tokens.js"

/** The settings gateway #1 runs with. */
export class Settings extends Context.Tag("@tidyllm/corporate-llm/Settings")<Settings, Config.CorporateLlmSettings>() {}

/** Per-call options beyond the request body. */
export interface CallOptions extends LlmRequest.CallContext {
  /** Provider-call timeout; exceeding it fails the call with a retryable `timeout` ProviderError. */
  readonly timeout_ms?: number | undefined
  /** Attempt number within the client request (gateway #2 retries and failover). */
  readonly attempt?: number | undefined
}

/** A successful answer with its accounting. */
export interface Answer {
  readonly response: LlmRequest.LLMResponse
  readonly completion: Completion
}

/** One event of a streamed answer. The last event of a successful stream is `Done`. */
export type StreamEvent =
  | { readonly _tag: "Delta"; readonly text: string }
  | Extract<ProviderStreamEvent, { readonly _tag: "ToolCallDelta" }>
  | { readonly _tag: "Done"; readonly response: LlmRequest.LLMResponse }

/** What a stream or call is about to run, once policy has admitted it. */
interface Admitted {
  readonly provider: LlmProvider
  readonly call: ProviderCall
  readonly reason: string
  readonly worstCase: Money.Nanos
}

/** Data of a cache hit to be audited by gateway #2. */
export interface CacheHit {
  readonly provider: string
  readonly model: string
  readonly usage: Usage.TokenUsage
}

/** Health of gateway #1. */
export interface Health {
  readonly healthy: boolean
  readonly default_provider: string
  readonly fallback_provider: string | null
  readonly providers: Record<string, { configured: boolean; detail: string; mock: boolean }>
  readonly budget: { limit_usd: string; spent_usd: string; reserved_usd: string } | null
  readonly detail?: string
}

/** The gateway #1 service. */
export interface Service {
  /** Runs one request to completion. */
  readonly process: (request: LlmRequest.LLMRequest, options: CallOptions) => Effect.Effect<Answer, Errors.GatewayError>
  /** Streams one request; budget and audit are settled before `Done` (or on failure/interruption). */
  readonly processStream: (request: LlmRequest.LLMRequest, options: CallOptions) => Stream.Stream<StreamEvent, Errors.GatewayError>
  /** Audits an answer served from gateway #2's cache (cost zero); returns the audit id. */
  readonly recordCacheHit: (request: LlmRequest.LLMRequest, options: CallOptions, hit: CacheHit) => Effect.Effect<string, Errors.StoreUnavailable | Errors.PolicyRejected>
  /**
   * Audits a request refused before it could be read as one (malformed body, too large, bad
   * fields), so that no request goes without its row; fails only when the audit store does.
   */
  readonly recordRejection: (raw: unknown, options: CallOptions, error: { readonly type: string; readonly message: string }) => Effect.Effect<string, Errors.StoreUnavailable>
  /** The provider and model a request would use, resolved as `process` resolves them. */
  readonly resolve: (request: LlmRequest.LLMRequest) => Effect.Effect<{ provider: string; model: ModelCatalog.ModelEntry; model_id: string }, Errors.InvalidRequest | Errors.UnknownModel>
  /** The global daily budget scope. */
  readonly scopes: (caller: Caller.Caller) => ReadonlyArray<BudgetLedger.Scope>
  readonly health: Effect.Effect<Health>
  readonly settings: Config.CorporateLlmSettings
}

/** Gateway #1. */
export class CorporateLlmGateway extends Context.Tag("@tidyllm/corporate-llm/CorporateLlmGateway")<CorporateLlmGateway, Service>() {}

const reasonRequired = () =>
  new Errors.PolicyRejected({
    message: "a reason is required: set 'reason' in the body (or 'metadata.reason', or the 'x-tidyllm-reason' header)",
    rule: "require_reason"
  })

const statusOf = (e: Errors.GatewayError): AuditLog.AuditStatus => {
  switch (e._tag) {
    case "BudgetExceeded": return "rejected_budget"
    case "InvalidRequest": case "UnknownModel": case "PolicyRejected": case "CostCapExceeded": return "rejected_policy"
    default: return "error"
  }
}

type ToolCallDelta = Extract<ProviderStreamEvent, { readonly _tag: "ToolCallDelta" }>
const toolCallsNone: ReadonlyArray<ToolCallDelta> = []

/** The whole tool calls of a stream, from their pieces (by index, in order of first appearance). */
export const assembleToolCalls = (deltas: ReadonlyArray<ToolCallDelta>): ReadonlyArray<LlmRequest.ToolCall> => {
  const calls = new Map<number, { id: string; name: string; arguments: string }>()
  for (const d of deltas) {
    const c = calls.get(d.index) ?? { id: "", name: "", arguments: "" }
    calls.set(d.index, { id: d.id ?? c.id, name: d.name ?? c.name, arguments: c.arguments + d.arguments })
  }
  return [...calls.values()].map((c, i) => ({
    id: c.id === "" ? `call_${i}` : c.id,
    type: "function" as const,
    function: { name: c.name, arguments: c.arguments }
  }))
}

/** Builds gateway #1 from its ports. */
export const make = Effect.gen(function*() {
  const settings = yield* Settings
  const catalog = yield* ModelCatalog.ModelCatalog
  const providers = yield* LlmProviders.LlmProviders
  const audit = yield* AuditLog.AuditLog
  const ledger = yield* BudgetLedger.BudgetLedger

  const globalScope: BudgetLedger.Scope = { key: "global", period: "day", limit: Money.fromUsd(settings.budget_limit_daily_usd) }
  const scopes = (_caller: Caller.Caller): ReadonlyArray<BudgetLedger.Scope> => [globalScope]
  const cap = Money.fromUsd(settings.max_cost_per_request_usd)

  const resolve = (request: LlmRequest.LLMRequest) =>
    Effect.gen(function*() {
      const providerName = request.provider ?? settings.default_provider
      const provider = providers.get(providerName)
      if (Option.isNone(provider)) {
        return yield* new Errors.InvalidRequest({
          message: `provider '${providerName}' is not configured (configured: ${providers.all.map((p) => p.name).join(", ")})`,
          field: "provider"
        })
      }
      const name = request.model ?? settings.default_model
      const model = catalog.resolve(name)
      if (Option.isNone(model)) {
        // No `provider`: the model is unknown everywhere, so gateway #2 does not fail over on it.
        return yield* new Errors.UnknownModel({ message: `model '${name}' is not in the model catalog`, model: name })
      }
      const model_id = model.value.provider_ids[providerName] ?? (provider.value.mock ? model.value.id : undefined)
      if (model_id === undefined) {
        return yield* new Errors.UnknownModel({ message: `model '${model.value.id}' is not available on provider '${providerName}'`, model: model.value.id, provider: providerName })
      }
      if (model.value.kind !== "chat") {
        return yield* new Errors.InvalidRequest({ message: `model '${model.value.id}' is an ${model.value.kind} model, not a chat model`, field: "model" })
      }
      return { provider: provider.value, model: model.value, model_id }
    })

  /** Policy checks that need no I/O: messages, reason, model, limits, per-request cap. */
  const admit = (request: LlmRequest.LLMRequest, options: CallOptions) =>
    Effect.gen(function*() {
      if (request.prompt !== undefined && request.messages !== undefined) {
        return yield* new Errors.InvalidRequest({ message: "give either 'prompt' or 'messages', not both", field: "messages" })
      }
      const messages = LlmRequest.messagesOf(request)
      if (messages.length === 0 || messages.every((m) => m.content.trim() === "")) {
        return yield* new Errors.InvalidRequest({ message: "the request has no prompt: give 'prompt' or a non-empty 'messages'", field: "messages" })
      }
      const reason = (request.reason ?? options.reason ?? "").trim()
      if (reason === "" && settings.require_reason) {
        return yield* reasonRequired()
      }
      const { model, model_id, provider } = yield* resolve(request)
      const max_tokens = request.max_tokens ?? Math.min(settings.default_max_tokens, model.max_output_tokens)
      if (max_tokens > model.max_output_tokens) {
        return yield* new Errors.InvalidRequest({
          message: `max_tokens ${max_tokens} is above the limit of model '${model.id}' (${model.max_output_tokens})`,
          field: "max_tokens"
        })
      }
      const typical = inputTokensTypical(messages)
      if (typical + max_tokens > model.context_window) {
        return yield* new Errors.InvalidRequest({
          message: `the prompt (~${typical} tokens) plus max_tokens ${max_tokens} exceeds the context window of '${model.id}' (${model.context_window})`,
          field: "messages"
        })
      }
      const worstCase = ModelCatalog.cost(model, { input_tokens: inputTokensUpperBound(messages), output_tokens: max_tokens })
      if (worstCase > cap) {
        return yield* new Errors.CostCapExceeded({
          message: `the worst-case cost of this request ($${Money.toUsdString(worstCase)}) is above the per-request cap ($${Money.toUsdString(cap)}); lower max_tokens or shorten the prompt`,
          estimate_usd: Money.toUsdString(worstCase),
          cap_usd: Money.toUsdString(cap)
        })
      }
      const call: ProviderCall = {
        model, model_id, messages, max_tokens,
        temperature: request.temperature, top_p: request.top_p, stop: request.stop,
        tools: request.tools, tool_choice: request.tool_choice, response_format: request.response_format, seed: request.seed
      }
      return { provider, call, reason: reason === "" ? "(none)" : reason, worstCase } satisfies Admitted
    })

  interface Outcome {
    readonly status: AuditLog.AuditStatus
    readonly provider: string
    readonly model: string
    readonly usage: Usage.TokenUsage
    readonly cost: Money.Nanos
    readonly error?: { readonly type: string; readonly message: string } | undefined
  }

  const writeAudit = (id: string, request: LlmRequest.LLMRequest, options: CallOptions, reason: string, started: number, o: Outcome) =>
    Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      yield* audit.write({
        id,
        request_id: options.request_id,
        created_at: new Date(now),
        caller: Caller.describe(options.caller),
        user_id: options.caller.user_id ?? request.user_id ?? null,
        team: options.caller.team ?? null,
        key_id: options.caller.key_id ?? null,
        reason,
        provider: o.provider,
        model: o.model,
        status: o.status,
        input_tokens: o.usage.input_tokens,
        output_tokens: o.usage.output_tokens,
        cost: o.cost,
        latency_ms: Math.max(0, Math.round(now - started)),
        error_type: o.error?.type ?? null,
        error_message: o.error?.message ?? null,
        prompt: auditPrompt(LlmRequest.messagesOf(request), settings.audit_level),
        audit_level: settings.audit_level,
        attempt: options.attempt ?? 1
      })
    })

  const rejectionOutcome = (request: LlmRequest.LLMRequest, e: Errors.GatewayError): Outcome => ({
    status: statusOf(e),
    provider: request.provider ?? settings.default_provider,
    model: request.model ?? settings.default_model,
    usage: { input_tokens: 0, output_tokens: 0 },
    cost: Money.zero,
    error: { type: e.type, message: e.message }
  })

  /** Runs policy and the reservation; rejections are audited here. */
  const admitAndReserve = (request: LlmRequest.LLMRequest, options: CallOptions, auditId: string, started: number) =>
    Effect.gen(function*() {
      const admitted = yield* admit(request, options).pipe(
        Effect.tapError((e) => writeAudit(auditId, request, options, (request.reason ?? options.reason ?? "").trim() || "(none)", started, rejectionOutcome(request, e)))
      )
      const reservation = yield* ledger.reserve({
        scopes: scopes(options.caller),
        amount: admitted.worstCase,
        request_id: options.request_id,
        ttl_ms: settings.reservation_ttl_seconds * 1000
      }).pipe(
        Effect.tapError((e) => writeAudit(auditId, request, options, admitted.reason, started, {
          ...rejectionOutcome(request, e), provider: admitted.provider.name, model: admitted.call.model.id
        }))
      )
      return { admitted, reservation }
    })

  const metadata = (options: CallOptions, auditId: string, a: Admitted, cost: Money.Nanos, latency: number): LlmRequest.ResponseMetadata => ({
    request_id: options.request_id,
    audit_id: auditId,
    provider: a.provider.name,
    model: a.call.model.id,
    model_id: a.call.model_id,
    cost_usd: Money.toUsdString(cost),
    latency_ms: latency,
    mock: a.provider.mock
  })

  const failureOutcome = (a: Admitted, cause: Cause.Cause<Errors.GatewayError>, usage: Usage.TokenUsage, stream: boolean): Outcome => {
    const cost = ModelCatalog.cost(a.call.model, usage)
    const base = { provider: a.provider.name, model: a.call.model.id, usage, cost }
    if (Cause.isInterruptedOnly(cause)) return { ...base, status: "cancelled", error: { type: "cancelled", message: "the request was cancelled before it completed" } }
    const failure = Cause.failureOption(cause)
    if (Option.isSome(failure)) {
      const e = failure.value
      const status: AuditLog.AuditStatus = stream && (usage.output_tokens > 0) ? "stream_error" : statusOf(e)
      return { ...base, status, error: { type: e._tag === "ProviderError" ? `${e.type}:${e.kind}` : e.type, message: e.message } }
    }
    return { ...base, status: "error", error: { type: "internal_error", message: Cause.pretty(cause).split("\n")[0] ?? "defect" } }
  }

  const withTimeout = <A>(self: Effect.Effect<A, Errors.ProviderError>, a: Admitted, options: CallOptions) =>
    options.timeout_ms === undefined
      ? self
      : Effect.timeoutFail(self, {
          duration: options.timeout_ms,
          onTimeout: () => new Errors.ProviderError({
            message: `no answer from '${a.provider.name}' within ${options.timeout_ms} ms`,
            provider: a.provider.name, model: a.call.model.id, kind: "timeout", retryable: true
          })
        })

  const process = Effect.fn("CorporateLlmGateway.process")(function*(request: LlmRequest.LLMRequest, options: CallOptions) {
    const started = yield* Clock.currentTimeMillis
    const auditId = Ids.randomUuid()
    return yield* Effect.uninterruptibleMask((restore) =>
      Effect.gen(function*() {
        // Admission is not interruptible: a reservation that commits is always seen, and settled below.
        const { admitted, reservation } = yield* admitAndReserve(request, options, auditId, started)
        const exit = yield* Effect.exit(restore(withTimeout(admitted.provider.complete(admitted.call), admitted, options)))
        const now = yield* Clock.currentTimeMillis
        if (Exit.isSuccess(exit)) {
          const completion = exit.value
          const cost = ModelCatalog.cost(admitted.call.model, completion.usage)
          yield* ledger.settle(reservation, cost)
          yield* writeAudit(auditId, request, options, admitted.reason, started, {
            status: "success", provider: admitted.provider.name, model: admitted.call.model.id, usage: completion.usage, cost
          })
          const response: LlmRequest.LLMResponse = {
            status: "success",
            data: {
              response: completion.text, model: admitted.call.model.id, provider: admitted.provider.name, finish_reason: completion.finish_reason, usage: completion.usage,
              ...(completion.tool_calls === undefined || completion.tool_calls.length === 0 ? {} : { tool_calls: completion.tool_calls })
            },
            metadata: metadata(options, auditId, admitted, cost, Math.round(now - started))
          }
          return { response, completion } satisfies Answer
        }
        // Failure or interruption: nothing is known to be consumed, release the whole reservation.
        const outcome = failureOutcome(admitted, exit.cause, { input_tokens: 0, output_tokens: 0 }, false)
        yield* ledger.settle(reservation, Money.zero)
        yield* writeAudit(auditId, request, options, admitted.reason, started, outcome)
        return yield* Effect.failCause(exit.cause)
      })
    )
  })

  const processStream = (request: LlmRequest.LLMRequest, options: CallOptions): Stream.Stream<StreamEvent, Errors.GatewayError> =>
    Stream.unwrapScoped(Effect.gen(function*() {
      const started = yield* Clock.currentTimeMillis
      const auditId = Ids.randomUuid()
      const { admitted, reservation } = yield* Effect.uninterruptible(admitAndReserve(request, options, auditId, started))
      const delivered = yield* Ref.make({ chars: 0, usage: Option.none<Usage.TokenUsage>(), finish: "stop", tools: toolCallsNone })
      const finished = yield* Ref.make(false)
      // Settles and audits every ending that is not a clean finish (error, cancel, client gone).
      yield* Effect.addFinalizer((exit) =>
        Effect.gen(function*() {
          if (yield* Ref.get(finished)) return
          const d = yield* Ref.get(delivered)
          const usage = Option.getOrElse(d.usage, () => ({
            input_tokens: d.chars > 0 ? inputTokensUpperBound(admitted.call.messages) : 0,
            output_tokens: Math.ceil(d.chars / 4)
          }))
          // A stream whose consumer stopped pulling ends its scope successfully without finishing: the client is gone.
          const cause: Cause.Cause<unknown> = Exit.isFailure(exit) ? exit.cause : Cause.interrupt(FiberId.none)
          const outcome = failureOutcome(admitted, cause as Cause.Cause<Errors.GatewayError>, usage, true)
          yield* ledger.settle(reservation, outcome.cost).pipe(Effect.ignore)
          yield* writeAudit(auditId, request, options, admitted.reason, started, outcome).pipe(Effect.ignore)
        })
      )
      const finish = Effect.gen(function*() {
        const d = yield* Ref.get(delivered)
        const usage = Option.getOrElse(d.usage, () => ({ input_tokens: inputTokensUpperBound(admitted.call.messages), output_tokens: Math.ceil(d.chars / 4) }))
        const cost = ModelCatalog.cost(admitted.call.model, usage)
        const now = yield* Clock.currentTimeMillis
        yield* ledger.settle(reservation, cost)
        yield* writeAudit(auditId, request, options, admitted.reason, started, {
          status: "success", provider: admitted.provider.name, model: admitted.call.model.id, usage, cost
        })
        yield* Ref.set(finished, true)
        const response: LlmRequest.LLMResponse = {
          status: "success",
          data: {
            response: "", model: admitted.call.model.id, provider: admitted.provider.name, finish_reason: d.finish, usage,
            ...(d.tools.length === 0 ? {} : { tool_calls: assembleToolCalls(d.tools) })
          },
          metadata: metadata(options, auditId, admitted, cost, Math.round(now - started))
        }
        return { _tag: "Done", response } as const
      }).pipe(Effect.uninterruptible)
      const upstream = admitted.provider.stream(admitted.call).pipe(
        Stream.mapEffect((event): Effect.Effect<Option.Option<StreamEvent>> => {
          switch (event._tag) {
            case "TextDelta":
              return Ref.update(delivered, (d) => ({ ...d, chars: d.chars + event.text.length })).pipe(Effect.as(Option.some({ _tag: "Delta", text: event.text } as const)))
            case "Usage":
              return Ref.update(delivered, (d) => ({ ...d, usage: Option.some(event.usage) })).pipe(Effect.as(Option.none()))
            case "Finish":
              return Ref.update(delivered, (d) => ({ ...d, finish: event.finish_reason })).pipe(Effect.as(Option.none()))
            case "ToolCallDelta":
              return Ref.update(delivered, (d) => ({
                ...d,
                chars: d.chars + event.arguments.length + (event.name?.length ?? 0),
                tools: [...d.tools, event]
              })).pipe(Effect.as(Option.some<StreamEvent>(event)))
          }
        }),
        Stream.filterMap((x) => x)
      )
      const timed = options.timeout_ms === undefined ? upstream : upstream.pipe(
        Stream.timeoutFail(() => new Errors.ProviderError({
          message: `no answer from '${admitted.provider.name}' within ${options.timeout_ms} ms`,
          provider: admitted.provider.name, model: admitted.call.model.id, kind: "timeout", retryable: true
        }), options.timeout_ms)
      )
      return Stream.concat(timed, Stream.fromEffect(finish))
    }))

  const recordCacheHit = (request: LlmRequest.LLMRequest, options: CallOptions, hit: CacheHit) =>
    Effect.gen(function*() {
      const started = yield* Clock.currentTimeMillis
      const auditId = Ids.randomUuid()
      const reason = (request.reason ?? options.reason ?? "").trim()
      if (reason === "" && settings.require_reason) {
        const e = reasonRequired()
        yield* writeAudit(auditId, request, options, "(none)", started, rejectionOutcome(request, e))
        return yield* e
      }
      yield* writeAudit(auditId, request, options, reason || "(none)", started, {
        status: "cache_hit", provider: hit.provider, model: hit.model, usage: hit.usage, cost: Money.zero
      })
      return auditId
    })

  const recordRejection = (raw: unknown, options: CallOptions, error: { readonly type: string; readonly message: string }) =>
    Effect.gen(function*() {
      const started = yield* Clock.currentTimeMillis
      const auditId = Ids.randomUuid()
      const field = (name: string): string | undefined => {
        const v = typeof raw === "object" && raw !== null ? (raw as Record<string, unknown>)[name] : undefined
        return typeof v === "string" && v.length <= 200 ? v : undefined
      }
      // The body was not a request: nothing of it is stored but the names it gave, if readable.
      const request: LlmRequest.LLMRequest = { messages: [] }
      const reason = (field("reason") ?? options.reason ?? "").trim()
      yield* writeAudit(auditId, request, options, reason === "" ? "(none)" : reason, started, {
        status: "rejected_policy",
        provider: field("provider") ?? settings.default_provider,
        model: field("model") ?? "(unknown)",
        usage: { input_tokens: 0, output_tokens: 0 },
        cost: Money.zero,
        error: { type: error.type, message: error.message.slice(0, 1000) }
      })
      return auditId
    })

  const health = Effect.gen(function*() {
    const entries = yield* Effect.forEach(providers.all, (p) => Effect.map(p.health, (h) => [p.name, { ...h, mock: p.mock }] as const))
    const status = yield* ledger.status([globalScope]).pipe(Effect.option)
    const budget = Option.flatMap(status, (s) => Option.fromNullable(s[0]))
    const defaultOk = providers.get(settings.default_provider).pipe(Option.isSome)
    return {
      healthy: defaultOk && Option.isSome(status),
      default_provider: settings.default_provider,
      fallback_provider: settings.fallback_provider ?? null,
      providers: Object.fromEntries(entries),
      budget: Option.match(budget, {
        onNone: () => null,
        onSome: (b) => ({ limit_usd: Money.toUsdString(b.limit), spent_usd: Money.toUsdString(b.spent), reserved_usd: Money.toUsdString(b.reserved) })
      }),
      ...(Option.isNone(status) ? { detail: "budget ledger unreachable" } : defaultOk ? {} : { detail: `default provider '${settings.default_provider}' is not configured` })
    } satisfies Health
  })

  return CorporateLlmGateway.of({
    process,
    processStream,
    recordCacheHit,
    recordRejection,
    resolve: (request) => Effect.map(resolve(request), (r) => ({ provider: r.provider.name, model: r.model, model_id: r.model_id })),
    scopes,
    health,
    settings
  })
})

/** How often expired reservations (of a crashed replica) are released. */
const reaperInterval = Duration.minutes(1)

/**
 * Gateway #1 as a layer: requires its settings, the catalog, the providers, the audit log and the
 * ledger. It also runs the reaper that releases reservations left open past their deadline.
 */
export const layer = Layer.scoped(CorporateLlmGateway, Effect.gen(function*() {
  const ledger = yield* BudgetLedger.BudgetLedger
  yield* ledger.reapExpired.pipe(
    Effect.tap((n) => (n > 0 ? Effect.logWarning(`released ${n} expired budget reservation(s)`) : Effect.void)),
    Effect.catchAll((e) => Effect.logWarning(`budget reaper: ${e.message}`)),
    Effect.repeat(Schedule.spaced(reaperInterval)),
    Effect.delay(reaperInterval),
    Effect.forkScoped
  )
  return yield* make
}))

/** Gateway #1 over in-memory ports and the mock provider, for consumers' unit tests. */
export const layerTest = (settings: Partial<Config.CorporateLlmSettings> = {}) =>
  layer.pipe(
    Layer.provide(Layer.mergeAll(
      Layer.succeed(Settings, {
        default_provider: "mock", budget_limit_daily_usd: 100, max_cost_per_request_usd: 5, audit_level: "redacted",
        audit_durability: "sync", require_reason: true, default_max_tokens: 1024, default_model: "claude-3-haiku",
        reservation_ttl_seconds: 900, budget_slice_fraction: 0, ...settings
      }),
      ModelCatalog.layer(),
      LlmProviders.layerMock(),
      AuditLog.layerMemory,
      BudgetLedger.layerMemory
    ))
  )

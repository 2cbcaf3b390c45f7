/**
 * Gateway #1: policy at the door. Resolves the model, checks the per-request cap on the worst
 * case, reserves the worst case against the budgets, calls the provider, settles with the real
 * usage, and writes exactly one audit row whatever the outcome.
 */
import { Cause, Chunk, Clock, Context, Duration, Effect, Either, Exit, FiberId, FiberRef, Layer, Option, Schedule, Stream } from "effect"
import type { Scope } from "effect"
import { Caller, Deadline, Errors, Ids, LlmRequest, ModelCatalog, Money, Pulls, Redaction, Spans, ThrottledLog } from "@tidyllm/core"
import type { Config, Usage } from "@tidyllm/core"
import * as AuditLog from "./AuditLog.js"
import * as BudgetLedger from "./BudgetLedger.js"
import * as RateLimits from "./RateLimits.js"
import type { Completion, LlmProvider, ProviderCall, StreamEvent as ProviderStreamEvent } from "./LlmProvider.js"
import * as LlmProviderPort from "./LlmProvider.js"
import * as LlmProviders from "./LlmProviders.js"
import * as Metrics from "./Metrics.js"
import * as GenAi from "./internal/genAi.js"
import { auditPrompt } from "./internal/prompt.js"
import { embeddingTokensUpperBound, inputTokensTypical, inputTokensUpperBound } from "./internal/tokens.js"

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
  /**
   * `processStream` opened for pulling (`Pulls`): the request is admitted, its budget reserved and
   * the provider's response started when this succeeds; the scope's close settles and audits an
   * ending without `Done`.
   */
  readonly openStream: (request: LlmRequest.LLMRequest, options: CallOptions) => Pulls.Open<StreamEvent, Errors.GatewayError>
  /** Embeds texts: the same admission, reservation, settlement and audit row as a chat call. */
  readonly embed: (request: LlmRequest.EmbeddingRequest, options: CallOptions) => Effect.Effect<LlmRequest.EmbeddingResponse, Errors.GatewayError>
  /** Audits an answer served from gateway #2's cache (cost zero); returns the audit id. */
  readonly recordCacheHit: (request: LlmRequest.LLMRequest, options: CallOptions, hit: CacheHit) => Effect.Effect<string, Errors.StoreUnavailable | Errors.PolicyRejected | Errors.Forbidden | Errors.RateLimited>
  /**
   * Audits a request refused before it could be read as one (malformed body, too large, bad
   * fields), so that no request goes without its row; fails only when the audit store does.
   */
  readonly recordRejection: (
    raw: unknown,
    options: CallOptions,
    error: { readonly type: string; readonly message: string },
    /** `rejected_policy` (default) for a refused request; `error` when no backend could take it (open circuits). */
    status?: "rejected_policy" | "error"
  ) => Effect.Effect<string, Errors.StoreUnavailable>
  /** The provider and model a request would use, resolved as `process` resolves them. */
  readonly resolve: (request: LlmRequest.LLMRequest) => Effect.Effect<{ provider: string; model: ModelCatalog.ModelEntry; model_id: string }, Errors.InvalidRequest | Errors.UnknownModel>
  /** The budget scopes a caller's request reserves against: global, its team's and its key's, daily and monthly where set. */
  readonly scopes: (caller: Caller.Caller) => ReadonlyArray<BudgetLedger.Scope>
  /**
   * The budgets an overseer (a team-less admin or compliance key, the CLI, the metrics) looks at:
   * the global ones, every configured team's (or `team`'s only), and `key`'s own, each once.
   */
  readonly overseenScopes: (options?: { readonly team?: string | undefined; readonly key?: Caller.Caller | undefined }) => ReadonlyArray<BudgetLedger.Scope>
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
    case "InvalidRequest": case "UnknownModel": case "PolicyRejected": case "CostCapExceeded": case "Forbidden": case "RateLimited": return "rejected_policy"
    default: return "error"
  }
}

const clip = (s: string): string => (s.length <= 200 ? s : `${s.slice(0, 197)}...`)

type ToolCallDelta = Extract<ProviderStreamEvent, { readonly _tag: "ToolCallDelta" }>

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

/** The first misuse of tool messages, if any: results without a call id, calls from a non-assistant. */
const invalidToolUse = (request: LlmRequest.LLMRequest, messages: ReadonlyArray<LlmRequest.ChatMessage>): Errors.InvalidRequest | undefined => {
  for (const [i, m] of messages.entries()) {
    if (m.role === "tool" && m.tool_call_id === undefined) {
      return new Errors.InvalidRequest({ message: `messages[${i}]: a 'tool' message needs the 'tool_call_id' of the call it answers`, field: `messages[${i}].tool_call_id` })
    }
    if (m.tool_calls !== undefined && m.role !== "assistant") {
      return new Errors.InvalidRequest({ message: `messages[${i}]: only 'assistant' messages carry 'tool_calls'`, field: `messages[${i}].tool_calls` })
    }
  }
  const choice = request.tool_choice
  const names = new Set((request.tools ?? []).map((t) => t.function.name))
  if (names.size < (request.tools ?? []).length) {
    return new Errors.InvalidRequest({ message: "tool names must be unique", field: "tools" })
  }
  if ((choice === "required" || (typeof choice === "object")) && names.size === 0) {
    return new Errors.InvalidRequest({ message: "'tool_choice' asks for a tool call but 'tools' is empty", field: "tool_choice" })
  }
  if (typeof choice === "object" && !names.has(choice.function.name)) {
    return new Errors.InvalidRequest({ message: `'tool_choice' names '${choice.function.name}', which is not in 'tools'`, field: "tool_choice.function.name" })
  }
  return undefined
}

/** Builds gateway #1 from its ports. */
export const make = Effect.gen(function*() {
  const settings = yield* Settings
  const catalog = yield* ModelCatalog.ModelCatalog
  const providers = yield* LlmProviders.LlmProviders
  const audit = yield* AuditLog.AuditLog
  const ledger = yield* BudgetLedger.BudgetLedger
  const rateLimits = yield* RateLimits.RateLimits
  // A limiter store that is down fails every request's check: one warning per 10 s.
  const warn = ThrottledLog.make(10_000)

  // The patterns were validated with the configuration; a bad one here is a programming error.
  const redactor = Either.getOrThrowWith(
    Redaction.make({ extraPatterns: settings.redaction_patterns }),
    (e) => new Error(e.message)
  )
  const globalScope: BudgetLedger.Scope = { key: "global", period: "day", limit: Money.fromUsd(settings.budget_limit_daily_usd) }
  const scopesOf = (key: string, daily: number | undefined, monthly: number | undefined): ReadonlyArray<BudgetLedger.Scope> => [
    ...(daily === undefined ? [] : [{ key, period: "day" as const, limit: Money.fromUsd(daily) }]),
    ...(monthly === undefined ? [] : [{ key, period: "month" as const, limit: Money.fromUsd(monthly) }])
  ]
  const globalScopes = scopesOf("global", settings.budget_limit_daily_usd, settings.budget_limit_monthly_usd)
  const teams = settings.teams ?? {}
  const teamScopes = new Map(Object.entries(teams).map(([team, t]) => [team, scopesOf(`team:${team}`, t.budget_daily_usd, t.budget_monthly_usd)]))
  const allowLists = new Map(Object.entries(teams).flatMap(([team, t]) => (t.models === undefined ? [] : [[team, new Set(t.models)] as const])))
  /** Every scope a caller's request reserves against, in a fixed order (global, team, key). */
  const scopes = (caller: Caller.Caller): ReadonlyArray<BudgetLedger.Scope> => {
    const team = caller.team === undefined ? undefined : teamScopes.get(caller.team)
    const key = caller.key_id === undefined || caller.limits === undefined
      ? undefined
      : scopesOf(`key:${caller.key_id}`, caller.limits.budget_daily_usd, caller.limits.budget_monthly_usd)
    return team === undefined && (key === undefined || key.length === 0) ? globalScopes : [...globalScopes, ...(team ?? []), ...(key ?? [])]
  }
  const overseenScopes = (options: { readonly team?: string | undefined; readonly key?: Caller.Caller | undefined } = {}): ReadonlyArray<BudgetLedger.Scope> => {
    const teamsShown = options.team === undefined ? [...teamScopes.values()].flat() : teamScopes.get(options.team) ?? []
    const key = options.key?.key_id === undefined ? [] : scopes(options.key).filter((s) => s.key === `key:${options.key?.key_id}`)
    return [...globalScopes, ...teamsShown, ...key]
  }
  /** A 403 when the caller's team may not call `model` (its allow-list names neither the id nor the name asked for). */
  const refusedModel = (caller: Caller.Caller, model: ModelCatalog.ModelEntry, asked: string | undefined): Errors.Forbidden | undefined => {
    const list = caller.team === undefined ? undefined : allowLists.get(caller.team)
    if (list === undefined || list.has(model.id) || (asked !== undefined && list.has(asked))) return undefined
    return new Errors.Forbidden({
      message: `team '${caller.team}' may not call model '${model.id}' (allowed: ${[...list].join(", ") || "none"})`,
      rule: "model_allow_list"
    })
  }
  const allowed = (caller: Caller.Caller, model: ModelCatalog.ModelEntry, asked: string | undefined): Effect.Effect<void, Errors.Forbidden> => {
    const refused = refusedModel(caller, model, asked)
    return refused === undefined ? Effect.void : Effect.fail(refused)
  }
  /**
   * The caller's key's rate limits: one request, and the input-token estimate, taken at admission
   * (refused with 429 when the minute is full); output tokens are added after the call. A limiter
   * store that is down lets the request through with a warning: rates protect, the budget is the
   * hard limit.
   */
  const rpmLimit = (caller: Caller.Caller): RateLimits.Limit | undefined =>
    caller.key_id === undefined || caller.limits?.requests_per_minute === undefined
      ? undefined
      : { key: `rpm:${caller.key_id}`, limit_type: "requests_per_minute", limit: caller.limits.requests_per_minute }
  const tpmLimit = (caller: Caller.Caller): RateLimits.Limit | undefined =>
    caller.key_id === undefined || caller.limits?.tokens_per_minute === undefined
      ? undefined
      : { key: `tpm:${caller.key_id}`, limit_type: "tokens_per_minute", limit: caller.limits.tokens_per_minute }
  const take = (limit: RateLimits.Limit, units: number) =>
    Effect.catchTag(rateLimits.take(limit, units), "StoreUnavailable", (e) => warn("rate-limiter", `rate limiter unavailable, request let through: ${e.message}`))
  /** The caller's rate-limit takes, or `undefined` when its key has no rate limits. */
  const rateTakes = (caller: Caller.Caller, inputTokens: number): Effect.Effect<void, Errors.RateLimited> | undefined => {
    const rpm = rpmLimit(caller)
    const tpm = tpmLimit(caller)
    if (rpm === undefined && tpm === undefined) return undefined
    return Effect.zipRight(
      rpm === undefined ? Effect.void : take(rpm, 1),
      tpm === undefined ? Effect.void : take(tpm, Math.max(1, inputTokens))
    )
  }
  const takeRate = (caller: Caller.Caller, inputTokens: number): Effect.Effect<void, Errors.RateLimited> =>
    rateTakes(caller, inputTokens) ?? Effect.void
  /** Adds a call's output tokens to the caller's token rate, or `undefined` when there is nothing to add. */
  const addOutputTokens = (caller: Caller.Caller, outputTokens: number): Effect.Effect<void> | undefined => {
    const tpm = tpmLimit(caller)
    return tpm === undefined || outputTokens <= 0 ? undefined : Effect.catchAll(rateLimits.add(tpm, outputTokens), (e) => warn("rate-limiter", `rate limiter unavailable, output tokens not counted: ${e.message}`))
  }
  const cap = Money.fromUsd(settings.max_cost_per_request_usd)
  const metrics = Metrics.makeRecorder(
    (name) => Option.isSome(providers.get(name)),
    (name) => Option.getOrUndefined(Option.map(catalog.resolve(name), (m) => m.id))
  )
  // Provider calls are timed by reading the clock directly (the TestClock in tests): an effect per
  // reading would cost more than the metrics themselves.
  const clock = yield* Effect.clock
  /** Ends a provider call's timing (call it right after the call): the request's upstream time, and unless cancelled the latency histogram. */
  const upstreamEnded = (a: { readonly provider: LlmProvider; readonly call: { readonly model: ModelCatalog.ModelEntry } }, start: bigint, exit: Exit.Exit<unknown, unknown>) =>
    Metrics.upstreamEnded(
      metrics.instruments(a.provider.name, a.call.model.id),
      Metrics.secondsBetween(start, clock.unsafeCurrentTimeNanos()),
      !(Exit.isFailure(exit) && Cause.isInterruptedOnly(exit.cause))
    )

  interface Resolved {
    readonly provider: LlmProvider
    readonly model: ModelCatalog.ModelEntry
    readonly model_id: string
  }
  /** The provider and catalog model of a request, or why there is none (plain: the hot path resolves without an effect). */
  const resolveNow = (
    request: { readonly provider?: string | undefined; readonly model?: string | undefined },
    kind: "chat" | "embedding"
  ): Resolved | Errors.InvalidRequest | Errors.UnknownModel => {
    const providerName = request.provider ?? settings.default_provider
    const provider = providers.get(providerName)
    if (Option.isNone(provider)) {
      return new Errors.InvalidRequest({
        message: `provider '${providerName}' is not configured (configured: ${providers.all.map((p) => p.name).join(", ")})`,
        field: "provider"
      })
    }
    const name = request.model ?? settings.default_model
    const model = catalog.resolve(name)
    if (Option.isNone(model)) {
      // No `provider`: the model is unknown everywhere, so gateway #2 does not fail over on it.
      return new Errors.UnknownModel({ message: `model '${name}' is not in the model catalog`, model: name })
    }
    const model_id = model.value.provider_ids[providerName] ?? (provider.value.mock ? model.value.id : undefined)
    if (model_id === undefined) {
      return new Errors.UnknownModel({ message: `model '${model.value.id}' is not available on provider '${providerName}'`, model: model.value.id, provider: providerName })
    }
    if (model.value.kind !== kind) {
      return new Errors.InvalidRequest({ message: `model '${model.value.id}' is an ${model.value.kind} model, not a${kind === "embedding" ? "n" : ""} ${kind} model`, field: "model" })
    }
    return { provider: provider.value, model: model.value, model_id }
  }
  const resolveFor = (request: { readonly provider?: string | undefined; readonly model?: string | undefined }, kind: "chat" | "embedding") =>
    Effect.suspend(() => {
      const resolved = resolveNow(request, kind)
      return "_tag" in resolved ? Effect.fail(resolved) : Effect.succeed(resolved)
    })
  const resolve = (request: LlmRequest.LLMRequest) => resolveFor(request, "chat")

  /** Policy checks that need no I/O: messages, reason, model, limits, per-request cap. */
  const admitNow = (request: LlmRequest.LLMRequest, options: CallOptions): { readonly admitted: Admitted; readonly typical: number } | Errors.GatewayError => {
    if (request.prompt !== undefined && request.messages !== undefined) {
      return new Errors.InvalidRequest({ message: "give either 'prompt' or 'messages', not both", field: "messages" })
    }
    const messages = LlmRequest.messagesOf(request)
    if (messages.length === 0 || messages.every((m) => m.content.trim() === "")) {
      return new Errors.InvalidRequest({ message: "the request has no prompt: give 'prompt' or a non-empty 'messages'", field: "messages" })
    }
    const reason = (request.reason ?? options.reason ?? "").trim()
    if (reason === "" && settings.require_reason) return reasonRequired()
    const resolved = resolveNow(request, "chat")
    if ("_tag" in resolved) return resolved
    const { model, model_id, provider } = resolved
    const refused = refusedModel(options.caller, model, request.model)
    if (refused !== undefined) return refused
    const max_tokens = request.max_tokens ?? Math.min(settings.default_max_tokens, model.max_output_tokens)
    if (max_tokens > model.max_output_tokens) {
      return new Errors.InvalidRequest({
        message: `max_tokens ${max_tokens} is above the limit of model '${model.id}' (${model.max_output_tokens})`,
        field: "max_tokens"
      })
    }
    const bad = invalidToolUse(request, messages)
    if (bad !== undefined) return bad
    const extras = { tools: request.tools, response_format: request.response_format }
    const typical = inputTokensTypical(messages, extras)
    if (typical + max_tokens > model.context_window) {
      return new Errors.InvalidRequest({
        message: `the prompt (~${typical} tokens) plus max_tokens ${max_tokens} exceeds the context window of '${model.id}' (${model.context_window})`,
        field: "messages"
      })
    }
    const worstCase = ModelCatalog.cost(model, { input_tokens: inputTokensUpperBound(messages, extras), output_tokens: max_tokens })
    if (worstCase > cap) {
      return new Errors.CostCapExceeded({
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
    return { admitted: { provider, call, reason: reason === "" ? "(none)" : reason, worstCase }, typical }
  }
  /** {@link admitNow}, then the caller's rate limits. */
  const admit = (request: LlmRequest.LLMRequest, options: CallOptions): Effect.Effect<Admitted, Errors.GatewayError> =>
    Effect.suspend(() => {
      const checked = admitNow(request, options)
      if ("_tag" in checked) return Effect.fail(checked)
      const takes = rateTakes(options.caller, checked.typical)
      return takes === undefined ? Effect.succeed(checked.admitted) : Effect.as(takes, checked.admitted)
    })

  interface Outcome {
    readonly status: AuditLog.AuditStatus
    readonly provider: string
    readonly model: string
    readonly usage: Usage.TokenUsage
    readonly cost: Money.Nanos
    readonly error?: { readonly type: string; readonly message: string } | undefined
    /** Why the model stopped, when it answered (for the span only). */
    readonly finish_reason?: string | undefined
  }

  /**
   * The outcome of a request as attributes of its span: the GenAI conventions' names and the
   * gateway's own, all of them already in the audit row; never prompt text.
   */
  const outcomeAttributes = (id: string, request: LlmRequest.LLMRequest, options: CallOptions, reason: string, o: Outcome): Record<string, unknown> => {
    const system = GenAi.systemOf(o.provider)
    const attributes: Record<string, unknown> = {
      "gen_ai.system": system,
      "gen_ai.provider.name": system,
      "gen_ai.request.model": clip(request.model ?? o.model),
      "gen_ai.usage.input_tokens": o.usage.input_tokens,
      "gen_ai.usage.output_tokens": o.usage.output_tokens,
      "tidyllm.cost_usd": Money.toUsd(o.cost),
      "tidyllm.status": o.status,
      "tidyllm.audit_id": id,
      "tidyllm.request_id": options.request_id,
      "tidyllm.reason": clip(reason)
    }
    if (o.status === "success" || o.status === "cache_hit" || o.status === "stream_error") attributes["gen_ai.response.model"] = o.model
    // A plain string: the span API of Effect has no string arrays (the conventions' type is string[]).
    if (o.finish_reason !== undefined) attributes["gen_ai.response.finish_reasons"] = o.finish_reason
    if (request.temperature !== undefined) attributes["gen_ai.request.temperature"] = request.temperature
    if (options.caller.team !== undefined) attributes["tidyllm.team"] = options.caller.team
    if (options.caller.key_id !== undefined) attributes["tidyllm.key_id"] = options.caller.key_id
    if (o.error !== undefined) attributes["error.type"] = o.error.type
    return attributes
  }

  const writeAudit = (id: string, request: LlmRequest.LLMRequest, options: CallOptions, reason: string, started: number, o: Outcome) =>
    Effect.clockWith((clock) => {
      const now = clock.unsafeCurrentTimeMillis()
      Metrics.unsafeRecordOutcome(metrics.instruments(o.provider, o.model), o.status, o.usage.input_tokens, o.usage.output_tokens, o.cost)
      const write = audit.write({
        id,
        request_id: options.request_id,
        created_at: new Date(now),
        caller: Caller.describe(options.caller),
        user_id: options.caller.user_id ?? request.user_id ?? null,
        team: options.caller.team ?? null,
        key_id: options.caller.key_id ?? null,
        reason,
        // Names come from clients on refusals: bounded, so no index entry or row can overflow.
        provider: clip(o.provider),
        model: clip(o.model),
        status: o.status,
        input_tokens: o.usage.input_tokens,
        output_tokens: o.usage.output_tokens,
        cost: o.cost,
        latency_ms: Math.max(0, Math.round(now - started)),
        error_type: o.error?.type ?? null,
        error_message: o.error?.message ?? null,
        prompt: auditPrompt(LlmRequest.messagesOf(request), settings.audit_level, redactor.redact),
        audit_level: settings.audit_level,
        attempt: options.attempt ?? 1
      })
      return Spans.annotateThen(() => outcomeAttributes(id, request, options, reason, o), () => write)
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
    admit(request, options).pipe(
      Effect.tapError((e) => writeAudit(auditId, request, options, (request.reason ?? options.reason ?? "").trim() || "(none)", started, rejectionOutcome(request, e))),
      Effect.flatMap((admitted) =>
        Spans.annotateThen(() => ({ "gen_ai.request.max_tokens": admitted.call.max_tokens }), () =>
          ledger.reserve({
            scopes: scopes(options.caller),
            amount: admitted.worstCase,
            request_id: options.request_id,
            ttl_ms: settings.reservation_ttl_seconds * 1000
          })).pipe(
          Effect.tapError((e) => writeAudit(auditId, request, options, admitted.reason, started, {
            ...rejectionOutcome(request, e), provider: admitted.provider.name, model: admitted.call.model.id
          })),
          Effect.map((reservation) => ({ admitted, reservation }))
        ))
    )

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

  const failureOutcome = (
    on: { readonly provider: string; readonly model: ModelCatalog.ModelEntry },
    cause: Cause.Cause<Errors.GatewayError>,
    usage: Usage.TokenUsage,
    stream: boolean
  ): Outcome => {
    const cost = ModelCatalog.cost(on.model, usage)
    const base = { provider: on.provider, model: on.model.id, usage, cost }
    if (Cause.isInterruptedOnly(cause)) return { ...base, status: "cancelled", error: { type: "cancelled", message: "the request was cancelled before it completed" } }
    const failure = Cause.failureOption(cause)
    if (Option.isSome(failure)) {
      const e = failure.value
      const status: AuditLog.AuditStatus = stream && (usage.output_tokens > 0) ? "stream_error" : statusOf(e)
      return { ...base, status, error: { type: e._tag === "ProviderError" ? `${e.type}:${e.kind}` : e.type, message: e.message } }
    }
    return { ...base, status: "error", error: { type: "internal_error", message: Cause.pretty(cause).split("\n")[0] ?? "defect" } }
  }

  /** The failure of a provider call (or a stream's wait for its next event) that outlasted `ms`. */
  const timedOut = (a: { readonly provider: { readonly name: string }; readonly call: { readonly model: { readonly id: string } } }, ms: number) => () =>
    LlmProviderPort.timedOut(a.provider.name, a.call.model.id, ms)

  /** The provider's answer within the attempt's timeout: timed by the provider when it can (`timed`), else by a child fiber here. */
  const callProvider = (a: Admitted, options: CallOptions) => {
    const ms = options.timeout_ms
    if (ms === undefined) return a.provider.complete(a.call)
    return a.provider.timed === true
      ? a.provider.complete({ ...a.call, timeout_ms: ms })
      : Deadline.timeoutFail(a.provider.complete(a.call), ms, timedOut(a, ms))
  }

  // Written as plain steps rather than a generator: this runs for every request, and each step of
  // a generator costs several Effect operations (docs/performance.md).
  const process = (request: LlmRequest.LLMRequest, options: CallOptions): Effect.Effect<Answer, Errors.GatewayError> => Effect.clockWith((now) => {
    const started = now.unsafeCurrentTimeMillis()
    const auditId = Ids.randomUuid()
    // Admission is not interruptible: a reservation that commits is always seen, and settled below.
    return Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(admitAndReserve(request, options, auditId, started), ({ admitted, reservation }) => {
        const callStart = clock.unsafeCurrentTimeNanos()
        return Effect.flatMap(Effect.exit(restore(callProvider(admitted, options))), (exit) =>
          Effect.zipRight(upstreamEnded(admitted, callStart, exit), Effect.suspend(() => {
            const ended = now.unsafeCurrentTimeMillis()
            if (Exit.isSuccess(exit)) {
              const completion = exit.value
              const cost = ModelCatalog.cost(admitted.call.model, completion.usage)
              const response: LlmRequest.LLMResponse = {
                status: "success",
                data: {
                  response: completion.text, model: admitted.call.model.id, provider: admitted.provider.name, finish_reason: completion.finish_reason, usage: completion.usage,
                  ...(completion.tool_calls === undefined || completion.tool_calls.length === 0 ? {} : { tool_calls: completion.tool_calls })
                },
                metadata: metadata(options, auditId, admitted, cost, Math.round(ended - started))
              }
              const audited = writeAudit(auditId, request, options, admitted.reason, started, {
                status: "success", provider: admitted.provider.name, model: admitted.call.model.id, usage: completion.usage, cost, finish_reason: completion.finish_reason
              })
              const output = addOutputTokens(options.caller, completion.usage.output_tokens)
              return ledger.settle(reservation, cost).pipe(
                Effect.zipRight(output === undefined ? audited : Effect.zipRight(output, audited)),
                Effect.as({ response, completion } satisfies Answer)
              )
            }
            // Failure or interruption: nothing is known to be consumed, release the whole reservation.
            const outcome = failureOutcome({ provider: admitted.provider.name, model: admitted.call.model }, exit.cause, { input_tokens: 0, output_tokens: 0 }, false)
            return ledger.settle(reservation, Money.zero).pipe(
              Effect.zipRight(writeAudit(auditId, request, options, admitted.reason, started, outcome)),
              Effect.zipRight(Effect.failCause(exit.cause))
            )
          })))
      }))
  }).pipe(Spans.span("CorporateLlmGateway.process", { attributes: { "gen_ai.operation.name": "chat" } }))

  /**
   * The stream of an admitted request with its budget reserved: the provider's events as the
   * gateway's, then `Done` once the provider ended (after the budget is settled and the row
   * written). An ending that is not a clean finish is settled and audited once: a failure as the
   * pull fails, anything else (cancel, client gone) as the scope closes.
   */
  const admittedStream = (
    request: LlmRequest.LLMRequest,
    options: CallOptions,
    auditId: string,
    started: number,
    admitted: Admitted,
    reservation: BudgetLedger.Reservation
  ): Pulls.Open<StreamEvent, Errors.GatewayError> =>
    Effect.flatMap(FiberRef.get(Metrics.currentUpstreamTimer), (timer) => {
      const callStart = clock.unsafeCurrentTimeNanos()
      // The provider's time to its first event is the request's upstream time (after it, sending overlaps).
      let awaitingFirst = true
      const firstEventSeen = () => {
        if (!awaitingFirst) return
        awaitingFirst = false
        Metrics.addUpstream(timer, Metrics.secondsBetween(callStart, clock.unsafeCurrentTimeNanos()))
      }
      const observeUpstream = Effect.suspend(() =>
        Metrics.observeUpstream(metrics.instruments(admitted.provider.name, admitted.call.model.id), Metrics.secondsBetween(callStart, clock.unsafeCurrentTimeNanos())))
      // What reached the consumer so far: written by the stream (one consumer), read by `finish`
      // and the finalizer after it; `finished` once the ending is settled, by either.
      const delivered = { chars: 0, usage: Option.none<Usage.TokenUsage>(), finish: "stop", tools: [] as Array<ToolCallDelta>, finished: false }
      return Effect.flatMap(Pulls.keepSpan, (inThisSpan) => {
        // The finalizer runs where the scope is closed (a layer above): its audit annotates this span.
        const cut = (exit: Exit.Exit<unknown, unknown>) =>
          inThisSpan(Effect.suspend(() => {
            if (delivered.finished) return Effect.void
            delivered.finished = true
            firstEventSeen()
            const d = delivered
            const usage = Option.getOrElse(d.usage, () => ({
              input_tokens: d.chars > 0 ? inputTokensUpperBound(admitted.call.messages, admitted.call) : 0,
              output_tokens: Math.min(admitted.call.max_tokens, Math.ceil(d.chars / 4))
            }))
            // A stream whose consumer stopped pulling ends its scope successfully without finishing: the client is gone.
            const cause: Cause.Cause<unknown> = Exit.isFailure(exit) ? exit.cause : Cause.interrupt(FiberId.none)
            const outcome = failureOutcome({ provider: admitted.provider.name, model: admitted.call.model }, cause as Cause.Cause<Errors.GatewayError>, usage, true)
            return Effect.zipRight(
              Exit.isFailure(exit) && !Cause.isInterruptedOnly(exit.cause) ? observeUpstream : Effect.void,
              Effect.zipRight(
                Effect.zipRight(Effect.ignore(ledger.settle(reservation, outcome.cost)), addOutputTokens(options.caller, usage.output_tokens) ?? Effect.void),
                Effect.ignore(writeAudit(auditId, request, options, admitted.reason, started, outcome))
              )
            )
          })).pipe(Effect.uninterruptible)
        const finish = Effect.suspend(() => {
          firstEventSeen()
          const now = clock.unsafeCurrentTimeMillis()
          const d = delivered
          const usage = Option.getOrElse(d.usage, () => ({
            input_tokens: inputTokensUpperBound(admitted.call.messages, admitted.call),
            output_tokens: Math.min(admitted.call.max_tokens, Math.ceil(d.chars / 4))
          }))
          const cost = ModelCatalog.cost(admitted.call.model, usage)
          const settled = Effect.zipRight(
            Effect.zipRight(observeUpstream, ledger.settle(reservation, cost)),
            addOutputTokens(options.caller, usage.output_tokens) ?? Effect.void
          )
          const written = writeAudit(auditId, request, options, admitted.reason, started, {
            status: "success", provider: admitted.provider.name, model: admitted.call.model.id, usage, cost, finish_reason: d.finish
          })
          return Effect.zipRight(settled, Effect.zipRight(written, Effect.sync((): StreamEvent => {
            d.finished = true
            const response: LlmRequest.LLMResponse = {
              status: "success",
              data: {
                response: "", model: admitted.call.model.id, provider: admitted.provider.name, finish_reason: d.finish, usage,
                ...(d.tools.length === 0 ? {} : { tool_calls: assembleToolCalls(d.tools) })
              },
              metadata: metadata(options, auditId, admitted, cost, Math.round(now - started))
            }
            return { _tag: "Done", response }
          })))
        }).pipe(Effect.uninterruptible)
        /** The provider's events as the gateway's: text and tool calls pass on, usage and the finish reason are kept for `Done`. */
        const toEvents = (chunk: Chunk.Chunk<ProviderStreamEvent>): Array<StreamEvent> => {
          const out: Array<StreamEvent> = []
          for (const event of chunk) {
            switch (event._tag) {
              case "TextDelta":
                delivered.chars += event.text.length
                out.push({ _tag: "Delta", text: event.text })
                break
              case "Usage":
                delivered.usage = Option.some(event.usage)
                break
              case "Finish":
                delivered.finish = event.finish_reason
                break
              case "ToolCallDelta":
                delivered.chars += event.arguments.length + (event.name?.length ?? 0)
                delivered.tools.push(event)
                out.push(event)
                break
            }
          }
          return out
        }
        // The provider's stream, opened (its response started) within the call's timeout, and each
        // later wait for its next events within the timeout too.
        const provider = admitted.provider
        const ms = options.timeout_ms
        // A provider that opens its stream times it itself; a plain `Stream` starts at its first pull, so each pull is timed.
        const opening: Effect.Effect<Pulls.Pull<ProviderStreamEvent, Errors.ProviderError>, Errors.ProviderError, Scope.Scope> = provider.open !== undefined
          ? provider.open(ms === undefined ? admitted.call : { ...admitted.call, timeout_ms: ms })
          : ms === undefined
          ? Pulls.fromStream(provider.stream(admitted.call))
          : Effect.map(Pulls.fromStream(provider.stream(admitted.call)), (pull) => Pulls.timeoutFail(pull, ms, timedOut(admitted, ms)))
        const done: Pulls.Pull<StreamEvent, Errors.GatewayError> = Effect.mapBoth(finish, { onFailure: Option.some, onSuccess: (d) => Chunk.of<StreamEvent>(d) })
        return Effect.zipRight(
          Pulls.addFinalizer(cut),
          Effect.map(opening, (upstream) => {
            let ended = false
            // The provider's events, then `Done` once it has ended.
            const next: Pulls.Pull<StreamEvent, Errors.GatewayError> = Effect.suspend(() =>
              ended
                ? Pulls.end
                : Effect.matchEffect(upstream, {
                  onSuccess: (chunk) => {
                    firstEventSeen()
                    const events = toEvents(chunk)
                    return events.length === 0 ? next : Effect.succeed(Chunk.unsafeFromArray(events))
                  },
                  onFailure: (e): Pulls.Pull<StreamEvent, Errors.GatewayError> => {
                    if (Option.isSome(e)) return Effect.fail(e)
                    ended = true
                    return done
                  }
                })
            )
            return Effect.tapError(next, (e) => (Option.isSome(e) ? cut(Exit.fail(e.value)) : Effect.void))
          })
        )
      })
    })

  // Plain steps rather than a generator: a stream's opening is in its time to first byte.
  const openStream = (request: LlmRequest.LLMRequest, options: CallOptions): Pulls.Open<StreamEvent, Errors.GatewayError> =>
    Effect.suspend(() => {
      const started = clock.unsafeCurrentTimeMillis()
      const auditId = Ids.randomUuid()
      return Effect.flatMap(
        Effect.uninterruptible(admitAndReserve(request, options, auditId, started)),
        ({ admitted, reservation }) => admittedStream(request, options, auditId, started, admitted, reservation)
      )
    }).pipe(
      // Setup, the provider's stream, `finish` and the finalizer run under this span, which ends
      // after the finalizer: it carries the outcome of the stream as settled (finished, failed or cut).
      Pulls.span("CorporateLlmGateway.processStream", { attributes: { "gen_ai.operation.name": "chat", "gen_ai.request.stream": true } })
    )

  const processStream = (request: LlmRequest.LLMRequest, options: CallOptions): Stream.Stream<StreamEvent, Errors.GatewayError> =>
    Pulls.toStream(openStream(request, options))

  const embed = Effect.fn("CorporateLlmGateway.embed", { attributes: { "gen_ai.operation.name": "embeddings" } })(function*(request: LlmRequest.EmbeddingRequest, options: CallOptions) {
    const started = yield* Clock.currentTimeMillis
    const auditId = Ids.randomUuid()
    const input = LlmRequest.inputsOf(request)
    // The audit row of an embedding keeps its inputs as the prompt (at the audit level).
    const asChat: LlmRequest.LLMRequest = {
      messages: input.map((content) => ({ role: "user" as const, content })),
      model: request.model,
      ...(request.provider === undefined ? {} : { provider: request.provider }),
      ...(request.user_id ?? request.user) === undefined ? {} : { user_id: request.user_id ?? request.user }
    }
    const given = (request.reason ?? options.reason ?? "").trim()
    return yield* Effect.uninterruptibleMask((restore) =>
      Effect.gen(function*() {
        const admitted = yield* Effect.gen(function*() {
          if (given === "" && settings.require_reason) return yield* reasonRequired()
          const { model, model_id, provider } = yield* resolveFor(request, "embedding")
          yield* allowed(options.caller, model, request.model)
          if (provider.embed === undefined) {
            return yield* new Errors.InvalidRequest({ message: `provider '${provider.name}' does not serve embeddings`, field: "provider" })
          }
          const bound = embeddingTokensUpperBound(input)
          if (bound > model.context_window * input.length) {
            return yield* new Errors.InvalidRequest({ message: `an input is longer than the context window of '${model.id}' (${model.context_window} tokens)`, field: "input" })
          }
          const worstCase = ModelCatalog.cost(model, { input_tokens: bound, output_tokens: 0 })
          if (worstCase > cap) {
            return yield* new Errors.CostCapExceeded({
              message: `the worst-case cost of this request ($${Money.toUsdString(worstCase)}) is above the per-request cap ($${Money.toUsdString(cap)}); send fewer or shorter inputs`,
              estimate_usd: Money.toUsdString(worstCase),
              cap_usd: Money.toUsdString(cap)
            })
          }
          yield* takeRate(options.caller, Math.ceil(input.reduce((n, s) => n + s.length, 0) / 4))
          return { provider, embedFn: provider.embed, call: { model, model_id, input, dimensions: request.dimensions }, worstCase, bound }
        }).pipe(Effect.tapError((e) => writeAudit(auditId, asChat, options, given || "(none)", started, rejectionOutcome(asChat, e))))
        const reason = given === "" ? "(none)" : given
        const base = { provider: admitted.provider.name, model: admitted.call.model.id }
        const reservation = yield* ledger.reserve({
          scopes: scopes(options.caller), amount: admitted.worstCase, request_id: options.request_id, ttl_ms: settings.reservation_ttl_seconds * 1000
        }).pipe(Effect.tapError((e) => writeAudit(auditId, asChat, options, reason, started, { ...rejectionOutcome(asChat, e), ...base })))
        const call = admitted.embedFn(admitted.call)
        const timed = options.timeout_ms === undefined ? call : Effect.timeoutFail(call, { duration: options.timeout_ms, onTimeout: timedOut(admitted, options.timeout_ms) })
        const callStart = clock.unsafeCurrentTimeNanos()
        const exit = yield* Effect.exit(restore(timed))
        yield* upstreamEnded(admitted, callStart, exit)
        const now = yield* Clock.currentTimeMillis
        if (Exit.isFailure(exit)) {
          const outcome = failureOutcome({ provider: admitted.provider.name, model: admitted.call.model }, exit.cause, { input_tokens: 0, output_tokens: 0 }, false)
          yield* ledger.settle(reservation, Money.zero)
          yield* writeAudit(auditId, asChat, options, reason, started, outcome)
          return yield* Effect.failCause(exit.cause)
        }
        // A provider that reports more than the bound is charged the bound: the reservation is the ceiling.
        const usage = { input_tokens: Math.min(exit.value.input_tokens, admitted.bound), output_tokens: 0 }
        const cost = ModelCatalog.cost(admitted.call.model, usage)
        yield* ledger.settle(reservation, cost)
        yield* writeAudit(auditId, asChat, options, reason, started, { status: "success", ...base, usage, cost })
        return {
          vectors: exit.value.vectors,
          usage: { input_tokens: usage.input_tokens },
          metadata: {
            request_id: options.request_id,
            audit_id: auditId,
            provider: admitted.provider.name,
            model: admitted.call.model.id,
            model_id: admitted.call.model_id,
            cost_usd: Money.toUsdString(cost),
            latency_ms: Math.round(now - started),
            mock: admitted.provider.mock
          }
        } satisfies LlmRequest.EmbeddingResponse
      })
    )
  })

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
      // A cached answer is still a call of that model by this caller: the allow-list and the request rate apply.
      const refused = yield* Effect.flip(Effect.zipRight(
        Option.match(catalog.resolve(hit.model), { onNone: () => Effect.void, onSome: (m) => allowed(options.caller, m, request.model) }),
        takeRate(options.caller, 0)
      )).pipe(Effect.option)
      if (Option.isSome(refused)) {
        yield* writeAudit(auditId, request, options, reason || "(none)", started, { ...rejectionOutcome(request, refused.value), provider: hit.provider, model: hit.model })
        return yield* refused.value
      }
      yield* writeAudit(auditId, request, options, reason || "(none)", started, {
        status: "cache_hit", provider: hit.provider, model: hit.model, usage: hit.usage, cost: Money.zero
      })
      return auditId
    })

  const recordRejection = (
    raw: unknown,
    options: CallOptions,
    error: { readonly type: string; readonly message: string },
    status: "rejected_policy" | "error" = "rejected_policy"
  ) =>
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
        status,
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
    openStream,
    embed,
    recordCacheHit,
    recordRejection,
    resolve: (request) => Effect.map(resolve(request), (r) => ({ provider: r.provider.name, model: r.model, model_id: r.model_id })),
    scopes,
    overseenScopes,
    health,
    settings
  })
})

/**
 * How often expired reservations (of a crashed replica) are released: every minute, or half the
 * reservation TTL when that is shorter (at least every 250 ms), so that a reservation is released
 * within about 1.5 × its TTL of its replica dying.
 */
export const reaperInterval = (ttlSeconds: number): Duration.Duration =>
  Duration.millis(Math.min(60_000, Math.max(250, (ttlSeconds * 1000) / 2)))

/**
 * Gateway #1 as a layer: requires its settings, the catalog, the providers, the audit log and the
 * ledger. It also runs the reaper that releases reservations left open past their deadline.
 */
export const layer = Layer.scoped(CorporateLlmGateway, Effect.gen(function*() {
  const ledger = yield* BudgetLedger.BudgetLedger
  const interval = reaperInterval((yield* Settings).reservation_ttl_seconds)
  yield* ledger.reapExpired.pipe(
    Effect.tap((n) => (n > 0 ? Effect.logWarning(`released ${n} expired budget reservation(s)`) : Effect.void)),
    Effect.catchAll((e) => Effect.logWarning(`budget reaper: ${e.message}`)),
    Effect.repeat(Schedule.spaced(interval)),
    Effect.delay(interval),
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
        audit_durability: "sync", audit_retention_days: 365, require_reason: true, default_max_tokens: 1024, default_model: "claude-3-haiku",
        reservation_ttl_seconds: 900, budget_slice_fraction: 0, teams: {}, ...settings
      }),
      ModelCatalog.layer(),
      LlmProviders.layerMock(),
      AuditLog.layerMemory,
      BudgetLedger.layerMemory,
      RateLimits.layerMemory
    ))
  )

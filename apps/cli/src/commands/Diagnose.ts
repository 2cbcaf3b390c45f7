/**
 * `tidyllm diagnose [--level 1|2|3]`: checks the installation, one line per check
 * (`✓ name — detail` or `✗ name — reason`), exit code 1 when any check fails.
 *
 * Level 1 is the infrastructure: the configuration, the database (`SELECT 1`), the migrations,
 * the cache directory, and each provider. Level 2 adds the gateway chain: a request through
 * gateway #1 on the mock provider and its audit row, the same prompt twice through gateway #2
 * (a miss, then a hit), and the budget ledger. Level-2 requests use the mock provider and the
 * reason "tidyllm diagnose", so they cost next to nothing and are recognisable in the audit log.
 *
 * Level 3 adds the build guide's workflow lifecycle through gateway #3: a workflow is stored,
 * analysed, optimised at `high` (its review goes through gateway #2 on the mock provider), which
 * opens a flow agreement; other identities approve it, and the proposed version becomes current.
 * The workflow is named `diagnose-<random>`, so runs never collide and are recognisable.
 *
 * Diagnose changes nothing on a Postgres database (pending migrations are reported, not applied);
 * an embedded PGlite database is brought up to date, as any other command would on first use.
 */
import { Command, Options } from "@effect/cli"
import { FileSystem, Path } from "@effect/platform"
import * as SqlClient from "@effect/sql/SqlClient"
import { Clock, Console, Duration, Effect, Either, Option, Predicate } from "effect"
import { AiProcessingGateway } from "@tidyllm/ai-processing"
import { Caller, Ids, Money } from "@tidyllm/core"
import type { Config, LlmRequest } from "@tidyllm/core"
import { AuditLog, BudgetLedger, CorporateLlmGateway, LlmProviders } from "@tidyllm/corporate-llm"
import * as Layers from "@tidyllm/server/Layers"
import { WorkflowOptimizerGateway } from "@tidyllm/workflow-optimizer"
import type * as Load from "@tidyllm/server/config/Load"
import { Migrator } from "@tidyllm/store-pg"
import { CliEnvironment } from "../CliEnvironment.js"
import { ChecksFailed } from "../CliError.js"
import { styles, type Styles, usd, usdString } from "../internal/format.js"
import { loadConfig, services } from "../Root.js"

const level = Options.choice("level", ["1", "2", "3"]).pipe(
  Options.withDescription("1: infrastructure; 2: also the gateway chain (requests on the mock provider); 3: also the workflow lifecycle (store → analyze → optimize → agreement → approve → current version)"),
  Options.withDefault("1"),
  Options.map((l) => (l === "3" ? 3 : l === "2" ? 2 : 1))
)

/** The outcome of one check. */
export interface Check {
  readonly name: string
  readonly ok: boolean
  readonly detail: string
}

/** A check as one line. */
export const formatCheck = (c: Check, s: Styles): string =>
  `${c.ok ? s.green("✓") : s.red("✗")} ${c.name} — ${c.detail.replace(/:\s*\n\s*-?\s*/, ": ").replace(/\s*\n\s*-?\s*/g, "; ")}`

/** The reason level-2 requests carry. */
export const DIAGNOSE_REASON = "tidyllm diagnose"

/** An error's message, with its cause's (a driver error: `ECONNREFUSED`, a password refused) when that adds something. */
const messageOf = (e: unknown): string => {
  const message = Predicate.hasProperty(e, "message") ? String(e.message) : String(e)
  const cause = Predicate.hasProperty(e, "cause") && Predicate.hasProperty(e.cause, "message") ? String(e.cause.message) : ""
  return cause === "" || message.includes(cause) ? message : `${message} (${cause})`
}

/** Runs `self`, timing it. */
const timed = <A, E, R>(self: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const start = yield* Clock.currentTimeMillis
    const result = yield* Effect.either(self)
    return { result, ms: Math.round((yield* Clock.currentTimeMillis) - start) }
  })

/** What the configuration routes requests to, by provider name. */
const roles = (config: Config.GatewayConfig): Map<string, Array<string>> => {
  const out = new Map<string, Array<string>>()
  const add = (name: string, role: string) => out.set(name, [...(out.get(name) ?? []), role])
  add(config.corporate_llm.default_provider, "default")
  if (config.corporate_llm.fallback_provider !== undefined) add(config.corporate_llm.fallback_provider, "fallback")
  for (const b of config.ai_processing.fallback_backends) add(b, "fallback backend")
  return out
}

const pendingNames = (files: ReadonlyArray<Migrator.Migration>, applied: ReadonlyArray<Migrator.AppliedMigration>) => {
  const done = new Set(applied.map((m) => m.name))
  return files.filter((f) => !done.has(f.name)).map((f) => f.name)
}

/** Level 1: database and migrations. Returns whether the gateway chain can run on the store. */
const checkStore = (config: Config.GatewayConfig, emit: (c: Check) => Effect.Effect<void>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const where = Layers.describeStore(config)
    const ping = yield* timed(sql`SELECT 1 AS ok`.pipe(Effect.timeout(Duration.seconds(5))))
    if (Either.isLeft(ping.result)) {
      yield* emit({ name: "database", ok: false, detail: `${where}: SELECT 1 failed: ${messageOf(ping.result.left)}` })
      yield* emit({ name: "migrations", ok: false, detail: "not checked: the database does not answer" })
      return false
    }
    yield* emit({ name: "database", ok: true, detail: `${where}: SELECT 1 answered in ${ping.ms} ms` })
    const state = yield* Effect.either(Effect.all({ files: Migrator.load(), applied: Migrator.applied }))
    if (Either.isLeft(state)) {
      yield* emit({ name: "migrations", ok: false, detail: state.left.message })
      return false
    }
    const pending = pendingNames(state.right.files, state.right.applied)
    if (pending.length === 0) {
      const names = state.right.applied.map((m) => m.name)
      yield* emit({ name: "migrations", ok: true, detail: `${names.length} applied: ${names.join(", ") || "none"}` })
      return true
    }
    if (config.storage.database_url !== undefined) {
      yield* emit({ name: "migrations", ok: false, detail: `${pending.length} pending: ${pending.join(", ")} — run \`tidyllm migrate\`` })
      return false
    }
    // The embedded database belongs to this checkout: bring it up to date, as `serve` and `ask` would.
    const run = yield* Effect.either(Migrator.run())
    if (Either.isLeft(run)) {
      yield* emit({ name: "migrations", ok: false, detail: run.left.message })
      return false
    }
    const all = state.right.applied.map((m) => m.name).concat(run.right)
    yield* emit({ name: "migrations", ok: true, detail: `${all.length} applied: ${all.join(", ")} (applied just now on the embedded database: ${run.right.join(", ")})` })
    return true
  }).pipe(
    Effect.provide(Layers.sqlClient(config)),
    Effect.catchAll((e) =>
      emit({ name: "database", ok: false, detail: `${Layers.describeStore(config)}: cannot open: ${messageOf(e)}` }).pipe(
        Effect.zipRight(emit({ name: "migrations", ok: false, detail: "not checked: the database does not answer" })),
        Effect.as(false)
      )
    )
  )

/** Level 1: the response cache can be written. */
const checkCache = (config: Config.GatewayConfig) =>
  Effect.gen(function*() {
    const ai = config.ai_processing
    if (!ai.enable_caching) return { name: "cache", ok: true, detail: "caching disabled (ai_processing.enable_caching: false)" }
    if (config.storage.cache === "memory") return { name: "cache", ok: true, detail: "in memory (storage.cache: memory); nothing to write" }
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const dir = path.resolve(ai.cache_dir)
    const probe = path.join(dir, `.tidyllm-diagnose-${Ids.randomUuid()}.tmp`)
    const written = yield* Effect.either(
      fs.makeDirectory(dir, { recursive: true }).pipe(
        Effect.zipRight(fs.writeFileString(probe, "ok")),
        Effect.zipRight(fs.remove(probe))
      )
    )
    return Either.match(written, {
      onLeft: (e): Check => ({ name: "cache", ok: false, detail: `${dir} is not writable: ${e.message}` }),
      onRight: (): Check => ({ name: "cache", ok: true, detail: `${dir} writable (ttl ${ai.cache_ttl_seconds} s)` })
    })
  })

/** Level 1: each provider the gateway knows, configured or not, and why. */
const checkProviders = (loaded: Load.Loaded) =>
  Effect.gen(function*() {
    const registry = yield* LlmProviders.LlmProviders
    const used = roles(loaded.config)
    const checks: Array<Check> = []
    for (const name of Layers.providerNames(loaded.config)) {
      const role = used.get(name)
      const roleText = role === undefined ? "not used by this configuration" : role.join(", ")
      const provider = registry.get(name)
      if (Option.isNone(provider)) {
        const why = name === "bedrock" && loaded.awsCredentials === "none"
          ? "no AWS credentials found and no providers.bedrock section"
          : `no providers.${name} section`
        checks.push({ name: `provider ${name}`, ok: role === undefined, detail: `not configured: ${why} (${roleText})` })
        continue
      }
      const health = yield* provider.value.health
      if (health.configured) {
        checks.push({ name: `provider ${name}`, ok: true, detail: `configured (${roleText}): ${health.detail}` })
        continue
      }
      const why = name === "bedrock" && loaded.awsCredentials === "none"
        ? "no AWS credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run with a role)"
        : health.detail
      checks.push({ name: `provider ${name}`, ok: role === undefined, detail: `not configured (${roleText}): ${why}` })
    }
    return checks
  }).pipe(
    Effect.provide(Layers.providers(loaded.config, { awsCredentials: loaded.awsCredentials })),
    Effect.catchAll((e) => Effect.succeed<ReadonlyArray<Check>>([{ name: "providers", ok: false, detail: e.message }]))
  )

/** Level 2: the gateway chain, on the mock provider. */
const checkChain = (loaded: Load.Loaded, emit: (c: Check) => Effect.Effect<void>) =>
  Effect.gen(function*() {
    const gw1 = yield* CorporateLlmGateway.CorporateLlmGateway
    const gw2 = yield* AiProcessingGateway.AiProcessingGateway
    const audit = yield* AuditLog.AuditLog
    const ledger = yield* BudgetLedger.BudgetLedger
    const caller: Caller.Caller = { user_id: "tidyllm-diagnose" }
    const model = loaded.config.corporate_llm.default_model
    const nonce = Ids.randomUuid().slice(0, 8)

    // Gateway #1 and its audit row.
    const requestId = Ids.randomUuid()
    const one = yield* timed(gw1.process(
      { prompt: `tidyllm diagnose ping ${nonce}`, provider: "mock", model, max_tokens: 32, reason: DIAGNOSE_REASON },
      { request_id: requestId, caller }
    ))
    if (Either.isLeft(one.result)) {
      yield* emit({ name: "gateway #1", ok: false, detail: `${one.result.left.type}: ${one.result.left.message}` })
      yield* emit({ name: "audit row", ok: false, detail: "not checked: gateway #1 failed" })
    } else {
      const r = one.result.right.response
      yield* emit({ name: "gateway #1", ok: true, detail: `${r.metadata.provider}/${r.metadata.model} answered in ${one.ms} ms (${tokens(r)}, ${usdString(r.metadata.cost_usd)})` })
      const rows = yield* Effect.either(audit.list({ limit: 10, request_id: requestId }))
      const row = Either.map(rows, (rs) => rs.find((x) => x.id === r.metadata.audit_id))
      yield* emit(Either.match(row, {
        onLeft: (e): Check => ({ name: "audit row", ok: false, detail: `cannot read the audit log: ${e.message}` }),
        onRight: (x): Check => x === undefined
          ? { name: "audit row", ok: false, detail: `row ${r.metadata.audit_id} not found in the audit log` }
          : { name: "audit row", ok: true, detail: `row ${x.id} readable: status ${x.status}, reason "${x.reason}", ${usd(x.cost)}` }
      }))
    }

    // Gateway #2: the same prompt twice — a miss, then a hit.
    const request: LlmRequest.AIRequest = {
      prompt: `tidyllm diagnose cache ${nonce}`, backend: "mock", fallback_backends: [], model, max_tokens: 32, reason: DIAGNOSE_REASON
    }
    const caching = loaded.config.ai_processing.enable_caching
    const first = yield* timed(gw2.process(request, { request_id: Ids.randomUuid(), caller }))
    if (Either.isLeft(first.result)) {
      yield* emit({ name: "gateway #2 (miss)", ok: false, detail: `${first.result.left.type}: ${first.result.left.message}` })
      yield* emit({ name: "gateway #2 (hit)", ok: false, detail: "not checked: the first request failed" })
    } else {
      const m = first.result.right.metadata
      yield* emit(m.cache_hit === true
        ? { name: "gateway #2 (miss)", ok: false, detail: "a new prompt was answered from the cache" }
        : { name: "gateway #2 (miss)", ok: true, detail: `first request: cache miss, answered by ${m.backend_used ?? m.provider} in ${first.ms} ms (${m.attempts ?? 1} attempt${(m.attempts ?? 1) === 1 ? "" : "s"})` })
      if (!caching) {
        yield* emit({ name: "gateway #2 (hit)", ok: true, detail: "caching disabled (ai_processing.enable_caching: false): no hit expected" })
      } else {
        const second = yield* timed(gw2.process(request, { request_id: Ids.randomUuid(), caller }))
        yield* emit(Either.match(second.result, {
          onLeft: (e): Check => ({ name: "gateway #2 (hit)", ok: false, detail: `${e.type}: ${e.message}` }),
          onRight: (r): Check => r.metadata.cache_hit === true
            ? { name: "gateway #2 (hit)", ok: true, detail: `identical second request: cache hit in ${second.ms} ms, audited as ${r.metadata.audit_id}` }
            : { name: "gateway #2 (hit)", ok: false, detail: "the identical second request was not served from the cache" }
        }))
      }
    }

    // The budget ledger.
    const status = yield* Effect.either(ledger.status(gw1.scopes(Caller.anonymous)))
    yield* emit(Either.match(status, {
      onLeft: (e): Check => ({ name: "budget", ok: false, detail: `cannot read the budget ledger: ${e.message}` }),
      onRight: (ss): Check => ({
        name: "budget",
        ok: true,
        detail: ss.map((b) => `${b.scope} ${b.period} ${b.period_start}: spent ${usd(b.spent)}, reserved ${usd(b.reserved)} of ${usd(b.limit)}`).join("; ")
      })
    }))
  }).pipe(
    Effect.provide(services(loaded, { migrate: false })),
    Effect.catchAll((e) => emit({ name: "gateway chain", ok: false, detail: `cannot build the services: ${messageOf(e)}` }))
  )

/** The steps of the level-3 lifecycle, in order. */
export const lifecycleSteps = ["workflow store", "workflow analyze", "workflow optimize", "flow agreement", "agreement approve", "current version"] as const

/**
 * The workflow the lifecycle runs: an intake of personal data, a classify step on an expensive
 * model and an external output, so OPTIMIZE at `high` changes behaviour (a cheaper model, an
 * inserted compliance check) and the change needs approval.
 */
export const lifecycleWorkflow = {
  name: "tidyllm diagnose lifecycle",
  type: "hierarchical_dag",
  compliance_required: true,
  steps: [
    { id: "intake", type: "intake", config: { source: "s3", pii: true }, depends_on: [] },
    { id: "classify", type: "classify", config: { model: "claude-3-sonnet" }, depends_on: ["intake"] },
    { id: "deliver", type: "output", config: { destination: "webhook" }, depends_on: ["classify"] }
  ]
}

/** Level 3: the workflow lifecycle through gateway #3. */
const checkLifecycle = (loaded: Load.Loaded, emit: (c: Check) => Effect.Effect<void>) =>
  Effect.gen(function*() {
    const gw3 = yield* WorkflowOptimizerGateway.WorkflowOptimizerGateway
    const id = `diagnose-${Ids.randomUuid().slice(0, 8)}`
    const author: WorkflowOptimizerGateway.CallContext = { request_id: Ids.randomUuid(), caller: { user_id: "tidyllm-diagnose" }, reason: DIAGNOSE_REASON }
    const skip = (from: number, why: string) =>
      Effect.forEach(lifecycleSteps.slice(from), (name) => emit({ name, ok: false, detail: `not checked: ${why}` }), { discard: true })
    const failure = (e: { readonly _tag: string; readonly message: string }) => `${e._tag}: ${e.message}`

    const stored = yield* timed(gw3.storeWorkflow(id, lifecycleWorkflow, author))
    if (Either.isLeft(stored.result)) {
      yield* emit({ name: "workflow store", ok: false, detail: failure(stored.result.left) })
      return yield* skip(1, "the workflow was not stored")
    }
    yield* emit({ name: "workflow store", ok: true, detail: `${id} v${stored.result.right.version} stored at ${stored.result.right.key} in ${stored.ms} ms` })

    const analyzed = yield* timed(gw3.process({ operation: "ANALYZE", workflow_id: id, reason: DIAGNOSE_REASON }, author))
    if (Either.isLeft(analyzed.result) || analyzed.result.right.data.analysis === undefined) {
      yield* emit({ name: "workflow analyze", ok: false, detail: Either.isLeft(analyzed.result) ? failure(analyzed.result.left) : "no analysis in the response" })
    } else {
      const a = analyzed.result.right.data.analysis
      yield* emit({
        name: "workflow analyze", ok: true,
        detail: `critical path ${a.metrics.critical_path.steps.join(" → ")}; ${a.compliance.map((v) => `${v.framework} ${v.status}`).join(", ")}; risk ${a.risk.level} (${a.risk.score}) in ${analyzed.ms} ms`
      })
    }

    const optimized = yield* timed(gw3.process({ operation: "OPTIMIZE", workflow_id: id, optimization_level: "high", reason: DIAGNOSE_REASON }, author))
    if (Either.isLeft(optimized.result)) {
      yield* emit({ name: "workflow optimize", ok: false, detail: failure(optimized.result.left) })
      return yield* skip(3, "the optimisation failed")
    }
    const r = optimized.result.right
    const changes = r.data.optimization?.changes.map((c) => c.rule).join(", ") ?? ""
    yield* emit(r.metadata.optimization_applied && r.metadata.corporate_audit_id !== null
      ? { name: "workflow optimize", ok: true, detail: `${r.data.optimization?.changes.length ?? 0} change(s) (${changes}); review audited as ${r.metadata.corporate_audit_id}; ${r.metadata.processing_metrics.total_ms} ms` }
      : { name: "workflow optimize", ok: false, detail: `optimization_applied=${r.metadata.optimization_applied}, corporate_audit_id=${r.metadata.corporate_audit_id ?? "none"}${r.data.review?.status === "error" ? ` (review failed: ${r.data.review.error.message})` : ""}` })

    const agreement = r.data.agreement
    const stored2 = r.data.stored
    if (agreement === undefined || stored2 === undefined) {
      const settings = loaded.config.workflow_optimizer
      const why = !settings.enable_approval_workflows || !settings.enable_flow_agreements || !settings.flow_config.require_stakeholder_approval
        ? "approval workflows are off in workflow_optimizer settings, so the change became current at once"
        : "the optimisation opened no agreement"
      yield* emit({ name: "flow agreement", ok: false, detail: why })
      return yield* skip(4, "no agreement to approve")
    }
    const before = yield* Effect.either(gw3.getWorkflow(id, undefined, author))
    const heldBack = Either.isRight(before) && before.right.version === stored2.base_version && !stored2.current
    yield* emit({
      name: "flow agreement",
      ok: agreement.status === "proposed" && heldBack,
      detail: `${agreement.id}: ${agreement.status}, ${agreement.risk_level} risk; v${stored2.version} proposed, v${stored2.base_version ?? "-"} ${heldBack ? "stays current until approved" : "is NOT held back"}`
    })

    // Approvers other than the author, as many as the risk level needs.
    const reviewers = [
      { user: "tidyllm-diagnose-approver", role: "approver" },
      { user: "tidyllm-diagnose-compliance", role: "compliance" }
    ]
    let decided: WorkflowOptimizerGateway.DecisionResult | undefined
    const used: Array<string> = []
    for (const reviewer of reviewers) {
      if (decided !== undefined && decided.to !== "proposed") break
      const outcome = yield* Effect.either(gw3.approve(agreement.id, DIAGNOSE_REASON, {
        request_id: Ids.randomUuid(), caller: { user_id: reviewer.user }, role: reviewer.role
      }))
      if (Either.isLeft(outcome)) {
        yield* emit({ name: "agreement approve", ok: false, detail: `as ${reviewer.user} (${reviewer.role}): ${failure(outcome.left)}` })
        return yield* skip(5, "the agreement was not approved")
      }
      decided = outcome.right
      used.push(`${reviewer.user} (${reviewer.role})`)
    }
    yield* emit(decided?.to === "approved"
      ? { name: "agreement approve", ok: true, detail: `approved by ${used.join(" and ")}; the author could not approve their own proposal` }
      : { name: "agreement approve", ok: false, detail: `still ${decided?.to ?? "proposed"} after ${used.join(" and ")}` })

    const after = yield* Effect.either(gw3.getWorkflow(id, undefined, author))
    yield* emit(Either.match(after, {
      onLeft: (e): Check => ({ name: "current version", ok: false, detail: failure(e) }),
      onRight: (w): Check => w.version === stored2.version
        ? { name: "current version", ok: true, detail: `${id} v${w.version} is current (was v${stored2.base_version ?? "-"})` }
        : { name: "current version", ok: false, detail: `${id} v${w.version} is current, expected v${stored2.version}` }
    }))
  }).pipe(
    Effect.provide(services(loaded, { migrate: false })),
    Effect.catchAll((e) => emit({ name: "workflow lifecycle", ok: false, detail: `cannot build the services: ${messageOf(e)}` }))
  )

const tokens = (r: LlmRequest.LLMResponse) => {
  const u = r.data?.usage
  return u === undefined ? "no usage" : `${u.input_tokens}+${u.output_tokens} tokens`
}

/** `tidyllm diagnose`. */
export const command = Command.make("diagnose", { level }, (args) =>
  Effect.gen(function*() {
    const s = styles((yield* CliEnvironment).color)
    const results: Array<Check> = []
    const emit = (c: Check) => Effect.zipRight(Effect.sync(() => results.push(c)), Console.log(formatCheck(c, s)))
    const finish = Effect.suspend(() => {
      const failed = results.filter((c) => !c.ok).length
      return Console.log(s.dim(failed === 0 ? `all ${results.length} checks passed` : `${failed} of ${results.length} checks failed`)).pipe(
        Effect.zipRight(failed === 0 ? Effect.void : Effect.fail(new ChecksFailed({ failed, total: results.length })))
      )
    })

    const loaded = yield* Effect.either(loadConfig)
    if (Either.isLeft(loaded)) {
      yield* emit({ name: "config", ok: false, detail: loaded.left.message })
      return yield* finish
    }
    const config = loaded.right.config
    const sources = [loaded.right.file ?? "no config file (built-in defaults)", "environment", ...(loaded.right.dotenv === undefined ? [] : [loaded.right.dotenv])]
    yield* emit({
      name: "config", ok: true,
      detail: `valid: ${sources.join(" + ")}; default provider ${config.corporate_llm.default_provider}, daily budget ${usd(Money.fromUsd(config.corporate_llm.budget_limit_daily_usd))}`
    })

    const storeOk = yield* checkStore(config, emit)
    yield* emit(yield* checkCache(config))
    for (const c of yield* checkProviders(loaded.right)) yield* emit(c)

    if (args.level >= 2) {
      if (storeOk) {
        yield* checkChain(loaded.right, emit)
      } else {
        for (const name of ["gateway #1", "audit row", "gateway #2 (miss)", "gateway #2 (hit)", "budget"]) {
          yield* emit({ name, ok: false, detail: "not checked: the database or its migrations are not ready" })
        }
      }
    }
    if (args.level >= 3) {
      if (storeOk) {
        yield* checkLifecycle(loaded.right, emit)
      } else {
        for (const name of lifecycleSteps) yield* emit({ name, ok: false, detail: "not checked: the database or its migrations are not ready" })
      }
    }
    return yield* finish
  })
).pipe(Command.withDescription("check the installation: 1 = infrastructure, 2 = also the gateway chain, 3 = also the workflow lifecycle"))

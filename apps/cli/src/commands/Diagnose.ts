/**
 * `tidyllm diagnose [--level 1|2|3]`: checks the installation and prints a table — check, status
 * (`✓ ok`, `✗ failed`, `! warning`, `- skipped`), time, detail or why — and a summary line. The
 * exit code is 1 when a required check failed; an optional dependency that fails (the response
 * cache, a provider other than the default) is a warning: the gateway serves without it, degraded.
 * With stderr a terminal, each check is reported there as it completes (`[4/15] ✓ object store (35 ms)`).
 *
 * Level 1 is the store: the configuration, the database (`SELECT 1`) and the migrations.
 *
 * Level 2 adds the dependencies, checked concurrently, each under a timeout of its own
 * ({@link TIMEOUT}): the object store (a listing, then a probe object under `.tidyllm-diagnose/`
 * written, read back and deleted), the response cache (a probe entry written and read back), and
 * each provider (configured? the MLflow gateway: does its `/health` answer?); then the gateway
 * chain: a request through gateway #1 on the mock provider and its audit row, the same prompt twice
 * through gateway #2 (a miss, then a hit), and the budget ledger. Those requests use the mock
 * provider and the reason "tidyllm diagnose", so they cost next to nothing and are recognisable in
 * the audit log.
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
import * as SqlClient from "@effect/sql/SqlClient"
import { Clock, Console, Duration, Effect, Either, Logger, LogLevel, Option } from "effect"
import { AiProcessingGateway, ResponseCache } from "@tidyllm/ai-processing"
import { Caller, Ids, Money } from "@tidyllm/core"
import type { Config, LlmRequest } from "@tidyllm/core"
import { AuditLog, BudgetLedger, CorporateLlmGateway, LlmProviders } from "@tidyllm/corporate-llm"
import type { LlmProvider } from "@tidyllm/corporate-llm"
import * as Checks from "@tidyllm/server/health/Checks"
import * as Layers from "@tidyllm/server/Layers"
import { ObjectStore } from "@tidyllm/session-manager"
import { WorkflowOptimizerGateway } from "@tidyllm/workflow-optimizer"
import type * as Load from "@tidyllm/server/config/Load"
import { Migrator } from "@tidyllm/store-pg"
import { CliEnvironment } from "../CliEnvironment.js"
import { ChecksFailed } from "../CliError.js"
import { styles, type Styles, usd, usdString } from "../internal/format.js"
import * as Progress from "../internal/progress.js"
import { loadConfig, services } from "../Root.js"

const level = Options.choice("level", ["1", "2", "3"]).pipe(
  Options.withDescription("1: configuration, database, migrations; 2: also the object store, the cache, each provider and the gateway chain (requests on the mock provider); 3: also the workflow lifecycle (store → analyze → optimize → agreement → approve → current version)"),
  Options.withDefault("1"),
  Options.map((l) => (l === "3" ? 3 : l === "2" ? 2 : 1))
)

/** How long each dependency (database, object store, cache, provider) may take before its check fails. */
export const TIMEOUT: Duration.Duration = Duration.seconds(5)

/** How a check ended: `failed` fails the command; `warning` is an optional dependency failing; `skipped`, nothing to check. */
export type Status = "ok" | "failed" | "warning" | "skipped"

/** The outcome of one check. */
export interface Check {
  readonly name: string
  readonly status: Status
  /** How long it took, when it ran. */
  readonly ms?: number | undefined
  /** What answered, or why not. */
  readonly detail: string
}

/** A required check as the chain and lifecycle report it: passed or failed. */
interface Outcome {
  readonly name: string
  readonly ok: boolean
  readonly ms?: number | undefined
  readonly detail: string
  /** A failure is a warning, not a failure (it follows from an optional dependency failing). */
  readonly optional?: boolean | undefined
}

/** Records a check; `skipped` records one that could not run, and why. */
interface Emit {
  (outcome: Outcome): Effect.Effect<void>
  readonly skipped: (name: string, why: string) => Effect.Effect<void>
}

/** The reason level-2 requests carry. */
export const DIAGNOSE_REASON = "tidyllm diagnose"

/** A dependency check of `Checks` as a diagnose check. */
export const fromDependency = (c: Checks.DependencyCheck): Check => ({
  name: c.name,
  status: c.skipped === true ? "skipped" : c.ok ? "ok" : c.required ? "failed" : "warning",
  ms: c.skipped === true ? undefined : c.latency_ms,
  detail: c.detail
})

const statusText: Record<Status, string> = { ok: "✓ ok", failed: "✗ failed", warning: "! warning", skipped: "- skipped" }
const statusStyle = (status: Status, s: Styles): (text: string) => string =>
  status === "ok" ? s.green : status === "failed" ? s.red : status === "warning" ? s.yellow : s.dim

/** A detail on one line: a multi-line message (a config error's list) joined with `; `. */
const oneLine = (detail: string): string => detail.replace(/:\s*\n\s*-?\s*/, ": ").replace(/\s*\n\s*-?\s*/g, "; ")

/** The checks as a table: check, status, time, detail; a header line first. */
export const formatTable = (checks: ReadonlyArray<Check>, s: Styles): ReadonlyArray<string> => {
  const headers = ["check", "status", "time", "detail"] as const
  const rows = checks.map((c) => ({ check: c, cells: [c.name, statusText[c.status], c.ms === undefined ? "" : `${c.ms} ms`, oneLine(c.detail)] as const }))
  const width = (i: 0 | 1 | 2) => Math.max(headers[i].length, ...rows.map((r) => r.cells[i].length))
  const [w0, w1, w2] = [width(0), width(1), width(2)]
  const line = (cells: readonly [string, string, string, string], paint: (t: string) => string = (t) => t) =>
    [cells[0].padEnd(w0), paint(cells[1].padEnd(w1)), cells[2].padStart(w2), cells[3]].join("  ").trimEnd()
  return [s.bold(line(headers)), ...rows.map((r) => line(r.cells, statusStyle(r.check.status, s)))]
}

/** The summary line: how many checks failed, warned, were skipped. */
export const summary = (checks: ReadonlyArray<Check>): string => {
  const count = (status: Status) => checks.filter((c) => c.status === status).length
  const [failed, warnings, skipped] = [count("failed"), count("warning"), count("skipped")]
  const ran = checks.length - skipped
  const extras = [warnings > 0 ? `${warnings} warning${warnings === 1 ? "" : "s"}` : "", skipped > 0 ? `${skipped} skipped` : ""].filter((x) => x !== "")
  const tail = extras.length === 0 ? "" : ` (${extras.join(", ")})`
  if (failed > 0) return `${failed} of ${ran} checks failed${tail}`
  if (warnings > 0) return `all required checks passed; ${ran - warnings} of ${ran} passed${tail}`
  return `all ${ran} checks passed${tail}`
}

/** A check as a progress line: `✓ object store (35 ms)`. */
const progressLine = (c: Check): string => `${statusText[c.status].slice(0, 1)} ${c.name}${c.ms === undefined ? "" : ` (${c.ms} ms)`}`

/** Runs `self`, timing it. */
const timed = <A, E, R>(self: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const start = yield* Clock.currentTimeMillis
    const result = yield* Effect.either(self)
    return { result, ms: Math.round((yield* Clock.currentTimeMillis) - start) }
  })

const pendingNames = (files: ReadonlyArray<Migrator.Migration>, applied: ReadonlyArray<Migrator.AppliedMigration>) => {
  const done = new Set(applied.map((m) => m.name))
  return files.filter((f) => !done.has(f.name)).map((f) => f.name)
}

/** Level 1: database and migrations. Returns whether the gateway chain can run on the store. */
const checkStore = (config: Config.GatewayConfig, emit: Emit) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const where = Layers.describeStore(config)
    const ping = yield* timed(sql`SELECT 1 AS ok`.pipe(
      Effect.timeoutFail({ duration: TIMEOUT, onTimeout: () => `no answer within ${Duration.toMillis(TIMEOUT)} ms` })
    ))
    if (Either.isLeft(ping.result)) {
      yield* emit({ name: "database", ok: false, ms: ping.ms, detail: `${where}: SELECT 1 failed: ${Checks.reasonOf(ping.result.left)}` })
      yield* emit.skipped("migrations", "the database does not answer")
      return false
    }
    yield* emit({ name: "database", ok: true, ms: ping.ms, detail: `${where}: SELECT 1 answered` })
    const state = yield* timed(Effect.all({ files: Migrator.load(), applied: Migrator.applied }))
    if (Either.isLeft(state.result)) {
      yield* emit({ name: "migrations", ok: false, ms: state.ms, detail: state.result.left.message })
      return false
    }
    const { files, applied } = state.result.right
    const pending = pendingNames(files, applied)
    if (pending.length === 0) {
      const names = applied.map((m) => m.name)
      yield* emit({ name: "migrations", ok: true, ms: state.ms, detail: `${names.length} applied: ${names.join(", ") || "none"}` })
      return true
    }
    if (config.storage.database_url !== undefined) {
      yield* emit({ name: "migrations", ok: false, ms: state.ms, detail: `${pending.length} pending: ${pending.join(", ")} — run \`tidyllm migrate\`` })
      return false
    }
    // The embedded database belongs to this checkout: bring it up to date, as `serve` and `ask` would.
    const run = yield* timed(Migrator.run())
    if (Either.isLeft(run.result)) {
      yield* emit({ name: "migrations", ok: false, ms: state.ms + run.ms, detail: run.result.left.message })
      return false
    }
    const all = applied.map((m) => m.name).concat(run.result.right)
    yield* emit({
      name: "migrations", ok: true, ms: state.ms + run.ms,
      detail: `${all.length} applied: ${all.join(", ")} (applied just now on the embedded database: ${run.result.right.join(", ")})`
    })
    return true
  }).pipe(
    Effect.provide(Layers.sqlClient(config)),
    Effect.catchAll((e) =>
      emit({ name: "database", ok: false, detail: `${Layers.describeStore(config)}: cannot open: ${Checks.reasonOf(e)}` }).pipe(
        Effect.zipRight(emit.skipped("migrations", "the database does not answer")),
        Effect.as(false)
      )
    )
  )

/** The prefix of the objects the object store check writes (and deletes). */
export const OBJECT_PROBE_PREFIX = ".tidyllm-diagnose/"

/** The object store: a listing, then a probe object written, read back and deleted. */
const objectRoundTrip = (store: ObjectStore.Service, where: string): Effect.Effect<Checks.Found, string> =>
  Effect.gen(function*() {
    yield* store.list(Checks.OBJECT_PROBE_PREFIX, { limit: 1 })
    const key = `${OBJECT_PROBE_PREFIX}${Ids.randomUuid()}`
    const body = new TextEncoder().encode(`${DIAGNOSE_REASON} ${key}`)
    yield* store.put(key, body, "text/plain")
    const back = yield* store.get(key).pipe(Effect.ensuring(store.remove(key).pipe(Effect.ignore)))
    if (new TextDecoder().decode(back) !== `${DIAGNOSE_REASON} ${key}`) return yield* Effect.fail(`${where}: the probe object ${key} read back differs from what was written`)
    yield* store.remove(key)
    return { detail: `${where}: list, write, read back and delete answered` }
  }).pipe(Effect.mapError((e) => (typeof e === "string" ? e : `${where}: ${e.message}`)))

/** The key of the cache check's probe entry (one key: runs overwrite it, nothing piles up). */
export const CACHE_PROBE_KEY = "tidyllm-diagnose-probe"

/** The response cache: a probe entry written and read back. */
const cacheRoundTrip = (config: Config.GatewayConfig, cache: ResponseCache.Service, where: string): Effect.Effect<Checks.Found, string> =>
  !config.ai_processing.enable_caching
    ? Effect.succeed({ detail: "caching disabled (ai_processing.enable_caching: false)" })
    : Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      yield* cache.set(CACHE_PROBE_KEY, {
        text: DIAGNOSE_REASON, usage: { input_tokens: 0, output_tokens: 0 }, finish_reason: "stop",
        provider: "mock", model: "tidyllm-diagnose", model_id: "tidyllm-diagnose", mock: true, created_at: now
      }, 60)
      // Another diagnose may have written it meanwhile: any entry read back will do.
      if (Option.isNone(yield* cache.get(CACHE_PROBE_KEY))) return yield* Effect.fail(`${where}: an entry just written was not read back`)
      return { detail: `${where}: write and read back answered (ttl ${config.ai_processing.cache_ttl_seconds} s)` }
    }).pipe(Effect.mapError((e) => (typeof e === "string" ? e : Checks.located(where, Checks.reasonOf(e)))))

/** Bedrock without credentials says where it would look; diagnose says what to set. */
const withCredentialHint = (p: LlmProvider.LlmProvider, loaded: Load.Loaded): LlmProvider.LlmProvider =>
  p.name !== "bedrock" || loaded.awsCredentials !== "none"
    ? p
    : {
      ...p,
      health: Effect.map(p.health, (h) =>
        h.configured ? h : { ...h, detail: "no AWS credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run with a role)" })
    }

/**
 * Level 2: the object store, the cache and every provider the gateway knows, concurrently, each
 * under {@link TIMEOUT}; `report` is told of each as it completes. In a fixed order.
 */
const checkDependencies = (loaded: Load.Loaded, report: (c: Check) => Effect.Effect<void>) => {
  const config = loaded.config
  const done = (c: Check) => Effect.as(report(c), c)
  const failedToOpen = (name: string, required: boolean, where: string) => (e: { readonly message: string }) =>
    Effect.succeed<Check>({ name, status: required ? "failed" : "warning", detail: `${where}: cannot open: ${Checks.reasonOf(e)}` })

  const objects = Effect.flatMap(ObjectStore.ObjectStore, (store) => {
    const where = Checks.describeObjectStore(config, true)
    return Effect.map(Checks.run({ name: "object store", required: true, probe: objectRoundTrip(store, where) }, TIMEOUT), fromDependency)
  }).pipe(
    Effect.provide(Layers.objectStore(config)),
    Effect.catchAll(failedToOpen("object store", true, Checks.describeObjectStore(config, true))),
    Effect.flatMap(done)
  )

  const cache = Effect.flatMap(ResponseCache.ResponseCache, (c) => {
    const where = Checks.describeCache(config, true)
    return Effect.map(Checks.run({ name: "cache", required: false, probe: cacheRoundTrip(config, c, where) }, TIMEOUT), fromDependency)
  }).pipe(
    Effect.provide(Layers.cache(config)),
    Effect.catchAll(failedToOpen("cache", false, Checks.describeCache(config, true))),
    Effect.flatMap(done)
  )

  const providers = Effect.flatMap(LlmProviders.LlmProviders, (registry) =>
    Effect.forEach(Layers.providerNames(config), (name) =>
      Option.match(registry.get(name), {
        // Only a provider no configuration section asks for is missing (start-up refuses a routed-to one).
        onNone: () => Effect.succeed<Check>({ name: `provider ${name}`, status: "skipped", detail: `not configured: no providers.${name} section (not used by this configuration)` }),
        onSome: (p) => Effect.map(Checks.run(Checks.provider(withCredentialHint(p, loaded), config), TIMEOUT), fromDependency)
      }).pipe(Effect.flatMap(done)), { concurrency: "unbounded" })
  ).pipe(
    Effect.provide(Layers.providers(config, { awsCredentials: loaded.awsCredentials })),
    Effect.catchAll((e) => Effect.map(done({ name: "providers", status: "failed", detail: e.message }), (c) => [c]))
  )

  return Effect.map(Effect.all([objects, cache, providers], { concurrency: "unbounded" }), ([o, c, ps]) => [o, c, ...ps])
}

/** Level 2: the gateway chain, on the mock provider. */
const checkChain = (loaded: Load.Loaded, emit: Emit, cacheOk: boolean) =>
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
      yield* emit({ name: "gateway #1", ok: false, ms: one.ms, detail: `${one.result.left.type}: ${one.result.left.message}` })
      yield* emit.skipped("audit row", "gateway #1 failed")
    } else {
      const r = one.result.right.response
      yield* emit({ name: "gateway #1", ok: true, ms: one.ms, detail: `${r.metadata.provider}/${r.metadata.model} answered (${tokens(r)}, ${usdString(r.metadata.cost_usd)})` })
      const rows = yield* timed(audit.list({ limit: 10, request_id: requestId }))
      const row = Either.map(rows.result, (rs) => rs.find((x) => x.id === r.metadata.audit_id))
      yield* emit(Either.match(row, {
        onLeft: (e): Outcome => ({ name: "audit row", ok: false, ms: rows.ms, detail: `cannot read the audit log: ${e.message}` }),
        onRight: (x): Outcome => x === undefined
          ? { name: "audit row", ok: false, ms: rows.ms, detail: `row ${r.metadata.audit_id} not found in the audit log` }
          : { name: "audit row", ok: true, ms: rows.ms, detail: `row ${x.id} readable: status ${x.status}, reason "${x.reason}", ${usd(x.cost)}` }
      }))
    }

    // Gateway #2: the same prompt twice — a miss, then a hit.
    const request: LlmRequest.AIRequest = {
      prompt: `tidyllm diagnose cache ${nonce}`, backend: "mock", fallback_backends: [], model, max_tokens: 32, reason: DIAGNOSE_REASON
    }
    const caching = loaded.config.ai_processing.enable_caching
    const first = yield* timed(gw2.process(request, { request_id: Ids.randomUuid(), caller }))
    if (Either.isLeft(first.result)) {
      yield* emit({ name: "gateway #2 (miss)", ok: false, ms: first.ms, detail: `${first.result.left.type}: ${first.result.left.message}` })
      yield* emit.skipped("gateway #2 (hit)", "the first request failed")
    } else {
      const m = first.result.right.metadata
      yield* emit(m.cache_hit === true
        ? { name: "gateway #2 (miss)", ok: false, ms: first.ms, detail: "a new prompt was answered from the cache" }
        : { name: "gateway #2 (miss)", ok: true, ms: first.ms, detail: `first request: cache miss, answered by ${m.backend_used ?? m.provider} (${m.attempts ?? 1} attempt${(m.attempts ?? 1) === 1 ? "" : "s"})` })
      if (!caching) {
        yield* emit.skipped("gateway #2 (hit)", "caching disabled (ai_processing.enable_caching: false), no hit expected")
      } else {
        const second = yield* timed(gw2.process(request, { request_id: Ids.randomUuid(), caller }))
        yield* emit(Either.match(second.result, {
          onLeft: (e): Outcome => ({ name: "gateway #2 (hit)", ok: false, ms: second.ms, detail: `${e.type}: ${e.message}` }),
          onRight: (r): Outcome => r.metadata.cache_hit === true
            ? { name: "gateway #2 (hit)", ok: true, ms: second.ms, detail: `identical second request: cache hit, audited as ${r.metadata.audit_id}` }
            : cacheOk
            ? { name: "gateway #2 (hit)", ok: false, ms: second.ms, detail: "the identical second request was not served from the cache" }
            : { name: "gateway #2 (hit)", ok: false, optional: true, ms: second.ms, detail: "the identical second request was not served from the cache, which does not work (see the cache check)" }
        }))
      }
    }

    // The budget ledger.
    const status = yield* timed(ledger.status(gw1.scopes(Caller.anonymous)))
    yield* emit(Either.match(status.result, {
      onLeft: (e): Outcome => ({ name: "budget", ok: false, ms: status.ms, detail: `cannot read the budget ledger: ${e.message}` }),
      onRight: (ss): Outcome => ({
        name: "budget",
        ok: true,
        ms: status.ms,
        detail: ss.map((b) => `${b.scope} ${b.period} ${b.period_start}: spent ${usd(b.spent)}, reserved ${usd(b.reserved)} of ${usd(b.limit)}`).join("; ")
      })
    }))
  }).pipe(
    Effect.provide(services(loaded, { migrate: false })),
    Effect.catchAll((e) => emit({ name: "gateway chain", ok: false, detail: `cannot build the services: ${Checks.reasonOf(e)}` }))
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
const checkLifecycle = (loaded: Load.Loaded, emit: Emit) =>
  Effect.gen(function*() {
    const gw3 = yield* WorkflowOptimizerGateway.WorkflowOptimizerGateway
    const id = `diagnose-${Ids.randomUuid().slice(0, 8)}`
    const author: WorkflowOptimizerGateway.CallContext = { request_id: Ids.randomUuid(), caller: { user_id: "tidyllm-diagnose" }, reason: DIAGNOSE_REASON }
    const skip = (from: number, why: string) =>
      Effect.forEach(lifecycleSteps.slice(from), (name) => emit.skipped(name, why), { discard: true })
    const failure = (e: { readonly _tag: string; readonly message: string }) => `${e._tag}: ${e.message}`

    const stored = yield* timed(gw3.storeWorkflow(id, lifecycleWorkflow, author))
    if (Either.isLeft(stored.result)) {
      yield* emit({ name: "workflow store", ok: false, ms: stored.ms, detail: failure(stored.result.left) })
      return yield* skip(1, "the workflow was not stored")
    }
    yield* emit({ name: "workflow store", ok: true, ms: stored.ms, detail: `${id} v${stored.result.right.version} stored at ${stored.result.right.key}` })

    const analyzed = yield* timed(gw3.process({ operation: "ANALYZE", workflow_id: id, reason: DIAGNOSE_REASON }, author))
    if (Either.isLeft(analyzed.result) || analyzed.result.right.data.analysis === undefined) {
      yield* emit({ name: "workflow analyze", ok: false, ms: analyzed.ms, detail: Either.isLeft(analyzed.result) ? failure(analyzed.result.left) : "no analysis in the response" })
    } else {
      const a = analyzed.result.right.data.analysis
      yield* emit({
        name: "workflow analyze", ok: true, ms: analyzed.ms,
        detail: `critical path ${a.metrics.critical_path.steps.join(" → ")}; ${a.compliance.map((v) => `${v.framework} ${v.status}`).join(", ")}; risk ${a.risk.level} (${a.risk.score})`
      })
    }

    const optimized = yield* timed(gw3.process({ operation: "OPTIMIZE", workflow_id: id, optimization_level: "high", reason: DIAGNOSE_REASON }, author))
    if (Either.isLeft(optimized.result)) {
      yield* emit({ name: "workflow optimize", ok: false, ms: optimized.ms, detail: failure(optimized.result.left) })
      return yield* skip(3, "the optimisation failed")
    }
    const r = optimized.result.right
    const changes = r.data.optimization?.changes.map((c) => c.rule).join(", ") ?? ""
    yield* emit(r.metadata.optimization_applied && r.metadata.corporate_audit_id !== null
      ? { name: "workflow optimize", ok: true, ms: optimized.ms, detail: `${r.data.optimization?.changes.length ?? 0} change(s) (${changes}); review audited as ${r.metadata.corporate_audit_id}` }
      : { name: "workflow optimize", ok: false, ms: optimized.ms, detail: `optimization_applied=${r.metadata.optimization_applied}, corporate_audit_id=${r.metadata.corporate_audit_id ?? "none"}${r.data.review?.status === "error" ? ` (review failed: ${r.data.review.error.message})` : ""}` })

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
      onLeft: (e): Outcome => ({ name: "current version", ok: false, detail: failure(e) }),
      onRight: (w): Outcome => w.version === stored2.version
        ? { name: "current version", ok: true, detail: `${id} v${w.version} is current (was v${stored2.base_version ?? "-"})` }
        : { name: "current version", ok: false, detail: `${id} v${w.version} is current, expected v${stored2.version}` }
    }))
  }).pipe(
    Effect.provide(services(loaded, { migrate: false })),
    Effect.catchAll((e) => emit({ name: "workflow lifecycle", ok: false, detail: `cannot build the services: ${Checks.reasonOf(e)}` }))
  )

const tokens = (r: LlmRequest.LLMResponse) => {
  const u = r.data?.usage
  return u === undefined ? "no usage" : `${u.input_tokens}+${u.output_tokens} tokens`
}

/** The checks each level runs after the configuration, by name (for the progress count). */
const planned = (config: Config.GatewayConfig, level: 1 | 2 | 3): number =>
  1 + 2 + (level >= 2 ? 2 + Layers.providerNames(config).length + 5 : 0) + (level >= 3 ? lifecycleSteps.length : 0)

/** `tidyllm diagnose`. */
export const command = Command.make("diagnose", { level }, (args) =>
  Effect.gen(function*() {
    const s = styles((yield* CliEnvironment).color)
    const results: Array<Check> = []
    let progress = Progress.silent
    const record = (c: Check) => Effect.zipRight(Effect.sync(() => results.push(c)), progress.step(progressLine(c)))
    const emit: Emit = Object.assign(
      (o: Outcome) => record({ name: o.name, status: o.ok ? "ok" : o.optional === true ? "warning" : "failed", ms: o.ms, detail: o.detail }),
      { skipped: (name: string, why: string) => record({ name, status: "skipped", detail: `not checked: ${why}` }) }
    )
    const finish = Effect.suspend(() => {
      const failed = results.filter((c) => c.status === "failed").length
      return Effect.forEach(formatTable(results, s), (line) => Console.log(line), { discard: true }).pipe(
        Effect.zipRight(Console.log(s.dim(summary(results)))),
        Effect.zipRight(failed === 0 ? Effect.void : Effect.fail(new ChecksFailed({ failed, total: results.length })))
      )
    })

    const loaded = yield* timed(loadConfig)
    if (Either.isLeft(loaded.result)) {
      yield* emit({ name: "config", ok: false, ms: loaded.ms, detail: loaded.result.left.message })
      return yield* finish
    }
    const { config } = loaded.result.right
    progress = yield* Progress.make(planned(config, args.level))
    const sources = [loaded.result.right.file ?? "no config file (built-in defaults)", "environment", ...(loaded.result.right.dotenv === undefined ? [] : [loaded.result.right.dotenv])]
    yield* emit({
      name: "config", ok: true, ms: loaded.ms,
      detail: `valid: ${sources.join(" + ")}; default provider ${config.corporate_llm.default_provider}, daily budget ${usd(Money.fromUsd(config.corporate_llm.budget_limit_daily_usd))}`
    })

    yield* progress.note(`opening the database (${Layers.describeStore(config)}) …`)
    const storeOk = yield* checkStore(config, emit)

    if (args.level >= 2) {
      yield* progress.note("object store, cache and providers …")
      // Reported as each completes; tabled in a fixed order.
      const dependencies = yield* checkDependencies(loaded.result.right, (c) => progress.step(progressLine(c)))
      results.push(...dependencies)
      if (storeOk) {
        yield* progress.note("gateway chain (requests on the mock provider) …")
        yield* checkChain(loaded.result.right, emit, dependencies.some((c) => c.name === "cache" && c.status === "ok"))
      } else {
        for (const name of ["gateway #1", "audit row", "gateway #2 (miss)", "gateway #2 (hit)", "budget"]) {
          yield* emit.skipped(name, "the database or its migrations are not ready")
        }
      }
    }
    if (args.level >= 3) {
      if (storeOk) {
        yield* progress.note("workflow lifecycle …")
        yield* checkLifecycle(loaded.result.right, emit)
      } else {
        for (const name of lifecycleSteps) yield* emit.skipped(name, "the database or its migrations are not ready")
      }
    }
    return yield* finish
  }).pipe(
    // The adapters' own warnings (Redis unreachable, a cache miss for an error) would cut into the
    // table, which reports each failure and its reason already.
    Logger.withMinimumLogLevel(LogLevel.Error)
  )
).pipe(Command.withDescription("check the installation: 1 = configuration and database, 2 = also object store, cache, providers and the gateway chain, 3 = also the workflow lifecycle"))

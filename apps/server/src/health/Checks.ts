/**
 * The dependency checks of `GET /health` and `tidyllm diagnose`: the database, the object store,
 * the response cache and each provider, each probed with a cheap request of its own under a
 * timeout of its own, reporting how long it took and, when it failed, why.
 *
 * A probe reads, never writes (a load balancer may call `/health` every few seconds): the
 * database answers `SELECT 1` and has every migration applied, the object store lists a prefix
 * that holds nothing (`.tidyllm-health/`, one `ListObjects` with `MaxKeys=1` on S3), the cache
 * looks up a key that is never written, a provider reports its `health` (the MLflow gateway's
 * asks its `/health`; the others look at their configuration only).
 *
 * The database and the object store are required: without them no request is served or audited.
 * So is the default provider. The cache and every other provider are optional: when one fails,
 * the replica still serves, degraded.
 */
import { Clock, Duration, Effect, Either, Redacted } from "effect"
import * as nodePath from "node:path"
import type { ResponseCache } from "@tidyllm/ai-processing"
import type { Config } from "@tidyllm/core"
import type { LlmProvider } from "@tidyllm/corporate-llm"
import type { ObjectStore } from "@tidyllm/session-manager"
import * as RedisUrl from "@tidyllm/store-objects/RedisUrl"
import type { ReadinessReport } from "../Layers.js"

/** How long each dependency may take to answer before its check fails. */
export const DEFAULT_TIMEOUT: Duration.Duration = Duration.seconds(2)

/** The outcome of one check, as `/health` reports it. */
export interface DependencyCheck {
  /** `database`, `object store`, `cache`, `provider <name>`. */
  readonly name: string
  readonly ok: boolean
  /** A failed required dependency makes the replica unhealthy (503); an optional one, degraded. */
  readonly required: boolean
  readonly latency_ms: number
  /** What answered (`ok`), or why not. */
  readonly detail: string
  /** Nothing to check (a provider neither configured nor routed to); `/health` leaves such checks out. */
  readonly skipped?: boolean | undefined
}

/** What a probe found: the detail of a passed check, or of one that is not applicable. */
export interface Found {
  readonly detail: string
  readonly skipped?: boolean | undefined
}

/** A dependency to check: `probe` succeeds with what it found or fails with why. */
export interface Probe {
  readonly name: string
  readonly required: boolean
  readonly probe: Effect.Effect<Found, string>
}

/** Why an unexpected failure (a defect, an error object) happened, in one line. */
export const reasonOf = (e: unknown): string => {
  if (typeof e === "string") return e
  const message = typeof e === "object" && e !== null && "message" in e ? String(e.message) : String(e)
  const cause = typeof e === "object" && e !== null && "cause" in e && typeof e.cause === "object" && e.cause !== null && "message" in e.cause
    ? String(e.cause.message)
    : ""
  return cause === "" || message.includes(cause) ? message : `${message} (${cause})`
}

/** `reason` prefixed with `where` (`Redis redis://host:6379: …`), unless it names the place already (its last word). */
export const located = (where: string, reason: string): string => {
  const place = where.split(" ").at(-1) ?? where
  return reason.includes(place) ? reason : `${where}: ${reason}`
}

/** Runs one probe under `timeout`, timing it; it never fails (a timeout says "no answer within N ms"). */
export const run = (probe: Probe, timeout: Duration.DurationInput = DEFAULT_TIMEOUT): Effect.Effect<DependencyCheck> =>
  Effect.gen(function*() {
    const limit = Duration.decode(timeout)
    const start = yield* Clock.currentTimeMillis
    const result = yield* probe.probe.pipe(
      Effect.catchAllDefect((defect) => Effect.fail(`unexpected failure: ${reasonOf(defect)}`)),
      Effect.timeoutFail({ duration: limit, onTimeout: () => `no answer within ${Duration.toMillis(limit)} ms` }),
      Effect.either
    )
    const latency_ms = Math.round((yield* Clock.currentTimeMillis) - start)
    return Either.match(result, {
      onLeft: (detail): DependencyCheck => ({ name: probe.name, ok: false, required: probe.required, latency_ms, detail }),
      onRight: (found): DependencyCheck => ({
        name: probe.name,
        ok: true,
        required: probe.required,
        latency_ms,
        detail: found.detail,
        ...(found.skipped === true ? { skipped: true } : {})
      })
    })
  })

/** The readiness report `database` stands for when the check timed out. */
const timedOut = (engine: ReadinessReport["engine"], detail: string): ReadinessReport => ({ ready: false, engine, migrated: false, database: false, detail })

/**
 * The database: `SELECT 1` answers and every migration is applied (the store's readiness check).
 * Also returns the report, which `/health` shows as `services.storage`.
 */
export const database = (
  readiness: { readonly engine: ReadinessReport["engine"]; readonly check: Effect.Effect<ReadinessReport> },
  timeout: Duration.DurationInput = DEFAULT_TIMEOUT
): Effect.Effect<readonly [DependencyCheck, ReadinessReport]> =>
  Effect.gen(function*() {
    let report: ReadinessReport | undefined
    const check = yield* run({
      name: "database",
      required: true,
      probe: Effect.flatMap(readiness.check, (r) => {
        report = r
        return r.ready
          ? Effect.succeed({ detail: `${r.engine}: SELECT 1 answered, migrations applied` })
          : Effect.fail(`${r.engine}: ${r.detail ?? (r.database ? "migrations pending" : "the database does not answer")}`)
      })
    }, timeout)
    return [check, report ?? timedOut(readiness.engine, check.detail)] as const
  })

/** Where the objects live, for a detail: `S3 s3://bucket/prefix/` or `local directory` (with its path when `paths`). */
export const describeObjectStore = (config: Config.GatewayConfig, paths = false): string => {
  const s3 = config.storage.s3
  if (s3 !== undefined) return `S3 s3://${s3.bucket}/${s3.prefix ?? ""}${s3.endpoint === undefined ? "" : ` at ${s3.endpoint}`}`
  return paths ? `local directory ${nodePath.resolve(config.storage.data_dir, "objects")}` : "local directory"
}

/** The prefix the object store probe lists: it holds nothing, so the answer is one short page. */
export const OBJECT_PROBE_PREFIX = ".tidyllm-health/"

/** The object store: a listing of an empty prefix answers. */
export const objectStore = (store: ObjectStore.Service, where: string): Probe => ({
  name: "object store",
  required: true,
  probe: store.list(OBJECT_PROBE_PREFIX, { limit: 1 }).pipe(
    Effect.map(() => ({ detail: `${where}: listing answered` })),
    Effect.mapError((e) => `${where}: ${e.message}`)
  )
})

/** Where the response cache lives, for a detail (with the cache directory when `paths`). */
export const describeCache = (config: Config.GatewayConfig, paths = false): string => {
  switch (config.storage.cache) {
    case "memory": return "in memory"
    case "redis":
      return config.storage.redis_url === undefined ? "Redis (no storage.redis_url)" : `Redis ${RedisUrl.describeUrl(Redacted.value(config.storage.redis_url))}`
    case "file": return paths ? `files in ${nodePath.resolve(config.ai_processing.cache_dir)}` : "files"
  }
}

/** The key the cache probe looks up; nothing ever writes it (cache keys are SHA-256 digests). */
export const CACHE_PROBE_KEY = "tidyllm-health-probe"

/** The response cache: a lookup of a key that is never written answers. */
export const cache = (config: Config.GatewayConfig, responseCache: ResponseCache.Service, where: string = describeCache(config)): Probe => ({
  name: "cache",
  required: false,
  probe: config.ai_processing.enable_caching
    ? responseCache.get(CACHE_PROBE_KEY).pipe(
      Effect.map(() => ({ detail: `${where}: lookup answered (ttl ${config.ai_processing.cache_ttl_seconds} s)` })),
      Effect.mapError((e) => located(where, reasonOf(e)))
    )
    : Effect.succeed({ detail: "caching disabled (ai_processing.enable_caching: false)" })
})

/** What the configuration routes requests to, by provider name: `default`, `fallback`, `fallback backend`. */
export const roles = (config: Config.GatewayConfig): ReadonlyMap<string, ReadonlyArray<string>> => {
  const out = new Map<string, Array<string>>()
  const add = (name: string, role: string) => out.set(name, [...(out.get(name) ?? []), role])
  add(config.corporate_llm.default_provider, "default")
  if (config.corporate_llm.fallback_provider !== undefined) add(config.corporate_llm.fallback_provider, "fallback")
  for (const b of config.ai_processing.fallback_backends) add(b, "fallback backend")
  return out
}

/**
 * A provider: configured (credentials or URL present) and, where its `health` probes the
 * endpoint (the MLflow gateway), reachable. Required when it is the default provider. One that
 * is neither configured nor routed to is skipped.
 */
export const provider = (p: LlmProvider.LlmProvider, config: Config.GatewayConfig): Probe => {
  const role = roles(config).get(p.name)
  const roleText = role === undefined ? "not used by this configuration" : role.join(", ")
  return {
    name: `provider ${p.name}`,
    required: role?.includes("default") === true,
    probe: Effect.flatMap(p.health, (h) => {
      if (!h.configured) {
        return role === undefined
          ? Effect.succeed({ detail: `not configured (${roleText}): ${h.detail}`, skipped: true })
          : Effect.fail(`not configured (${roleText}): ${h.detail}`)
      }
      return h.reachable === false ? Effect.fail(`${roleText}: ${h.detail}`) : Effect.succeed({ detail: `${roleText}: ${h.detail}` })
    })
  }
}

/** `/health`'s verdict: `unhealthy` when a required check failed, `degraded` when an optional one did. */
export const verdict = (checks: ReadonlyArray<DependencyCheck>): "healthy" | "degraded" | "unhealthy" =>
  checks.some((c) => !c.ok && c.required) ? "unhealthy" : checks.some((c) => !c.ok) ? "degraded" : "healthy"


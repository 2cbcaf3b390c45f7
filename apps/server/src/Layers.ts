/**
 * The composition root: from a validated `GatewayConfig`, the one place concrete adapters are
 * chosen — model catalog, providers, store (Postgres or embedded PGlite, migrated at start-up),
 * audit log, budget ledger, response cache, object store, workflow audit, agreement store, and
 * gateways #1, #2 and #3 on top. The server and the CLI both build their services from here.
 */
import { readFileSync, rmSync, writeFileSync } from "node:fs"
import { hostname } from "node:os"
import * as nodePath from "node:path"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as NodePath from "@effect/platform-node/NodePath"
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { Context, Duration, Effect, Layer, Option, Redacted, Ref, Schema } from "effect"
import type { Scope } from "effect"
import { AiProcessingGateway, ResponseCache } from "@tidyllm/ai-processing"
import { Config, Ids, ModelCatalog } from "@tidyllm/core"
import { ApiKeys, AuditLog, BudgetLedger, BudgetSlices, CorporateLlmGateway, LlmProviders, MockProvider, RateLimits } from "@tidyllm/corporate-llm"
import { AgreementStore } from "@tidyllm/heiros"
import { AnthropicProvider, BedrockProvider, MlflowProvider, OpenAiProvider } from "@tidyllm/providers"
import { ObjectStore, UnifiedSessionManager, WorkflowAudit } from "@tidyllm/session-manager"
// By module, not the package index: the Redis and S3 adapters (and their clients, ~35 MiB) are
// loaded only when configured.
import * as FileResponseCache from "@tidyllm/store-objects/FileResponseCache"
import * as LocalObjectStore from "@tidyllm/store-objects/LocalObjectStore"
import { Migrator, PgAgreementStore, PgApiKeys, PgAuditLog, PgBudgetLedger, PgClient, PgliteClient, PgRateLimiterStore, PgWorkflowAudit } from "@tidyllm/store-pg"
import { WorkflowOptimizerGateway } from "@tidyllm/workflow-optimizer"
import * as RateLimiter from "./auth/RateLimiter.js"
import { ConfigError, type AwsCredentials } from "./config/Load.js"

/** The validated configuration the services were built from. */
export class AppConfig extends Context.Tag("@tidyllm/server/AppConfig")<AppConfig, Config.GatewayConfig>() {}

/** Which database engine the store runs on. */
export type Engine = "postgres" | "pglite" | "memory"

/** What `/health/ready` and `diagnose` report about the store. */
export interface ReadinessReport {
  readonly ready: boolean
  readonly engine: Engine
  /** `true` once every migration file is applied. */
  readonly migrated: boolean
  /** `true` when the database answered `SELECT 1` just now. */
  readonly database: boolean
  readonly detail?: string | undefined
}

/** Readiness of the store: migrated, and the database answering. */
export class Readiness extends Context.Tag("@tidyllm/server/Readiness")<Readiness, {
  readonly engine: Engine
  readonly check: Effect.Effect<ReadinessReport>
}>() {}

/** Options of the composition. */
export interface Options {
  /** Apply pending migrations when the store is built (default `true`; `--no-migrate` turns it off). */
  readonly migrate?: boolean | undefined
  /** What the config loader found about AWS credentials (marks Bedrock as configured in `/health`). */
  readonly awsCredentials?: AwsCredentials | undefined
  /** Directory of the migration files (default: the repository's `sql/`). */
  readonly migrationsDirectory?: string | URL | undefined
}

/** Every error building the services can end with. */
export type BuildError = SqlError | Migrator.MigrationError | ResponseCache.CacheError | ObjectStore.ObjectStoreError | ConfigError

/** The built-in providers gateway #1 knows how to build (plus each `providers.openai_compatible` entry). */
export const knownProviders: ReadonlyArray<string> = ["mock", "bedrock", "openai", "anthropic", "mlflow"]

/** Every provider name the configuration can route to. */
export const providerNames = (config: Config.GatewayConfig): ReadonlyArray<string> => [
  ...knownProviders,
  ...Object.keys(config.providers.openai_compatible)
]

/** Provider names the configuration routes to (default, fallback, fallback backends). */
const namedProviders = (config: Config.GatewayConfig): ReadonlyArray<string> => [
  config.corporate_llm.default_provider,
  ...(config.corporate_llm.fallback_provider === undefined ? [] : [config.corporate_llm.fallback_provider]),
  ...config.ai_processing.fallback_backends
]

/** The model catalog: the built-in Bedrock models plus (or replaced by) `models` from the config. */
export const catalog = (config: Config.GatewayConfig) => ModelCatalog.layer([...ModelCatalog.defaultModels, ...config.models])

/**
 * The providers: the mock, Bedrock, OpenAI and Anthropic always (without credentials they are
 * registered but report `configured: false` in `/health`, and calls fail with an auth error);
 * the MLflow gateway when `providers.mlflow` gives its URL; each OpenAI-compatible server of
 * `providers.openai_compatible` under its name. A routed-to name that no adapter serves stops start-up.
 */
export const providers = (config: Config.GatewayConfig, options: Options = {}): Layer.Layer<LlmProviders.LlmProviders, ConfigError> =>
  Layer.scoped(LlmProviders.LlmProviders, Effect.gen(function*() {
    const known = providerNames(config)
    const named = namedProviders(config)
    const unknown = [...new Set(named.filter((n) => !known.includes(n)))]
    if (unknown.length > 0) {
      return yield* ConfigError.of("invalid configuration:", unknown.map((n) =>
        `provider '${n}' is named in corporate_llm.default_provider / fallback_provider / ai_processing.fallback_backends but no adapter serves it (known: ${known.join(", ")}; add OpenAI-compatible servers under providers.openai_compatible)`
      ))
    }
    const mlflow = config.providers.mlflow
    if (mlflow === undefined && named.includes("mlflow")) {
      return yield* ConfigError.of("invalid configuration:", ["provider 'mlflow' is routed to but providers.mlflow.gateway_url (MLFLOW_GATEWAY_URL) is not set"])
    }
    const mock = MockProvider.make({ latency_ms: config.providers.mock.latency_ms, stream_chunk_delay_ms: config.providers.mock.stream_chunk_delay_ms })
    const bedrock = yield* BedrockProvider.make(config.providers.bedrock ?? Schema.decodeSync(Config.BedrockSettings)({}), {
      configured: options.awsCredentials !== undefined && options.awsCredentials !== "none"
    })
    const openaiSettings = config.providers.openai ?? Schema.decodeSync(Config.OpenAiSettings)({})
    const openai = yield* OpenAiProvider.make({
      name: "openai",
      flavour: "openai",
      baseUrl: openaiSettings.base_url,
      apiKey: openaiSettings.api_key,
      organization: openaiSettings.organization,
      project: openaiSettings.project
    })
    const anthropicSettings = config.providers.anthropic ?? Schema.decodeSync(Config.AnthropicSettings)({})
    const anthropic = yield* AnthropicProvider.make({ name: "anthropic", baseUrl: anthropicSettings.base_url, apiKey: anthropicSettings.api_key })
    const compatible = yield* Effect.forEach(Object.entries(config.providers.openai_compatible), ([name, c]) =>
      OpenAiProvider.make({ name, flavour: "compatible", baseUrl: c.base_url, apiKey: c.api_key }))
    const gateway = mlflow === undefined
      ? []
      : [yield* MlflowProvider.make({ name: "mlflow", gatewayUrl: mlflow.gateway_url, token: mlflow.token })]
    return LlmProviders.make([mock, bedrock, openai, anthropic, ...gateway, ...compatible])
  }))

/** A layer whose module is imported as the layer is built: adapters with heavy clients, loaded only when configured. */
const lazyLayer = <M, A, E, R>(load: () => Promise<M>, build: (module: M) => Layer.Layer<A, E, R>): Layer.Layer<A, E, R> =>
  Layer.unwrapEffect(Effect.map(Effect.promise(load), build))

/** The response cache: off, in memory, in Redis (`storage.redis_url`), or files under `ai_processing.cache_dir`. */
export const cache = (config: Config.GatewayConfig): Layer.Layer<ResponseCache.ResponseCache, ResponseCache.CacheError> => {
  if (!config.ai_processing.enable_caching) return ResponseCache.layerNone
  switch (config.storage.cache) {
    case "memory": return ResponseCache.layerMemory
    case "redis":
    {
      const url = config.storage.redis_url
      return url === undefined
        ? Layer.fail(new ResponseCache.CacheError({ message: "storage.cache is 'redis' but storage.redis_url (REDIS_URL) is not set" }))
        : lazyLayer(() => import("@tidyllm/store-objects/RedisResponseCache"), (RedisResponseCache) => RedisResponseCache.layer({ url }))
    }
    case "file": return FileResponseCache.layer(config.ai_processing.cache_dir)
  }
}

/** The `SqlClient`: Postgres at `storage.database_url`, else PGlite in `<data_dir>/pgdata`. */
export const sqlClient = (config: Config.GatewayConfig): Layer.Layer<SqlClient.SqlClient, SqlError | ConfigError> => {
  const url = config.storage.database_url
  if (url !== undefined) {
    return PgClient.layer({ url, poolSize: config.storage.pool_size })
  }
  return Layer.unwrapEffect(Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const dir = path.resolve(config.storage.data_dir)
    yield* fs.makeDirectory(dir, { recursive: true }).pipe(
      Effect.mapError((e) => ConfigError.of(`cannot create the data directory ${dir}:`, [`storage.data_dir: ${e.message}`]))
    )
    const pgdata = path.join(dir, "pgdata")
    return PgliteClient.layer({ dataDir: pgdata }).pipe(Layer.provide(Layer.scopedDiscard(lockDataDir(pgdata))))
  })).pipe(Layer.provide(Layer.merge(NodeFileSystem.layer, NodePath.layer)))
}

/** Data directories this process holds open. */
const heldDirs = new Set<string>()

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    // EPERM: the process exists but belongs to someone else.
    return typeof e === "object" && e !== null && "code" in e && e.code === "EPERM"
  }
}

/**
 * Takes `<pgdata>.lock` for the life of the scope. PGlite is one Postgres backend in this
 * process: a second process (or a second instance here) on the same files would corrupt them.
 * A lock left by a process that is gone is taken over.
 */
export const lockDataDir = (pgdata: string): Effect.Effect<void, ConfigError, Scope.Scope> => {
  const file = `${pgdata}.lock`
  const refuse = (holder: string) =>
    ConfigError.of(`the embedded database ${pgdata} is in use by ${holder}:`, [
      "PGlite serves one process at a time; stop the other one, set TIDYLLM_DATA_DIR to another directory, or set DATABASE_URL to share a Postgres server"
    ])
  return Effect.acquireRelease(
    Effect.suspend(() => {
      if (heldDirs.has(pgdata)) return Effect.fail(refuse("this process"))
      for (let attempt = 0; attempt < 2; attempt++) {
        try {
          writeFileSync(file, `${process.pid}\n`, { flag: "wx" })
          heldDirs.add(pgdata)
          return Effect.void
        } catch (e) {
          if (!(typeof e === "object" && e !== null && "code" in e && e.code === "EEXIST")) {
            return Effect.fail(ConfigError.of(`cannot lock the embedded database ${pgdata}:`, [String(e)]))
          }
          const pid = Number.parseInt(readFileSync(file, "utf8").trim(), 10)
          if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && isAlive(pid)) return Effect.fail(refuse(`process ${pid}`))
          rmSync(file, { force: true })
        }
      }
      return Effect.fail(refuse("another process"))
    }),
    () => Effect.sync(() => {
      heldDirs.delete(pgdata)
      rmSync(file, { force: true })
    })
  )
}

/**
 * The store on a `SqlClient`: migrations (unless turned off), the audit log, the budget ledger
 * (with a reaper freeing reservations of crashed replicas), and the readiness check.
 */
export const store = (config: Config.GatewayConfig, options: Options = {}): Layer.Layer<
  SqlClient.SqlClient | StorePorts,
  BuildError
> => {
  const engine: Engine = config.storage.database_url === undefined ? "pglite" : "postgres"
  const instanceId = `${hostname()}:${process.pid}:${Ids.randomUuid().slice(0, 8)}`
  const readiness = Layer.effect(Readiness, Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const migrate = options.migrate ?? true
    if (migrate) yield* Migrator.run(options.migrationsDirectory)
    // Without `--no-migrate` the schema is current by now; with it, readiness waits until someone migrates.
    const migrated = yield* Ref.make(migrate)
    const pending = Effect.gen(function*() {
      const files = yield* Migrator.load(options.migrationsDirectory)
      const applied = new Set((yield* Migrator.applied).map((m) => m.name))
      return files.filter((f) => !applied.has(f.name)).map((f) => f.name)
    }).pipe(Effect.provideService(SqlClient.SqlClient, sql))
    const check = Effect.gen(function*() {
      const ping = yield* sql`SELECT 1 AS ok`.pipe(Effect.timeout(Duration.seconds(2)), Effect.either)
      if (ping._tag === "Left") {
        return { ready: false, engine, migrated: yield* Ref.get(migrated), database: false, detail: `database does not answer: ${ping.left.message}` } satisfies ReadinessReport
      }
      if (!(yield* Ref.get(migrated))) {
        const left = yield* pending.pipe(Effect.either)
        if (left._tag === "Left") return { ready: false, engine, migrated: false, database: true, detail: left.left.message } satisfies ReadinessReport
        if (left.right.length > 0) {
          return { ready: false, engine, migrated: false, database: true, detail: `pending migrations: ${left.right.join(", ")} (run \`tidyllm migrate\`)` } satisfies ReadinessReport
        }
        yield* Ref.set(migrated, true)
      }
      return { ready: true, engine, migrated: true, database: true } satisfies ReadinessReport
    })
    return { engine, check }
  }))
  // Gateway #1's layer runs the reaper of expired reservations.
  const fraction = config.corporate_llm.budget_slice_fraction
  // A lease carries the reservation TTL (a crashed replica's leases are reaped like its
  // reservations) and is rotated and idled back well within it, so no live lease is reaped.
  const leaseTtlMs = config.corporate_llm.reservation_ttl_seconds * 1000
  const slices: BudgetSlices.Options = {
    fraction,
    lease_ttl_ms: leaseTtlMs,
    rotate_ms: Math.min(60_000, leaseTtlMs / 3),
    idle_ms: Math.min(5_000, leaseTtlMs / 3)
  }
  const ledger = fraction > 0
    ? Layer.scoped(BudgetLedger.BudgetLedger, Effect.flatMap(BudgetLedger.BudgetLedger, (base) => BudgetSlices.make(base, slices))).pipe(
      Layer.provide(PgBudgetLedger.layer({ instanceId }))
    )
    : PgBudgetLedger.layer({ instanceId })
  // Audit log and ledger are built after the migrations (they need the tables).
  const ports = Layer.mergeAll(
    PgAuditLog.layer({ durability: config.corporate_llm.audit_durability }),
    ledger,
    PgWorkflowAudit.layer(),
    PgAgreementStore.layer,
    PgApiKeys.layer,
    // Rate limits shared by every replica: in Redis when configured, else in the database.
    RateLimiter.layer.pipe(Layer.provide(RateLimiter.store(config, PgRateLimiterStore.layer)))
  )
  return ports.pipe(Layer.provideMerge(readiness), Layer.provideMerge(sqlClient(config)))
}

/** What a store provides: the SQL-backed ports (Postgres, PGlite, or memory). */
export type StorePorts =
  | AuditLog.AuditLog
  | BudgetLedger.BudgetLedger
  | WorkflowAudit.WorkflowAudit
  | AgreementStore.AgreementStore
  | ApiKeys.ApiKeys
  | RateLimits.RateLimits
  | Readiness

/** The services of the gateway chain, as the server and the CLI use them. */
export type Services =
  | AppConfig
  | ModelCatalog.ModelCatalog
  | LlmProviders.LlmProviders
  | StorePorts
  | ObjectStore.ObjectStore
  | ResponseCache.ResponseCache
  | UnifiedSessionManager.UnifiedSessionManager
  | CorporateLlmGateway.CorporateLlmGateway
  | AiProcessingGateway.AiProcessingGateway
  | WorkflowOptimizerGateway.WorkflowOptimizerGateway

/** The object store: S3 when `storage.s3` is set, else the directory `<data_dir>/objects`. */
export const objectStore = (config: Config.GatewayConfig): Layer.Layer<ObjectStore.ObjectStore, ObjectStore.ObjectStoreError> => {
  const s3 = config.storage.s3
  if (s3 !== undefined) {
    // The AWS credentials of the configuration (AWS_ACCESS_KEY_ID… from the environment or `.env`,
    // which the loader files under providers.bedrock) when given, else the SDK's default chain.
    const aws = config.providers.bedrock
    const credentials = aws?.access_key_id !== undefined && aws.secret_access_key !== undefined
      ? {
        accessKeyId: Redacted.value(aws.access_key_id),
        secretAccessKey: aws.secret_access_key,
        ...(aws.session_token === undefined ? {} : { sessionToken: aws.session_token })
      }
      : undefined
    return lazyLayer(() => import("@tidyllm/store-objects/S3ObjectStore"), (S3ObjectStore) => S3ObjectStore.layer({
      bucket: s3.bucket,
      prefix: s3.prefix,
      region: s3.region,
      endpoint: s3.endpoint,
      forcePathStyle: s3.force_path_style,
      // S3-compatible servers at a custom endpoint get V1 listing, which every one of them pages
      // correctly (s3rver's V2 continuation tokens fail on Node ≥ 17); AWS itself gets V2.
      listApi: s3.endpoint === undefined ? "v2" : "v1",
      ...(credentials === undefined ? {} : { credentials })
    }))
  }
  return LocalObjectStore.layer(nodePath.resolve(config.storage.data_dir, "objects"))
}

/** Gateways #1, #2 and #3 over the given store and object store (lets tests and the CLI swap them). */
export const gateways = <S, E>(
  config: Config.GatewayConfig,
  storeLayer: Layer.Layer<S | StorePorts, E>,
  options: Options = {},
  objects: Layer.Layer<ObjectStore.ObjectStore, ObjectStore.ObjectStoreError> = objectStore(config)
): Layer.Layer<S | Services, E | BuildError> => {
  const base = Layer.mergeAll(catalog(config), providers(config, options), storeLayer, Layer.succeed(AppConfig, config), objects)
  const gw1 = CorporateLlmGateway.layer.pipe(
    Layer.provide(Layer.succeed(CorporateLlmGateway.Settings, config.corporate_llm)),
    Layer.provideMerge(base)
  )
  // The cache stays in the output: `/health` and `diagnose` probe it.
  const gw2 = AiProcessingGateway.layer.pipe(
    Layer.provide(Layer.succeed(AiProcessingGateway.Settings, config.ai_processing)),
    Layer.provideMerge(Layer.merge(gw1, cache(config)))
  )
  const sessions = UnifiedSessionManager.layer().pipe(Layer.provideMerge(gw2))
  return WorkflowOptimizerGateway.layer.pipe(
    Layer.provide(Layer.succeed(WorkflowOptimizerGateway.Settings, config.workflow_optimizer)),
    Layer.provideMerge(sessions)
  )
}

/** The full service layer for `config`: store per `storage`, migrations applied unless `migrate: false`. */
export const layer = (config: Config.GatewayConfig, options: Options = {}): Layer.Layer<Services | SqlClient.SqlClient, BuildError> =>
  gateways(config, store(config, options), options)

/** A store with no database (in-memory audit logs, ledger and agreements, one process only), for demos and tests of the HTTP layer. */
export const storeMemory: Layer.Layer<StorePorts> = Layer.mergeAll(
  AuditLog.layerMemory,
  BudgetLedger.layerMemory,
  WorkflowAudit.layerMemory,
  AgreementStore.layerMemory,
  ApiKeys.layerMemory,
  RateLimits.layerMemory,
  Layer.succeed(Readiness, {
    engine: "memory",
    check: Effect.succeed<ReadinessReport>({ ready: true, engine: "memory", migrated: true, database: true, detail: "in-memory store (nothing is persisted)" })
  })
)

/** The engine the store of `config` runs on, for log lines. */
export const describeStore = (config: Config.GatewayConfig): string =>
  Option.match(Option.fromNullable(config.storage.database_url), {
    onNone: () => `embedded PGlite in ${config.storage.data_dir}/pgdata`,
    onSome: () => "Postgres (DATABASE_URL)"
  })

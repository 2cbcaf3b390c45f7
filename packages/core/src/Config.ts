/**
 * The configuration schema (`tidyllm.yaml` + environment). The app reads and merges the
 * sources; this module only says what is valid. Names follow the original build guide.
 */
import { Schema } from "effect"
import { TeamName } from "./Caller.js"
import { ModelEntry } from "./ModelCatalog.js"
import { RedactionPatterns } from "./Redaction.js"

const PositiveNumber = Schema.Number.pipe(Schema.finite(), Schema.positive())
const NonNegativeNumber = Schema.Number.pipe(Schema.finite(), Schema.nonNegative())
const NonNegativeInt = Schema.Int.pipe(Schema.nonNegative())
const Name = Schema.String.pipe(Schema.minLength(1))
const dflt = <A, I>(s: Schema.Schema<A, I>, value: () => NoInfer<A>) => Schema.optionalWith(s, { default: value })

/** How much of the prompt an audit row keeps. */
export const AuditLevel = Schema.Literal("full", "redacted", "hash")
export type AuditLevel = typeof AuditLevel.Type

/** One team's budgets and model allow-list (`corporate_llm.teams.<team>`). */
export const TeamSettings = Schema.Struct({
  /** The team's daily budget, beside the global one; unset: no team budget. */
  budget_daily_usd: Schema.optional(NonNegativeNumber),
  /** The team's monthly budget (calendar month, UTC). */
  budget_monthly_usd: Schema.optional(NonNegativeNumber),
  /** Model ids the team may call; unset: every catalog model. */
  models: Schema.optional(Schema.Array(Name))
})
export type TeamSettings = typeof TeamSettings.Type

/** Settings of gateway #1. */
export const CorporateLlmSettings = Schema.Struct({
  /** Provider of a request that names none (`mock` without AWS credentials, else `bedrock` unless set). */
  default_provider: dflt(Name, () => "mock"),
  /** Provider gateway #2 fails over to after the default one (also the last of `ai_processing.fallback_backends`). */
  fallback_provider: Schema.optional(Name),
  /** The global daily budget in US dollars (calendar day, UTC), enforced by an atomic reservation of each request's worst case. */
  budget_limit_daily_usd: dflt(NonNegativeNumber, () => 100),
  /** A global monthly budget beside the daily one (calendar month, UTC); unset: none. */
  budget_limit_monthly_usd: Schema.optional(NonNegativeNumber),
  /** Budgets and model allow-lists per team; a team not listed has neither. */
  teams: dflt(Schema.Record({ key: TeamName, value: TeamSettings }), () => ({})),
  /** A request whose worst-case cost (prompt upper bound plus `max_tokens` at the model's price) is above this is refused with 402. */
  max_cost_per_request_usd: dflt(NonNegativeNumber, () => 5),
  /** How much of the prompt an audit row keeps: `full`, `redacted` (PII masked), or `hash` (SHA-256 only). */
  audit_level: dflt(AuditLevel, () => "redacted" as const),
  /**
   * Extra PII patterns masked at `audit_level: redacted` (national ids and the like), beside the
   * built-in e-mail, phone, card (Luhn), IBAN (mod 97) and US SSN detectors; `[NAME]` replaces a match.
   */
  redaction_patterns: Schema.optional(RedactionPatterns),
  /** `sync`: a request's audit row is committed (group commit) before its answer; `buffered`: rows are queued and written in batches, drained at shutdown. */
  audit_durability: dflt(Schema.Literal("sync", "buffered"), () => "sync" as const),
  /** How long audit rows are kept before `tidyllm audit purge` removes them (`0` keeps them forever); rows under an open agreement are never purged. */
  audit_retention_days: dflt(NonNegativeInt, () => 365),
  /** Refuse (400) a model call that gives no reason (body `reason`, `metadata.reason`, or `x-tidyllm-reason`). */
  require_reason: dflt(Schema.Boolean, () => true),
  /** `max_tokens` used (for the estimate and the call) when a request gives none. */
  default_max_tokens: dflt(Schema.Int.pipe(Schema.positive()), () => 1024),
  /** Model used when a request names none. */
  default_model: dflt(Name, () => "claude-3-haiku"),
  /**
   * Budget slices: a replica leases this fraction of each budget's limit at a time and reserves
   * against the lease in memory, touching the database once per slice instead of twice per
   * request. `0` reserves every request in the database.
   */
  budget_slice_fraction: dflt(Schema.Number.pipe(Schema.finite(), Schema.between(0, 1)), () => 0.01),
  /** How long a reservation may stay open before the reaper releases it (crashed replica). */
  reservation_ttl_seconds: dflt(PositiveNumber, () => 900)
})
export type CorporateLlmSettings = typeof CorporateLlmSettings.Type

/** Settings of gateway #2. */
export const AiProcessingSettings = Schema.Struct({
  /** Serve repeated identical requests from the response cache (per team; a cache hit is audited as `cache_hit` at no cost). */
  enable_caching: dflt(Schema.Boolean, () => true),
  /** Directory of the file response cache (`storage.cache: file`). */
  cache_dir: dflt(Name, () => ".bedrock_cache"),
  /** How long a cached answer is served, in seconds. */
  cache_ttl_seconds: dflt(NonNegativeNumber, () => 3600),
  /** Retries of a retryable failure (throttling, 5xx, timeout, connection, cut stream) on one backend before failing over. */
  max_retries: dflt(NonNegativeInt, () => 3),
  /** Base of the exponential backoff, in seconds. */
  retry_delay_base: dflt(NonNegativeNumber, () => 1),
  /** Per-attempt timeout, in seconds. */
  timeout_seconds: dflt(PositiveNumber, () => 30),
  /** Backends tried after the first, in order, when a request's backend is `auto`. */
  fallback_backends: dflt(Schema.Array(Name), () => []),
  /** Consecutive failures of one provider/model after which its circuit opens (`0` turns breakers off). */
  circuit_breaker_failures: dflt(NonNegativeInt, () => 5),
  /** How long an open circuit fails fast before one probe request is let through, in seconds. */
  circuit_breaker_cooldown_seconds: dflt(PositiveNumber, () => 30)
})
export type AiProcessingSettings = typeof AiProcessingSettings.Type

/** Bedrock provider settings; credentials fall back to the AWS SDK's default chain. */
export const BedrockSettings = Schema.Struct({
  /** AWS region of Bedrock. */
  region: dflt(Name, () => "us-east-1"),
  /** A Bedrock runtime endpoint other than AWS's (a VPC endpoint, a test stub). */
  endpoint: Schema.optional(Name),
  /** Static AWS credentials; without them the AWS SDK's default chain (profile, web identity, container role). Also used for S3. */
  access_key_id: Schema.optional(Schema.Redacted(Schema.String)),
  /** The secret of `access_key_id`. */
  secret_access_key: Schema.optional(Schema.Redacted(Schema.String)),
  /** The session token of temporary credentials. */
  session_token: Schema.optional(Schema.Redacted(Schema.String))
})
export type BedrockSettings = typeof BedrockSettings.Type

/** OpenAI (direct API) settings; without `api_key` (env `OPENAI_API_KEY`) the provider is unconfigured. */
export const OpenAiSettings = Schema.Struct({
  /** OpenAI API key; without it the provider is registered but unconfigured. */
  api_key: Schema.optional(Schema.Redacted(Schema.String)),
  /** API base URL (a proxy or a compatible server). */
  base_url: dflt(Name, () => "https://api.openai.com/v1"),
  /** Sent as `OpenAI-Organization`. */
  organization: Schema.optional(Name),
  /** Sent as `OpenAI-Project`. */
  project: Schema.optional(Name)
})
export type OpenAiSettings = typeof OpenAiSettings.Type

/** Anthropic (direct Messages API) settings; without `api_key` (env `ANTHROPIC_API_KEY`) the provider is unconfigured. */
export const AnthropicSettings = Schema.Struct({
  /** Anthropic API key; without it the provider is registered but unconfigured. */
  api_key: Schema.optional(Schema.Redacted(Schema.String)),
  /** API base URL. */
  base_url: dflt(Name, () => "https://api.anthropic.com")
})
export type AnthropicSettings = typeof AnthropicSettings.Type

/**
 * An OpenAI-compatible server (vLLM, Ollama, LM Studio, llama.cpp server) at `base_url`, e.g.
 * `http://127.0.0.1:11434/v1` for Ollama. It registers under its key in `openai_compatible`.
 */
export const OpenAiCompatibleSettings = Schema.Struct({
  /** The server's OpenAI API base URL, e.g. `http://127.0.0.1:8000/v1`. */
  base_url: Name,
  /** Bearer key, if the server wants one. */
  api_key: Schema.optional(Schema.Redacted(Schema.String))
})
export type OpenAiCompatibleSettings = typeof OpenAiCompatibleSettings.Type

/** An MLflow AI Gateway; a model's `provider_ids.mlflow` names the gateway endpoint to invoke. */
export const MlflowSettings = Schema.Struct({
  /** Base URL of the MLflow AI Gateway (deployments server); requests go to `/gateway/{endpoint}/invocations`. */
  gateway_url: Name,
  /** Sent as `Authorization: Bearer …` when set (a gateway behind an authenticating proxy). */
  token: Schema.optional(Schema.Redacted(Schema.String))
})
export type MlflowSettings = typeof MlflowSettings.Type

/** Mock provider settings. */
export const MockSettings = Schema.Struct({
  /** Simulated latency per call, in milliseconds. */
  latency_ms: dflt(NonNegativeNumber, () => 0),
  /** Pause between streamed chunks, in milliseconds (a slow stream, for demos and disconnect tests). */
  stream_chunk_delay_ms: dflt(NonNegativeNumber, () => 0)
})

/** Provider sections. */
export const ProvidersSettings = Schema.Struct({
  bedrock: Schema.optional(BedrockSettings),
  openai: Schema.optional(OpenAiSettings),
  anthropic: Schema.optional(AnthropicSettings),
  /** OpenAI-compatible servers by provider name (the name must not be a built-in provider's). */
  openai_compatible: dflt(Schema.Record({ key: Name, value: OpenAiCompatibleSettings }), () => ({})),
  mlflow: Schema.optional(MlflowSettings),
  mock: dflt(MockSettings, () => ({ latency_ms: 0, stream_chunk_delay_ms: 0 }))
})
export type ProvidersSettings = typeof ProvidersSettings.Type

/** Settings of gateway #3 (names as in the build guide). */
export const WorkflowOptimizerSettings = Schema.Struct({
  /** Default OPTIMIZE level: `low` (ids, dependencies, redundant edges), `medium` (+ merges and parallelisation), `high` (+ cheaper models, compliance checks, a model-assisted review). */
  optimization_level: dflt(Schema.Literal("low", "medium", "high"), () => "medium" as const),
  /** Let OPTIMIZE assign missing step ids and repair dangling dependencies. */
  enable_auto_fix: dflt(Schema.Boolean, () => true),
  /** Let OPTIMIZE at `high` insert compliance checks where the frameworks ask for them. */
  enable_compliance_mode: dflt(Schema.Boolean, () => true),
  /** Most OPTIMIZE rounds (a round applies every rule; it stops early when a round changes nothing). */
  max_optimization_iterations: dflt(Schema.Int.pipe(Schema.between(1, 100)), () => 10),
  /** Accept nested sub-workflows (up to `dag_max_depth`); off: flat workflows only. */
  enable_hierarchical_dag: dflt(Schema.Boolean, () => true),
  /** Deepest nesting of sub-workflows accepted. */
  dag_max_depth: dflt(Schema.Int.pipe(Schema.between(1, 100)), () => 10),
  /** Behaviour-changing optimisations of stored workflows wait for approval under a flow agreement. */
  enable_flow_agreements: dflt(Schema.Boolean, () => true),
  /** A step counts as a bottleneck when its share of the critical path's duration or cost is at least this share of the largest. */
  bottleneck_threshold: dflt(Schema.Number.pipe(Schema.finite(), Schema.between(0, 1)), () => 0.8),
  /** Frameworks ANALYZE gives verdicts for (frameworks named by `compliance_check` steps are added). */
  compliance_frameworks: dflt(Schema.Array(Schema.Literal("SOX", "GDPR", "Internal")), () => ["SOX", "GDPR", "Internal"] as const),
  /** Gate optimisations behind approvals at all (with `enable_flow_agreements` and `flow_config.require_stakeholder_approval`). */
  enable_approval_workflows: dflt(Schema.Boolean, () => true),
  /** Grade each proposal's risk (low / medium / high decide who must approve); off: every proposal is low risk (one approval). */
  risk_assessment_required: dflt(Schema.Boolean, () => true),
  /** Days a proposed agreement stays open before it expires. */
  approval_timeout_days: dflt(Schema.Number.pipe(Schema.finite(), Schema.positive()), () => 7),
  /** Flow-agreement options. */
  flow_config: dflt(Schema.Struct({
    /** Require a stakeholder's approval before an optimised version becomes current. */
    require_stakeholder_approval: dflt(Schema.Boolean, () => true)
  }), () => ({ require_stakeholder_approval: true }))
})
export type WorkflowOptimizerSettings = typeof WorkflowOptimizerSettings.Type

/** S3 object storage (workflows and artefacts); without a bucket they live in a local directory. */
export const S3Settings = Schema.Struct({
  /** The bucket workflows are stored in. */
  bucket: Name,
  /** Key prefix inside the bucket (e.g. `tidyllm/`). */
  prefix: dflt(Schema.String, () => ""),
  /** The bucket's region. */
  region: dflt(Name, () => "us-east-1"),
  /** An S3-compatible endpoint (MinIO, s3rver) instead of AWS. */
  endpoint: Schema.optional(Name),
  /** Path-style addressing (`endpoint/bucket/key`), which most S3-compatible servers need. */
  force_path_style: dflt(Schema.Boolean, () => false)
})
export type S3Settings = typeof S3Settings.Type

/** Where data lives. */
export const StorageSettings = Schema.Struct({
  /** Postgres URL; without it the data lives in embedded PGlite under `data_dir`. */
  database_url: Schema.optional(Schema.Redacted(Schema.String)),
  /** Directory of the embedded PGlite database (`pgdata/`) and the local object store (`objects/`). */
  data_dir: dflt(Name, () => ".tidyllm"),
  /** Response cache backend (`redis` needs `redis_url`). */
  cache: dflt(Schema.Literal("file", "memory", "redis"), () => "file" as const),
  /** Redis URL for the response cache (env `REDIS_URL`; setting it selects `cache: redis`). */
  redis_url: Schema.optional(Schema.Redacted(Schema.String)),
  /** Object storage for workflows: S3 when set (env S3_BUCKET, S3_ENDPOINT, S3_PREFIX), else `<data_dir>/objects`. */
  s3: Schema.optional(S3Settings),
  /** Postgres connection pool size. */
  pool_size: dflt(Schema.Int.pipe(Schema.between(1, 200)), () => 10)
})
export type StorageSettings = typeof StorageSettings.Type

/** HTTP server settings. */
export const ServerSettings = Schema.Struct({
  /** Listen address; any other than loopback needs API keys (`0.0.0.0` in a container). */
  host: dflt(Name, () => "127.0.0.1"),
  /** Listen port (`0`: a free one). */
  port: dflt(Schema.Int.pipe(Schema.between(0, 65535)), () => 8080),
  /**
   * `keys`: every request but health and metrics needs an API key. `open`: no keys, identity from
   * the `x-tidyllm-*` headers — allowed only bound to a loopback address. `auto` (default): `keys`
   * when a bootstrap admin key is configured or the store holds an active key, else `open`.
   */
  auth: dflt(Schema.Literal("auto", "keys", "open"), () => "auto" as const),
  /** A bootstrap admin key (env `TIDYLLM_ADMIN_KEY`) for the first start; at least 32 characters. */
  admin_key: Schema.optional(Schema.Redacted(Schema.String.pipe(Schema.minLength(32)))),
  /** How long a replica trusts a looked-up key before asking the store again (revocation reaches other replicas within this). */
  key_cache_seconds: dflt(NonNegativeNumber, () => 5),
  /** On SIGTERM/SIGINT, how long in-flight requests may finish before their connections are cut. */
  shutdown_grace_seconds: dflt(NonNegativeNumber, () => 10),
  /** Largest request body accepted, in bytes. */
  max_body_bytes: dflt(Schema.Int.pipe(Schema.positive()), () => 1_048_576),
  /**
   * How far the server lets V8's old heap grow past what a full collection left live, in percent
   * (`100`: to twice the live size). Left to itself V8 lets it grow to about four times under load,
   * ~250 MiB of RSS under the bench's load against ~180 MiB at `100` for the same CPU, but a few ms
   * more p99 at 10 connections; lower saves more memory for more collection work
   * (docs/performance.md). `0` leaves V8's own heuristic.
   */
  heap_growth_percent: dflt(Schema.Int.pipe(Schema.between(0, 1000)), () => 100)
})
export type ServerSettings = typeof ServerSettings.Type

/** Logs and traces. */
export const ObservabilitySettings = Schema.Struct({
  /** `json`: one JSON object a line (for log shippers); `text`: logfmt-style lines for people. */
  log_format: dflt(Schema.Literal("json", "text"), () => "json" as const),
  /** The least severe level logged. */
  log_level: dflt(Schema.Literal("debug", "info", "warning", "error"), () => "info" as const),
  /** One access-log line per request (request id, caller, route, status, duration). */
  access_log: dflt(Schema.Boolean, () => true),
  /**
   * Where OTLP/HTTP traces go, e.g. `http://collector:4318/v1/traces` or MLflow's
   * `http://mlflow:5000/v1/traces`; unset: no traces exported (the default).
   */
  otlp_endpoint: Schema.optional(Name),
  /** Extra headers of the trace export (an authorization token, a tenant). */
  otlp_headers: Schema.optional(Schema.Record({ key: Name, value: Schema.Redacted(Schema.String) })),
  /** The MLflow experiment traces are filed under (sent as `x-mlflow-experiment-id`). */
  mlflow_experiment_id: Schema.optional(Name),
  /** `service.name` of the exported spans. */
  service_name: dflt(Name, () => "tidyllm-gateway"),
  /** Fraction of requests traced (0-1). */
  trace_sample_ratio: dflt(Schema.Number.pipe(Schema.finite(), Schema.between(0, 1)), () => 1)
})
export type ObservabilitySettings = typeof ObservabilitySettings.Type

/** The whole configuration. */
export const GatewayConfig = Schema.Struct({
  corporate_llm: dflt(CorporateLlmSettings, () => Schema.decodeSync(CorporateLlmSettings)({})),
  ai_processing: dflt(AiProcessingSettings, () => Schema.decodeSync(AiProcessingSettings)({})),
  workflow_optimizer: dflt(WorkflowOptimizerSettings, () => Schema.decodeSync(WorkflowOptimizerSettings)({})),
  providers: dflt(ProvidersSettings, () => Schema.decodeSync(ProvidersSettings)({})),
  /** Catalog entries added to (or replacing, by id) the built-in Bedrock catalog. */
  models: dflt(Schema.Array(ModelEntry), () => []),
  storage: dflt(StorageSettings, () => Schema.decodeSync(StorageSettings)({})),
  server: dflt(ServerSettings, () => Schema.decodeSync(ServerSettings)({})),
  observability: dflt(ObservabilitySettings, () => Schema.decodeSync(ObservabilitySettings)({}))
})
export type GatewayConfig = typeof GatewayConfig.Type
export type GatewayConfigInput = typeof GatewayConfig.Encoded

/**
 * Loads the gateway configuration: `tidyllm.yaml` (path from `--config`, `TIDYLLM_CONFIG`, else
 * `./tidyllm.yaml` when present), then the environment (a `.env` file in the working directory,
 * with the real environment winning over it), validated by the `GatewayConfig` schema. Every bad
 * key or value is named in one `ConfigError`; nothing starts on a half-valid config.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import { Data, Effect, Either, Schema } from "effect"
import { Config } from "@tidyllm/core"
import * as YAML from "yaml"
import { formatAll, formatPath } from "../internal/issues.js"

/** The configuration (or its environment) is invalid; `issues` has one line per problem. */
export class ConfigError extends Data.TaggedError("ConfigError")<{
  readonly message: string
  readonly issues: ReadonlyArray<string>
}> {
  static of(headline: string, issues: ReadonlyArray<string>): ConfigError {
    return new ConfigError({ message: [headline, ...issues.map((i) => `  - ${i}`)].join("\n"), issues })
  }
}

/** An environment: variable name → value (`process.env` at the edge, a literal in tests). */
export type Env = Readonly<Record<string, string | undefined>>

/** Where the AWS SDK will find credentials, as far as the config and environment tell. */
export type AwsCredentials = "static" | "chain" | "none"

/** The result of loading. */
export interface Loaded {
  readonly config: Config.GatewayConfig
  /** The YAML file read, if any. */
  readonly file: string | undefined
  /** The `.env` file read, if any. */
  readonly dotenv: string | undefined
  readonly awsCredentials: AwsCredentials
  /** `true` when `default_provider` was chosen by the loader (no file or env value named one). */
  readonly defaultProviderImplicit: boolean
  /** Lines worth logging at start-up (which provider is the default and why, …). */
  readonly notes: ReadonlyArray<string>
}

/** What to load from. */
export interface LoadOptions {
  /** `--config` given on the command line (wins over `TIDYLLM_CONFIG`). */
  readonly configPath?: string | undefined
  /** The process environment. */
  readonly env: Env
  /** Directory holding `.env` and the default `tidyllm.yaml` (default: the process's cwd). */
  readonly cwd?: string | undefined
  /** Read `.env` from `cwd` (default `true`). */
  readonly dotenv?: boolean | undefined
}

// ---------------------------------------------------------------------------------------------
// .env

/**
 * Parses a `.env` file: `KEY=value` lines, optional `export `, `#` comments, single or double
 * quotes (double quotes understand `\n`, `\t`, `\"`, `\\`), inline ` #` comments after unquoted values.
 */
export const parseDotenv = (text: string): Record<string, string> => {
  const out: Record<string, string> = {}
  const lines = text.replace(/\r\n?/g, "\n").split("\n")
  for (let i = 0; i < lines.length; i++) {
    const line = (lines[i] ?? "").trim()
    if (line === "" || line.startsWith("#")) continue
    const match = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(.*)$/.exec(line)
    if (match === null) continue
    const key = match[1] ?? ""
    let value = match[2] ?? ""
    const quote = value[0]
    if (quote === "\"" || quote === "'") {
      // A quoted value may span lines until its closing quote.
      let body = value.slice(1)
      let end = findClosing(body, quote)
      while (end < 0 && i + 1 < lines.length) {
        body += `\n${lines[++i] ?? ""}`
        end = findClosing(body, quote)
      }
      value = end < 0 ? body : body.slice(0, end)
      if (quote === "\"") {
        value = value.replace(/\\(["\\nrt])/g, (_, c: string) => (c === "n" ? "\n" : c === "r" ? "\r" : c === "t" ? "\t" : c))
      }
    } else {
      const hash = value.search(/\s#/)
      value = (hash >= 0 ? value.slice(0, hash) : value).trim()
    }
    out[key] = value
  }
  return out
}

const findClosing = (s: string, quote: string): number => {
  for (let i = 0; i < s.length; i++) {
    if (s[i] === "\\" && quote === "\"") {
      i++
      continue
    }
    if (s[i] === quote) return i
  }
  return -1
}

// ---------------------------------------------------------------------------------------------
// Environment overrides

type Parser = (raw: string) => Either.Either<unknown, string>

const text: Parser = (raw) => Either.right(raw)
const decimal: Parser = (raw) =>
  /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/.test(raw) ? Either.right(Number(raw)) : Either.left(`expected a number, got ${JSON.stringify(raw)}`)
const boolean: Parser = (raw) => {
  const v = raw.trim().toLowerCase()
  if (["1", "true", "yes", "on"].includes(v)) return Either.right(true)
  if (["0", "false", "no", "off"].includes(v)) return Either.right(false)
  return Either.left(`expected true or false, got ${JSON.stringify(raw)}`)
}
const integer: Parser = (raw) => (/^\d+$/.test(raw) ? Either.right(Number(raw)) : Either.left(`expected a whole number, got ${JSON.stringify(raw)}`))

/** Environment variables and the config key each one sets. Later entries for the same key win. */
export const environmentOverrides: ReadonlyArray<{ readonly name: string; readonly path: ReadonlyArray<string>; readonly parse: Parser }> = [
  { name: "LLM_MAX_COST_PER_REQUEST", path: ["corporate_llm", "max_cost_per_request_usd"], parse: decimal },
  { name: "LLM_DAILY_BUDGET_USD", path: ["corporate_llm", "budget_limit_daily_usd"], parse: decimal },
  { name: "LLM_DEFAULT_PROVIDER", path: ["corporate_llm", "default_provider"], parse: text },
  { name: "LLM_FALLBACK_PROVIDER", path: ["corporate_llm", "fallback_provider"], parse: text },
  { name: "LLM_AUDIT_LEVEL", path: ["corporate_llm", "audit_level"], parse: text },
  { name: "DATABASE_URL", path: ["storage", "database_url"], parse: text },
  { name: "TIDYLLM_DATA_DIR", path: ["storage", "data_dir"], parse: text },
  { name: "TIDYLLM_CACHE_DIR", path: ["ai_processing", "cache_dir"], parse: text },
  { name: "S3_BUCKET", path: ["storage", "s3", "bucket"], parse: text },
  { name: "S3_ENDPOINT", path: ["storage", "s3", "endpoint"], parse: text },
  { name: "S3_PREFIX", path: ["storage", "s3", "prefix"], parse: text },
  { name: "S3_FORCE_PATH_STYLE", path: ["storage", "s3", "force_path_style"], parse: boolean },
  { name: "S3_REGION", path: ["storage", "s3", "region"], parse: text },
  { name: "HOST", path: ["server", "host"], parse: text },
  { name: "PORT", path: ["server", "port"], parse: integer },
  { name: "TIDYLLM_AUTH", path: ["server", "auth"], parse: text },
  { name: "TIDYLLM_SHUTDOWN_GRACE_SECONDS", path: ["server", "shutdown_grace_seconds"], parse: decimal },
  { name: "TIDYLLM_HEAP_GROWTH_PERCENT", path: ["server", "heap_growth_percent"], parse: integer },
  { name: "TIDYLLM_LOG_FORMAT", path: ["observability", "log_format"], parse: text },
  { name: "TIDYLLM_LOG_LEVEL", path: ["observability", "log_level"], parse: text },
  { name: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", path: ["observability", "otlp_endpoint"], parse: text },
  { name: "TIDYLLM_OTLP_ENDPOINT", path: ["observability", "otlp_endpoint"], parse: text },
  { name: "OTEL_SERVICE_NAME", path: ["observability", "service_name"], parse: text },
  { name: "MLFLOW_EXPERIMENT_ID", path: ["observability", "mlflow_experiment_id"], parse: text },
  { name: "TIDYLLM_ADMIN_KEY", path: ["server", "admin_key"], parse: text },
  { name: "AWS_DEFAULT_REGION", path: ["providers", "bedrock", "region"], parse: text },
  { name: "AWS_REGION", path: ["providers", "bedrock", "region"], parse: text },
  { name: "AWS_ACCESS_KEY_ID", path: ["providers", "bedrock", "access_key_id"], parse: text },
  { name: "AWS_SECRET_ACCESS_KEY", path: ["providers", "bedrock", "secret_access_key"], parse: text },
  { name: "AWS_SESSION_TOKEN", path: ["providers", "bedrock", "session_token"], parse: text },
  { name: "BEDROCK_ENDPOINT", path: ["providers", "bedrock", "endpoint"], parse: text },
  { name: "OPENAI_API_KEY", path: ["providers", "openai", "api_key"], parse: text },
  { name: "OPENAI_BASE_URL", path: ["providers", "openai", "base_url"], parse: text },
  { name: "ANTHROPIC_API_KEY", path: ["providers", "anthropic", "api_key"], parse: text },
  { name: "ANTHROPIC_BASE_URL", path: ["providers", "anthropic", "base_url"], parse: text },
  { name: "MLFLOW_GATEWAY_URL", path: ["providers", "mlflow", "gateway_url"], parse: text },
  { name: "REDIS_URL", path: ["storage", "redis_url"], parse: text }
]

/** Provider names that belong to built-in adapters (an `openai_compatible` entry may not take one). */
export const builtInProviders: ReadonlyArray<string> = ["mock", "bedrock", "openai", "anthropic", "mlflow"]

/** Variables that point the AWS SDK's default credential chain at credentials without static keys. */
const chainCredentialVariables = [
  "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"
]

type Json = Record<string, unknown>
const isRecord = (u: unknown): u is Json => typeof u === "object" && u !== null && !Array.isArray(u)

/** Sets `path` in a nested plain object, creating objects on the way; `false` when a non-object is in the way. */
const setIn = (root: Json, path: ReadonlyArray<string>, value: unknown): boolean => {
  let node = root
  for (const key of path.slice(0, -1)) {
    const next = node[key]
    if (next === undefined || next === null) {
      const created: Json = {}
      node[key] = created
      node = created
    } else if (isRecord(next)) {
      node = next
    } else {
      return false
    }
  }
  const last = path[path.length - 1]
  if (last === undefined) return false
  node[last] = value
  return true
}

const getIn = (root: unknown, path: ReadonlyArray<string>): unknown =>
  path.reduce<unknown>((node, key) => (isRecord(node) ? node[key] : undefined), root)

const nonEmpty = (env: Env, name: string): string | undefined => {
  const v = env[name]
  return v === undefined || v.trim() === "" ? undefined : v.trim()
}

/** A deep copy of plain YAML data, so overrides never touch the parsed document. */
const clone = (u: unknown): unknown => (u === undefined ? undefined : structuredClone(u))

// ---------------------------------------------------------------------------------------------
// Resolution (pure)

/**
 * Merges parsed YAML (`raw`, `undefined` when there is no file) with the environment and
 * validates the result. Pure: the file reading is done by {@link load}.
 */
export const resolve = (raw: unknown, env: Env, file?: string): Either.Either<Omit<Loaded, "file" | "dotenv">, ConfigError> => {
  const where = file === undefined ? "configuration" : `configuration (${file})`
  if (raw !== undefined && raw !== null && !isRecord(raw)) {
    return Either.left(ConfigError.of(`invalid ${where}:`, ["(root): expected a mapping of sections (corporate_llm, ai_processing, …)"]))
  }
  const input: Json = isRecord(raw) ? (clone(raw) as Json) : {}
  const problems: Array<string> = []
  const fromEnv = new Map<string, string>()

  for (const o of environmentOverrides) {
    const value = nonEmpty(env, o.name)
    if (value === undefined) continue
    const parsed = o.parse(value)
    if (Either.isLeft(parsed)) {
      problems.push(`${o.name}: ${parsed.left}`)
      continue
    }
    if (!setIn(input, o.path, parsed.right)) {
      problems.push(`${o.name}: cannot set ${o.path.join(".")}: '${o.path.slice(0, -1).join(".")}' in the file is not a mapping`)
      continue
    }
    fromEnv.set(formatPath(o.path), o.name)
  }

  // The default provider: explicit (file or env) wins; otherwise Bedrock when credentials are at hand, else the mock.
  const bedrock = getIn(input, ["providers", "bedrock"])
  const staticKeys = isRecord(bedrock) && bedrock["access_key_id"] !== undefined && bedrock["secret_access_key"] !== undefined
  const chain = chainCredentialVariables.some((v) => nonEmpty(env, v) !== undefined)
  const awsCredentials: AwsCredentials = staticKeys ? "static" : chain ? "chain" : "none"
  const explicitDefault = getIn(input, ["corporate_llm", "default_provider"])
  const defaultProviderImplicit = explicitDefault === undefined
  if (defaultProviderImplicit) {
    const chosen = awsCredentials === "none" ? "mock" : "bedrock"
    if (getIn(input, ["corporate_llm"]) === undefined || isRecord(getIn(input, ["corporate_llm"]))) {
      setIn(input, ["corporate_llm", "default_provider"], chosen)
    }
  }

  // A Redis URL without an explicit cache choice means: cache in Redis.
  if (getIn(input, ["storage", "redis_url"]) !== undefined && getIn(input, ["storage", "cache"]) === undefined) {
    setIn(input, ["storage", "cache"], "redis")
  }

  const decoded = Schema.decodeUnknownEither(Config.GatewayConfig, { onExcessProperty: "error", errors: "all" })(input)
  if (Either.isLeft(decoded)) {
    problems.push(...formatAll(decoded.left, Config.GatewayConfig.ast, (path) => fromEnv.get(formatPath(path))))
  }
  if (problems.length > 0 || Either.isLeft(decoded)) {
    return Either.left(ConfigError.of(`invalid ${where}:`, problems))
  }
  const config = decoded.right
  for (const name of Object.keys(config.providers.openai_compatible)) {
    if (builtInProviders.includes(name)) {
      problems.push(`providers.openai_compatible.${name}: '${name}' is a built-in provider's name; give the server another name (e.g. 'ollama', 'vllm')`)
    }
  }
  if (config.storage.cache === "redis" && config.storage.redis_url === undefined) {
    problems.push("storage.cache: 'redis' needs storage.redis_url (or REDIS_URL)")
  }
  if (problems.length > 0) return Either.left(ConfigError.of(`invalid ${where}:`, problems))
  const notes: Array<string> = []
  if (defaultProviderImplicit) {
    notes.push(
      config.corporate_llm.default_provider === "mock"
        ? "no AWS credentials found, so the default provider is the offline mock; set AWS credentials (or LLM_DEFAULT_PROVIDER=bedrock) to use Bedrock"
        : `AWS credentials found (${awsCredentials === "static" ? "static keys" : "default credential chain"}), so the default provider is ${config.corporate_llm.default_provider}`
    )
  }
  return Either.right({ config, awsCredentials, defaultProviderImplicit, notes })
}

// ---------------------------------------------------------------------------------------------
// Loading (reads files)

/** Reads the `.env` and YAML files and resolves the configuration. */
export const load = (options: LoadOptions): Effect.Effect<Loaded, ConfigError, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const cwd = options.cwd ?? process.cwd()
    const readIfExists = (file: string) =>
      fs.exists(file).pipe(
        Effect.flatMap((exists) => (exists ? Effect.map(fs.readFileString(file), (s) => s as string | undefined) : Effect.succeed(undefined))),
        Effect.mapError((e) => ConfigError.of(`cannot read ${file}:`, [e.message]))
      )

    let dotenvFile: string | undefined
    let env: Env = options.env
    if (options.dotenv !== false) {
      const file = path.join(cwd, ".env")
      const content = yield* readIfExists(file)
      if (content !== undefined) {
        dotenvFile = file
        // The real environment wins over `.env`; an empty real value does not hide a `.env` value.
        const fromFile = parseDotenv(content)
        const merged: Record<string, string | undefined> = { ...fromFile }
        for (const [k, v] of Object.entries(options.env)) if (v !== undefined && v !== "") merged[k] = v
        env = merged
      }
    }

    const explicit = options.configPath ?? nonEmpty(env, "TIDYLLM_CONFIG")
    const file = explicit !== undefined ? path.resolve(cwd, explicit) : path.join(cwd, "tidyllm.yaml")
    const content = yield* readIfExists(file)
    if (content === undefined && explicit !== undefined) {
      return yield* ConfigError.of(`config file not found: ${file}`, [
        `${options.configPath !== undefined ? "--config" : "TIDYLLM_CONFIG"} names ${explicit}, which does not exist`
      ])
    }
    let raw: unknown = undefined
    if (content !== undefined) {
      const doc = YAML.parseDocument(content, { prettyErrors: true, uniqueKeys: true })
      if (doc.errors.length > 0) {
        return yield* ConfigError.of(`invalid YAML in ${file}:`, doc.errors.map((e) => e.message.split("\n")[0] ?? e.message))
      }
      raw = doc.toJS()
    }
    const resolved = resolve(raw, env, content === undefined ? undefined : file)
    if (Either.isLeft(resolved)) return yield* resolved.left
    return { ...resolved.right, file: content === undefined ? undefined : file, dotenv: dotenvFile }
  })

/** The value of `--config <path>` / `--config=<path>` in argv, if given. */
export const configPathFromArgv = (argv: ReadonlyArray<string>): string | undefined => {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? ""
    if (a === "--config" || a === "-c") return argv[i + 1]
    if (a.startsWith("--config=")) return a.slice("--config=".length)
  }
  return undefined
}

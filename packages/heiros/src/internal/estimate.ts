/** What a step is (AI, output, approval, …) and what it is estimated to take and cost. */
import { ModelCatalog, Money } from "@tidyllm/core"
import { Option } from "effect"
import type { StepConfig } from "../Workflow.js"

/** Defaults of one step type: estimated milliseconds and dollars, and tokens for AI types. */
export interface TypeDefaults {
  readonly ms: number
  readonly cost_usd: number
  /** Set for types that call a model: tokens assumed when the config gives none. */
  readonly tokens?: { readonly input: number; readonly output: number } | undefined
}

/**
 * Per-type defaults, used when a step's config has no `estimated_ms` / `estimated_cost_usd` /
 * `input_tokens` / `max_tokens`. The figures are orders of magnitude of a Bedrock-backed run:
 * a model call takes seconds, plumbing steps take tens to hundreds of milliseconds. A human
 * approval counts only its scheduling time: the wait for a person is not compute and would
 * otherwise dwarf everything else on the critical path.
 */
export const typeDefaults: Readonly<Record<string, TypeDefaults>> = {
  intake: { ms: 200, cost_usd: 0 },
  input: { ms: 200, cost_usd: 0 },
  process: { ms: 500, cost_usd: 0 },
  transform: { ms: 300, cost_usd: 0 },
  validate: { ms: 100, cost_usd: 0 },
  validation: { ms: 100, cost_usd: 0 },
  condition: { ms: 10, cost_usd: 0 },
  merge: { ms: 50, cost_usd: 0 },
  cache: { ms: 10, cost_usd: 0 },
  notify: { ms: 100, cost_usd: 0 },
  output: { ms: 200, cost_usd: 0 },
  audit: { ms: 100, cost_usd: 0 },
  compliance_check: { ms: 300, cost_usd: 0 },
  redact: { ms: 200, cost_usd: 0 },
  redaction: { ms: 200, cost_usd: 0 },
  minimize: { ms: 200, cost_usd: 0 },
  anonymize: { ms: 200, cost_usd: 0 },
  human_approval: { ms: 1000, cost_usd: 0 },
  approval: { ms: 1000, cost_usd: 0 },
  human_review: { ms: 1000, cost_usd: 0 },
  workflow: { ms: 0, cost_usd: 0 },
  ai_analysis: { ms: 3000, cost_usd: 0, tokens: { input: 1000, output: 500 } },
  summarize: { ms: 2000, cost_usd: 0, tokens: { input: 2000, output: 300 } },
  classify: { ms: 800, cost_usd: 0, tokens: { input: 500, output: 20 } },
  extract: { ms: 1500, cost_usd: 0, tokens: { input: 1500, output: 300 } },
  generate: { ms: 4000, cost_usd: 0, tokens: { input: 500, output: 1000 } },
  route: { ms: 600, cost_usd: 0, tokens: { input: 300, output: 10 } },
  translate: { ms: 2500, cost_usd: 0, tokens: { input: 1000, output: 1000 } },
  chat: { ms: 2000, cost_usd: 0, tokens: { input: 500, output: 500 } }
}

/** Defaults of a type HeirOS does not know (it warns about those). */
export const unknownTypeDefaults: TypeDefaults = { ms: 500, cost_usd: 0 }
/** Tokens assumed for a `process` (or other non-AI type) step that names a model. */
export const genericAiTokens = { input: 1000, output: 500 } as const

/** Step types that always call a model. */
export const aiTypes: ReadonlySet<string> = new Set(
  Object.entries(typeDefaults).flatMap(([type, d]) => (d.tokens === undefined ? [] : [type]))
)
/** Cheap AI step kinds that OPTIMIZE `high` may move to a cheaper model. */
export const cheapAiKinds: ReadonlySet<string> = new Set(["classify", "extract", "route"])
export const approvalTypes: ReadonlySet<string> = new Set(["human_approval", "approval", "human_review", "manual_review"])
export const redactionTypes: ReadonlySet<string> = new Set(["redact", "redaction", "minimize", "minimise", "anonymize", "pseudonymize"])
export const auditTypes: ReadonlySet<string> = new Set(["audit", "audit_log"])

/** True when HeirOS knows the type. */
export const isKnownType = (type: string): boolean => type in typeDefaults || approvalTypes.has(type) || redactionTypes.has(type) || auditTypes.has(type)

/** A finite non-negative number at `key`, if there is one. */
export const num = (config: StepConfig, key: string): number | undefined => {
  const v = config[key]
  return typeof v === "number" && Number.isFinite(v) && v >= 0 ? v : undefined
}

/** A non-empty string at `key`, if there is one. */
export const str = (config: StepConfig, key: string): string | undefined => {
  const v = config[key]
  return typeof v === "string" && v.length > 0 ? v : undefined
}

/** The strings at `key` (a string or an array of strings). */
export const strs = (config: StepConfig, key: string): ReadonlyArray<string> => {
  const v = config[key]
  if (typeof v === "string") return [v]
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : []
}

/** The config key naming the model (`model` or `ai_model`), if any. */
export const modelKey = (config: StepConfig): "model" | "ai_model" | undefined =>
  str(config, "model") !== undefined ? "model" : str(config, "ai_model") !== undefined ? "ai_model" : undefined

/** The model a step names. */
export const modelName = (config: StepConfig): string | undefined => str(config, "model") ?? str(config, "ai_model")

/** True when the step calls a model: its config names one, or its type always does. */
export const isAi = (type: string, config: StepConfig): boolean => modelName(config) !== undefined || aiTypes.has(type)

/** Members batched into a step by OPTIMIZE (`config.batch`). */
export interface BatchMember {
  readonly id: string
  readonly type: string
  readonly config: StepConfig
}

/** The members of `config.batch`. */
export const batchOf = (config: StepConfig): ReadonlyArray<BatchMember> => {
  const v = config["batch"]
  if (!Array.isArray(v)) return []
  return v.flatMap((m: unknown): Array<BatchMember> => {
    if (typeof m !== "object" || m === null) return []
    const r = m as { readonly id?: unknown; readonly type?: unknown; readonly config?: unknown }
    if (typeof r.id !== "string" || typeof r.type !== "string") return []
    const config = typeof r.config === "object" && r.config !== null ? (r.config as StepConfig) : {}
    return [{ id: r.id, type: r.type, config }]
  })
}

/** A step's estimate. */
export interface Estimate {
  readonly ms: number
  readonly cost: Money.Nanos
  readonly ai: boolean
  /** The model a (possibly default) AI step uses, as named. */
  readonly model: string | undefined
  /** Its catalog entry, when the catalog knows the model. */
  readonly entry: ModelCatalog.ModelEntry | undefined
}

const defaultsOf = (type: string): TypeDefaults => typeDefaults[type] ?? unknownTypeDefaults

const tokensOf = (type: string, config: StepConfig) => {
  const d = defaultsOf(type).tokens ?? genericAiTokens
  return { input: num(config, "input_tokens") ?? d.input, output: num(config, "max_tokens") ?? d.output }
}

/** Estimates one step (the executable steps; a nested workflow is estimated through its steps). */
export const estimate = (type: string, config: StepConfig, catalog: ModelCatalog.Service, defaultModel: string | undefined): Estimate => {
  const ai = isAi(type, config)
  const model = ai ? modelName(config) ?? defaultModel : undefined
  const entry = model === undefined ? undefined : Option.getOrUndefined(catalog.resolve(model))
  const members = batchOf(config)
  const ownMs = num(config, "estimated_ms") ?? defaultsOf(type).ms
  // A batch is one call: the slowest member's time, the shared input once, every member's output.
  const ms = members.reduce((m, b) => Math.max(m, num(b.config, "estimated_ms") ?? defaultsOf(b.type).ms), ownMs)
  const explicit = num(config, "estimated_cost_usd")
  let cost: Money.Nanos
  if (explicit !== undefined) cost = Money.fromUsd(explicit)
  else if (entry !== undefined) {
    const own = tokensOf(type, config)
    const input = members.reduce((m, b) => Math.max(m, tokensOf(b.type, b.config).input), own.input)
    const output = members.reduce((m, b) => m + tokensOf(b.type, b.config).output, own.output)
    cost = ModelCatalog.cost(entry, { input_tokens: Math.round(input), output_tokens: Math.round(output) })
  } else cost = Money.fromUsd(defaultsOf(type).cost_usd)
  return { ms, cost, ai, model, entry }
}

/** Destinations inside the company; anything else (e-mail, webhooks, URLs, partners) is external. */
export const internalDestinations: ReadonlySet<string> = new Set([
  "s3", "internal", "database", "db", "postgres", "local", "file", "log", "logs", "memory", "none", "console", "stdout", "dashboard", "warehouse"
])

/** True for an output step (type `output`, or a `destination` in its config). */
export const isOutput = (type: string, config: StepConfig): boolean => type === "output" || str(config, "destination") !== undefined

/** True when the step writes to a destination outside the company. */
export const isExternalOutput = (type: string, config: StepConfig): boolean => {
  if (!isOutput(type, config)) return false
  if (config["external"] === true) return true
  if (config["external"] === false) return false
  const dest = str(config, "destination")
  if (dest === undefined) return false
  const scheme = dest.toLowerCase().split(/[:/]/)[0] ?? ""
  return !internalDestinations.has(scheme)
}

/** True when the step reads personal data (`pii: true`, `personal_data: true`, or a source tagged personal). */
export const readsPersonalData = (config: StepConfig): boolean =>
  config["pii"] === true || config["personal_data"] === true ||
  strs(config, "source").some((s) => /personal|pii/i.test(s)) ||
  strs(config, "tags").some((t) => /^(personal|pii)$/i.test(t))

/**
 * True when the model runs outside the company. Catalog models are served by a cloud provider,
 * so they count as external unless the step says `external_model: false`.
 */
export const usesExternalModel = (config: StepConfig, entry: ModelCatalog.ModelEntry | undefined): boolean => {
  if (config["external_model"] === false) return false
  if (entry === undefined) return true
  const hosts = Object.keys(entry.provider_ids)
  return !hosts.every((h) => h === "mock" || h === "local" || h === "internal")
}

/** The family of a catalog model: its id without the last `-` segment (`claude-3-sonnet` → `claude-3`). */
export const familyOf = (entry: ModelCatalog.ModelEntry): string => {
  const i = entry.id.lastIndexOf("-")
  return i <= 0 ? entry.id : entry.id.slice(0, i)
}

/** Price of a million input plus a million output tokens: the order models are compared by. */
export const priceOf = (entry: ModelCatalog.ModelEntry): number => entry.input_usd_per_million + entry.output_usd_per_million

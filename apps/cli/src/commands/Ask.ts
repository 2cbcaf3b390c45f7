/**
 * `tidyllm ask "<prompt>" --reason R [--model M] [--provider P] [--max-tokens N] [--json]`: one
 * request through gateway #2 (cache, retries, failover) and #1 (policy, budget, audit). The answer
 * goes to stdout; a dim line with provider/model, tokens, cost, latency, cache hit and audit id
 * goes to stderr, so `tidyllm ask … > answer.txt` keeps only the answer.
 */
import { Args, Command, Options } from "@effect/cli"
import { Console, Effect, Option } from "effect"
import { AiProcessingGateway } from "@tidyllm/ai-processing"
import { Ids, type LlmRequest } from "@tidyllm/core"
import { CliEnvironment } from "../CliEnvironment.js"
import { UsageError } from "../CliError.js"
import { styles, usdString } from "../internal/format.js"
import { loadConfig, services } from "../Root.js"

const prompt = Args.text({ name: "prompt" }).pipe(Args.withDescription("the prompt (quote it)"))
const model = Options.text("model").pipe(
  Options.withAlias("m"),
  Options.withDescription("catalog model or alias (default: corporate_llm.default_model)"),
  Options.optional
)
const reason = Options.text("reason").pipe(
  Options.withAlias("r"),
  Options.withDescription("why the request is made, written to the audit log (required unless corporate_llm.require_reason is false)"),
  Options.optional
)
const provider = Options.text("provider").pipe(
  Options.withAlias("p"),
  Options.withDescription("provider to use first (default: corporate_llm.default_provider)"),
  Options.optional
)
const maxTokens = Options.integer("max-tokens").pipe(
  Options.withDescription("most tokens of the answer (default: corporate_llm.default_max_tokens)"),
  Options.optional
)
const json = Options.boolean("json").pipe(Options.withDescription("print the whole response as JSON"))

/** The caller an interactive request is audited under: the local user. */
export const cliCaller = (env: Readonly<Record<string, string | undefined>>) => ({ user_id: env["USER"] ?? env["USERNAME"] ?? "cli" })

/** The metadata line under an answer. */
export const describeResponse = (response: LlmRequest.LLMResponse): string => {
  const m = response.metadata
  const usage = response.data?.usage
  return [
    `${m.provider}/${m.model}`,
    usage === undefined ? undefined : `${usage.input_tokens}+${usage.output_tokens} tokens`,
    usdString(m.cost_usd),
    `${m.latency_ms} ms`,
    `cache_hit=${m.cache_hit === true}`,
    m.attempts !== undefined && m.attempts > 1 ? `${m.attempts} attempts` : undefined,
    m.backend_used !== undefined && m.backend_used !== m.provider ? `backend ${m.backend_used}` : undefined,
    `audit ${m.audit_id}`
  ].filter((s) => s !== undefined).join(" · ")
}

/** `tidyllm ask`. */
export const command = Command.make("ask", { prompt, model, reason, provider, maxTokens, json }, (args) =>
  Effect.gen(function*() {
    const loaded = yield* loadConfig
    const environment = yield* CliEnvironment
    const why = Option.getOrUndefined(args.reason)?.trim()
    if ((why === undefined || why === "") && loaded.config.corporate_llm.require_reason) {
      return yield* new UsageError({
        message: "--reason is required: every request says why it is made (it goes into the audit log), e.g. --reason \"quarterly risk summary\""
      })
    }
    const request: LlmRequest.AIRequest = {
      prompt: args.prompt,
      reason: why,
      model: Option.getOrUndefined(args.model),
      provider: Option.getOrUndefined(args.provider),
      max_tokens: Option.getOrUndefined(args.maxTokens)
    }
    const response = yield* Effect.flatMap(AiProcessingGateway.AiProcessingGateway, (gateway) =>
      gateway.process(request, { request_id: Ids.randomUuid(), caller: cliCaller(environment.env) })
    ).pipe(Effect.provide(services(loaded)))
    if (args.json) return yield* Console.log(JSON.stringify(response, null, 2))
    const s = styles(environment.color)
    yield* Console.log(response.data?.response ?? "")
    yield* Console.error(s.dim(describeResponse(response)))
    if (response.metadata.mock) {
      yield* Console.error(s.yellow("note: this answer came from the offline MOCK provider, not from a model (configure AWS credentials to use Bedrock)"))
    }
  })
).pipe(Command.withDescription("send one prompt through the gateway (#2 → #1) and print the answer"))

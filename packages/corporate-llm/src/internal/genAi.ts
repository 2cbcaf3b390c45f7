/**
 * Span attributes of the OpenTelemetry GenAI semantic conventions, as gateway #1 sets them. The
 * names are spelled out here (domain packages import no OpenTelemetry package).
 */

/** `gen_ai.provider.name` values of the conventions for our built-in providers; others go by their own name. */
const systems: ReadonlyMap<string, string> = new Map([["bedrock", "aws.bedrock"], ["openai", "openai"], ["anthropic", "anthropic"]])

/** The conventions' provider value of a configured provider name (`bedrock` → `aws.bedrock`; `mock`, `mlflow`, compatible servers as named). */
export const systemOf = (provider: string): string => systems.get(provider) ?? provider

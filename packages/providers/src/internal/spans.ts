/**
 * Options of a provider call's span: a client span with the OpenTelemetry GenAI conventions'
 * `gen_ai.operation.name`, `gen_ai.system` (and its newer name `gen_ai.provider.name`) and the
 * upstream's `server.address`/`server.port`. Built once per adapter, so a call pays nothing for them.
 */
import type { Tracer } from "effect"

/** `host` and `port` of a URL (the port only when the URL names one); nothing when it does not parse. */
const serverOf = (url: string | undefined): Record<string, string | number> => {
  if (url === undefined) return {}
  try {
    const u = new URL(url)
    return { "server.address": u.hostname, ...(u.port === "" ? {} : { "server.port": Number(u.port) }) }
  } catch {
    return {}
  }
}

/** The span options of one kind of call (`chat` or `embeddings`) of a provider at `url`. */
export const clientSpan = (system: string, operation: "chat" | "embeddings", url: string | undefined): Tracer.SpanOptions => ({
  kind: "client",
  attributes: { "gen_ai.operation.name": operation, "gen_ai.system": system, "gen_ai.provider.name": system, ...serverOf(url) }
})

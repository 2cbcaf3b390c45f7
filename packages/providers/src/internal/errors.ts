/** What every adapter uses to map a failure to a `ProviderError` kind. */
import { Predicate } from "effect"
import type { Errors } from "@tidyllm/core"

/** The kind of an upstream HTTP status, when the status says. */
export const kindByStatus = (status: number): Errors.ProviderErrorKind | undefined => {
  if (status === 429) return "throttled"
  if (status === 408) return "timeout"
  if (status >= 500 && status <= 599) return "server"
  if (status === 400) return "validation"
  if (status === 401 || status === 403) return "auth"
  if (status === 424) return "model"
  if (status === 404) return "not_found"
  return undefined
}

/** Socket error codes of a broken or refused connection. */
export const connectionCodes: ReadonlySet<string> = new Set([
  "ECONNRESET", "ECONNREFUSED", "ECONNABORTED", "EPIPE", "EHOSTUNREACH", "ENETUNREACH", "ENOTFOUND", "EAI_AGAIN"
])
/** Messages that mark a broken connection when no code does. */
export const connectionMessage = /socket hang up|protocol error|ECONNRESET|ECONNREFUSED|abnormally aborted|did not get a response|GOAWAY/i

/** `u[key]` when it is a string. */
export const stringProperty = (u: unknown, key: string): string | undefined =>
  Predicate.hasProperty(u, key) && typeof u[key] === "string" ? u[key] : undefined


/** undici's codes (Node's `fetch`, under the HTTP SDKs) for a timed-out exchange, beside the socket's own. */
export const timeoutCodes: ReadonlySet<string> = new Set([
  "ETIMEDOUT", "UND_ERR_CONNECT_TIMEOUT", "UND_ERR_HEADERS_TIMEOUT", "UND_ERR_BODY_TIMEOUT"
])

/** undici's codes for a socket the other side closed under a request. */
export const socketCodes: ReadonlySet<string> = new Set(["UND_ERR_SOCKET", "UND_ERR_CLOSED"])

/** The error and its causes, outermost first: `fetch failed` hides the socket's code one or two causes deep. */
export const causeChain = (error: unknown): ReadonlyArray<unknown> => {
  const chain: Array<unknown> = []
  let current: unknown = error
  while (current !== undefined && current !== null && chain.length < 5 && !chain.includes(current)) {
    chain.push(current)
    current = Predicate.hasProperty(current, "cause") ? current.cause : undefined
  }
  return chain
}

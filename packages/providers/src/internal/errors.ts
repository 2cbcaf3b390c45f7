/** What every adapter uses to map a failure to a `ProviderError` kind. */
import { Predicate } from "effect"
import { Errors } from "@tidyllm/core"

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

/** What a scrubbed credential reads as. */
export const redactedMark = "[REDACTED]"

/** Shorter strings are too likely to be ordinary words to replace everywhere. */
const minimumSecretLength = 8

/**
 * Credentials whoever's they are: the token of a `Bearer` header (the word is kept), and
 * OpenAI/Anthropic-style keys (`sk-…`, `sk-ant-…`, also OpenAI's masked `sk-proj-****abcd`).
 */
const bearerToken = /\b(bearer\s+)[^\s"'`,;]{8,}/gi
const skKey = /\bsk-[A-Za-z0-9_*-]{8,}/g

/** A secret as an upstream may echo it: as is, URL-encoded, inside a JSON string (`/` maybe escaped). */
const echoesOf = (secret: string): ReadonlyArray<string> => {
  const json = JSON.stringify(secret).slice(1, -1)
  return [secret, encodeURIComponent(secret), json, json.replaceAll("/", "\\/")]
}

/**
 * A function that replaces every occurrence of each secret (of at least 8 characters; shorter or
 * missing ones are ignored) and anything that looks like a bearer token or an `sk-` key with
 * `[REDACTED]`: what an adapter runs over every message an upstream could have written, because a
 * server may echo the credential it was sent (OpenAI echoes part of a wrong key; a buggy or
 * hostile server all of it).
 */
export const scrubber = (secrets: ReadonlyArray<string | undefined>): (text: string) => string => {
  const echoes = [...new Set(
    secrets.flatMap((s) => (s === undefined || s.length < minimumSecretLength ? [] : echoesOf(s)))
  )].sort((a, b) => b.length - a.length) // an echo that contains another goes first
  return (text) =>
    echoes
      .reduce((t, echo) => (t.includes(echo) ? t.split(echo).join(redactedMark) : t), text)
      .replace(bearerToken, `$1${redactedMark}`)
      .replace(skKey, redactedMark)
}

/** The error with its upstream-written fields (`message`, `upstream_type`) scrubbed. */
export const scrubError = (scrub: (text: string) => string) => (error: Errors.ProviderError): Errors.ProviderError => {
  const message = scrub(error.message)
  const upstreamType = error.upstream_type === undefined ? undefined : scrub(error.upstream_type)
  return message === error.message && upstreamType === error.upstream_type
    ? error
    : new Errors.ProviderError({
      message,
      provider: error.provider,
      model: error.model,
      kind: error.kind,
      retryable: error.retryable,
      ...(error.upstream_status === undefined ? {} : { upstream_status: error.upstream_status }),
      ...(upstreamType === undefined ? {} : { upstream_type: upstreamType })
    })
}

/**
 * One JSON exchange over an undici `Pool` (a keep-alive connection pool to one origin): what the
 * OpenAI-compatible adapter's plain (non-streamed) chat completion goes through. Node's `fetch`,
 * under the `openai` client, costs 3 to 4 times the CPU of a pool request per call (web streams,
 * a `Request` and `Response`, an `AbortSignal` chain), and on the gateway's hot path that is the
 * largest single cost; streams go over the pool too (a stream's first event came ~3 ms later
 * through the client). The client stays in use for embeddings.
 */
import { Pool } from "undici"
import type { Dispatcher } from "undici"
import type { EmitterSignal } from "./timed.js"

/** The answer: its status and its body as text. */
export interface JsonAnswer {
  readonly status: number
  readonly text: string
  /** A response header by its lower-case name (the first value of a repeated one). */
  readonly header: (name: string) => string | undefined
}

/** A pool to the origin of `baseUrl`, and the path prefix the base URL carries (`/v1`). */
export interface Endpoint {
  readonly pool: Pool
  readonly prefix: string
  /** Why no request can be made (a URL with credentials, which `fetch` refuses too), if so. */
  readonly refusal: string | undefined
}

/**
 * A pool to `baseUrl`'s origin. Headers and body each have 10 minutes (the `openai` client's
 * own backstop); the gateway's per-attempt timeout interrupts long before, which aborts the request.
 */
export const endpoint = (baseUrl: string): Endpoint => {
  const url = new URL(baseUrl)
  return {
    pool: new Pool(url.origin, { headersTimeout: 600_000, bodyTimeout: 600_000, keepAliveTimeout: 10_000 }),
    prefix: url.pathname.replace(/\/+$/, ""),
    // The caller scrubs the password out of the message.
    refusal: url.username === "" && url.password === "" ? undefined : `Request cannot be constructed from a URL that includes credentials: ${baseUrl}`
  }
}

/**
 * POSTs `body` (JSON) to `prefix + path` and gives the response as it starts: status, and the body
 * to read (a stream of server-sent events); aborting `signal` aborts the request or the read of its body.
 */
export const postStreaming = async (
  target: Endpoint,
  path: string,
  headers: Readonly<Record<string, string>>,
  body: string,
  signal: AbortSignal | EmitterSignal
): Promise<Dispatcher.ResponseData> => {
  if (target.refusal !== undefined) throw new TypeError(target.refusal)
  return target.pool.request({ method: "POST", path: target.prefix + path, headers, body, signal })
}

/** A header of an undici response by its lower-case name (the first value of a repeated one). */
export const headerOf = (headers: Dispatcher.ResponseData["headers"]) => (name: string): string | undefined => {
  const value = headers[name]
  return Array.isArray(value) ? value[0] : value
}

/** POSTs `body` (JSON) to `prefix + path`; aborting `signal` aborts the request or the read of its body. */
export const postJson = async (
  target: Endpoint,
  path: string,
  headers: Readonly<Record<string, string>>,
  body: string,
  signal: AbortSignal | EmitterSignal
): Promise<JsonAnswer> => {
  const response = await postStreaming(target, path, headers, body, signal)
  return { status: response.statusCode, text: await response.body.text(), header: headerOf(response.headers) }
}

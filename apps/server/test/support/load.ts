/**
 * Client side of the process-level suites: one request with a bounded wait, classified by what
 * the client saw (an HTTP status with its body, a connection error, or its own timeout), counts
 * by class, and a small table for the log.
 */

/** What one request came to, as the client saw it. */
export interface Outcome {
  readonly id: string
  /** Index of the replica it was sent to. */
  readonly target: number
  /** The HTTP status, or `conn_error` (refused, reset, closed before the answer), or `timeout` (the client gave up). */
  readonly status: number | "conn_error" | "timeout"
  readonly body: unknown
  readonly retryAfter: string | null
  readonly error?: string | undefined
  readonly startedAt: number
  readonly endedAt: number
}

export interface PostOptions {
  readonly headers?: Readonly<Record<string, string>>
  readonly timeoutMs?: number
  readonly target?: number
}

/** POSTs `body` as JSON to `url` with `x-request-id: id`; never throws. */
export const post = async (url: string, id: string, body: unknown, options: PostOptions = {}): Promise<Outcome> => {
  const startedAt = Date.now()
  const target = options.target ?? 0
  try {
    const r = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json", "x-request-id": id, ...options.headers },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(options.timeoutMs ?? 30_000)
    })
    const text = await r.text()
    let parsed: unknown = text
    try {
      parsed = JSON.parse(text)
    } catch {
      // not JSON: kept as text
    }
    return { id, target, status: r.status, body: parsed, retryAfter: r.headers.get("retry-after"), startedAt, endedAt: Date.now() }
  } catch (e) {
    const err = e as Error & { cause?: { code?: string; message?: string } }
    const timeout = err.name === "TimeoutError" || err.name === "AbortError"
    return {
      id, target, status: timeout ? "timeout" : "conn_error", body: null, retryAfter: null,
      error: `${err.name}: ${err.message}${err.cause === undefined ? "" : ` (${err.cause.code ?? ""} ${err.cause.message ?? ""})`}`,
      startedAt, endedAt: Date.now()
    }
  }
}

/** The `error` object of a JSON error body, if it has one. */
export interface ErrorBody { type?: string | undefined; code?: string | undefined; message?: string | undefined; scope?: string | undefined; requested_usd?: string | undefined }
export const errorOf = (body: unknown): ErrorBody | undefined => {
  if (typeof body !== "object" || body === null || !("error" in body)) return undefined
  const e: unknown = body.error
  if (typeof e !== "object" || e === null) return undefined
  const field = (name: string): string | undefined => (name in e && typeof (e as Record<string, unknown>)[name] === "string" ? (e as Record<string, string>)[name] : undefined)
  return { type: field("type"), code: field("code"), message: field("message"), scope: field("scope"), requested_usd: field("requested_usd") }
}

/** Counts of outcomes by class. */
export interface Tally {
  readonly sent: number
  readonly ok: number
  readonly rejected: number
  readonly unavailable: number
  readonly connErrors: number
  readonly timeouts: number
  readonly other: number
}

export const tally = (outcomes: ReadonlyArray<Outcome>): Tally => ({
  sent: outcomes.length,
  ok: outcomes.filter((o) => typeof o.status === "number" && o.status >= 200 && o.status < 300).length,
  rejected: outcomes.filter((o) => o.status === 402 || o.status === 429).length,
  unavailable: outcomes.filter((o) => o.status === 503).length,
  connErrors: outcomes.filter((o) => o.status === "conn_error").length,
  timeouts: outcomes.filter((o) => o.status === "timeout").length,
  other: outcomes.filter((o) => typeof o.status === "number" && !(o.status >= 200 && o.status < 300) && o.status !== 402 && o.status !== 429 && o.status !== 503).length
})

/** Prints a two-column table (what, count) under `title`. */
export const printTable = (title: string, rows: ReadonlyArray<readonly [string, string | number]>): void => {
  const width = Math.max(...rows.map(([k]) => k.length))
  const lines = rows.map(([k, v]) => `  ${k.padEnd(width)}  ${String(v).padStart(8)}`)
  console.log([`── ${title}`, ...lines].join("\n"))
}

export const isOk = (o: Outcome): boolean => typeof o.status === "number" && o.status >= 200 && o.status < 300

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** Exact sum of decimal USD strings (numeric(20, 9)) in nano-dollars. */
export const nanos = (usd: string): bigint => {
  const [whole, frac = ""] = usd.split(".")
  return BigInt(whole ?? "0") * 1_000_000_000n + BigInt((frac + "000000000").slice(0, 9))
}

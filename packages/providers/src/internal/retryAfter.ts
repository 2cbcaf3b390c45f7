/**
 * How long an upstream asks to be left alone, from the headers of its answer (a 429 or 503):
 * `retry-after-ms` (OpenAI's, in milliseconds), else `retry-after` in seconds or as an HTTP date.
 * Anything unreadable, negative or absent gives `undefined`.
 */
export const retryAfterMs = (header: (name: string) => string | null | undefined, now: number = Date.now()): number | undefined => {
  const ms = Number(header("retry-after-ms") ?? Number.NaN)
  if (Number.isFinite(ms) && ms >= 0) return Math.round(ms)
  const value = header("retry-after")?.trim()
  if (value === undefined || value === "") return undefined
  if (/^\d+(\.\d+)?$/.test(value)) return Math.round(Number(value) * 1000)
  // An HTTP date names its day and month (`Fri, 28 Nov 2026 10:00:07 GMT`); `Date.parse` reads bare numbers too.
  if (!/[a-z]{3}/i.test(value)) return undefined
  const at = Date.parse(value)
  return Number.isFinite(at) ? Math.max(0, at - now) : undefined
}

/** The `retry_after_ms` field of a `ProviderError`, when the upstream asked for a wait. */
export const retryAfterField = (ms: number | undefined): { readonly retry_after_ms?: number } => (ms === undefined ? {} : { retry_after_ms: ms })

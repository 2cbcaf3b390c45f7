/** Reading an upstream's requested wait off its answer's headers. */
import { describe, expect, it } from "@effect/vitest"
import { retryAfterMs } from "../src/internal/retryAfter.js"

const headers = (h: Record<string, string>) => (name: string) => h[name]

describe("retryAfterMs", () => {
  it("retry-after-ms first, then retry-after in seconds or as an HTTP date; nothing unreadable", () => {
    expect(retryAfterMs(headers({ "retry-after-ms": "1500.4", "retry-after": "9" }))).toBe(1500)
    expect(retryAfterMs(headers({ "retry-after": "20" }))).toBe(20_000)
    expect(retryAfterMs(headers({ "retry-after": "0.5" }))).toBe(500)
    const now = Date.parse("2026-11-28T10:00:00Z")
    expect(retryAfterMs(headers({ "retry-after": "Sat, 28 Nov 2026 10:00:07 GMT" }), now)).toBe(7_000)
    expect(retryAfterMs(headers({ "retry-after": "Sat, 28 Nov 2026 09:00:00 GMT" }), now)).toBe(0)
    expect(retryAfterMs(headers({ "retry-after": "soon" }))).toBeUndefined()
    expect(retryAfterMs(headers({ "retry-after": "-3" }))).toBeUndefined()
    expect(retryAfterMs(headers({ "retry-after-ms": "abc" }))).toBeUndefined()
    expect(retryAfterMs(headers({}))).toBeUndefined()
  })
})

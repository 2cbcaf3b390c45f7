import { describe, expect, it } from "@effect/vitest"
import { Errors } from "../src/index.js"

const attempt = (kind: string | undefined, extra: Partial<Errors.AttemptFailure> = {}): Errors.AttemptFailure => ({
  backend: "b",
  attempt: kind === undefined ? 0 : 1,
  error_type: kind === undefined ? "circuit_open" : "upstream_error",
  ...(kind === undefined ? {} : { kind }),
  message: "m",
  ...extra
})
const failed = (...attempts: ReadonlyArray<Errors.AttemptFailure>) => new Errors.AllBackendsFailed({ message: "every backend failed", attempts })

describe("AllBackendsFailed", () => {
  it("is 504 when every attempt timed out, 429 when every attempt was throttled, else 502", () => {
    expect(failed(attempt("timeout"), attempt("timeout")).status).toBe(504)
    expect(failed(attempt("throttled"), attempt("throttled")).status).toBe(429)
    expect(failed(attempt("throttled"), attempt("server")).status).toBe(502)
    expect(failed(attempt("throttled"), attempt(undefined)).status).toBe(502)
    expect(failed().status).toBe(502)
  })

  it("tells a throttled client to come back when the soonest upstream said it may (whole seconds, at least 1)", () => {
    expect(failed(attempt("throttled", { retry_after_ms: 4200 }), attempt("throttled", { retry_after_ms: 2500 })).retry_after_seconds).toBe(3)
    expect(failed(attempt("throttled", { retry_after_ms: 10 })).retry_after_seconds).toBe(1)
    expect(failed(attempt("throttled"), attempt("throttled", { retry_after_ms: 7000 })).retry_after_seconds).toBe(7)
    expect(failed(attempt("throttled")).retry_after_seconds).toBe(1)
    expect(failed(attempt("server", { retry_after_ms: 5000 })).retry_after_seconds).toBeUndefined()
  })
})

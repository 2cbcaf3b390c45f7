/**
 * Money as integer nano-dollars (1e-9 USD): every price and sum is exact in a JS number up to
 * ~9 million dollars, and the database stores the same value as `numeric(20,9)` dollars.
 */
import { Brand } from "effect"

/** An exact amount of US dollars, in units of 1e-9 USD. */
export type Nanos = number & Brand.Brand<"Nanos">

/** Brands a safe non-negative integer as nano-dollars. */
export const Nanos = Brand.refined<Nanos>(
  (n) => Number.isSafeInteger(n) && n >= 0,
  (n) => Brand.error(`expected a non-negative safe integer of nano-dollars, got ${n}`)
)

/** Zero dollars. */
export const zero = Nanos(0)

/** Converts dollars (as configured, e.g. `2.5`) to nano-dollars, rounding to the nearest nano. */
export const fromUsd = (usd: number): Nanos => Nanos(Math.round(usd * 1e9))

/** Parses a decimal dollar string (as Postgres returns `numeric`) exactly. */
export const fromUsdString = (s: string): Nanos => {
  const m = /^(-?)(\d+)(?:\.(\d{1,9})\d*)?$/.exec(s.trim())
  if (m === null) throw new Error(`not a dollar amount: ${s}`)
  const whole = Number(m[2])
  const frac = Number((m[3] ?? "").padEnd(9, "0"))
  const n = whole * 1e9 + frac
  return Nanos(m[1] === "-" ? 0 : n)
}

/** Renders nano-dollars as an exact decimal dollar string with 9 places, e.g. `"0.000123000"`. */
export const toUsdString = (n: Nanos): string => {
  const whole = Math.floor(n / 1e9)
  const frac = n - whole * 1e9
  return `${whole}.${String(frac).padStart(9, "0")}`
}

/** Nano-dollars as a (possibly inexact) number of dollars, for display only. */
export const toUsd = (n: Nanos): number => n / 1e9

/** Sum of amounts. */
export const add = (a: Nanos, b: Nanos): Nanos => Nanos(a + b)

/** `a - b`, floored at zero. */
export const subtractFloor = (a: Nanos, b: Nanos): Nanos => Nanos(Math.max(0, a - b))

/** Cost of `tokens` at a price of `nanosPerToken` (prices may be fractional nanos; the result rounds up). */
export const forTokens = (tokens: number, nanosPerToken: number): Nanos => Nanos(Math.ceil(tokens * nanosPerToken))

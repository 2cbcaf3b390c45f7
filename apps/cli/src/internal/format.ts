/** Terminal formatting shared by the commands: styles, money, tables. */
import { Money } from "@tidyllm/core"

/** ANSI styles, or identity functions when colour is off. */
export interface Styles {
  readonly dim: (s: string) => string
  readonly bold: (s: string) => string
  readonly green: (s: string) => string
  readonly red: (s: string) => string
  readonly yellow: (s: string) => string
}

const sgr = (open: number, close: number) => (s: string) => `\u001b[${open}m${s}\u001b[${close}m`
const plain = (s: string) => s

/** The styles for a terminal with (or without) colour. */
export const styles = (color: boolean): Styles =>
  color
    ? { dim: sgr(2, 22), bold: sgr(1, 22), green: sgr(32, 39), red: sgr(31, 39), yellow: sgr(33, 39) }
    : { dim: plain, bold: plain, green: plain, red: plain, yellow: plain }

/** Dollars for people: exact, trailing zeros dropped, at least cents (`$0.0000215`, `$100.00`). */
export const usd = (n: Money.Nanos): string => {
  const [whole, frac = ""] = Money.toUsdString(n).split(".")
  const trimmed = frac.replace(/0+$/, "")
  return `$${whole}.${trimmed.length < 2 ? trimmed.padEnd(2, "0") : trimmed}`
}

/** A decimal dollar string (as responses carry it) for people. */
export const usdString = (s: string): string => {
  try {
    return usd(Money.fromUsdString(s))
  } catch {
    return `$${s}`
  }
}

/** `s` cut to `width` characters, with an ellipsis when cut. */
export const truncate = (s: string, width: number): string => (s.length <= width ? s : `${s.slice(0, Math.max(0, width - 1))}…`)

/** `2025-11-27 09:01:02` (UTC). */
export const utc = (d: Date): string => d.toISOString().replace("T", " ").slice(0, 19)

/** Rows aligned in columns under a header; `right` names the columns aligned right (numbers). */
export const table = (
  headers: ReadonlyArray<string>,
  rows: ReadonlyArray<ReadonlyArray<string>>,
  right: ReadonlySet<number> = new Set()
): ReadonlyArray<string> => {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)))
  const line = (cells: ReadonlyArray<string>) =>
    cells.map((c, i) => (right.has(i) ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0))).join("  ").trimEnd()
  return [line(headers), ...rows.map(line)]
}

import { describe, expect, it } from "@effect/vitest"
import { BudgetLedger } from "../src/index.js"

describe("BudgetLedger.periodStart", () => {
  const at = (iso: string) => Date.parse(iso)

  it("is the UTC day and month of the instant, across day, month and year boundaries in any order", () => {
    const cases: ReadonlyArray<readonly [string, string, string]> = [
      ["2026-11-28T10:00:00.000Z", "2026-11-28", "2026-11-01"],
      ["2026-11-28T23:59:59.999Z", "2026-11-28", "2026-11-01"],
      ["2026-11-29T00:00:00.000Z", "2026-11-29", "2026-11-01"],
      ["2026-11-28T00:00:00.000Z", "2026-11-28", "2026-11-01"],
      ["2026-11-27T23:59:59.999Z", "2026-11-27", "2026-11-01"],
      ["2026-12-01T00:00:00.000Z", "2026-12-01", "2026-12-01"],
      ["2026-12-31T23:59:59.999Z", "2026-12-31", "2026-12-01"],
      ["2027-01-01T00:00:00.000Z", "2027-01-01", "2027-01-01"],
      ["2024-02-29T12:00:00.000Z", "2024-02-29", "2024-02-01"],
      ["1970-01-01T00:00:00.000Z", "1970-01-01", "1970-01-01"],
      ["2026-11-28T10:00:00.000Z", "2026-11-28", "2026-11-01"]
    ]
    for (const [iso, day, month] of cases) {
      expect([iso, BudgetLedger.periodStart("day", at(iso)), BudgetLedger.periodStart("month", at(iso))]).toEqual([iso, day, month])
    }
  })
})

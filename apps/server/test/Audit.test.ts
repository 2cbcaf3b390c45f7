/**
 * `GET /v1/audit` on the real server (127.0.0.1, port 0) over the in-memory store: filters,
 * cursor pages, the CSV export (RFC 4180, formula guard, streamed across pages) and the 400s
 * that name the bad parameter. The store's own semantics are the `AuditLog` contract's
 * (memory, PGlite and Postgres alike); this file tests the HTTP layer.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it, layer } from "@effect/vitest"
import { Effect, Layer, Schema } from "effect"
import { Ids, Money } from "@tidyllm/core"
import { AuditLog } from "@tidyllm/corporate-llm"
import { cell, columns } from "../src/audit/Export.js"
import * as Params from "../src/audit/Params.js"
import * as Layers from "../src/Layers.js"
import * as Testing from "../src/Testing.js"

const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "tidyllm-audit-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

const ServerLive = Layer.unwrapScoped(Effect.map(tempDir, (dir) => {
  const cfg = Testing.config(dir)
  return Testing.layerWith(cfg, Layers.gateways(cfg, Layers.storeMemory))
}))

const get = (url: string, path: string) =>
  Effect.promise(async () => {
    const response = await fetch(`${url}${path}`, { headers: { "x-request-id": "audit-test" } })
    const text = await response.text()
    return { status: response.status, headers: response.headers, text }
  })

const Page = Schema.Struct({
  data: Schema.Array(Schema.Struct({ id: Schema.String, created_at: Schema.String, team: Schema.NullOr(Schema.String), status: Schema.String, reason: Schema.String, cost_usd: Schema.String }, { key: Schema.String, value: Schema.Unknown })),
  next_cursor: Schema.NullOr(Schema.String)
})
const pageOf = (text: string) => Schema.decodeUnknownSync(Page)(JSON.parse(text))

const ErrorEnvelope = Schema.Struct({
  error: Schema.Struct({ type: Schema.String, message: Schema.String, request_id: Schema.String, param: Schema.NullOr(Schema.String) })
})
const errorOf = (text: string) => Schema.decodeUnknownSync(ErrorEnvelope, { onExcessProperty: "ignore" })(JSON.parse(text)).error

/** A minimal RFC 4180 reader: records of fields, CRLF between records. */
const parseCsv = (text: string): Array<Array<string>> => {
  const records: Array<Array<string>> = []
  let field = ""
  let record: Array<string> = []
  let quoted = false
  for (let i = 0; i < text.length; i++) {
    const c = text[i]
    if (quoted) {
      if (c === "\"" && text[i + 1] === "\"") {
        field += "\""
        i++
      } else if (c === "\"") {
        quoted = false
      } else {
        field += c
      }
    } else if (c === "\"") {
      quoted = true
    } else if (c === ",") {
      record.push(field)
      field = ""
    } else if (c === "\r" && text[i + 1] === "\n") {
      record.push(field)
      records.push(record)
      record = []
      field = ""
      i++
    } else {
      field += c
    }
  }
  if (field !== "" || record.length > 0) throw new Error(`CSV does not end in CRLF: ${JSON.stringify(text.slice(-40))}`)
  return records
}

const entry = (over: Partial<AuditLog.AuditEntry>): AuditLog.AuditEntry => ({
  id: Ids.randomUuid(),
  request_id: `req-${Ids.randomUuid()}`,
  created_at: new Date(Date.UTC(2030, 0, 1)),
  caller: "user:alice",
  user_id: "alice",
  team: "risk",
  key_id: "k1",
  reason: "audit api test",
  provider: "mock",
  model: "claude-3-haiku",
  status: "success",
  input_tokens: 10,
  output_tokens: 20,
  cost: Money.Nanos(1_500),
  latency_ms: 7,
  error_type: null,
  error_message: null,
  prompt: "hello",
  audit_level: "redacted",
  attempt: 1,
  ...over
})

const writeAll = (rows: ReadonlyArray<AuditLog.AuditEntry>) =>
  Effect.flatMap(AuditLog.AuditLog, (log) => Effect.forEach(rows, (r) => Effect.orDie(log.write(r)), { discard: true }))

const newestFirst = (rows: ReadonlyArray<AuditLog.AuditEntry>) =>
  [...rows].sort((a, b) => b.created_at.getTime() - a.created_at.getTime() || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0)).map((r) => r.id)

layer(ServerLive, { excludeTestServices: true, timeout: "120 seconds" })("GET /v1/audit", (it) => {
  it.effect("JSON pages: filters in the query string, newest first, next_cursor to the end", () =>
    Effect.gen(function*() {
      const url = yield* Testing.ServerUrl
      const rows = Array.from({ length: 25 }, (_, i) =>
        entry({
          created_at: new Date(Date.UTC(2031, 0, 1 + (i % 10))),
          team: i % 2 === 0 ? "risk" : "ops",
          status: i % 5 === 0 ? "error" : "success",
          cost: Money.Nanos(1_000_000_000 + i)
        }))
      yield* writeAll([...rows, entry({ created_at: new Date(Date.UTC(2031, 1, 1)), team: "risk" })])
      const risk = rows.filter((r) => r.team === "risk")

      const ids: Array<string> = []
      let path = "/v1/audit?from=2031-01-01&to=2031-02-01&team=risk&limit=5"
      for (let pages = 1; ; pages++) {
        const r = yield* get(url, path)
        expect(r.status).toBe(200)
        expect(r.headers.get("cache-control")).toBe("no-store")
        const page = pageOf(r.text)
        ids.push(...page.data.map((d) => d.id))
        expect(page.data.every((d) => d.team === "risk")).toBe(true)
        if (page.next_cursor === null) {
          expect(pages).toBe(3)
          break
        }
        path = `/v1/audit?from=2031-01-01&to=2031-02-01&team=risk&limit=5&cursor=${encodeURIComponent(page.next_cursor)}`
      }
      expect(ids).toEqual(newestFirst(risk))

      const first = pageOf((yield* get(url, `/v1/audit?request_id=${rows[3]!.request_id}`)).text).data[0]
      expect(first).toMatchObject({ id: rows[3]!.id, created_at: "2031-01-04T00:00:00.000Z", cost_usd: "1.000000003", status: "success", team: "ops" })

      // Repeated or comma-separated statuses, with the other filters.
      const errors = pageOf((yield* get(url, "/v1/audit?from=2031-01-01T00:00:00Z&to=2031-02-01T00:00:00%2B00:00&status=error,cancelled&status=stream_error")).text)
      expect(errors.data.map((d) => d.id)).toEqual(newestFirst(rows.filter((r) => r.status === "error")))
      expect(errors.next_cursor).toBeNull()
    }))

  it.effect("reason matches text, case-insensitively, with % and _ literal", () =>
    Effect.gen(function*() {
      const url = yield* Testing.ServerUrl
      const rows = [
        entry({ created_at: new Date(Date.UTC(2032, 0, 1)), reason: "Quarterly VaR report, 100% done" }),
        entry({ created_at: new Date(Date.UTC(2032, 0, 2)), reason: "var_backtest" }),
        entry({ created_at: new Date(Date.UTC(2032, 0, 3)), reason: "varXbacktest" })
      ]
      yield* writeAll(rows)
      const reasons = (q: string) => Effect.map(get(url, `/v1/audit?from=2032-01-01&to=2033-01-01&${q}`), (r) => pageOf(r.text).data.map((d) => d.reason))
      expect(yield* reasons("reason=var")).toEqual(["varXbacktest", "var_backtest", "Quarterly VaR report, 100% done"])
      expect(yield* reasons("reason=var_")).toEqual(["var_backtest"])
      expect(yield* reasons("reason=100%25")).toEqual(["Quarterly VaR report, 100% done"])
    }))

  it.effect("a bad parameter is a 400 whose error.param names it", () =>
    Effect.gen(function*() {
      const url = yield* Testing.ServerUrl
      const cases: ReadonlyArray<readonly [string, string, RegExp]> = [
        ["limit=0", "limit", /1 to 1000/],
        ["limit=1001", "limit", /1 to 1000/],
        ["limit=ten", "limit", /whole number/],
        ["format=csv&limit=100001", "limit", /1 to 100000/],
        ["from=yesterday", "from", /ISO 8601/],
        ["to=2031-01-01T00:00:00", "to", /with a zone/],
        ["from=2031-02-01&to=2031-01-01", "from", /after/],
        ["status=error,bogus", "status", /'bogus'/],
        ["cursor=not-a-cursor", "cursor", /cursor is not valid/],
        ["format=xml", "format", /json or csv/],
        ["team=a&team=b", "team", /given 2 times/],
        ["reason=", "reason", /empty/],
        [`reason=${"x".repeat(501)}`, "reason", /longer than 500/],
        ["model=a%00b", "model", /NUL/],
        ["tema=risk", "tema", /unknown parameter 'tema'/]
      ]
      for (const [query, param, message] of cases) {
        const r = yield* get(url, `/v1/audit?${query}`)
        expect(r.status, query).toBe(400)
        const error = errorOf(r.text)
        expect(error, query).toMatchObject({ type: "invalid_request_error", param, request_id: "audit-test" })
        expect(error.message, query).toMatch(message)
      }
    }))

  it.effect("CSV: text/csv with a header row, RFC 4180 quoting, formula cells defused, nulls empty", () =>
    Effect.gen(function*() {
      const url = yield* Testing.ServerUrl
      const tricky = [
        entry({ created_at: new Date(Date.UTC(2033, 0, 1)), reason: "plain" }),
        entry({ created_at: new Date(Date.UTC(2033, 0, 2)), reason: "comma, \"quoted\"\r\nand two lines", team: null, key_id: null, user_id: null }),
        entry({ created_at: new Date(Date.UTC(2033, 0, 3)), reason: "=HYPERLINK(\"http://evil\")", caller: "+1 555", model: "-model", error_message: "@SUM(A1)", status: "error", error_type: "\tTabbed" })
      ]
      yield* writeAll(tricky)
      const r = yield* get(url, "/v1/audit?format=csv&from=2033-01-01&to=2034-01-01")
      expect(r.status).toBe(200)
      expect(r.headers.get("content-type")).toMatch(/^text\/csv; charset=utf-8/)
      expect(r.headers.get("content-disposition")).toMatch(/^attachment; filename="tidyllm-audit\.csv"$/)
      expect(r.headers.get("x-tidyllm-export-max-rows")).toBe("100000")
      const [header, ...records] = parseCsv(r.text)
      expect(header).toEqual([...columns])
      expect(records).toHaveLength(3)
      const byColumn = (record: ReadonlyArray<string>) => Object.fromEntries(columns.map((c, i) => [c, record[i]]))
      const [formula, quoted, plain] = records.map(byColumn)
      expect(plain).toMatchObject({ id: tricky[0]!.id, reason: "plain", team: "risk", cost_usd: "0.000001500", latency_ms: "7", created_at: "2033-01-01T00:00:00.000Z" })
      expect(quoted).toMatchObject({ reason: "comma, \"quoted\"\r\nand two lines", team: "", key_id: "", user_id: "", error_type: "" })
      expect(formula).toMatchObject({
        reason: "'=HYPERLINK(\"http://evil\")", caller: "'+1 555", model: "'-model", error_message: "'@SUM(A1)", error_type: "'\tTabbed", status: "error"
      })
      // On the wire: quoted fields double their quotes.
      expect(r.text).toContain("\"comma, \"\"quoted\"\"\r\nand two lines\"")
    }))

  it.effect("CSV streams past one page: every matching row in order, up to the limit", () =>
    Effect.gen(function*() {
      const url = yield* Testing.ServerUrl
      const rows = Array.from({ length: 2_345 }, (_, i) => entry({ created_at: new Date(Date.UTC(2035, 0, 1) + i * 1_000), team: "bulk" }))
      yield* writeAll(rows)
      const expected = newestFirst(rows)
      const all = yield* get(url, "/v1/audit?format=csv&team=bulk")
      const [, ...records] = parseCsv(all.text)
      expect(records.map((rec) => rec[0])).toEqual(expected)
      const some = yield* get(url, "/v1/audit?format=csv&team=bulk&limit=1234")
      expect(parseCsv(some.text).slice(1).map((rec) => rec[0])).toEqual(expected.slice(0, 1_234))
      // From a cursor of a JSON page: the rest.
      const page = pageOf((yield* get(url, "/v1/audit?team=bulk&limit=1000")).text)
      const rest = yield* get(url, `/v1/audit?format=csv&team=bulk&cursor=${page.next_cursor ?? ""}`)
      expect(parseCsv(rest.text).slice(1).map((rec) => rec[0])).toEqual(expected.slice(1_000))
    }))

  it.effect("CSV with a bad cursor is a JSON 400 before any CSV is sent", () =>
    Effect.gen(function*() {
      const url = yield* Testing.ServerUrl
      const r = yield* get(url, "/v1/audit?format=csv&cursor=AAAA")
      expect(r.status).toBe(400)
      expect(r.headers.get("content-type")).toMatch(/json/)
      expect(errorOf(r.text).param).toBe("cursor")
    }))

  it.effect("the OpenAPI document lists the endpoint, its parameters and the roles it is meant for", () =>
    Effect.gen(function*() {
      const url = yield* Testing.ServerUrl
      const doc = JSON.parse((yield* get(url, "/docs/openapi.json")).text) as {
        paths: Record<string, { get?: { description?: string; parameters?: ReadonlyArray<{ name: string }> } }>
      }
      const op = doc.paths["/v1/audit"]?.get
      expect(op?.parameters?.map((p) => p.name)).toEqual([...Params.names])
      expect(op?.description).toMatch(/admin and compliance roles/)
    }))
})

describe("CSV cells", () => {
  it("quote what must be quoted and defuse formulas", () => {
    expect(cell(null)).toBe("")
    expect(cell(-3)).toBe("-3")
    expect(cell("a,b")).toBe("\"a,b\"")
    expect(cell("say \"hi\"")).toBe("\"say \"\"hi\"\"\"")
    expect(cell("=1+1")).toBe("'=1+1")
    expect(cell("-1")).toBe("'-1")
    expect(cell("@x,y")).toBe("\"'@x,y\"")
    expect(cell("\rx")).toBe("\"'\rx\"")
    expect(cell("a=b")).toBe("a=b")
  })
})

/**
 * The contract every `AuditLog` adapter passes on `query` and `purge` (memory here, PGlite and
 * Postgres in store-pg): run it with the adapter's layer plus {@link AgreementHooks}, which put a
 * request under an open flow agreement the way that adapter sees agreements.
 *
 * The layer is built once per suite, so the tests share one log: each works in a time window of
 * its own (years 2030+), and only the purge test writes rows before 2002 (its cut-off).
 */
import { expect, layer } from "@effect/vitest"
import { Errors, Ids, Money } from "@tidyllm/core"
import { Chunk, Context, Effect, Encoding, Exit, type Layer, Stream } from "effect"
import * as AuditLog from "../src/AuditLog.js"

/** Opens and closes a flow agreement that names a request (adapter-specific). */
export interface AgreementHooks {
  readonly open: (request_id: string) => Effect.Effect<void>
  readonly close: (request_id: string) => Effect.Effect<void>
}
/** The hooks of the adapter under test. */
export class Hooks extends Context.Tag("@tidyllm/corporate-llm/test/AuditLogContract/Hooks")<Hooks, AgreementHooks>() {}

/** An audit row with sensible defaults. */
export const entry = (over: Partial<AuditLog.AuditEntry> = {}): AuditLog.AuditEntry => ({
  id: Ids.randomUuid(),
  request_id: `req-${Ids.randomUuid()}`,
  created_at: new Date(Date.UTC(2030, 0, 1)),
  caller: "user:alice",
  user_id: "alice",
  team: "risk",
  key_id: "k1",
  reason: "contract test",
  provider: "mock",
  model: "claude-3-haiku",
  status: "success",
  input_tokens: 10,
  output_tokens: 20,
  cost: Money.Nanos(1_234),
  latency_ms: 5,
  error_type: null,
  error_message: null,
  prompt: "hello",
  audit_level: "full",
  attempt: 1,
  ...over
})

/** The order every adapter pages in: created_at, then id, both descending. */
const newestFirst = (rows: ReadonlyArray<AuditLog.AuditEntry>) =>
  [...rows].sort((a, b) => b.created_at.getTime() - a.created_at.getTime() || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0))

const at = (year: number, month: number, day: number, ms = 0) => new Date(Date.UTC(year, month - 1, day) + ms)

const failure = <A, E>(exit: Exit.Exit<A, E>): E | undefined =>
  Exit.isFailure(exit) && exit.cause._tag === "Fail" ? exit.cause.error : undefined

/** Runs the contract against `log` (which must also provide {@link Hooks}). */
export const auditLogContract = <E>(name: string, log: Layer.Layer<AuditLog.AuditLog | Hooks, E>) =>
  layer(log, { excludeTestServices: true, timeout: "60 seconds" })(`AuditLog contract: ${name}`, (it) => {
    it.effect("filters combine: [from, to), team, key, model, provider, statuses, reason text, request id", () =>
      Effect.gen(function*() {
        const audit = yield* AuditLog.AuditLog
        const window = { from: at(2031, 1, 1), to: at(2031, 2, 1) }
        const rows = [
          entry({ created_at: at(2030, 12, 31, 86_399_999), reason: "just before the window" }),
          entry({ created_at: at(2031, 1, 1), team: "risk", reason: "Quarterly RISK summary" }),
          entry({ created_at: at(2031, 1, 2), team: "ops", key_id: "k2", status: "error", reason: "100% sure" }),
          entry({ created_at: at(2031, 1, 3), team: null, key_id: null, model: "titan-text", provider: "bedrock", status: "rejected_budget", reason: "100 percent" }),
          entry({ created_at: at(2031, 1, 4), team: "ops", status: "cache_hit", reason: "a_b" }),
          entry({ created_at: at(2031, 1, 5), team: "ops", model: "titan-text", status: "error", reason: "axb" }),
          entry({ created_at: at(2031, 1, 6), provider: "bedrock", reason: "back\\slash" }),
          entry({ created_at: at(2031, 1, 31, 86_399_999), request_id: "req-contract-last", reason: "last instant of the window" }),
          entry({ created_at: at(2031, 2, 1), reason: "the window's end, excluded" })
        ]
        yield* Effect.forEach(rows, audit.write, { discard: true })
        const reasons = (q: AuditLog.AuditFilter) =>
          Effect.map(audit.query({ ...window, ...q, limit: 100 }), (page) => {
            expect(page.next_cursor).toBeNull()
            return page.rows.map((r) => r.reason)
          })

        expect(yield* reasons({})).toEqual([
          "last instant of the window", "back\\slash", "axb", "a_b", "100 percent", "100% sure", "Quarterly RISK summary"
        ])
        expect(yield* reasons({ team: "ops" })).toEqual(["axb", "a_b", "100% sure"])
        expect(yield* reasons({ key_id: "k2" })).toEqual(["100% sure"])
        expect(yield* reasons({ model: "titan-text" })).toEqual(["axb", "100 percent"])
        expect(yield* reasons({ provider: "bedrock" })).toEqual(["back\\slash", "100 percent"])
        expect(yield* reasons({ status: ["error"] })).toEqual(["axb", "100% sure"])
        expect(yield* reasons({ status: ["error", "rejected_budget"] })).toEqual(["axb", "100 percent", "100% sure"])
        expect(yield* reasons({ status: [] })).toHaveLength(7)
        expect(yield* reasons({ team: "ops", status: ["error"], model: "titan-text" })).toEqual(["axb"])
        expect(yield* reasons({ request_id: "req-contract-last" })).toEqual(["last instant of the window"])
        // Case-insensitive substring; %, _ and \ are taken literally.
        expect(yield* reasons({ reason_contains: "risk" })).toEqual(["Quarterly RISK summary"])
        expect(yield* reasons({ reason_contains: "100%" })).toEqual(["100% sure"])
        expect(yield* reasons({ reason_contains: "a_b" })).toEqual(["a_b"])
        expect(yield* reasons({ reason_contains: "\\" })).toEqual(["back\\slash"])
        expect(yield* reasons({ reason_contains: "%" })).toEqual(["100% sure"])
        // Half-open windows: `from` inclusive, `to` exclusive.
        expect(yield* reasons({ from: at(2031, 1, 2), to: at(2031, 1, 4) })).toEqual(["100 percent", "100% sure"])
        expect(yield* reasons({ from: at(2031, 1, 4), to: at(2031, 1, 4) })).toEqual([])
        // Whole rows come back, every column intact.
        const page = yield* audit.query({ ...window, request_id: "req-contract-last", limit: 1 })
        expect(page.rows).toEqual([rows[7]])
      }))

    it.effect("pages newest first, ties broken by id; the cursor walks every row once; next_cursor is null on the last page", () =>
      Effect.gen(function*() {
        const audit = yield* AuditLog.AuditLog
        const window = { from: at(2032, 1, 1), to: at(2033, 1, 1) }
        // 23 rows on 6 distinct instants: most pages end in the middle of a tie.
        const rows = Array.from({ length: 23 }, (_, i) => entry({ created_at: at(2032, 3, 1 + (i % 6)), reason: `row ${i}` }))
        yield* Effect.forEach(rows, audit.write, { discard: true })
        const expected = newestFirst(rows).map((r) => r.id)

        const seen: Array<string> = []
        let cursor: string | undefined = undefined
        let pages = 0
        for (;;) {
          const page: AuditLog.Page = yield* audit.query({ ...window, limit: 4, cursor })
          pages++
          seen.push(...page.rows.map((r) => r.id))
          if (page.next_cursor === null) break
          expect(page.rows).toHaveLength(4)
          cursor = page.next_cursor
        }
        expect(seen).toEqual(expected)
        expect(pages).toBe(6)

        // Exactly one page's worth: no cursor to a page that would be empty.
        const exact = yield* audit.query({ ...window, limit: 23 })
        expect(exact.rows.map((r) => r.id)).toEqual(expected)
        expect(exact.next_cursor).toBeNull()
        expect((yield* audit.query({ ...window, limit: 22 })).next_cursor).not.toBeNull()
      }))

    it.effect("a page is stable while rows are written: newer rows do not shift the pages after a cursor", () =>
      Effect.gen(function*() {
        const audit = yield* AuditLog.AuditLog
        const window = { from: at(2034, 1, 1), to: at(2035, 1, 1) }
        const rows = Array.from({ length: 6 }, (_, i) => entry({ created_at: at(2034, 5, 1 + i) }))
        yield* Effect.forEach(rows, audit.write, { discard: true })
        const first = yield* audit.query({ ...window, limit: 3 })
        yield* audit.write(entry({ created_at: at(2034, 12, 1) }))
        const second = yield* audit.query({ ...window, limit: 3, cursor: first.next_cursor ?? "" })
        expect([...first.rows, ...second.rows].map((r) => r.id)).toEqual(newestFirst(rows).map((r) => r.id))
        expect(second.next_cursor).toBeNull()
      }))

    it.effect("the export stream reads page after page, up to its row limit, from a cursor", () =>
      Effect.gen(function*() {
        const audit = yield* AuditLog.AuditLog
        const window = { from: at(2036, 1, 1), to: at(2037, 1, 1) }
        const rows = Array.from({ length: 12 }, (_, i) => entry({ created_at: at(2036, 2, 1, i * 1_000) }))
        yield* Effect.forEach(rows, audit.write, { discard: true })
        const expected = newestFirst(rows).map((r) => r.id)
        const all = (options: Parameters<typeof AuditLog.stream>[2]) =>
          Effect.map(Stream.runCollect(AuditLog.stream(audit, window, options)), (c) => Chunk.toReadonlyArray(c).map((r) => r.id))
        expect(yield* all({ maxRows: 100, pageSize: 5 })).toEqual(expected)
        expect(yield* all({ maxRows: 10, pageSize: 3 })).toEqual(expected.slice(0, 10))
        expect(yield* all({ maxRows: 0 })).toEqual([])
        const first = yield* audit.query({ ...window, limit: 5 })
        expect(yield* all({ maxRows: 100, pageSize: 4, cursor: first.next_cursor ?? "" })).toEqual(expected.slice(5))
      }))

    it.effect("a bad limit, time or cursor fails with InvalidRequest naming the field", () =>
      Effect.gen(function*() {
        const audit = yield* AuditLog.AuditLog
        const fieldOf = (q: AuditLog.PageQuery) =>
          Effect.map(Effect.exit(audit.query(q)), (exit) => {
            const error = failure(exit)
            expect(error).toBeInstanceOf(Errors.InvalidRequest)
            return error?._tag === "InvalidRequest" ? error.field : undefined
          })
        expect(yield* fieldOf({ limit: 0 })).toBe("limit")
        expect(yield* fieldOf({ limit: AuditLog.MAX_PAGE + 1 })).toBe("limit")
        expect(yield* fieldOf({ limit: 1.5 })).toBe("limit")
        expect(yield* fieldOf({ limit: 10, from: new Date("nope") })).toBe("from")
        expect(yield* fieldOf({ limit: 10, to: new Date(Number.NaN) })).toBe("to")
        expect(yield* fieldOf({ limit: 10, from: at(2031, 2, 1), to: at(2031, 1, 1) })).toBe("from")
        expect(yield* fieldOf({ limit: 10, reason_contains: "x".repeat(AuditLog.MAX_REASON_FILTER + 1) })).toBe("reason_contains")
        expect(yield* fieldOf({ limit: 10, team: "a\u0000b" })).toBe("team")
        expect(yield* fieldOf({ limit: 10, reason_contains: "\u0000" })).toBe("reason_contains")
        for (const cursor of ["", "not a cursor!", "%%%", Encoding.encodeBase64Url("1:123:not-a-uuid"), Encoding.encodeBase64Url(`2:1:${Ids.randomUuid()}`),
          Encoding.encodeBase64Url(`1:99999999999999999:${Ids.randomUuid()}`), "x".repeat(500)]) {
          expect(yield* fieldOf({ limit: 10, cursor })).toBe("cursor")
        }
        // A cursor made by the codec is accepted, whatever page it points into.
        const made = AuditLog.encodeCursor({ created_us: at(2031, 1, 1).getTime() * 1_000 + 7, id: Ids.randomUuid() })
        expect(Exit.isSuccess(yield* Effect.exit(audit.query({ limit: 1, cursor: made })))).toBe(true)
      }))

    it.effect("purge removes rows older than the cut-off, by status; keeps rows under an open agreement; a dry run deletes nothing", () =>
      Effect.gen(function*() {
        const audit = yield* AuditLog.AuditLog
        const hooks = yield* Hooks
        const protectedId = `req-protected-${Ids.randomUuid()}`
        const old = [
          ...Array.from({ length: 5 }, (_, i) => entry({ created_at: at(2001, 3, 1 + i), status: "success" })),
          entry({ created_at: at(2001, 4, 1), status: "error" }),
          entry({ created_at: at(2001, 4, 2), status: "error" }),
          entry({ created_at: at(2001, 4, 3), status: "rejected_budget" }),
          // Two attempts of one request under an open agreement.
          entry({ created_at: at(2001, 5, 1), status: "error", request_id: protectedId, attempt: 1 }),
          entry({ created_at: at(2001, 5, 1, 10), status: "success", request_id: protectedId, attempt: 2 })
        ]
        const boundary = entry({ created_at: at(2002, 1, 1), reason: "exactly at the cut-off: kept" })
        yield* Effect.forEach([...old, boundary], audit.write, { discard: true })
        yield* hooks.open(protectedId)
        const cutoff = at(2002, 1, 1)
        const left = Effect.map(audit.query({ from: at(2000, 1, 1), to: at(2003, 1, 1), limit: 100 }), (p) => p.rows.length)

        const dry = yield* audit.purge({ older_than: cutoff, dry_run: true })
        expect(dry).toEqual({ removed: 8, kept_under_agreement: 2, by_status: { success: 5, error: 2, rejected_budget: 1 } })
        expect(yield* left).toBe(11)

        const done = yield* audit.purge({ older_than: cutoff })
        expect(done).toEqual(dry)
        const rest = yield* audit.query({ from: at(2000, 1, 1), to: at(2003, 1, 1), limit: 100 })
        expect(rest.rows.map((r) => r.id).sort()).toEqual([boundary.id, old[8]!.id, old[9]!.id].sort())
        // Rows of the other tests (2030 on) are untouched.
        expect((yield* audit.query({ from: at(2031, 1, 1), to: at(2031, 2, 1), limit: 100 })).rows.length).toBeGreaterThanOrEqual(7)

        // Once the agreement is decided, its rows age out like any other.
        yield* hooks.close(protectedId)
        expect(yield* audit.purge({ older_than: cutoff })).toEqual({ removed: 2, kept_under_agreement: 0, by_status: { error: 1, success: 1 } })
        expect(yield* audit.purge({ older_than: cutoff })).toEqual({ removed: 0, kept_under_agreement: 0, by_status: {} })
        expect(yield* left).toBe(1)

        const bad = failure(yield* Effect.exit(audit.purge({ older_than: new Date("never") })))
        expect(bad?._tag === "InvalidRequest" ? bad.field : undefined).toBe("older_than")
      }))
  })

/** `tidyllm audit query` and `tidyllm audit purge`, run in-process on embedded PGlite and the mock provider. */
import { join } from "node:path"
import * as SqlClient from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { Ids } from "@tidyllm/core"
import { PgliteClient } from "@tidyllm/store-pg"
import { sandboxes } from "./harness.js"

const fresh = sandboxes()

/** Every run opens the embedded database, which takes seconds on a busy machine. */
const slow = { timeout: 180_000 }

interface JsonPage {
  readonly data: ReadonlyArray<{ readonly id: string; readonly reason: string; readonly status: string; readonly provider: string; readonly cost_usd: string }>
  readonly next_cursor: string | null
}

const DAY_MS = 86_400_000

describe("tidyllm audit query", () => {
  const s = fresh()

  it.live("filters and pages the rows the asks wrote, as JSON, CSV and a table", () =>
    Effect.gen(function*() {
      for (const reason of ["cli audit: first", "cli audit: second, with a comma"]) {
        expect((yield* s.run(["ask", `prompt for ${reason}`, "--reason", reason])).code).toBe(0)
      }
      const all = yield* s.run(["audit", "query", "--format", "json"])
      expect(all.code).toBe(0)
      const page = JSON.parse(all.stdout) as JsonPage
      expect(page.data.map((d) => d.reason)).toEqual(["cli audit: second, with a comma", "cli audit: first"])
      expect(page.data[0]).toMatchObject({ status: "success", provider: "mock" })
      expect(page.next_cursor).toBeNull()

      const first = JSON.parse((yield* s.run(["audit", "query", "--format", "json", "--limit", "1"])).stdout) as JsonPage
      expect(first.data.map((d) => d.reason)).toEqual(["cli audit: second, with a comma"])
      expect(first.next_cursor).not.toBeNull()
      const second = JSON.parse((yield* s.run(["audit", "query", "--format", "json", "--limit", "1", "--cursor", first.next_cursor ?? ""])).stdout) as JsonPage
      expect(second).toEqual({ data: [page.data[1]], next_cursor: null })

      const filtered = JSON.parse((yield* s.run(["audit", "query", "--format", "json", "--reason", "FIRST", "--status", "success,cache_hit"])).stdout) as JsonPage
      expect(filtered.data.map((d) => d.reason)).toEqual(["cli audit: first"])
      const none = JSON.parse((yield* s.run(["audit", "query", "--format", "json", "--status", "error", "--from", "2020-01-01"])).stdout) as JsonPage
      expect(none.data).toEqual([])

      const csv = yield* s.run(["audit", "query", "--format", "csv"])
      expect(csv.code).toBe(0)
      const lines = csv.stdout.split("\r\n")
      expect(lines[0]).toMatch(/^id,created_at,request_id,caller,.*,reason,provider,model,status,/)
      expect(lines).toHaveLength(3)
      expect(lines[1]).toContain(",\"cli audit: second, with a comma\",mock,")

      const tableRun = yield* s.run(["audit", "query", "--limit", "1"])
      expect(tableRun.code).toBe(0)
      expect(tableRun.stdout.split("\n")[0]).toMatch(/^id\s+time \(UTC\)\s+status/)
      expect(tableRun.stdout).toContain("cli audit: second, with a comma")
      expect(tableRun.stderr).toBe(`more rows: add --cursor ${first.next_cursor ?? ""}`)
      expect((yield* s.run(["audit", "query", "--team", "nobody"])).stdout).toBe("no audit rows match")
    }), slow)

  it.live("a bad filter or cursor is a usage error naming the option", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<readonly [ReadonlyArray<string>, string]> = [
        [["--from", "yesterday"], "error: usage: --from: from must be an ISO 8601 date"],
        [["--status", "success,nope"], "error: usage: --status: status must be a comma-separated list"],
        [["--limit", "5000"], "error: usage: --limit: limit must be a whole number from 1 to 1000"],
        [["--cursor", "bm90LWEtY3Vyc29y"], "error: usage: --cursor: cursor is not valid"],
        [["--key-id", ""], "error: usage: --key-id: key_id is empty"]
      ]
      for (const [args, message] of cases) {
        const r = yield* s.run(["audit", "query", ...args])
        expect(r.code, args.join(" ")).toBe(2)
        expect(r.stderr, args.join(" ")).toContain(message)
      }
    }), slow)
})

describe("tidyllm audit purge", () => {
  const s = fresh()

  /** Runs `f` on the sandbox's embedded database (while no command holds it). */
  const onDatabase = <A>(f: (sql: SqlClient.SqlClient) => Effect.Effect<A, unknown>) =>
    Effect.flatMap(SqlClient.SqlClient, f).pipe(
      Effect.provide(PgliteClient.layer({ dataDir: join(s.env.TIDYLLM_DATA_DIR ?? "", "pgdata") })),
      Effect.orDie
    )

  const llmRow = (sql: SqlClient.SqlClient, request_id: string, status: string, ageDays: number) =>
    sql`INSERT INTO llm_audit_log (id, request_id, created_at, caller, reason, provider, model, status, prompt, audit_level)
      VALUES (${Ids.randomUuid()}, ${request_id}, ${new Date(Date.now() - ageDays * DAY_MS)}, 'user:old', 'old row', 'mock', 'm', ${status}, 'p', 'hash')`
  const workflowRow = (sql: SqlClient.SqlClient, operation: string, workflow_id: string, ageDays: number) =>
    sql`INSERT INTO workflow_audit_log (id, created_at, operation, key, actor, detail)
      VALUES (${Ids.randomUuid()}, ${new Date(Date.now() - ageDays * DAY_MS)}, ${operation}, ${`workflows/${workflow_id}/`}, 'user:old',
        ${JSON.stringify({ workflow_id })}::jsonb)`

  it.live("reports what it removes by status, dry run first; keeps rows under an open agreement; the retention defaults to 365 days", () =>
    Effect.gen(function*() {
      expect((yield* s.run(["migrate"])).code).toBe(0)
      yield* onDatabase((sql) =>
        Effect.gen(function*() {
          for (const status of ["success", "success", "success", "error"]) yield* llmRow(sql, `old-${Ids.randomUuid()}`, status, 400)
          yield* llmRow(sql, "under-review", "success", 400)
          yield* llmRow(sql, `recent-${Ids.randomUuid()}`, "cancelled", 10)
          yield* workflowRow(sql, "put_version", "wf-pending", 400)
          yield* workflowRow(sql, "put_version", "wf-done", 400)
          yield* workflowRow(sql, "get_version", "wf-done", 400)
          yield* sql`INSERT INTO flow_agreements (id, workflow_id, status, expires_at, proposal, proposed_by)
            VALUES (${Ids.randomUuid()}, 'wf-pending', 'proposed', now() + interval '7 days', ${JSON.stringify({ request_id: "under-review" })}::jsonb, 'alice')`
        })
      )

      const dry = yield* s.run(["audit", "purge", "--dry-run"])
      expect(dry.code).toBe(0)
      expect(dry.stdout).toMatch(/^dry run: audit rows created before \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(older than 365 days, corporate_llm\.audit_retention_days\)$/m)
      expect(dry.stdout).toContain("llm_audit_log       would remove 4 (success 3, error 1); kept under open agreements: 1")
      expect(dry.stdout).toContain("workflow_audit_log  would remove 2 (get_version 1, put_version 1); kept under open agreements: 1")

      const done = yield* s.run(["audit", "purge", "--json"])
      expect(done.code).toBe(0)
      expect(JSON.parse(done.stdout)).toMatchObject({
        retention_days: 365,
        dry_run: false,
        llm_audit_log: { removed: 4, kept_under_agreement: 1, by_status: { success: 3, error: 1 } },
        workflow_audit_log: { removed: 2, kept_under_agreement: 1, by_operation: { put_version: 1, get_version: 1 } }
      })
      const left = yield* onDatabase((sql) =>
        sql<{ readonly request_id: string }>`SELECT request_id FROM llm_audit_log WHERE caller = 'user:old' ORDER BY created_at`)
      expect(left.map((r) => r.request_id)).toEqual(["under-review", expect.stringMatching(/^recent-/)])

      const again = yield* s.run(["audit", "purge"])
      expect(again.stdout).toContain("llm_audit_log       removed 0 (nothing); kept under open agreements: 1")

      const shorter = yield* s.run(["audit", "purge", "--older-than-days", "5"])
      expect(shorter.stdout).toMatch(/\(older than 5 days\)/)
      expect(shorter.stdout).toContain("llm_audit_log       removed 1 (cancelled 1); kept under open agreements: 1")

      const zero = yield* s.run(["audit", "purge", "--older-than-days", "0"])
      expect(zero.code).toBe(2)
      expect(zero.stderr).toContain("--older-than-days must be 1 or more")
    }), slow)
})

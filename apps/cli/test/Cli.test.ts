/** The `tidyllm` commands, run in-process on embedded PGlite and the mock provider. */
import { mkdirSync, writeFileSync } from "node:fs"
import { createServer } from "node:net"
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, Schedule } from "effect"
import { hoistGlobalOptions } from "../src/Cli.js"
import { auditIdOf, parseDiagnose, rowOf, sandboxes } from "./harness.js"

const fresh = sandboxes()

/** Every run opens the embedded database, which takes seconds on a busy machine. */
const slow = { timeout: 180_000 }

/** Dollars as the JSON outputs carry them, as nano-dollars (exact). */
const nanos = (usd: string) => {
  const [whole = "0", frac = ""] = usd.split(".")
  return Number(whole) * 1e9 + Number(frac.padEnd(9, "0"))
}

/** What `budget --json` prints (the body of GET /v1/budget). */
interface BudgetJson {
  readonly budgets: ReadonlyArray<{ scope: string; period: string; spent_usd: string; reserved_usd: string; limit_usd: string; remaining_usd: string }>
}

/** The global daily budget of a `budget --json` output. */
const globalDay = (stdout: string) => {
  const b = (JSON.parse(stdout) as BudgetJson).budgets.find((x) => x.scope === "global" && x.period === "day")
  if (b === undefined) throw new Error(`no global daily budget in ${stdout}`)
  return b
}

describe("tidyllm migrate", () => {
  it.live("applies the migrations once, each printed as applied with its time, then says the schema is up to date", () =>
    Effect.gen(function*() {
      const s = fresh()
      const first = yield* s.run(["migrate"], {}, { progress: true })
      expect(first.code).toBe(0)
      expect(first.stdout).toContain("embedded PGlite")
      const applied = first.stdout.split("\n").filter((l) => l.includes("] applied "))
      expect(applied[0]).toMatch(/^\[1\/(\d+)\] applied 0001_init\.sql \(\d+ ms\)$/)
      const total = Number(/^\[1\/(\d+)\]/.exec(applied[0] ?? "")?.[1])
      expect(applied.map((l) => /^\[(\d+)\/\d+\]/.exec(l)?.[1])).toEqual(Array.from({ length: total }, (_, i) => String(i + 1)))
      expect(first.stdout.split("\n").at(-1)).toMatch(new RegExp(`^${total} migrations applied in \\d+ ms$`))
      // On a terminal, stderr names each migration as it starts.
      expect(first.stderr.split("\n").filter((l) => /^ +applying \d{4}_\S+\.sql …$/.test(l))).toHaveLength(total)
      const second = yield* s.run(["migrate"])
      expect(second.code).toBe(0)
      expect(second.stdout).toContain("up to date")
      expect(second.stdout).not.toMatch(/\] applied /)
    }), slow)
})

describe("tidyllm ask, audit tail, budget", () => {
  const s = fresh()

  it.live("ask prints the mock answer, its metadata and audit id, and says it came from the mock", () =>
    Effect.gen(function*() {
      const r = yield* s.run(["ask", "What is VaR?", "--model", "claude-3-haiku", "--reason", "cli test: risk summary"])
      expect(r.code).toBe(0)
      expect(r.stdout).toBe("[mock claude-3-haiku] This is a mock response to: What is VaR?")
      expect(r.stderr).toMatch(/mock\/claude-3-haiku · \d+\+\d+ tokens · \$[0-9.]+ · \d+ ms · cache_hit=false · audit [0-9a-f-]{36}/)
      expect(r.stderr).toContain("this answer came from the offline MOCK provider, not from a model")
      const id = auditIdOf(r)
      expect(id).toBeDefined()

      // `audit tail` shows that row: its id, status, provider, model, reason and caller.
      const tail = yield* s.run(["audit", "tail", "--limit", "5"])
      expect(tail.code).toBe(0)
      const [header, ...rows] = tail.stdout.split("\n")
      expect(header).toMatch(/^id\s+time \(UTC\)\s+status\s+provider\s+model\s+tokens\s+cost\s+latency\s+reason\s+caller$/)
      const row = rows.find((line) => line.startsWith(id?.slice(0, 8) ?? "-"))
      expect(row).toBeDefined()
      expect(row).toMatch(/ success +mock +claude-3-haiku .* cli test: risk summary +user:tester$/)

      // … and `--json` gives the whole row.
      const json = yield* s.run(["audit", "tail", "--json"])
      const entries = JSON.parse(json.stdout) as ReadonlyArray<{ id: string; status: string; reason: string; caller: string; provider: string }>
      expect(entries.find((e) => e.id === id)).toMatchObject({ status: "success", reason: "cli test: risk summary", caller: "user:tester", provider: "mock" })
    }), slow)

  it.live("the identical prompt again is a cache hit at no cost", () =>
    Effect.gen(function*() {
      const r = yield* s.run(["ask", "What is VaR?", "--model", "claude-3-haiku", "--reason", "cli test: risk summary"])
      expect(r.code).toBe(0)
      expect(r.stderr).toContain("cache_hit=true")
      expect(r.stderr).toContain("$0.00 ·")
    }), slow)

  it.live("budget shows today's spend: the sum of what the asks cost", () =>
    Effect.gen(function*() {
      const before = globalDay((yield* s.run(["budget", "--json"])).stdout)
      const ask = yield* s.run(["ask", "Explain CVaR", "--reason", "cli test: budget", "--max-tokens", "50", "--json"])
      expect(ask.code).toBe(0)
      const response = JSON.parse(ask.stdout) as { status: string; metadata: { cost_usd: string; mock: boolean; cache_hit: boolean } }
      expect(response).toMatchObject({ status: "success", metadata: { mock: true, cache_hit: false } })
      const cost = nanos(response.metadata.cost_usd)
      expect(cost).toBeGreaterThan(0)

      const after = yield* s.run(["budget", "--json"])
      expect(after.code).toBe(0)
      const budgets = (JSON.parse(after.stdout) as BudgetJson).budgets
      // The defaults set only the global daily budget.
      expect(budgets.map((x) => `${x.scope}@${x.period}`)).toEqual(["global@day"])
      const b = globalDay(after.stdout)
      expect(nanos(b.spent_usd)).toBe(nanos(before.spent_usd) + cost)
      expect(nanos(b.reserved_usd)).toBe(0)
      expect(nanos(b.remaining_usd)).toBe(nanos(b.limit_usd) - nanos(b.spent_usd))

      const human = yield* s.run(["budget"])
      expect(human.code).toBe(0)
      const [header, ...rows] = human.stdout.split("\n")
      expect(header).toMatch(/^scope +period +period start +limit +spent +reserved +remaining +used$/)
      expect(rows).toHaveLength(1)
      expect(rows[0]).toMatch(/^global +day +\d{4}-\d{2}-\d{2} +\$100\.00 +\$0\.0\d+ +\$0\.00 +\$99\.9\d+ +<0\.01 %$/)
    }), slow)

  it.live("ask without --reason fails with a usage error naming the reason, and sends nothing", () =>
    Effect.gen(function*() {
      const before = (yield* s.run(["audit", "tail", "--json"])).stdout
      const r = yield* s.run(["ask", "What is VaR?", "--model", "claude-3-haiku"])
      expect(r.code).toBe(2)
      expect(r.stderr).toContain("error: usage: --reason is required")
      expect(r.stdout).toBe("")
      expect((yield* s.run(["audit", "tail", "--json"])).stdout).toBe(before)
    }), slow)

  it.live("a gateway error is printed as `error: <type>: <message>` with exit code 1", () =>
    Effect.gen(function*() {
      const capped = yield* s.run(["ask", "hi", "--reason", "cli test", "--max-tokens", "4000"], { LLM_MAX_COST_PER_REQUEST: "0.000001" })
      expect(capped.code).toBe(1)
      expect(capped.stderr).toMatch(/^error: cost_cap_exceeded: the worst-case cost of this request \(\$[0-9.]+\) is above the per-request cap/)
      expect(capped.stdout).toBe("")
      // A model the catalog does not know fails the same on every backend: no failover, a plain 400-class error.
      const unknown = yield* s.run(["ask", "hi", "--model", "no-such-model", "--reason", "cli test"])
      expect(unknown.code).toBe(1)
      expect(unknown.stderr.split("\n")).toEqual(["error: model_not_found: model 'no-such-model' is not in the model catalog"])
    }), slow)
})

describe("tidyllm diagnose", () => {
  it.live("--level 2 passes every check on embedded defaults (fresh data directory), as a table", () =>
    Effect.gen(function*() {
      const s = fresh()
      const r = yield* s.run(["diagnose", "--level", "2"])
      expect(r.stderr).toBe("")
      expect(r.code).toBe(0)
      const { header, rows, summary } = parseDiagnose(r.stdout)
      expect(header).toMatch(/^check +status +time +detail$/)
      expect(rows.map((x) => x.name)).toEqual([
        "config", "database", "migrations", "object store", "cache",
        "provider mock", "provider bedrock", "provider openai", "provider anthropic", "provider mlflow",
        "gateway #1", "audit row", "gateway #2 (miss)", "gateway #2 (hit)", "budget"
      ])
      // Providers without credentials nobody routes to have nothing to check.
      const skipped = ["provider bedrock", "provider openai", "provider anthropic", "provider mlflow"]
      for (const row of rows) {
        expect(row.status, row.name).toBe(skipped.includes(row.name) ? "skipped" : "ok")
        expect(row.ms === undefined, row.name).toBe(skipped.includes(row.name))
      }
      expect(rowOf(rows, "provider openai").detail).toMatch(/^not configured \(not used by this configuration\): .*OPENAI_API_KEY/)
      expect(rowOf(rows, "object store").detail).toMatch(/^local directory .*\/objects: list, write, read back and delete answered$/)
      expect(rowOf(rows, "cache").detail).toMatch(/^files in .*\/cache: write and read back answered/)
      expect(rowOf(rows, "audit row").detail).toMatch(/^row [0-9a-f-]{36} readable: status success, reason "tidyllm diagnose"/)
      expect(summary).toBe("all 11 checks passed (4 skipped)")

      // Its requests are in the audit log under the diagnose reason: #1's success, #2's miss and hit.
      const audit = JSON.parse((yield* s.run(["audit", "tail", "--json"])).stdout) as ReadonlyArray<{ status: string; reason: string }>
      expect(audit.map((x) => x.status).sort()).toEqual(["cache_hit", "success", "success"])
      expect(audit.every((x) => x.reason === "tidyllm diagnose")).toBe(true)
    }), slow)

  it.live("level 1 is the configuration, the database and the migrations; on a terminal each check is reported on stderr as it completes", () =>
    Effect.gen(function*() {
      const s = fresh()
      const quiet = yield* s.run(["diagnose"])
      expect(quiet.code).toBe(0)
      expect(parseDiagnose(quiet.stdout).rows.map((x) => [x.name, x.status])).toEqual([["config", "ok"], ["database", "ok"], ["migrations", "ok"]])
      expect(quiet.stderr).toBe("")

      const r = yield* s.run(["diagnose", "--level", "2"], {}, { progress: true })
      expect(r.code).toBe(0)
      const steps = r.stderr.split("\n").filter((l) => l.startsWith("["))
      expect(steps.map((l) => /^\[ ?(\d+)\/15\] [✓✗!-] /.exec(l)?.[1])).toEqual(Array.from({ length: 15 }, (_, i) => String(i + 1)))
      expect(steps[0]).toMatch(/^\[ 1\/15\] ✓ config \(\d+ ms\)$/)
      // Checked concurrently, so in the order they complete; skipped ones carry no time.
      expect(steps.filter((l) => /\] - provider (bedrock|openai|anthropic|mlflow)$/.test(l))).toHaveLength(4)
      // The table on stdout is the same as without progress.
      expect(parseDiagnose(r.stdout).rows).toHaveLength(15)
    }), slow)

  it.live("an optional dependency failing is a warning (! with its reason) and exit code 0", () =>
    Effect.gen(function*() {
      const s = fresh()
      // Nothing listens on port 1: the Redis cache (REDIS_URL selects it) refuses every command.
      const r = yield* s.run(["diagnose", "--level", "2"], { REDIS_URL: "redis://127.0.0.1:1" })
      expect(r.code).toBe(0)
      const { rows, summary } = parseDiagnose(r.stdout)
      const cache = rowOf(rows, "cache")
      expect(cache.status).toBe("warning")
      expect(cache.detail).toMatch(/redis:\/\/127\.0\.0\.1:1.*(ECONNREFUSED|unreachable|max retries)/)
      // The hit cannot happen without a cache; that follows from the cache, so it warns too.
      expect(rowOf(rows, "gateway #2 (hit)").status).toBe("warning")
      expect(rowOf(rows, "gateway #2 (miss)").status).toBe("ok")
      expect(rows.filter((x) => x.status === "failed")).toEqual([])
      expect(summary).toMatch(/^all required checks passed; 9 of 11 passed \(2 warnings, 4 skipped\)$/)
    }), slow)

  it.live("a required dependency failing is a ✗ line with its reason, and exit code 1", () =>
    Effect.gen(function*() {
      const s = fresh()
      // The object directory cannot be created where a file is.
      const data = s.env["TIDYLLM_DATA_DIR"] ?? join(s.dir, "data")
      mkdirSync(data, { recursive: true })
      writeFileSync(join(data, "objects"), "")
      const r = yield* s.run(["diagnose", "--level", "2"])
      expect(r.code).toBe(1)
      const { rows, summary } = parseDiagnose(r.stdout)
      const objects = rowOf(rows, "object store")
      expect(objects.status).toBe("failed")
      expect(objects.detail).toMatch(/^local directory .*\/objects: cannot open: cannot create the object directory/)
      expect(rowOf(rows, "database").status).toBe("ok")
      expect(rowOf(rows, "cache").status).toBe("ok")
      expect(summary).toMatch(/^\d+ of \d+ checks failed/)

      // A database that does not answer fails level 1; the migrations are then not checked.
      const down = yield* s.run(["diagnose"], { DATABASE_URL: "postgres://tidyllm@127.0.0.1:1/none" })
      expect(down.code).toBe(1)
      const level1 = parseDiagnose(down.stdout)
      expect(level1.rows.map((x) => [x.name, x.status])).toEqual([["config", "ok"], ["database", "failed"], ["migrations", "skipped"]])
      expect(rowOf(level1.rows, "database").detail).toMatch(/^Postgres \(DATABASE_URL\): cannot open: .*ECONNREFUSED/)
      expect(level1.summary).toBe("1 of 2 checks failed (1 skipped)")
    }), slow)
})

describe("configuration errors", () => {
  const s = fresh()
  const nested = join(s.dir, "nested.yaml")
  writeFileSync(nested, "corporate_llm:\n  budget_limit_daily_usdd: 5\n")
  const topLevel = join(s.dir, "top.yaml")
  writeFileSync(topLevel, "corporate_llmm:\n  budget_limit_daily_usd: 5\n")
  const commands: ReadonlyArray<ReadonlyArray<string>> = [
    ["serve"], ["ask", "hi", "--reason", "cli test"], ["migrate"], ["diagnose", "--level", "2"], ["budget"], ["audit", "tail"]
  ]

  it.live("a bad key makes every command fail, naming the key (--config before or after the command)", () =>
    Effect.gen(function*() {
      for (const [file, key] of [[topLevel, "corporate_llmm"], [nested, "corporate_llm.budget_limit_daily_usdd"]] as const) {
        for (const command of commands) {
          for (const args of [["--config", file, ...command], [...command, "--config", file]]) {
            const r = yield* s.run(args)
            expect(r.code, args.join(" ")).toBe(1)
            expect(`${r.stdout}\n${r.stderr}`, args.join(" ")).toContain(key)
          }
        }
      }
    }), slow)

  it.live("a bad environment value is named too, and so is a missing config file", () =>
    Effect.gen(function*() {
      const r = yield* s.run(["budget"], { LLM_DAILY_BUDGET_USD: "lots" })
      expect(r.code).toBe(1)
      expect(r.stderr).toContain("LLM_DAILY_BUDGET_USD: expected a number")
      const missing = yield* s.run(["budget", "-c", join(s.dir, "nope.yaml")])
      expect(missing.code).toBe(1)
      expect(missing.stderr).toMatch(/^error: config: config file not found: .*nope\.yaml/)
    }), slow)
})

describe("usage errors", () => {
  const s = fresh()
  it.live("exit with code 2 and say what is wrong", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<readonly [ReadonlyArray<string>, string]> = [
        [[], "no command given"],
        [["frobnicate"], "Invalid subcommand for tidyllm"],
        [["ask"], "<prompt>"],
        [["ask", "hi", "--reason", "x", "--bogus"], "--bogus"],
        [["diagnose", "--level", "4"], "1, 2, 3"],
        [["workflow"], "workflow needs a subcommand"],
        [["agreements", "reject", "00000000-0000-4000-8000-000000000000", "--as", "bob"], "--comment is required"],
        [["audit"], "audit needs a subcommand"],
        [["audit", "tail", "--limit", "many"], "many"]
      ]
      for (const [args, needle] of cases) {
        const r = yield* s.run(args)
        expect(r.code, args.join(" ")).toBe(2)
        expect(r.stderr, args.join(" ")).toContain(needle)
      }
    }), slow)
})

describe("tidyllm serve", () => {
  const freePort = Effect.async<number>((resume) => {
    const srv = createServer()
    srv.listen(0, "127.0.0.1", () => {
      const address = srv.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      srv.close(() => resume(Effect.succeed(port)))
    })
  })

  it.live("serves the HTTP API until interrupted", () =>
    Effect.gen(function*() {
      const s = fresh()
      const port = yield* freePort
      const fiber = yield* Effect.fork(s.run(["serve", "--port", String(port)]))
      const health = yield* Effect.tryPromise(() => fetch(`http://127.0.0.1:${port}/health/ready`)).pipe(
        Effect.retry(Schedule.spaced("100 millis").pipe(Schedule.upTo("20 seconds")))
      )
      expect(health.status).toBe(200)
      const answer = yield* Effect.tryPromise(() =>
        fetch(`http://127.0.0.1:${port}/v1/ai`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ prompt: "hello", reason: "cli serve test" })
        }).then((res) => res.json() as Promise<{ status: string; metadata: { provider: string } }>)
      )
      expect(answer).toMatchObject({ status: "success", metadata: { provider: "mock" } })
      yield* Fiber.interrupt(fiber)
    }), slow)
})

describe("hoistGlobalOptions", () => {
  it("moves --config (any spelling) to the front and leaves everything after -- alone", () => {
    expect(hoistGlobalOptions(["ask", "hi", "--config", "a.yaml", "--reason", "r"])).toEqual(["--config", "a.yaml", "ask", "hi", "--reason", "r"])
    expect(hoistGlobalOptions(["budget", "--config=b.yaml"])).toEqual(["--config", "b.yaml", "budget"])
    expect(hoistGlobalOptions(["budget", "-c", "c.yaml"])).toEqual(["--config", "c.yaml", "budget"])
    expect(hoistGlobalOptions(["ask", "--", "--config", "x"])).toEqual(["ask", "--", "--config", "x"])
  })
})

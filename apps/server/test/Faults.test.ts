/**
 * Faults injected during load, each with its expected outcome and a count of what was lost (must
 * be zero). The real server on embedded PGlite (temporary directory), budgets and sync audit on,
 * the `openai_compatible` provider pointed at fault-injecting stubs on loopback
 * (`faults/upstream.ts`), whose mode is flipped while a bounded load runs:
 *
 * - a 429 storm (every request, or a share of them), with and without a healthy fallback backend;
 * - 500/503; answers slower than the per-attempt timeout; connection resets (before the answer,
 *   and mid-body); a stream cut after two chunks;
 * - Redis (response cache and rate limiter) stopped mid-load, then restarted;
 * - S3 (the workflow store) unreachable.
 *
 * Nothing lost: every request got a typed answer (2xx, or the documented status with a JSON
 * `error.type`), has its audit rows (one per upstream attempt, as gateway #2 audits attempts; see
 * `faults/account.ts`) with the right statuses, no 2xx without its row, no reservation left open,
 * and the budget's spend equals the sum of the audited costs. A table of the counts is printed.
 *
 * Stubs, server and clients share one event loop on a shared machine, so now and then the gateway's
 * 1 s per-attempt timeout fires before it has read an answer the stub gave: the books accept such
 * an attempt as the timeout the gateway audited (and the client's answer must follow from it), and
 * count it in the table's `late` column.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { monitorEventLoopDelay } from "node:perf_hooks"
import { afterAll, expect, layer } from "@effect/vitest"
import { Effect, Layer } from "effect"
import S3rver from "s3rver"
import { Money } from "@tidyllm/core"
import { AuditLog, BudgetLedger } from "@tidyllm/corporate-llm"
import * as Testing from "../src/Testing.js"
import { redisServerBinary, spawnRedis, type RedisServer } from "../../../packages/store-objects/test/redisServer.js"
import { account, type Books, type Row } from "./faults/account.js"
import { runLoad, send, type RequestSpec, type Result } from "./faults/load.js"
import { startUpstream, type Mode, type Upstream } from "./faults/upstream.js"

// --- settings ----------------------------------------------------------------------------------

const TIMEOUT_SECONDS = 1
const MAX_RETRIES = 1
const DAILY_BUDGET_USD = 1000
const RUN = Date.now().toString(36)
const MODEL = "fault-chat"
const models = [{
  id: MODEL, provider_ids: { primary: "stub-model", backup: "stub-model", cached: "stub-model" },
  input_usd_per_million: 3, output_usd_per_million: 15, context_window: 32_000, max_output_tokens: 4096
}]
const globalScope: BudgetLedger.Scope = { key: "global", period: "day", limit: Money.fromUsd(DAILY_BUDGET_USD) }

/** Scratch directories on tmpfs when the machine has one: PGlite's file writes are most of its cost. */
const scratch = existsSync("/dev/shm") ? "/dev/shm" : tmpdir()

const tempDir = (prefix: string) =>
  Effect.acquireRelease(
    Effect.sync(() => mkdtempSync(join(scratch, prefix))),
    (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
  )

const upstream = (name: string) => Effect.acquireRelease(Effect.promise(() => startUpstream(name)), (u) => Effect.promise(u.close))

// --- the report ---------------------------------------------------------------------------------

interface Line {
  readonly fault: string
  readonly requests: number
  readonly ok: number
  readonly errors: string
  readonly auditRows: number
  readonly upstream: number
  readonly lost: number
  readonly wrong: number
  readonly late: number
  readonly open: number
  readonly spendOk: boolean
  readonly maxMs: number
  /** The longest the event loop (server, stubs and clients share it) was blocked during the scenario. */
  readonly lagMs: number
  readonly seconds: number
}
const report: Array<Line> = []

afterAll(() => {
  const head = ["fault", "requests", "2xx", "errors (status×n)", "audit rows", "upstream calls", "lost", "wrong", "late (timed out)", "open reservations", "spend = Σ audit", "max latency ms", "max loop lag ms", "s"]
  const rows = report.map((l) => [l.fault, l.requests, l.ok, l.errors, l.auditRows, l.upstream, l.lost, l.wrong, l.late, l.open, l.spendOk ? "yes" : "NO", l.maxMs, l.lagMs, l.seconds.toFixed(1)].map(String))
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)))
  const line = (cells: ReadonlyArray<string>) => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(" | ")
  console.log(["", "faults under load:", line(head), widths.map((w) => "-".repeat(w)).join("-+-"), ...rows.map(line)].join("\n"))
})

const errorsOf = (byStatus: Readonly<Record<string, number>>) =>
  Object.entries(byStatus).filter(([s]) => !s.startsWith("2")).map(([s, n]) => `${s}×${n}`).join(" ") || "-"

// --- the books ----------------------------------------------------------------------------------

const reasonOf = (fault: string) => `fault test run=${RUN} fault=${fault};`

/** Every audit row of one scenario (its reason is unique to it). */
const rowsOf = (fault: string) =>
  Effect.gen(function*() {
    const audit = yield* AuditLog.AuditLog
    const out: Array<Row> = []
    let cursor: string | undefined
    for (let page = 0; page < 50; page++) {
      const got = yield* Effect.orDie(audit.query({ limit: 1000, reason_contains: reasonOf(fault), ...(cursor === undefined ? {} : { cursor }) }))
      out.push(...got.rows.map((r) => ({
        request_id: r.request_id, status: r.status, attempt: r.attempt, cost: r.cost, provider: r.provider, error_type: r.error_type, output_tokens: r.output_tokens
      })))
      if (got.next_cursor === null) break
      cursor = got.next_cursor
    }
    return out
  })

/** The global budget once nothing is reserved any more (bounded wait: settlement may trail the answer). */
const settledBudget = Effect.gen(function*() {
  const ledger = yield* BudgetLedger.BudgetLedger
  for (let i = 0; ; i++) {
    const [status] = yield* Effect.orDie(ledger.status([globalScope]))
    const open = yield* Effect.orDie(ledger.openReservations)
    if ((status?.reserved === 0 && open === 0) || i >= 100) return { spent: status?.spent ?? 0, reserved: status?.reserved ?? 0, open }
    yield* Effect.sleep("20 millis")
  }
})

const budgetNow = Effect.gen(function*() {
  const ledger = yield* BudgetLedger.BudgetLedger
  const [status] = yield* Effect.orDie(ledger.status([globalScope]))
  return status?.spent ?? 0
})

interface Tally {
  readonly books: Books
  readonly results: ReadonlyArray<Result>
  readonly rows: ReadonlyArray<Row>
}

/** Records the scenario's line and asserts the invariants every scenario shares. */
/** Watches the event loop's delay from now until `close`. */
const lagWatch = () => {
  const h = monitorEventLoopDelay({ resolution: 10 })
  h.enable()
  return h
}
type LagWatch = ReturnType<typeof lagWatch>

const close = (fault: string, books: Books, results: ReadonlyArray<Result>, spentBefore: number, started: number, lag: LagWatch) =>
  Effect.gen(function*() {
    lag.disable()
    const budget = yield* settledBudget
    const spendOk = budget.spent - spentBefore === books.auditedCost
    report.push({
      fault, requests: books.requests, ok: Object.entries(books.byStatus).filter(([s]) => s.startsWith("2")).reduce((n, [, c]) => n + c, 0),
      errors: errorsOf(books.byStatus), auditRows: books.auditRows, upstream: books.upstreamAttempts,
      lost: books.lost.length, wrong: books.wrong.length, late: books.late.length, open: budget.open + (budget.reserved === 0 ? 0 : 1), spendOk,
      maxMs: Math.max(0, ...results.map((r) => r.latencyMs)), lagMs: Math.round(lag.max / 1e6), seconds: (performance.now() - started) / 1000
    })
    if (books.late.length > 0) {
      console.log(`${fault}: attempts the gateway timed out although the stub answered (event loop blocked up to ${Math.round(lag.max / 1e6)} ms): ${books.late.slice(0, 20).join(" ")}`)
    }
    expect(books.lost.slice(0, 10)).toEqual([])
    expect(books.wrong.slice(0, 10)).toEqual([])
    expect(books.strayRows).toBe(0)
    expect(budget.reserved).toBe(0)
    expect(budget.open).toBe(0)
    expect(budget.spent - spentBefore).toBe(books.auditedCost)
  })

// --- requests -----------------------------------------------------------------------------------

const chat = (fault: string, stream: boolean, prompt: (id: string) => string, headers: Record<string, string> = {}) =>
  (_i: number, id: string): RequestSpec => ({
    path: "/v1/chat/completions",
    headers: { "x-tidyllm-reason": reasonOf(fault), ...headers },
    stream,
    body: {
      model: MODEL, max_tokens: 16,
      messages: [{ role: "user", content: prompt(id) }],
      ...(stream ? { stream: true, stream_options: { include_usage: true } } : {})
    }
  })

const tagged = (id: string) => `Say hello [req:${id}]`

// --- scenarios on the upstream -------------------------------------------------------------------

let primary: Upstream
let backup: Upstream
/** The private Redis (response cache and rate limiter); absent where the machine has no `redis-server`. */
let redis: RedisServer | undefined
let s3: S3rver | undefined
let s3Up = false

/**
 * One server for every scenario (PGlite's start is the slowest part of the file): two upstream
 * stubs, the cache and rate limiter on a private Redis, workflows in S3 (s3rver), budgets and sync
 * audit on, breakers off (each request's attempts then follow from the fault alone; the breaker
 * has its own tests), short per-attempt timeout, one retry with a tiny backoff.
 */
const Server = Layer.unwrapScoped(Effect.gen(function*() {
  const dir = yield* tempDir("tidyllm-faults-")
  const s3Dir = yield* tempDir("tidyllm-faults-s3-")
  primary = yield* upstream("primary")
  backup = yield* upstream("backup")
  if (redisServerBinary !== undefined) {
    redis = yield* Effect.acquireRelease(Effect.promise(() => spawnRedis()), (r) => Effect.promise(() => r.stop()))
  }
  const server = new S3rver({ address: "127.0.0.1", port: 0, silent: true, directory: s3Dir, configureBuckets: [{ name: "faults", configs: [] }] })
  const address = yield* Effect.acquireRelease(
    Effect.promise(() => server.run()).pipe(Effect.tap(() => Effect.sync(() => { s3 = server; s3Up = true }))),
    () => Effect.promise(() => (s3Up ? server.close() : Promise.resolve())).pipe(Effect.tap(() => Effect.sync(() => { s3Up = false })))
  )
  return Testing.layer(Testing.config(dir, {
    corporate_llm: {
      default_provider: "primary", default_model: MODEL, require_reason: true,
      // Budget slices as by default (leases, reservations in memory): `status` and `openReservations` see through them.
      budget_limit_daily_usd: DAILY_BUDGET_USD, audit_durability: "sync"
    },
    ai_processing: {
      enable_caching: true, cache_ttl_seconds: 600, max_retries: MAX_RETRIES, retry_delay_base: 0.005, timeout_seconds: TIMEOUT_SECONDS,
      circuit_breaker_failures: 0
    },
    providers: {
      openai_compatible: { primary: { base_url: primary.url }, backup: { base_url: backup.url } },
      // s3rver's credentials; the S3 store takes the configuration's AWS keys.
      bedrock: { access_key_id: "S3RVER", secret_access_key: "S3RVER" }
    },
    storage: {
      ...(redis === undefined ? { cache: "memory" as const } : { cache: "redis" as const, redis_url: redis.url }),
      s3: { bucket: "faults", prefix: "tidyllm", endpoint: `http://127.0.0.1:${address.port}`, force_path_style: true }
    },
    models
  }))
}))

interface Plan {
  readonly fault: string
  readonly n: number
  readonly concurrency: number
  readonly spec: (i: number, id: string) => RequestSpec
  /** Modes of the primary switched as request `i` is about to go out; back to `ok` after the run. */
  readonly modes: ReadonlyArray<readonly [number, Mode]>
  readonly backends?: ReadonlyArray<Upstream>
}

const runPlan = (plan: Plan) =>
  Effect.gen(function*() {
    const url = yield* Testing.ServerUrl
    const started = performance.now()
    const lag = lagWatch()
    const backends = plan.backends ?? [primary]
    for (const u of [primary, backup]) u.setMode({ kind: "ok" })
    const seen = new Map(backends.map((u) => [u, u.served().length]))
    const spentBefore = yield* budgetNow
    const results = yield* Effect.promise(() =>
      runLoad({
        base: url, n: plan.n, concurrency: plan.concurrency,
        idOf: (i) => `fault-${plan.fault}-${RUN}-${i}`,
        specOf: plan.spec,
        before: new Map(plan.modes.map(([i, mode]) => [i, () => primary.setMode(mode)])),
        timeoutMs: 15_000
      })
    ).pipe(Effect.ensuring(Effect.sync(() => primary.setMode({ kind: "ok" }))))
    const rows = yield* rowsOf(plan.fault)
    const books = account(results, backends.map((u) => ({ backend: u.name, served: u.served().slice(seen.get(u) ?? 0) })), rows)
    yield* close(plan.fault, books, results, spentBefore, started, lag)
    return { books, results, rows } satisfies Tally
  })

/** The JSON bodies these tests read: an error, a created key, `/health`. */
interface Body {
  readonly error?: { readonly type?: string; readonly message?: string; readonly store?: string }
  readonly secret?: string
  readonly status?: string
  readonly checks?: ReadonlyArray<{ readonly name: string; readonly ok: boolean; readonly required: boolean }>
}

const getJson = (url: string, init: RequestInit = {}) =>
  Effect.promise(async () => {
    const started = performance.now()
    const response = await fetch(url, { ...init, signal: AbortSignal.timeout(15_000) })
    const text = await response.text()
    return { status: response.status, json: JSON.parse(text) as Body, ms: performance.now() - started }
  })

let secret: string | undefined

/**
 * An admin key with a per-minute request limit, so the rate limiter (on Redis, when there is one)
 * is on the path of every request made with it. The first key ends open mode, so it is made only
 * after the scenarios that run without one.
 */
const keyAuth = (url: string) =>
  Effect.gen(function*() {
    if (secret === undefined) {
      const created = yield* getJson(`${url}/v1/keys`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-tidyllm-role": "admin", "x-tidyllm-user": "faults" },
        body: JSON.stringify({ role: "admin", name: "faults", requests_per_minute: 100_000 })
      })
      expect(created.status).toBe(201)
      expect(created.json.secret).toMatch(/^tlk_/)
      secret = created.json.secret ?? ""
    }
    return { authorization: `Bearer ${secret ?? ""}` }
  })

const count = (results: ReadonlyArray<Result>, status: number) => results.filter((r) => r.status === status).length

/** Whether one of the request's attempts was given up by the gateway's timeout although the stub answered. */
const timedOut = (books: Books, r: Result) => books.late.some((l) => l.startsWith(`${r.id}#`))

layer(Server, { excludeTestServices: true, timeout: "60 seconds" })("faults under load", (it) => {
  it.effect("no fault (baseline): every request 200 with one success row", () =>
    Effect.gen(function*() {
      // Warm-up, one at a time, so the first calls do not load code (and time out) under load.
      const url = yield* Testing.ServerUrl
      for (const [k, spec] of [chat("warm-up", false, tagged), chat("warm-up", true, tagged), chat("warm-up", false, tagged)].entries()) {
        yield* Effect.promise(() => send(url, k, `fault-warm-up-${RUN}-${k}`, spec(k, `fault-warm-up-${RUN}-${k}`), 15_000))
      }
      const { results, books } = yield* runPlan({ fault: "none", n: 20, concurrency: 16, spec: chat("none", false, tagged), modes: [] })
      expect(results.filter((r) => r.status !== 200 && !timedOut(books, r)).map((r) => r.id)).toEqual([])
    }))

  it.effect("429 storm on every request: retried, then 429 all_backends_failed with the upstream's Retry-After; nothing lost", () =>
    Effect.gen(function*() {
      const { results } = yield* runPlan({
        fault: "429-storm", n: 100, concurrency: 16, spec: chat("429-storm", false, tagged),
        modes: [[20, { kind: "status", status: 429, retryAfterSeconds: 1 }], [75, { kind: "ok" }]]
      })
      const throttled = results.filter((r) => r.status === 429)
      expect(throttled.length).toBeGreaterThan(10)
      expect(count(results, 200)).toBeGreaterThan(20)
      expect(count(results, 200) + throttled.length).toBe(results.length)
      // Every backend throttled: the client is told to come back when the upstream said it may.
      expect(new Set(throttled.map((r) => `${r.errorType} ${r.retryAfter}`))).toEqual(new Set(["all_backends_failed 1"]))
    }))

  it.effect("429 on half the requests: most are saved by a retry; the rest are 429 with Retry-After; nothing lost", () =>
    Effect.gen(function*() {
      const { results, books } = yield* runPlan({
        fault: "429-half", n: 60, concurrency: 16, spec: chat("429-half", false, tagged),
        modes: [[0, { kind: "status", status: 429, share: 0.5 }]]
      })
      expect(books.upstreamAttempts).toBeGreaterThan(results.length)
      expect(count(results, 200)).toBeGreaterThan(results.length / 2)
      expect(count(results, 200) + count(results, 429)).toBe(results.length)
      // The stub's default `retry-after: 1`.
      expect(results.filter((r) => r.status === 429).every((r) => r.retryAfter === "1")).toBe(true)
    }))

  it.effect("429 storm with a healthy fallback backend: every request answered 200 (failover); nothing lost", () =>
    Effect.gen(function*() {
      const fault = "429-fallback"
      const { results, books } = yield* runPlan({
        fault, n: 60, concurrency: 16, backends: [primary, backup],
        spec: (_i, id) => ({
          path: "/v1/ai",
          headers: { "x-tidyllm-reason": reasonOf(fault) },
          body: { model: MODEL, max_tokens: 16, prompt: tagged(id), fallback_backends: ["backup"], reason: reasonOf(fault) }
        }),
        modes: [[12, { kind: "status", status: 429 }], [50, { kind: "ok" }]]
      })
      // 200 unless the backup's attempts, too, ran out of time on this busy machine (the books check each such case).
      expect(results.filter((r) => r.status !== 200 && !timedOut(books, r)).map((r) => r.id)).toEqual([])
      expect(results.filter((r) => r.meta?.backend_used === "backup").length).toBeGreaterThan(25)
    }))

  it.effect("500 then 503: retried; requests that only met 5xx are 502 all_backends_failed (kinds server); nothing lost", () =>
    Effect.gen(function*() {
      const { results } = yield* runPlan({
        fault: "5xx", n: 60, concurrency: 16, spec: chat("5xx", false, tagged),
        modes: [[12, { kind: "status", status: 500 }], [30, { kind: "status", status: 503 }], [48, { kind: "ok" }]]
      })
      expect(count(results, 502)).toBeGreaterThan(15)
      expect(results.filter((r) => r.status === 502).every((r) => r.retryAfter === undefined)).toBe(true)
      expect(count(results, 200) + count(results, 502)).toBe(results.length)
    }))

  it.effect("answers slower than the per-attempt timeout: each attempt cut at the timeout, 504 all_backends_failed (every attempt a timeout) in bounded time; upstream calls aborted", () =>
    Effect.gen(function*() {
      const aborted = primary.abortedByClient()
      const before = primary.served().length
      const { results } = yield* runPlan({
        fault: "slow", n: 40, concurrency: 20, spec: chat("slow", false, tagged),
        modes: [[8, { kind: "slow", delayMs: 10_000 }], [28, { kind: "ok" }]]
      })
      expect(count(results, 504)).toBeGreaterThan(10)
      expect(count(results, 200) + count(results, 504)).toBe(results.length)
      // Two attempts of at most the timeout each, a tiny backoff and the audit (with slack for a busy
      // machine): far below one slow answer (10 s), so every attempt was cut at the timeout.
      const bound = (MAX_RETRIES + 1) * TIMEOUT_SECONDS * 1000 + 3_000
      expect(Math.max(...results.map((r) => r.latencyMs))).toBeLessThan(bound)
      // Every slow attempt was abandoned by the gateway at its timeout (the upstream request aborted), not left running.
      const slow = primary.served().slice(before).filter((a) => a.outcome === "slow").length
      expect(slow).toBeGreaterThan(20)
      for (let i = 0; i < 100 && primary.abortedByClient() - aborted < slow; i++) yield* Effect.sleep("20 millis")
      expect(primary.abortedByClient() - aborted).toBe(slow)
    }))

  it.effect("connection resets (before the answer, and mid-body), streamed and not: retried; nothing lost", () =>
    Effect.gen(function*() {
      const fault = "reset"
      const { results } = yield* runPlan({
        fault, n: 80, concurrency: 16,
        spec: (i, id) => chat(fault, i % 2 === 1, tagged)(i, id),
        modes: [[16, { kind: "reset", when: "before" }], [40, { kind: "reset", when: "mid-body" }], [64, { kind: "ok" }]]
      })
      expect(count(results, 502)).toBeGreaterThan(10)
      expect(count(results, 200) + count(results, 502)).toBe(results.length)
      // A stream whose attempts all failed before the first byte still gets its HTTP status.
      expect(results.filter((r) => r.index % 2 === 1 && r.status === 502).length).toBeGreaterThan(0)
    }))

  it.effect("a stream cut after two chunks: the client gets the text, an error event and no [DONE]; audited stream_error, not retried", () =>
    Effect.gen(function*() {
      const fault = "stream-cut"
      const { results, rows, books } = yield* runPlan({
        fault, n: 60, concurrency: 16, spec: chat(fault, true, tagged),
        modes: [[12, { kind: "cut" }], [48, { kind: "ok" }]]
      })
      const cut = results.filter((r) => r.stream?.error !== undefined)
      expect(cut.length).toBeGreaterThan(20)
      expect(results.filter((r) => r.status !== 200 && !timedOut(books, r)).map((r) => r.id)).toEqual([])
      expect(rows.filter((r) => r.status === "stream_error").length).toBe(cut.length)
      // Settled at what was consumed: the delivered text costs something.
      expect(rows.filter((r) => r.status === "stream_error").every((r) => r.cost > 0)).toBe(true)
    }))
  it.effect.skipIf(redisServerBinary === undefined)("Redis stopped mid-load: every request answered 200 (a miss goes upstream) in bounded time, audited; back up, the cache hits again", () =>
    Effect.gen(function*() {
      const url = yield* Testing.ServerUrl
      const started = performance.now()
      const lag = lagWatch()
      const auth = yield* keyAuth(url)
      const redisServer = redis
      if (redisServer === undefined) return

      const fault = "redis-stopped"
      const prompts = Array.from({ length: 8 }, (_, k) => `Cached question number ${k} of run ${RUN}`)
      const spentBefore = yield* budgetNow
      const calls = primary.served().length
      const spec = (i: number, id: string) => chat(fault, false, () => prompts[i % prompts.length] ?? "", auth)(i, id)
      // Warm the cache, and see it hit.
      const warm = yield* Effect.promise(() => Promise.all(prompts.map((_, k) => send(url, k, `fault-${fault}-${RUN}-warm-${k}`, spec(k, ""), 15_000))))
      expect(warm.map((r) => r.status)).toEqual(prompts.map(() => 200))
      const hot = yield* Effect.promise(() => Promise.all(prompts.map((_, k) => send(url, k, `fault-${fault}-${RUN}-hot-${k}`, spec(k, ""), 15_000))))
      expect(hot.map((r) => r.meta?.cache_hit)).toEqual(prompts.map(() => true))

      // The load; Redis goes away as request 20 goes out.
      let stoppedAt = 0
      const load = yield* Effect.promise(() =>
        runLoad({
          base: url, n: 60, concurrency: 12, idOf: (i) => `fault-${fault}-${RUN}-${i}`, specOf: spec, timeoutMs: 15_000,
          before: new Map([[20, async () => { await redisServer.stop(); stoppedAt = 20 }]])
        })
      )
      expect(stoppedAt).toBe(20)
      // While it is down: /health says degraded (the cache is optional), not unhealthy.
      const health = yield* getJson(`${url}/health`)
      expect(health.status).toBe(200)
      expect(health.json.status).toBe("degraded")
      expect(health.json.checks?.find((c) => c.name === "cache")?.ok).toBe(false)

      const results = [...warm, ...hot, ...load]
      expect(results.every((r) => r.status === 200)).toBe(true)
      // Bounded: the cache lookup and the limiter give up fast on a dead Redis.
      expect(Math.max(...load.map((r) => r.latencyMs))).toBeLessThan(3_000)
      const misses = load.filter((r) => r.index >= 20 + 12 && r.meta?.cache_hit === false).length
      expect(misses).toBeGreaterThan(15)

      // Back up (empty): after a miss that stores it, the same question is a hit again.
      yield* Effect.promise(() => redisServer.restart())
      let hitAgain: Result | undefined
      for (let i = 0; i < 40 && hitAgain === undefined; i++) {
        const again = yield* Effect.promise(() => send(url, 0, `fault-${fault}-${RUN}-after-${i}`, spec(0, ""), 15_000))
        results.push(again)
        if (again.meta?.cache_hit === true) hitAgain = again
        else yield* Effect.sleep("100 millis")
      }
      expect(hitAgain?.status).toBe(200)

      // The books: one row per request (cache_hit or success), one upstream call per success.
      const rows = yield* rowsOf(fault)
      const byId = new Map(rows.map((r) => [r.request_id, r]))
      const lost: Array<string> = []
      const wrong: Array<string> = []
      for (const r of results) {
        const row = byId.get(r.id)
        if (row === undefined) lost.push(`${r.id}: no audit row`)
        else if (row.status !== (r.meta?.cache_hit === true ? "cache_hit" : "success")) wrong.push(`${r.id}: row ${row.status}, cache_hit ${String(r.meta?.cache_hit)}`)
      }
      expect(rows.length).toBe(results.length)
      const upstreamCalls = primary.served().length - calls
      expect(upstreamCalls).toBe(rows.filter((r) => r.status === "success").length)
      const books: Books = {
        requests: results.length, byStatus: { "200": results.length }, auditRows: rows.length, strayRows: rows.filter((r) => !results.some((x) => x.id === r.request_id)).length,
        lost, wrong, upstreamAttempts: upstreamCalls, late: [], auditedCost: rows.reduce((n, r) => n + r.cost, 0)
      }
      yield* close(fault, books, results, spentBefore, started, lag)
    }))

  it.effect("S3 unreachable: workflow calls 503 service_unavailable naming the object store, fast; chat unaffected; /health unhealthy", () =>
    Effect.gen(function*() {
      const url = yield* Testing.ServerUrl
      const started = performance.now()
      const lag = lagWatch()
      const auth = yield* keyAuth(url)
      const fault = "s3-unreachable"
      const headers = { "content-type": "application/json", ...auth }
      const definition = { name: "faults", steps: [{ id: "a", type: "intake" }, { id: "b", type: "output", config: { destination: "s3", retention_days: 7 } }] }
      const put = yield* getJson(`${url}/v1/workflows/faults-wf`, { method: "PUT", headers, body: JSON.stringify(definition) })
      expect(put.status).toBe(201)

      // S3 goes away: nothing listens on its port any more.
      yield* Effect.promise(() => (s3 === undefined ? Promise.resolve() : s3.close()))
      s3Up = false

      const spentBefore = yield* budgetNow
      const calls = primary.served().length
      const [workflows, chats] = yield* Effect.all([
        Effect.forEach(Array.from({ length: 12 }, (_, i) => i), (i) =>
          getJson(`${url}/v1/workflows/faults-wf${i % 3 === 2 ? "" : `-${i}`}`, i % 3 === 0
            ? { method: "PUT", headers, body: JSON.stringify(definition) }
            : { headers: auth }), { concurrency: 4 }),
        Effect.promise(() =>
          runLoad({
            base: url, n: 40, concurrency: 8, idOf: (i) => `fault-${fault}-${RUN}-${i}`, timeoutMs: 15_000,
            specOf: (i, id) => chat(fault, i % 2 === 0, tagged, auth)(i, id)
          }))
      ], { concurrency: 2 })
      for (const w of workflows) {
        expect(w.status).toBe(503)
        expect(w.json.error).toMatchObject({ type: "service_unavailable", store: "object store" })
        expect(w.json.error?.message).toMatch(/object store/)
        expect(w.ms).toBeLessThan(5_000)
      }
      expect(chats.every((r) => r.status === 200)).toBe(true)
      const health = yield* getJson(`${url}/health`)
      expect(health.status).toBe(503)
      expect(health.json.status).toBe("unhealthy")
      expect(health.json.checks?.find((c) => c.name === "object store")).toMatchObject({ ok: false, required: true })

      const rows = yield* rowsOf(fault)
      const books = account(chats, [{ backend: "primary", served: primary.served().slice(calls) }], rows)
      yield* close(`${fault} (chat)`, books, chats, spentBefore, started, lag)
      report.push({
        fault: `${fault} (workflows)`, requests: workflows.length, ok: workflows.filter((w) => w.status < 300).length,
        errors: errorsOf(Object.fromEntries([...new Set(workflows.map((w) => w.status))].map((s) => [String(s), workflows.filter((w) => w.status === s).length]))),
        auditRows: 0, upstream: 0, lost: workflows.filter((w) => typeof w.json.error?.type !== "string").length, wrong: 0, late: 0, open: 0, spendOk: true,
        maxMs: Math.round(Math.max(...workflows.map((w) => w.ms))), lagMs: Math.round(lag.max / 1e6), seconds: (performance.now() - started) / 1000
      })
    }))
})

// `pnpm bench`: load-tests the built server on loopback and prints requests/s, p50/p99 latency and
// server RSS. The server runs as a child process with the mock provider, embedded PGlite in a
// temporary directory and the response cache off, so every request goes through both gateways
// (policy, budget reservation and settlement, audit row). Bounded in time; the child is killed by
// its PID at the end, whatever happens.
//
//   node bench/run.mjs [--duration 10] [--runs 3] [--connections 50] [--warmup 3] [--database-url URL]
//
// `--database-url` runs the server on that Postgres database instead of PGlite (it writes audit
// and budget rows there; use a scratch database).
import { spawn } from "node:child_process"
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import autocannon from "autocannon"

const root = join(dirname(fileURLToPath(import.meta.url)), "..")
const main = join(root, "apps/server/dist/main.js")

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 && process.argv[i + 1] !== undefined ? Number(process.argv[i + 1]) : fallback
}
const duration = arg("duration", 10)
const runs = arg("runs", 3)
const connections = arg("connections", 50)
const warmup = arg("warmup", 3)
const databaseUrl = (() => {
  const i = process.argv.indexOf("--database-url")
  return i >= 0 ? process.argv[i + 1] : undefined
})()
// Everything (start-up, warm-up, runs, shutdown) must fit in this, or the bench gives up.
const deadlineMs = (60 + warmup + (runs + 1) * (duration + 5) + 30) * 1000

if (!existsSync(main)) {
  console.error(`bench: ${main} is missing; run \`pnpm build\` first (\`pnpm bench\` does).`)
  process.exit(1)
}

const freePort = () =>
  new Promise((resolve, reject) => {
    const s = createServer()
    s.once("error", reject)
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })

const dir = mkdtempSync(join(tmpdir(), "tidyllm-bench-"))
writeFileSync(join(dir, "tidyllm.yaml"), [
  "corporate_llm:",
  "  default_provider: mock",
  "  budget_limit_daily_usd: 1000000",
  "  max_cost_per_request_usd: 100",
  "ai_processing:",
  "  enable_caching: false",
  "storage:",
  `  data_dir: ${JSON.stringify(join(dir, "data"))}`,
  ""
].join("\n"))

const port = await freePort()
const base = `http://127.0.0.1:${port}`
const env = { ...process.env, HOST: "127.0.0.1", PORT: String(port) }
for (const k of ["DATABASE_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "TIDYLLM_CONFIG", "TIDYLLM_DATA_DIR", "LLM_DEFAULT_PROVIDER", "LLM_FALLBACK_PROVIDER", "LLM_DAILY_BUDGET_USD", "LLM_MAX_COST_PER_REQUEST"]) delete env[k]
if (databaseUrl !== undefined) env.DATABASE_URL = databaseUrl
const store = databaseUrl === undefined ? "PGlite" : "Postgres"

/** Starts the built server; its output is kept for error reports. */
const start = () => {
  const c = spawn(process.execPath, [main, "--config", join(dir, "tidyllm.yaml")], { cwd: dir, env, stdio: ["ignore", "pipe", "pipe"] })
  c.log = ""
  // The last 64 KiB only: the access log writes a line per request.
  const keep = (d) => { c.log = (c.log + d).slice(-65_536) }
  c.stdout.on("data", keep)
  c.stderr.on("data", keep)
  return c
}

let child
const alive = (c) => c !== undefined && c.exitCode === null && c.signalCode === null
const fail = (message) => {
  console.error(`bench: ${message}`)
  if (child !== undefined && child.log !== "") console.error(`--- server output ---\n${child.log.slice(-4000)}`)
  if (alive(child)) try { process.kill(child.pid, "SIGKILL") } catch { /* gone */ }
  rmSync(dir, { recursive: true, force: true })
  process.exit(1)
}
const guard = setTimeout(() => fail(`did not finish within ${deadlineMs / 1000} s`), deadlineMs)
process.on("SIGINT", () => fail("interrupted"))

/** Resident set size of the server now, and its peak so far (MiB). */
const rss = () => {
  try {
    const status = readFileSync(`/proc/${child.pid}/status`, "utf8")
    const kb = (key) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN)
    return { now: kb("VmRSS") / 1024, peak: kb("VmHWM") / 1024 }
  } catch {
    return { now: NaN, peak: NaN }
  }
}

/** Waits until `/health/ready` answers 200 (migrations applied, database answering); returns the time taken. */
const ready = async () => {
  const t0 = Date.now()
  for (;;) {
    if (!alive(child)) fail(`the server exited early (code ${child.exitCode}, signal ${child.signalCode})`)
    try {
      const r = await fetch(`${base}/health/ready`)
      if (r.status === 200) return Date.now() - t0
    } catch { /* not listening yet */ }
    if (Date.now() - t0 > 90_000) fail("the server was not ready within 90 s")
    await new Promise((r) => setTimeout(r, 100))
  }
}

/** SIGTERM, then SIGKILL if it does not stop within 15 s. */
const stop = async (c) => {
  if (!alive(c)) return true
  const exited = new Promise((r) => c.once("exit", () => r(true)))
  process.kill(c.pid, "SIGTERM")
  const ok = await Promise.race([exited, new Promise((r) => setTimeout(() => r(false), 15_000))])
  if (!ok) process.kill(c.pid, "SIGKILL")
  return ok
}

// First start: creates the embedded database (initdb) and applies the migrations. Measured on
// its own: PGlite's initdb peaks high, and a restarted server does not pay it again.
child = start()
const initMs = await ready()
const initPeak = rss().peak
await stop(child)

// The measured server: a restart on the data directory just created.
child = start()
const startupMs = await ready()
const idle = rss()

const chat = {
  url: `${base}/v1/chat/completions`,
  method: "POST",
  headers: { "content-type": "application/json", "x-tidyllm-reason": "benchmark", "x-tidyllm-team": "bench" },
  body: JSON.stringify({
    model: "claude-3-haiku",
    max_tokens: 64,
    messages: [{ role: "system", content: "You are terse." }, { role: "user", content: "Summarise the benefits of a corporate LLM gateway in one sentence." }]
  })
}
const live = { url: `${base}/health/live`, method: "GET" }

// One request to be sure the route answers 200 before loading it.
const probe = await fetch(chat.url, { method: "POST", headers: chat.headers, body: chat.body })
if (probe.status !== 200) fail(`POST /v1/chat/completions answered ${probe.status}: ${await probe.text()}`)

const cannon = (target, seconds) =>
  new Promise((resolve, reject) => {
    autocannon({ ...target, connections, duration: seconds, timeout: 30 }, (err, result) => (err ? reject(err) : resolve(result)))
  })

const summarise = (name, result) => {
  const memory = rss()
  return {
    name,
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    ok: result["2xx"],
    bad: result.non2xx + result.errors + result.timeouts,
    rss: memory.now,
    peak: memory.peak
  }
}

console.log(`bench: first start (${databaseUrl === undefined ? "initdb + " : ""}migrations) ready in ${initMs} ms, peak RSS ${initPeak.toFixed(0)} MiB`)
console.log(`bench: server pid ${child.pid} on ${base}, restarted and ready in ${startupMs} ms, idle RSS ${idle.now.toFixed(0)} MiB`)
console.log(`bench: ${connections} connections, ${runs} × ${duration} s on POST /v1/chat/completions (mock provider, ${store}, cache off), 1 × ${duration} s on GET /health/live`)
if (warmup > 0) await cannon(chat, warmup)

const rows = []
for (let i = 1; i <= runs; i++) rows.push(summarise(`chat completions, run ${i}`, await cannon(chat, duration)))
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2
}
rows.push({
  name: `chat completions, median of ${runs}`,
  rps: median(rows.map((r) => r.rps)),
  p50: median(rows.map((r) => r.p50)),
  p99: median(rows.map((r) => r.p99)),
  ok: median(rows.map((r) => r.ok)),
  bad: rows.reduce((n, r) => n + r.bad, 0),
  rss: median(rows.map((r) => r.rss)),
  peak: Math.max(...rows.map((r) => r.peak))
})
rows.push(summarise("health/live (baseline)", await cannon(live, duration)))

const fmt = (n, digits = 0) => (Number.isFinite(n) ? n.toFixed(digits) : "n/a")
const table = [
  ["target", "req/s", "p50 ms", "p99 ms", "2xx", "errors", "RSS MiB", "peak RSS MiB"],
  ...rows.map((r) => [r.name, fmt(r.rps), fmt(r.p50, 1), fmt(r.p99, 1), String(r.ok), String(r.bad), fmt(r.rss), fmt(r.peak)])
]
const widths = table[0].map((_, c) => Math.max(...table.map((row) => row[c].length)))
const line = (row) => row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join("  ")
console.log("")
console.log(line(table[0]))
console.log(widths.map((w) => "-".repeat(w)).join("  "))
for (const row of table.slice(1)) console.log(line(row))
console.log("")

clearTimeout(guard)
if (!(await stop(child))) console.error("bench: the server did not stop within 15 s of SIGTERM; killed it")
rmSync(dir, { recursive: true, force: true })
if (rows.some((r) => r.bad > 0)) {
  console.error("bench: some requests failed (see the errors column)")
  process.exitCode = 1
}

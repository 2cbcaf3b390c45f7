// Shared pieces of the bench (`run.mjs`, `soak.mjs`): child processes tracked by PID and stopped at
// the end whatever happens, CPU pinning with `taskset`, the mock upstream, the gateway and Portkey
// as targets, /proc accounting (CPU ticks, RSS), an autocannon run that keeps every latency as a
// float, and a sequential time-to-first-byte loop for streams.
import { execFileSync, spawn } from "node:child_process"
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs"
import { Agent, request as httpRequest } from "node:http"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import autocannon from "autocannon"

export const root = join(dirname(fileURLToPath(import.meta.url)), "..")
// The bundle (`apps/server/scripts/bundle.mjs`), as the image runs it; BENCH_SERVER_MAIN=apps/server/dist/main.js measures the unbundled build.
export const serverMain = process.env.BENCH_SERVER_MAIN ?? join(root, "apps/server/dist/bundle/main.js")
export const portkeyMain = join(root, "node_modules/@portkey-ai/gateway/build/start-server.js")
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

// ---------------------------------------------------------------------------------------------
// Arguments

/** `--name value` (or `--name=value`); `fallback` when absent. Flags without value: `flag(name)`. */
export const argv = process.argv.slice(2)
export const opt = (name, fallback) => {
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === `--${name}` && argv[i + 1] !== undefined) return argv[i + 1]
    if (argv[i].startsWith(`--${name}=`)) return argv[i].slice(name.length + 3)
  }
  return fallback
}
export const flag = (name) => argv.includes(`--${name}`)

// ---------------------------------------------------------------------------------------------
// Child processes: every one is recorded and stopped by its PID at the end.

const children = new Set()
export const alive = (c) => c !== undefined && c.exitCode === null && c.signalCode === null

/** Spawns and records a child; stdout/stderr go to `logFile` (or are ignored). */
export const spawnTracked = (cmd, args, { cwd = root, env = process.env, logFile, stdout = "file" } = {}) => {
  const fd = logFile !== undefined ? openSync(logFile, "a") : "ignore"
  const stdio = ["ignore", stdout === "pipe" ? "pipe" : fd, fd]
  const c = spawn(cmd, args, { cwd, env, stdio })
  if (typeof fd === "number") closeSync(fd)
  c.logFile = logFile
  children.add(c)
  c.once("exit", () => children.delete(c))
  return c
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves true when it stopped on SIGTERM. */
export const stopChild = async (c, graceMs = 15_000) => {
  if (c === undefined || !alive(c)) return true
  const exited = new Promise((r) => c.once("exit", () => r(true)))
  try { process.kill(c.pid, "SIGTERM") } catch { return true }
  const ok = await Promise.race([exited, sleep(graceMs).then(() => false)])
  if (!ok) {
    try { process.kill(c.pid, "SIGKILL") } catch { /* gone */ }
    await Promise.race([exited, sleep(2_000)])
  }
  return ok
}

/** Stops every child still running, by PID. */
export const stopAll = async () => {
  await Promise.all([...children].map((c) => stopChild(c, 10_000)))
}
/** Last resort, synchronous (on `exit`): SIGKILL every child still running. */
export const killAllSync = () => {
  for (const c of children) if (alive(c)) try { process.kill(c.pid, "SIGKILL") } catch { /* gone */ }
}
process.on("exit", killAllSync)

/** The last `bytes` of a log file, for error reports. */
export const tail = (file, bytes = 4000) => {
  try { const s = readFileSync(file, "utf8"); return s.slice(-bytes) } catch { return "" }
}

/**
 * A global deadline: when it passes, every child is killed and the process exits 2. `cleanup`
 * runs first (best effort, bounded to 20 s).
 */
export const deadline = (ms, cleanup = async () => {}) => {
  const t = setTimeout(async () => {
    console.error(`bench: global deadline of ${(ms / 60_000).toFixed(1)} min reached; stopping everything`)
    await Promise.race([cleanup().catch(() => {}), sleep(20_000)])
    await Promise.race([stopAll(), sleep(12_000)])
    killAllSync()
    process.exit(2)
  }, ms)
  t.unref()
  return t
}

export const onSignals = (cleanup) => {
  const handler = (sig) => async () => {
    console.error(`bench: ${sig}; stopping every child`)
    await Promise.race([cleanup().catch(() => {}), sleep(15_000)])
    await Promise.race([stopAll(), sleep(12_000)])
    killAllSync()
    process.exit(130)
  }
  process.once("SIGINT", handler("SIGINT"))
  process.once("SIGTERM", handler("SIGTERM"))
}

// ---------------------------------------------------------------------------------------------
// CPU pinning

export const tasksetPath = ["/usr/bin/taskset", "/bin/taskset"].find((p) => existsSync(p))
export const cpuCount = (() => { try { return Number(execFileSync("nproc", { encoding: "utf8" }).trim()) } catch { return 1 } })()
export const canPin = tasksetPath !== undefined && cpuCount >= 2 && !flag("no-pin")

/** Pins this process (all its threads) to `cpu`; children spawned later inherit it. */
export const pinSelf = (cpu) => {
  if (!canPin) return false
  execFileSync(tasksetPath, ["-a", "-p", "-c", String(cpu), String(process.pid)], { stdio: "ignore" })
  return true
}
/** The command prefix that runs a program on `cpu` (empty when not pinning). */
export const pinned = (cpu, cmd, args) => (canPin ? [tasksetPath, ["-c", String(cpu), cmd, ...args]] : [cmd, args])

// ---------------------------------------------------------------------------------------------
// /proc accounting

export const clkTck = (() => { try { return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100 } catch { return 100 } })()

const statFields = (text) => text.slice(text.lastIndexOf(")") + 2).split(" ")
/** utime + stime of a process (all threads), in ms; NaN if gone. */
export const cpuMs = (pid) => {
  try {
    const f = statFields(readFileSync(`/proc/${pid}/stat`, "utf8"))
    return ((Number(f[11]) + Number(f[12])) * 1000) / clkTck
  } catch { return NaN }
}
/** CPU of every `postgres` process (utime + stime + reaped children's), in ms. */
export const postgresCpuMs = () => {
  let ticks = 0
  let n = 0
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue
    try {
      const text = readFileSync(`/proc/${d}/stat`, "utf8")
      const comm = text.slice(text.indexOf("(") + 1, text.lastIndexOf(")"))
      if (comm !== "postgres") continue
      const f = statFields(text)
      ticks += Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])
      n++
    } catch { /* gone */ }
  }
  return n === 0 ? NaN : (ticks * 1000) / clkTck
}
/** VmRSS and VmHWM (MiB). */
export const memMiB = (pid) => {
  try {
    const s = readFileSync(`/proc/${pid}/status`, "utf8")
    const kb = (k) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, "m").exec(s)?.[1] ?? NaN)
    return { rss: kb("VmRSS") / 1024, hwm: kb("VmHWM") / 1024 }
  } catch { return { rss: NaN, hwm: NaN } }
}
export const loadavg = () => { try { return readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ") } catch { return "n/a" } }

// ---------------------------------------------------------------------------------------------
// Network helpers (everything on 127.0.0.1)

export const freePort = () =>
  new Promise((resolve, reject) => {
    const s = createServer()
    s.once("error", reject)
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })

/** A small HTTP call (setup only): `{ status, text, json }`. */
export const call = async (method, url, headers = {}, body, timeoutMs = 10_000) => {
  const r = await fetch(url, { method, headers, body, signal: AbortSignal.timeout(timeoutMs) })
  const text = await r.text()
  let json
  try { json = JSON.parse(text) } catch { /* not JSON */ }
  return { status: r.status, text, json }
}

/** Polls `url` until `ok(status, text)`; fails if `child` exits or after `timeoutMs`. */
export const waitReady = async (url, child, ok = (s) => s === 200, timeoutMs = 120_000) => {
  const t0 = Date.now()
  for (;;) {
    if (child !== undefined && !alive(child)) throw new Error(`exited early (code ${child.exitCode}, signal ${child.signalCode})\n${tail(child.logFile)}`)
    try {
      const r = await fetch(url, { signal: AbortSignal.timeout(2_000) })
      const text = await r.text()
      if (ok(r.status, text)) return Date.now() - t0
    } catch { /* not yet */ }
    if (Date.now() - t0 > timeoutMs) throw new Error(`not ready within ${timeoutMs / 1000} s (${url})\n${child ? tail(child.logFile) : ""}`)
    await sleep(100)
  }
}

// ---------------------------------------------------------------------------------------------
// The request every target gets

export const MODEL = "gpt-4o-mini"
const messages = [
  { role: "system", content: "You are a concise assistant for a bank's risk team. Answer in one sentence." },
  { role: "user", content: "Summarise the benefits of a corporate LLM gateway for a regulated company." }
]
export const chatBody = JSON.stringify({ model: MODEL, max_tokens: 64, temperature: 0.2, messages })
export const streamBody = JSON.stringify({ model: MODEL, max_tokens: 64, temperature: 0.2, messages, stream: true, stream_options: { include_usage: true } })

// ---------------------------------------------------------------------------------------------
// Targets

/** Starts the mock upstream (one process, one port per latency) on `cpu`. */
export const startUpstream = async ({ latencies = [0, 50], cpu = 1, logDir, bedrock = false }) => {
  const args = [join(root, "bench/upstream.mjs")]
  for (const l of latencies) args.push("--port", "0", "--latency", String(l))
  if (bedrock) args.push("--bedrock-port", "0")
  const [cmd, cargs] = pinned(cpu, process.execPath, args)
  const c = spawnTracked(cmd, cargs, { logFile: join(logDir, "upstream.log"), stdout: "pipe" })
  const line = await new Promise((resolve, reject) => {
    let buf = ""
    const t = setTimeout(() => reject(new Error("the mock upstream did not start within 15 s")), 15_000)
    c.stdout.on("data", (d) => {
      buf += d
      const nl = buf.indexOf("\n")
      if (nl >= 0) { clearTimeout(t); resolve(buf.slice(0, nl)) }
    })
    c.once("exit", (code) => { clearTimeout(t); reject(new Error(`the mock upstream exited (${code})\n${tail(c.logFile)}`)) })
  })
  c.stdout.resume()
  const { ports } = JSON.parse(line)
  return {
    child: c, pid: c.pid, ports,
    url: (latency) => `http://127.0.0.1:${ports[String(latency)]}`,
    /** The Bedrock Runtime listener (h2c, latency 0), when started with `bedrock: true`. */
    bedrockUrl: () => `http://127.0.0.1:${ports.bedrock}`
  }
}

/** `direct`: the upstream itself, as a target. */
export const directTarget = (upstream, latency) => ({
  id: "direct",
  label: "direct",
  pid: upstream.pid,
  usesPostgres: false,
  url: `${upstream.url(latency)}/v1/chat/completions`,
  headers: { "content-type": "application/json", authorization: "Bearer x" }
})

/** Creates (or recreates) a scratch Postgres database with psql; returns its URL. */
export const scratchDatabase = (name = "tidyllm_bench") => {
  if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`bad database name ${name}`)
  const psql = (sql) => execFileSync("psql", ["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-qAtc", sql], { stdio: ["ignore", "pipe", "pipe"], timeout: 30_000, encoding: "utf8" })
  psql(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
  psql(`CREATE DATABASE ${name}`)
  return `postgres://postgres@127.0.0.1:5432/${name}`
}

const yaml = (lines) => `${lines.join("\n")}\n`

/**
 * Starts the gateway (`node apps/server/dist/bundle/main.js --config FILE`) on `cpu`, with budgets, audit
 * and API keys, the mock upstream as its default (`openai_compatible`) provider; creates a `user`
 * key with the bootstrap admin key; checks one request answers 200.
 */
export const startGateway = async ({
  id, label, upstreamUrl, durability = "sync", caching = false, cacheBackend = "file", databaseUrl, cpu = 0,
  profileDir, workDir, nodeFlags = [], bedrockUrl
}) => {
  const dir = mkdtempSync(join(workDir, `${id}-`))
  const port = await freePort()
  const adminKey = `bench-admin-${Math.random().toString(36).slice(2)}-0123456789abcdef0123456789`
  const config = join(dir, "tidyllm.yaml")
  writeFileSync(config, yaml([
    "corporate_llm:",
    // With `bedrockUrl`, chat goes to the Bedrock provider (the AWS SDK) on the upstream's Bedrock listener.
    `  default_provider: ${bedrockUrl === undefined ? "upstream" : "bedrock"}`,
    `  default_model: ${MODEL}`,
    "  budget_limit_daily_usd: 1000000",
    "  max_cost_per_request_usd: 100",
    `  audit_durability: ${durability}`,
    "ai_processing:",
    `  enable_caching: ${caching}`,
    `  cache_dir: ${JSON.stringify(join(dir, "cache"))}`,
    "providers:",
    "  openai_compatible:",
    "    upstream:",
    `      base_url: ${upstreamUrl}/v1`,
    ...(bedrockUrl === undefined ? [] : ["  bedrock:", "    region: us-east-1", `    endpoint: ${bedrockUrl}`, "    access_key_id: AKIDBENCH", "    secret_access_key: bench-secret"]),
    "models:",
    `  - id: ${MODEL}`,
    `    provider_ids: { openai: ${MODEL}, upstream: ${MODEL}, bedrock: ${MODEL} }`,
    "    input_usd_per_million: 0.15",
    "    output_usd_per_million: 0.6",
    "    context_window: 128000",
    "    max_output_tokens: 16384",
    "storage:",
    `  data_dir: ${JSON.stringify(join(dir, "data"))}`,
    `  cache: ${cacheBackend}`,
    "server:",
    "  host: 127.0.0.1",
    `  port: ${port}`,
    "  shutdown_grace_seconds: 2",
    ""
  ]))
  const env = { ...process.env, TIDYLLM_ADMIN_KEY: adminKey }
  for (const k of ["NODE_ENV", "DATABASE_URL", "REDIS_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "TIDYLLM_CONFIG", "TIDYLLM_DATA_DIR", "TIDYLLM_CACHE_DIR", "TIDYLLM_AUTH", "LLM_DEFAULT_PROVIDER", "LLM_FALLBACK_PROVIDER", "LLM_DAILY_BUDGET_USD", "LLM_MAX_COST_PER_REQUEST", "LLM_AUDIT_LEVEL", "HOST", "PORT", "S3_BUCKET", "S3_ENDPOINT", "MLFLOW_GATEWAY_URL"]) delete env[k]
  if (databaseUrl !== undefined) env.DATABASE_URL = databaseUrl
  const base = `http://127.0.0.1:${port}`
  const logFile = join(dir, "server.log")
  const flags = [...nodeFlags]
  if (profileDir !== undefined) { mkdirSync(profileDir, { recursive: true }); flags.push("--cpu-prof", "--cpu-prof-dir", profileDir) }
  const launch = (extra = []) => {
    const [cmd, args] = pinned(cpu, process.execPath, [...extra, serverMain, "--config", config])
    return spawnTracked(cmd, args, { cwd: dir, env, logFile })
  }

  let initMs
  if (databaseUrl === undefined) {
    // PGlite: the first start runs initdb and the migrations; the measured server is a restart.
    const first = launch()
    initMs = await waitReady(`${base}/health/ready`, first, undefined, 180_000)
    await stopChild(first, 20_000)
  }
  const child = launch(flags)
  const readyMs = await waitReady(`${base}/health/ready`, child, undefined, 180_000)

  const created = await call("POST", `${base}/v1/keys`, { authorization: `Bearer ${adminKey}`, "content-type": "application/json" }, JSON.stringify({ role: "user", team: "bench", name: "bench" }))
  if (created.status !== 200 && created.status !== 201) throw new Error(`${id}: POST /v1/keys answered ${created.status}: ${created.text}`)
  const key = created.json?.secret
  if (typeof key !== "string") throw new Error(`${id}: no secret in ${created.text}`)
  const headers = { "content-type": "application/json", authorization: `Bearer ${key}`, "x-tidyllm-reason": "performance benchmark" }
  const url = `${base}/v1/chat/completions`
  const probe = await call("POST", url, headers, chatBody)
  if (probe.status !== 200) throw new Error(`${id}: POST /v1/chat/completions answered ${probe.status}: ${probe.text}\n${tail(logFile)}`)
  const budget = await call("GET", `${base}/v1/budget`, { authorization: `Bearer ${key}` })
  // The probe must have cost real money (a priced model): the budgets reserve and settle amounts.
  const global = Array.isArray(budget.json?.budgets) ? budget.json.budgets.find((x) => x.scope === "global" && x.period === "day") : undefined
  const spentUsd = global === undefined ? NaN : Number(global.spent_usd) + Number(global.reserved_usd)
  if (!(spentUsd > 0)) console.warn(`bench: ${id}: GET /v1/budget shows no spending after a priced request: ${budget.text.slice(0, 300)}`)
  const startMem = memMiB(child.pid)
  return {
    id, label, kind: "gateway", pid: child.pid, child, base, url, headers, key, logFile, dir, initMs, readyMs, startMem,
    usesPostgres: databaseUrl !== undefined, spentUsd, durability, caching,
    stop: async () => {
      const before = profileDir !== undefined ? new Set(existsSync(profileDir) ? readdirSync(profileDir) : []) : undefined
      const ok = await stopChild(child, 25_000)
      if (profileDir !== undefined) {
        // Name the profile written at exit after the target.
        for (let i = 0; i < 20; i++) {
          const fresh = readdirSync(profileDir).filter((f) => !before.has(f) && f.includes(`.${child.pid}.`) && f.endsWith(".cpuprofile"))
          if (fresh.length > 0) {
            for (const f of fresh) renameSync(join(profileDir, f), join(profileDir, `${id}-${f}`))
            break
          }
          await sleep(250)
        }
      }
      return ok
    }
  }
}

/** Starts Portkey's gateway 1.15.2 on `cpu`, routed to the upstream with its custom-host header. */
export const startPortkey = async ({ upstreamUrl, cpu = 0, workDir, id = "portkey", label = "portkey 1.15.2" }) => {
  if (!existsSync(portkeyMain)) throw new Error(`${portkeyMain} is missing (devDependency @portkey-ai/gateway)`)
  const dir = mkdtempSync(join(workDir, `${id}-`))
  const port = await freePort()
  const logFile = join(dir, "portkey.log")
  const env = { ...process.env }
  for (const k of ["PORT", "REDIS_CONNECTION_STRING", "NODE_ENV"]) delete env[k]
  const [cmd, args] = pinned(cpu, process.execPath, [portkeyMain, `--port=${port}`, "--headless"])
  const child = spawnTracked(cmd, args, { cwd: dir, env, logFile })
  const base = `http://127.0.0.1:${port}`
  const readyMs = await waitReady(`${base}/`, child, (s, t) => s === 200 && t.includes("AI Gateway"), 60_000)
  const headers = { "content-type": "application/json", authorization: "Bearer x", "x-portkey-provider": "openai", "x-portkey-custom-host": `${upstreamUrl}/v1` }
  const url = `${base}/v1/chat/completions`
  const probe = await call("POST", url, headers, chatBody)
  if (probe.status !== 200) throw new Error(`portkey: POST /v1/chat/completions answered ${probe.status}: ${probe.text}\n${tail(logFile)}`)
  return {
    id, label, kind: "portkey", pid: child.pid, child, base, url, headers, logFile, dir, readyMs, startMem: memMiB(child.pid), usesPostgres: false,
    stop: () => stopChild(child, 10_000)
  }
}

// ---------------------------------------------------------------------------------------------
// Measurement

/**
 * Waits until `pid` is idle (under `maxUtil` of a core over 250 ms windows, twice in a row), at
 * most `maxMs`: a slow target still works off the requests left in flight when a run ended, and
 * must not steal CPU 0 from the next target. Returns the ms waited.
 */
export const settle = async (pid, { maxMs = 20_000, maxUtil = 0.08 } = {}) => {
  const t0 = Date.now()
  let quiet = 0
  while (Date.now() - t0 < maxMs && quiet < 2) {
    const a = cpuMs(pid)
    await sleep(250)
    const b = cpuMs(pid)
    if (!Number.isFinite(b)) break
    quiet = (b - a) / 250 <= maxUtil ? quiet + 1 : 0
  }
  return Date.now() - t0
}

const sortedF64 = (xs) => Float64Array.from(xs).sort()
/** Nearest-rank percentile of a sorted array. */
export const pct = (sorted, p) => (sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))])
export const median = (xs) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b)
  if (s.length === 0) return NaN
  const m = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2
}

/**
 * One autocannon run against `target` (POST, keep-alive). Every response's latency is kept as a
 * float (autocannon's `response` event carries its hrtime-based duration; its HDR histogram
 * has 1 ms resolution). CPU of the target (and of Postgres) is read from /proc before and
 * after; the target's RSS is sampled every 250 ms.
 */
export const load = async (target, { connections, seconds, body = chatBody, overallRate, rssEveryMs = 250, onRss, upstreamPid }) => {
  const lat = []
  let non2xx = 0
  const cpu0 = cpuMs(target.pid)
  const pg0 = target.usesPostgres ? postgresCpuMs() : NaN
  const up0 = upstreamPid !== undefined && upstreamPid !== target.pid ? cpuMs(upstreamPid) : NaN
  let rssMax = memMiB(target.pid).rss
  const sampler = setInterval(() => {
    const m = memMiB(target.pid)
    if (m.rss > rssMax) rssMax = m.rss
    if (onRss) onRss(m)
  }, rssEveryMs)
  const t0 = process.hrtime.bigint()
  const result = await new Promise((resolve, reject) => {
    const inst = autocannon({
      url: target.url, method: "POST", headers: target.headers, body, connections, duration: seconds, timeout: 15,
      ...(overallRate ? { overallRate } : {})
    }, (err, res) => (err ? reject(err) : resolve(res)))
    inst.on("response", (_client, status, _bytes, ms) => {
      if (status >= 200 && status < 300) lat.push(ms)
      else non2xx++
    })
  })
  const elapsedS = Number(process.hrtime.bigint() - t0) / 1e9
  clearInterval(sampler)
  const cpu1 = cpuMs(target.pid)
  const pg1 = target.usesPostgres ? postgresCpuMs() : NaN
  const up1 = Number.isFinite(up0) ? cpuMs(upstreamPid) : NaN
  const mem = memMiB(target.pid)
  if (mem.rss > rssMax) rssMax = mem.rss
  const s = sortedF64(lat)
  const done = s.length + non2xx
  return {
    connections, seconds: elapsedS, ok: s.length, non2xx, errors: result.errors, timeouts: result.timeouts,
    rps: s.length / elapsedS,
    p50: pct(s, 50), p90: pct(s, 90), p99: pct(s, 99), max: s.length ? s[s.length - 1] : NaN,
    cpuPerReq: done > 0 ? (cpu1 - cpu0) / done : NaN,
    cpuUtil: (cpu1 - cpu0) / (elapsedS * 1000),
    pgCpuPerReq: done > 0 ? (pg1 - pg0) / done : NaN,
    upstreamCpuPerReq: done > 0 ? (up1 - up0) / done : NaN,
    rssMax, hwm: mem.hwm, rssEnd: mem.rss
  }
}

const streamAgent = new Agent({ keepAlive: true, maxSockets: 1 })
/** One streamed request: resolves { ttfb ms (first body chunk), total ms, ok }. */
const oneStream = (url, headers, body) =>
  new Promise((resolve) => {
    const u = new URL(url)
    const t0 = process.hrtime.bigint()
    let ttfb = NaN
    let text = ""
    const req = httpRequest({ host: u.hostname, port: u.port, path: u.pathname, method: "POST", agent: streamAgent, headers: { ...headers, "content-length": Buffer.byteLength(body) } }, (res) => {
      res.setEncoding("utf8")
      res.on("data", (d) => {
        if (Number.isNaN(ttfb)) ttfb = Number(process.hrtime.bigint() - t0) / 1e6
        if (text.length < 65_536) text += d
      })
      res.on("end", () => resolve({ ttfb, total: Number(process.hrtime.bigint() - t0) / 1e6, ok: res.statusCode === 200 && text.includes("[DONE]"), status: res.statusCode, text }))
      res.on("error", () => resolve({ ttfb, ok: false }))
    })
    req.setTimeout(15_000, () => req.destroy(new Error("timeout")))
    req.on("error", (e) => resolve({ ttfb, ok: false, error: String(e) }))
    req.end(body)
  })

/** Sequential `stream: true` requests on one keep-alive connection, bounded by time and count. */
export const ttfbLoop = async (target, { seconds = 3, maxRequests = 1000 } = {}) => {
  const ttfb = []
  let errors = 0
  let firstError
  const t0 = Date.now()
  for (let i = 0; i < maxRequests && Date.now() - t0 < seconds * 1000; i++) {
    const r = await oneStream(target.url, target.headers, streamBody)
    if (r.ok) ttfb.push(r.ttfb)
    else { errors++; firstError ??= `${r.status ?? ""} ${r.error ?? ""} ${(r.text ?? "").slice(0, 300)}` }
  }
  const s = sortedF64(ttfb)
  return { n: s.length, errors, firstError, p50: pct(s, 50), p90: pct(s, 90), p99: pct(s, 99) }
}

export const removeDir = (d) => { try { rmSync(d, { recursive: true, force: true }) } catch { /* best effort */ } }
export const ensureDir = (d) => { mkdirSync(d, { recursive: true }); return d }
export const newWorkDir = () => mkdtempSync(join(tmpdir(), "tidyllm-bench-"))
export const fileSize = (f) => { try { return statSync(f).size } catch { return 0 } }

// ---------------------------------------------------------------------------------------------
// Machine and formatting

export const machineInfo = () => {
  const sh = (cmd, args) => { try { return execFileSync(cmd, args, { encoding: "utf8", cwd: root, stdio: ["ignore", "pipe", "ignore"] }).trim() } catch { return "n/a" } }
  const cpuModel = (() => { try { return /model name\s*:\s*(.+)/.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? "n/a" } catch { return "n/a" } })()
  const dirty = sh("git", ["status", "--porcelain", "--untracked-files=no"]) !== ""
  return {
    nproc: cpuCount, cpuModel, node: process.version, commit: `${sh("git", ["rev-parse", "--short", "HEAD"])}${dirty ? " (+ uncommitted changes)" : ""}`,
    kernel: sh("uname", ["-r"]), clkTck, memTotal: (() => { try { return /MemTotal:\s+(\d+)/.exec(readFileSync("/proc/meminfo", "utf8"))[1] / 1024 / 1024 } catch { return NaN } })()
  }
}

export const fmt = (n, digits = 0) => (n === undefined || n === null || !Number.isFinite(n) ? "n/a" : n.toFixed(digits))
export const fmtSigned = (n, digits = 2) => (Number.isFinite(n) ? `${n >= 0 ? "+" : ""}${n.toFixed(digits)}` : "n/a")

/** A Markdown table. */
export const mdTable = (head, rows) => [
  `| ${head.join(" | ")} |`,
  `|${head.map((_, i) => (i === 0 ? "---" : "---:")).join("|")}|`,
  ...rows.map((r) => `| ${r.join(" | ")} |`)
].join("\n")

/** A plain-text table for the terminal. */
export const textTable = (head, rows) => {
  const all = [head, ...rows]
  const w = head.map((_, c) => Math.max(...all.map((r) => String(r[c]).length)))
  const line = (r) => r.map((cell, c) => (c <= 1 ? String(cell).padEnd(w[c]) : String(cell).padStart(w[c]))).join("  ")
  return [line(head), w.map((n) => "-".repeat(n)).join("  "), ...rows.map(line)].join("\n")
}

export const stamp = (d = new Date()) => {
  const p = (n) => String(n).padStart(2, "0")
  return { day: `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`, hm: `${p(d.getHours())}${p(d.getMinutes())}` }
}

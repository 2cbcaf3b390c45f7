#!/usr/bin/env node
// Checks the Grafana dashboard (deploy/grafana/tidyllm-dashboard.json) against a real scrape:
// every metric name each panel's PromQL references (tidyllm_*, process_*, nodejs_*, with their
// _bucket/_sum/_count suffixes) must be a sample name of GET /metrics, and every label a query
// selects on or groups by must be a label of one of its metrics. Exits 1 on any finding, so a
// renamed metric or label fails loudly. `apps/server/test/Metrics.test.ts` runs the same check.
//
//   node scripts/check-dashboard.mjs http://gateway:8080/metrics   # a running server
//   node scripts/check-dashboard.mjs                               # starts the built server (pnpm build first)
//
// Without a URL it starts apps/server/dist/bundle/main.js on a free loopback port (mock provider, PGlite
// in a temporary directory), sends a few requests (an answer, a cache hit, a refusal), scrapes,
// and stops the server by its PID.
import { spawn } from "node:child_process"
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

const root = join(dirname(fileURLToPath(import.meta.url)), "..")
const dashboardFile = join(root, "deploy/grafana/tidyllm-dashboard.json")

/** Every `expr` (and templating `definition`) of the dashboard, with its panel's title. */
const queries = (node, panel = "dashboard", out = []) => {
  if (Array.isArray(node)) { node.forEach((n) => queries(n, panel, out)); return out }
  if (typeof node !== "object" || node === null) return out
  const title = typeof node.title === "string" ? node.title : panel
  if (typeof node.expr === "string") out.push({ panel: title, expr: node.expr })
  if (typeof node.definition === "string") out.push({ panel: `variable ${node.name}`, expr: node.definition })
  for (const v of Object.values(node)) queries(v, title, out)
  return out
}

/** Metric names of a PromQL expression (string literals blanked first: label values are not names). */
const metricNames = (expr) =>
  [...expr.replace(/"(?:[^"\\]|\\.)*"/g, "\"\"").matchAll(/\b(?:tidyllm|process|nodejs)_[a-zA-Z0-9_]+\b/g)].map((m) => m[0])

/** Labels an expression selects on (`{label=…}`) or groups by (`by (…)`, `without (…)`). */
const labelNames = (expr) => {
  const out = []
  for (const m of expr.matchAll(/\{([^}]*)\}/g)) for (const l of m[1].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)/g)) out.push(l[1])
  for (const m of expr.matchAll(/\b(?:by|without)\s*\(([^)]*)\)/g)) for (const l of m[1].split(",")) if (l.trim() !== "") out.push(l.trim())
  return out
}

/** Sample names of an exposition and the labels seen on each (plus the target labels Prometheus adds). */
const parseScrape = (text) => {
  const labels = new Map()
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? \S+$/.exec(line)
    if (m === null) continue
    const set = labels.get(m[1]) ?? new Set(["job", "instance"])
    for (const l of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="(?:[^"\\]|\\.)*"/g)) set.add(l[1])
    labels.set(m[1], set)
  }
  return labels
}

const check = (text) => {
  const labels = parseScrape(text)
  const all = queries(JSON.parse(readFileSync(dashboardFile, "utf8")))
  const findings = []
  for (const { panel, expr } of all) {
    const names = metricNames(expr)
    if (names.length === 0) findings.push(`${panel}: no metric in ${expr}`)
    for (const n of names) if (!labels.has(n)) findings.push(`${panel}: ${n} is not in the scrape`)
    const known = new Set(names.flatMap((n) => [...(labels.get(n) ?? [])]))
    for (const l of labelNames(expr)) if (!known.has(l)) findings.push(`${panel}: label '${l}' is on none of ${names.join(", ")}`)
  }
  for (const f of findings) console.log(f)
  console.log(findings.length > 0
    ? `dashboard: ${findings.length} finding(s)`
    : `dashboard: all ${all.length} queries reference metrics and labels of the scrape (${labels.size} sample names)`)
  return findings.length === 0
}

const scrape = async (url) => {
  const r = await fetch(url)
  if (r.status !== 200) throw new Error(`GET ${url}: ${r.status}`)
  return r.text()
}

const freePort = () => new Promise((resolve, reject) => {
  const s = createServer()
  s.once("error", reject)
  s.listen(0, "127.0.0.1", () => { const { port } = s.address(); s.close(() => resolve(port)) })
})

/** Starts the built server, drives a few requests through it, and returns its scrape. */
const scrapeOwnServer = async () => {
  const main = join(root, "apps/server/dist/bundle/main.js")
  if (!existsSync(main)) throw new Error(`${main} is missing; run \`pnpm build\` first`)
  const dir = mkdtempSync(join(tmpdir(), "tidyllm-dashboard-"))
  writeFileSync(join(dir, "tidyllm.yaml"), [
    "corporate_llm:", "  default_provider: mock",
    "ai_processing:", "  max_retries: 1", "  retry_delay_base: 0.001", "  circuit_breaker_failures: 2",
    "providers:", "  openai_compatible:", "    broken:", "      base_url: http://127.0.0.1:1/v1",
    "models:", "  - id: flaky-model", "    provider_ids: { broken: flaky }", "    input_usd_per_million: 1", "    context_window: 8000", "    max_output_tokens: 1000",
    "storage:", `  data_dir: ${JSON.stringify(join(dir, "data"))}`, "  cache: memory", ""
  ].join("\n"))
  const port = await freePort()
  const env = { ...process.env, HOST: "127.0.0.1", PORT: String(port) }
  for (const k of ["DATABASE_URL", "TIDYLLM_CONFIG", "TIDYLLM_DATA_DIR", "LLM_DEFAULT_PROVIDER", "LLM_FALLBACK_PROVIDER", "REDIS_URL", "S3_BUCKET"]) delete env[k]
  const child = spawn(process.execPath, [main, "--config", join(dir, "tidyllm.yaml")], { cwd: dir, env, stdio: ["ignore", "pipe", "pipe"] })
  let log = ""
  child.stdout.on("data", (d) => { log += d })
  child.stderr.on("data", (d) => { log += d })
  const base = `http://127.0.0.1:${port}`
  try {
    const t0 = Date.now()
    for (;;) {
      if (child.exitCode !== null) throw new Error(`the server exited (code ${child.exitCode})\n${log.slice(-3000)}`)
      try { if ((await fetch(`${base}/health/ready`)).status === 200) break } catch { /* not listening yet */ }
      if (Date.now() - t0 > 90_000) throw new Error(`the server was not ready within 90 s\n${log.slice(-3000)}`)
      await new Promise((r) => setTimeout(r, 100))
    }
    const post = (path, body) => fetch(`${base}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) }).then((r) => r.text())
    const chat = { model: "claude-3-haiku", messages: [{ role: "user", content: "dashboard check" }], metadata: { reason: "dashboard check" } }
    await post("/v1/chat/completions", chat)
    await post("/v1/chat/completions", chat)
    await post("/v1/chat/completions", { ...chat, metadata: {} })
    await post("/v1/ai", { backend: "broken", fallback_backends: ["mock"], model: "flaky-model", prompt: "x", reason: "dashboard check", use_cache: false })
    return await scrape(`${base}/metrics`)
  } finally {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once("exit", r))
      process.kill(child.pid, "SIGTERM")
      const timer = setTimeout(() => { try { process.kill(child.pid, "SIGKILL") } catch { /* gone */ } }, 15_000)
      await exited
      clearTimeout(timer)
    }
    rmSync(dir, { recursive: true, force: true })
  }
}

const url = process.argv[2]
try {
  process.exit(check(url === undefined ? await scrapeOwnServer() : await scrape(url)) ? 0 : 1)
} catch (e) {
  console.error(`dashboard: ${e instanceof Error ? e.message : String(e)}`)
  process.exit(1)
}

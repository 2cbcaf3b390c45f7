// `pnpm bench` (part 1): the gateway against a direct call and against Portkey's open-source
// gateway, on loopback, in one process tree:
//
//   - a mock OpenAI-compatible upstream (`bench/upstream.mjs`; 0 ms and 50 ms latency), and the
//     load generator (autocannon, in this process) pinned to CPU 1;
//   - the target under test pinned to CPU 0: `direct` (the upstream itself), `gateway-pg-sync` and
//     `gateway-pg-buffered` (this gateway on the real Postgres, audit_durability sync / buffered),
//     `gateway-pglite` (embedded PGlite), `portkey` (@portkey-ai/gateway 1.15.2);
//   - for each load (connections) and repetition, `direct` then every target back to back, so the
//     overhead (target − direct, p50 and p99) is paired per repetition; medians over repetitions.
//
// Also: time to first byte of `stream: true` (sequential loop, one connection), cache hits
// (gateway with the response cache on), the 50 ms upstream, PASS/FAIL against the issue's targets.
// Writes bench/results/YYYY-MM-DD-HHMM.md (+ .json) and bench/results/latest.md. Exit code: 0
// (even when targets FAIL), 1 when requests errored or a target could not start, 2 on the global
// deadline. Every child process is stopped by its PID at the end.
//
//   node bench/run.mjs [--quick] [--duration 5] [--reps 3] [--warmup 3] [--loads 1,10,100]
//        [--targets gateway-pg,portkey] [--sections load,stream,slow,cache] [--slow-loads 10,100]
//        [--cache-loads 1,10] [--cache-backend file|memory] [--stream-seconds 3] [--profile]
//        [--database-url URL] [--deadline-minutes N] [--no-pin] [--nice -10] [--out DIR]
//
// Target ids for --targets: gateway-pg-sync, gateway-pg-buffered, gateway-pglite, portkey,
// gateway-pg-cache; a prefix ending before a dash selects several (`gateway-pg` = sync, buffered
// and cache; `gateway` = every gateway). `direct` always runs (it is the baseline).
import { copyFileSync, existsSync, writeFileSync } from "node:fs"
import { setPriority } from "node:os"
import { join } from "node:path"
import {
  chatBody, cpuCount, deadline, directTarget, ensureDir, flag, fmt, fmtSigned, load, loadavg, machineInfo, mdTable, median,
  newWorkDir, onSignals, opt, pinSelf, removeDir, root, scratchDatabase, serverMain, sleep, startGateway, startPortkey,
  settle, startUpstream, stamp, stopAll, tasksetPath, textTable, ttfbLoop, memMiB, alive
} from "./lib.mjs"

const quick = flag("quick")
const duration = Number(opt("duration", quick ? 2 : 5))
const reps = Number(opt("reps", quick ? 1 : 3))
const warmup = Number(opt("warmup", quick ? 2 : 5))
const list = (s) => String(s).split(",").map((x) => x.trim()).filter((x) => x !== "")
const loads = list(opt("loads", "1,10,100")).map(Number)
const slowLoads = list(opt("slow-loads", "10,100")).map(Number)
const cacheLoads = list(opt("cache-loads", "1,10")).map(Number)
const sections = new Set(list(opt("sections", "load,stream,slow,cache")))
const targetFilter = opt("targets") === undefined ? undefined : list(opt("targets"))
const cacheBackend = opt("cache-backend", "file")
const streamSeconds = Number(opt("stream-seconds", quick ? 1 : 3))
const profile = flag("profile")
const outDir = ensureDir(opt("out", join(root, "bench/results")))
const profileDir = profile ? ensureDir(join(outDir, "profiles")) : undefined
// Extra node flags for the gateways (e.g. `--node-flags "--max-semi-space-size=2"`), to compare heap settings.
const nodeFlags = list(opt("node-flags", "").replaceAll(" ", ","))
const PAUSE_MS = 300

for (const [n, v] of [["duration", duration], ["reps", reps], ["warmup", warmup]]) {
  if (!Number.isFinite(v) || v < 0 || (n !== "warmup" && v <= 0)) { console.error(`bench: bad --${n} ${v}`); process.exit(1) }
}
if (!existsSync(serverMain)) { console.error(`bench: ${serverMain} is missing; run \`pnpm build\` first (\`pnpm bench\` does).`); process.exit(1) }

const selected = (id) => targetFilter === undefined || targetFilter.some((t) => t === "all" || id === t || id.startsWith(`${t}-`))

// ------------------------------------------------------------------------------------------
// Plan: which sections, which targets; and a global deadline from the estimate.

const plan = []
if (sections.has("load") || sections.has("stream")) {
  const ids = ["gateway-pg-sync", "gateway-pg-buffered", "gateway-pglite", "portkey"].filter(selected)
  if (ids.length > 0) plan.push({ key: "fast", title: "upstream 0 ms", latency: 0, loads: sections.has("load") ? loads : [], ids, stream: sections.has("stream") })
}
if (sections.has("slow")) {
  // Buffered only when asked for by name (`--targets gateway-pg-buffered`): it keeps the default run short.
  const ids = ["gateway-pg-sync", "gateway-pg-buffered", "portkey"].filter((id) => id === "gateway-pg-buffered" ? targetFilter?.includes(id) : selected(id))
  if (ids.length > 0 && slowLoads.length > 0) plan.push({ key: "slow", title: "upstream 50 ms", latency: 50, loads: slowLoads, ids, stream: false })
}
if (sections.has("cache") && selected("gateway-pg-cache") && cacheLoads.length > 0) {
  plan.push({ key: "cache", title: "cache hits (upstream 0 ms)", latency: 0, loads: cacheLoads, ids: ["gateway-pg-cache"], stream: false })
}
if (plan.length === 0) { console.error("bench: nothing selected (check --targets / --sections)"); process.exit(1) }

const estimateS = plan.reduce((s, p) => s
  + p.ids.length * 25 // start-up
  + (p.loads.length > 0 ? p.ids.length * (2 * warmup + 2) + warmup + 1 : 0)
  + reps * p.loads.length * (p.ids.length + 1) * (duration + 1.2)
  + (p.stream ? reps * (p.ids.length + 1) * (streamSeconds + 0.5) : 0), 20)
const deadlineMs = Number(opt("deadline-minutes", NaN)) * 60_000 || Math.round((estimateS * 1.6 + 300) * 1000)

// ------------------------------------------------------------------------------------------
// Start: pin this process (load generator) to CPU 1, the upstream inherits it.

const pinnedSelf = pinSelf(1)
// Opt-in: a higher scheduling priority (negative nice needs root) for the bench and every child,
// against other work on a shared machine. Off by default: it takes CPU from the other users.
const niceValue = opt("nice") === undefined ? undefined : Number(opt("nice"))
if (niceValue !== undefined) setPriority(niceValue)
const pinning = (pinnedSelf
  ? `target on CPU 0 (\`taskset -c 0\`); load generator (autocannon, in the orchestrator) and mock upstream on CPU 1 (${tasksetPath})`
  : `none (${tasksetPath === undefined ? "no taskset" : cpuCount < 2 ? "fewer than 2 CPUs" : "--no-pin"}): every process shares every CPU`
  ) + (niceValue !== undefined ? `; every bench process at nice ${niceValue}` : "")
const machine = machineInfo()
const startedAt = new Date()
const loadBefore = loadavg()
const work = newWorkDir()
const live = new Set() // targets running
let upstream
const cleanup = async () => {
  await Promise.all([...live].map((t) => t.stop().catch(() => {})))
  await stopAll()
  removeDir(work)
}
deadline(deadlineMs, cleanup)
onSignals(cleanup)

console.log(`bench: ${machine.nproc} CPUs (${machine.cpuModel}), node ${machine.node}, commit ${machine.commit}, load average ${loadBefore}`)
console.log(`bench: pinning: ${pinning}`)
console.log(`bench: ${reps} rep(s) × ${duration} s per run, warm-up ${warmup} s; loads ${loads.join(",")} (50 ms upstream: ${slowLoads.join(",")}); estimated ${Math.round(estimateS / 60)} min, deadline ${(deadlineMs / 60_000).toFixed(0)} min`)

const runs = [] // every measured run
const streams = [] // every TTFB loop
const targetsInfo = {} // start-up facts per target id and section
const failures = []

const errorsOf = (r) => r.non2xx + r.errors + r.timeouts
const short = (r) => `${fmt(r.rps)} req/s p50 ${fmt(r.p50, 2)} p99 ${fmt(r.p99, 2)} ms cpu ${fmt(r.cpuPerReq, 3)} ms/req${errorsOf(r) > 0 ? ` ERRORS ${errorsOf(r)}` : ""}`

let exitCode = 0
try {
  upstream = await startUpstream({ latencies: [0, 50], cpu: 1, logDir: work })
  console.log(`bench: mock upstream pid ${upstream.pid} on ports ${JSON.stringify(upstream.ports)} (latency ms → port)`)
  const needsPg = plan.some((p) => p.ids.some((id) => id.startsWith("gateway-pg-")))
  const databaseUrl = needsPg ? (opt("database-url") ?? scratchDatabase("tidyllm_bench")) : undefined
  if (needsPg) console.log(`bench: Postgres scratch database ${databaseUrl.replace(/:[^:@/]*@/, ":***@")}${opt("database-url") ? "" : " (dropped and created afresh)"}`)

  const specs = (section) => ({
    "gateway-pg-sync": () => startGateway({ id: "gateway-pg-sync", label: "gateway-pg (sync)", upstreamUrl: upstream.url(section.latency), durability: "sync", databaseUrl, workDir: work, profileDir, nodeFlags }),
    "gateway-pg-buffered": () => startGateway({ id: "gateway-pg-buffered", label: "gateway-pg (buffered)", upstreamUrl: upstream.url(section.latency), durability: "buffered", databaseUrl, workDir: work, profileDir, nodeFlags }),
    "gateway-pglite": () => startGateway({ id: "gateway-pglite", label: "gateway-pglite (sync)", upstreamUrl: upstream.url(section.latency), durability: "sync", workDir: work, profileDir, nodeFlags }),
    "gateway-pg-cache": () => startGateway({ id: "gateway-pg-cache", label: `gateway-pg cache hit (${cacheBackend})`, upstreamUrl: upstream.url(section.latency), durability: "sync", caching: true, cacheBackend, databaseUrl, workDir: work, profileDir, nodeFlags }),
    portkey: () => startPortkey({ upstreamUrl: upstream.url(section.latency), workDir: work })
  })

  for (const section of plan) {
    console.log(`\nbench: section "${section.title}": ${section.ids.join(", ")}`)
    const targets = []
    for (const id of section.ids) {
      try {
        const t = await specs(section)[id]()
        live.add(t)
        targets.push(t)
        targetsInfo[`${section.key}:${id}`] = { id, label: t.label, section: section.key, readyMs: t.readyMs, initMs: t.initMs, startRss: t.startMem.rss, spentUsd: t.spentUsd }
        console.log(`bench:   ${t.label} pid ${t.pid} ready in ${t.readyMs} ms${t.initMs !== undefined ? ` (first start with initdb: ${t.initMs} ms)` : ""}, RSS ${fmt(t.startMem.rss)} MiB`)
      } catch (e) {
        failures.push(`${id} (${section.title}) did not start: ${String(e.message ?? e).split("\n")[0]}`)
        console.error(`bench:   ${id} did not start: ${e.message ?? e}`)
      }
    }
    if (targets.length === 0) continue
    const direct = directTarget(upstream, section.latency)
    const record = (target, c, rep, r, d) => {
      const row = { section: section.key, latency: section.latency, target: target.id, label: target.label, connections: c, rep, ...r }
      if (d !== undefined) { row.ovh50 = r.p50 - d.p50; row.ovh90 = r.p90 - d.p90; row.ovh99 = r.p99 - d.p99 }
      runs.push(row)
      return row
    }
    const alivePids = () => targets.filter((t) => alive(t.child))
    if (section.loads.length > 0) {
      if (warmup > 0) {
        const wc = Math.max(...section.loads)
        await load(direct, { connections: wc, seconds: warmup })
        for (const t of targets) {
          // Warm up at 10 connections first: a cold target at 100 builds a long queue.
          await load(t, { connections: Math.min(10, wc), seconds: warmup })
          await settle(t.pid)
          if (wc > 10) { await load(t, { connections: wc, seconds: warmup }); await settle(t.pid) }
        }
      }
      for (let rep = 1; rep <= reps; rep++) {
        for (const c of section.loads) {
          await sleep(PAUSE_MS)
          const d = await load(direct, { connections: c, seconds: duration })
          record(direct, c, rep, d)
          const parts = [`direct ${short(d)}`]
          for (const t of alivePids()) {
            await sleep(PAUSE_MS)
            const r = await load(t, { connections: c, seconds: duration, upstreamPid: upstream.pid })
            r.settleMs = await settle(t.pid)
            record(t, c, rep, r, d)
            parts.push(`${t.id} ${short(r)} ovh p50 ${fmtSigned(r.p50 - d.p50)} p99 ${fmtSigned(r.p99 - d.p99)}`)
          }
          console.log(`bench:   [rep ${rep}/${reps}, ${c} conn] ${parts.join("\n                              ")}`)
        }
      }
    }
    if (section.stream) {
      const streamTargets = alivePids()
      for (const t of streamTargets) { await ttfbLoop(t, { seconds: 1, maxRequests: 50 }); await settle(t.pid) }
      await ttfbLoop(direct, { seconds: 0.5, maxRequests: 50 })
      for (let rep = 1; rep <= reps; rep++) {
        const d = await ttfbLoop(direct, { seconds: streamSeconds })
        streams.push({ target: "direct", label: "direct", rep, ...d })
        const parts = [`direct TTFB p50 ${fmt(d.p50, 3)} p99 ${fmt(d.p99, 3)} ms (n ${d.n})`]
        for (const t of streamTargets) {
          const r = await ttfbLoop(t, { seconds: streamSeconds })
          await settle(t.pid)
          streams.push({ target: t.id, label: t.label, rep, ...r, ovh50: r.p50 - d.p50, ovh99: r.p99 - d.p99 })
          parts.push(`${t.id} TTFB p50 ${fmt(r.p50, 3)} p99 ${fmt(r.p99, 3)} ms (n ${r.n}${r.errors ? `, ERRORS ${r.errors}: ${r.firstError}` : ""})`)
        }
        console.log(`bench:   [stream rep ${rep}/${reps}] ${parts.join("\n                              ")}`)
      }
    }
    for (const t of targets) {
      const info = targetsInfo[`${section.key}:${t.id}`]
      info.hwm = memMiB(t.pid).hwm
      if (!alive(t.child)) failures.push(`${t.id} (${section.title}) exited during the run: ${t.child.exitCode ?? t.child.signalCode}`)
      const graceful = await t.stop()
      live.delete(t)
      if (!graceful) console.error(`bench:   ${t.id} did not stop within its grace period on SIGTERM; killed`)
    }
  }
} catch (e) {
  console.error(`bench: ${e.stack ?? e}`)
  failures.push(String(e.message ?? e).split("\n")[0])
  exitCode = 1
} finally {
  await cleanup()
}
const finishedAt = new Date()
const loadAfter = loadavg()

// ------------------------------------------------------------------------------------------
// Aggregation: medians over repetitions of each (section, target, connections).

const keyOf = (section, target, c) => `${section}|${target}|${c}`
const groups = new Map()
for (const r of runs) {
  const k = keyOf(r.section, r.target, r.connections)
  if (!groups.has(k)) groups.set(k, [])
  groups.get(k).push(r)
}
const agg = (section, target, c) => {
  const rs = groups.get(keyOf(section, target, c))
  if (rs === undefined) return undefined
  const m = (f) => median(rs.map(f))
  return {
    label: rs[0].label, n: rs.length, rps: m((r) => r.rps), p50: m((r) => r.p50), p90: m((r) => r.p90), p99: m((r) => r.p99),
    ovh50: m((r) => r.ovh50), ovh99: m((r) => r.ovh99), cpu: m((r) => r.cpuPerReq), pgCpu: m((r) => r.pgCpuPerReq),
    util: m((r) => r.cpuUtil), rssMax: Math.max(...rs.map((r) => r.rssMax)), errors: rs.reduce((s, r) => s + errorsOf(r), 0)
  }
}
const rssUnderLoad = (section, target) => Math.max(-Infinity, ...runs.filter((r) => r.section === section && r.target === target).map((r) => r.rssMax))
const streamAgg = (target) => {
  const rs = streams.filter((s) => s.target === target)
  if (rs.length === 0) return undefined
  return { label: rs[0].label, n: rs.reduce((s, r) => s + r.n, 0), p50: median(rs.map((r) => r.p50)), p99: median(rs.map((r) => r.p99)), ovh50: median(rs.map((r) => r.ovh50)), ovh99: median(rs.map((r) => r.ovh99)), errors: rs.reduce((s, r) => s + r.errors, 0) }
}
const totalErrors = runs.reduce((s, r) => s + errorsOf(r), 0) + streams.reduce((s, r) => s + r.errors, 0)

const order = ["direct", "gateway-pg-sync", "gateway-pg-buffered", "gateway-pglite", "portkey", "gateway-pg-cache"]
const mainRows = (sectionKey, sectionLoads, { md }) => {
  const rows = []
  for (const c of sectionLoads) {
    const peer = agg(sectionKey, "portkey", c)
    for (const id of order) {
      const a = agg(sectionKey, id, c)
      if (a === undefined) continue
      const ratioRps = peer !== undefined && id !== "portkey" && id !== "direct" ? a.rps / peer.rps : NaN
      const ratioCpu = peer !== undefined && id !== "portkey" && id !== "direct" ? peer.cpu / a.cpu : NaN
      const info = targetsInfo[`${sectionKey}:${id}`]
      const base = [a.label, String(c), fmt(a.rps), fmt(a.p50, 2), fmt(a.p90, 2), fmt(a.p99, 2),
        id === "direct" ? "—" : fmtSigned(a.ovh50), id === "direct" ? "—" : fmtSigned(a.ovh99),
        fmt(a.cpu, 3)]
      if (md) base.push(id.startsWith("gateway-pg-") ? fmt(a.pgCpu, 3) : "—", id === "direct" ? "—" : fmt(info?.startRss ?? NaN), fmt(a.rssMax), Number.isFinite(ratioRps) ? `${fmt(ratioRps, 2)}×` : "—", Number.isFinite(ratioCpu) ? `${fmt(ratioCpu, 2)}×` : "—", String(a.errors))
      else base.push(fmt(a.rssMax), Number.isFinite(ratioRps) ? `${fmt(ratioRps, 2)}×` : "—", String(a.errors))
      rows.push(base)
    }
  }
  return rows
}
const mdHead = ["target", "conns", "req/s", "p50 ms", "p90 ms", "p99 ms", "ovh p50 ms", "ovh p99 ms", "CPU ms/req", "PG CPU ms/req", "RSS start MiB", "RSS peak MiB", "req/s ÷ Portkey", "CPU/req Portkey ÷ target", "errors"]
const textHead = ["target", "conns", "req/s", "p50", "p90", "p99", "ovh p50", "ovh p99", "CPU ms/req", "RSS peak", "÷ Portkey", "err"]

// ------------------------------------------------------------------------------------------
// Checks against the issue's targets (gateway on Postgres, CPU 0).

const checks = []
const check = (name, value, limit, unit, cmp = "<=", digits = 2) => {
  if (value === undefined || !Number.isFinite(value)) { checks.push({ name, verdict: "n/a", text: "not measured" }); return }
  const pass = cmp === "<=" ? value <= limit : value >= limit
  checks.push({ name, verdict: pass ? "PASS" : "FAIL", text: `${fmt(value, digits)}${unit} (target ${cmp} ${limit}${unit})` })
}
for (const [id, p50Limit, p99Limit] of [["gateway-pg-sync", 1, 4], ["gateway-pg-buffered", 0.3, 2]]) {
  const dur = id.endsWith("sync") ? "sync" : "buffered"
  if (!runs.some((r) => r.target === id) && !streams.some((s) => s.target === id)) continue
  check(`${dur}: CPU per request at 100 conns`, agg("fast", id, 100)?.cpu, 0.35, " ms", "<=", 3)
  check(`${dur}: p50 overhead at 1 conn`, agg("fast", id, 1)?.ovh50, p50Limit, " ms", "<=", 3)
  check(`${dur}: p99 overhead at 10 conns`, agg("fast", id, 10)?.ovh99, p99Limit, " ms")
  const a = agg("fast", id, 100)
  const peer = agg("fast", "portkey", 100)
  check(`${dur}: req/s at 100 conns ÷ Portkey`, a !== undefined && peer !== undefined ? a.rps / peer.rps : undefined, 3, "×", ">=")
  const rss = rssUnderLoad("fast", id)
  check(`${dur}: RSS under load`, Number.isFinite(rss) ? rss : undefined, 150, " MiB", "<=", 0)
  check(`${dur}: stream TTFB overhead (p50)`, streamAgg(id)?.ovh50, 1, " ms", "<=", 3)
}

// ------------------------------------------------------------------------------------------
// Report

const s = stamp(startedAt)
const minutes = (finishedAt - startedAt) / 60_000
const md = []
md.push(`# Gateway bench, ${s.day} ${s.hm.slice(0, 2)}:${s.hm.slice(2)}`)
md.push("")
md.push(`- machine: ${machine.nproc} CPUs (${machine.cpuModel}), ${fmt(machine.memTotal, 1)} GiB, kernel ${machine.kernel}; node ${machine.node}; commit ${machine.commit}`)
md.push(`- pinning: ${pinning}`)
md.push(`- load average before ${loadBefore}, after ${loadAfter} (the machine is shared: expect noise; compare medians and ratios)`)
md.push(`- method: ${reps} repetition(s) × ${duration} s per run after a ${warmup} s warm-up per target; for each load and repetition \`direct\` then each target back to back, overhead = target − direct of the same repetition; medians over repetitions. Latencies: every response's hrtime duration from autocannon 8 (float ms, not its 1 ms histogram). CPU: utime+stime of the target from /proc/PID/stat (CLK_TCK ${machine.clkTck}) ÷ completed requests. PG CPU: all \`postgres\` processes (includes other users of that server).`)
md.push(`- request: POST /v1/chat/completions, model ${JSON.parse(chatBody).model} (priced 0.15/0.6 USD per M tokens in the gateway's catalog: budgets reserve and settle real amounts), max_tokens 64, ${Buffer.byteLength(chatBody)} B body; upstream answer ${"~"}0.6 KB JSON with usage. Gateway: API key (user role), \`x-tidyllm-reason\`, budgets and audit on, response cache off, access log on (to a file). Portkey: \`x-portkey-provider: openai\`, \`x-portkey-custom-host\`.`)
md.push(`- run time: ${fmt(minutes, 1)} min; started ${startedAt.toISOString()}`)
if (failures.length > 0) { md.push(""); md.push("**Failures:**"); for (const f of failures) md.push(`- ${f}`) }
md.push("")
md.push("## Targets (issue)")
md.push("")
md.push(mdTable(["check", "verdict", "measured"], checks.map((c) => [c.name, c.verdict, c.text])))
for (const section of plan) {
  if (section.loads.length === 0) continue
  md.push("")
  md.push(`## ${section.title}`)
  md.push("")
  md.push(mdTable(mdHead, mainRows(section.key, section.loads, { md: true })))
}
const fastLoads = plan.find((p) => p.key === "fast")?.loads ?? []
if (fastLoads.length > 0 && runs.some((r) => r.target === "gateway-pg-sync") && runs.some((r) => r.target === "gateway-pg-buffered")) {
  md.push("")
  md.push("## Audit write path: sync vs buffered (Postgres, upstream 0 ms)")
  md.push("")
  const rows = fastLoads.map((c) => {
    const a = agg("fast", "gateway-pg-sync", c)
    const b = agg("fast", "gateway-pg-buffered", c)
    return [String(c), fmt(a?.rps), fmt(b?.rps), fmtSigned(a?.ovh50), fmtSigned(b?.ovh50), fmtSigned(a?.ovh99), fmtSigned(b?.ovh99), fmt(a?.cpu, 3), fmt(b?.cpu, 3), fmt(a?.pgCpu, 3), fmt(b?.pgCpu, 3)]
  })
  md.push(mdTable(["conns", "sync req/s", "buffered req/s", "sync ovh p50", "buffered ovh p50", "sync ovh p99", "buffered ovh p99", "sync CPU ms/req", "buffered CPU ms/req", "sync PG ms/req", "buffered PG ms/req"], rows))
}
if (streams.length > 0) {
  md.push("")
  md.push(`## Streaming: time to first byte (\`stream: true\`, one connection, sequential, ${streamSeconds} s per loop and repetition)`)
  md.push("")
  md.push("Portkey's stream path has a built-in ~25 ms sleep; reported as is.")
  md.push("")
  const rows = order.map((id) => [id, streamAgg(id)]).filter(([, a]) => a !== undefined).map(([id, a]) => [a.label, fmt(a.p50, 3), fmt(a.p99, 3), id === "direct" ? "—" : fmtSigned(a.ovh50, 3), id === "direct" ? "—" : fmtSigned(a.ovh99, 3), String(a.n), String(a.errors)])
  md.push(mdTable(["target", "TTFB p50 ms", "TTFB p99 ms", "ovh p50 ms", "ovh p99 ms", "samples", "errors"], rows))
}
md.push("")
md.push("## Start-up")
md.push("")
md.push(mdTable(["target", "section", "ready ms", "RSS at start MiB", "VmHWM at end MiB", "daily budget used by the probe (USD)"], Object.values(targetsInfo).map((i) => [i.label, i.section, `${i.readyMs}${i.initMs !== undefined ? ` (first start with initdb ${i.initMs})` : ""}`, fmt(i.startRss), fmt(i.hwm), i.spentUsd === undefined ? "—" : fmt(i.spentUsd, 9)])))
md.push("")
md.push("<details><summary>Every run</summary>")
md.push("")
md.push(mdTable(["section", "target", "conns", "rep", "req/s", "p50", "p90", "p99", "max", "ovh p50", "ovh p99", "CPU ms/req", "CPU util", "PG ms/req", "upstream ms/req", "RSS max", "errors"],
  runs.map((r) => [r.section, r.target, String(r.connections), String(r.rep), fmt(r.rps), fmt(r.p50, 3), fmt(r.p90, 3), fmt(r.p99, 3), fmt(r.max, 1), fmtSigned(r.ovh50, 3), fmtSigned(r.ovh99, 3), fmt(r.cpuPerReq, 3), fmt(r.cpuUtil, 2), fmt(r.pgCpuPerReq, 3), fmt(r.upstreamCpuPerReq, 3), fmt(r.rssMax), String(errorsOf(r))])))
md.push("")
md.push("</details>")
md.push("")
const report = md.join("\n")
const base = join(outDir, `${s.day}-${s.hm}`)
writeFileSync(`${base}.md`, report)
writeFileSync(`${base}.json`, JSON.stringify({ startedAt, finishedAt, machine, pinning, loadBefore, loadAfter, options: { duration, reps, warmup, loads, slowLoads, cacheLoads, cacheBackend, streamSeconds }, targets: targetsInfo, runs, streams, checks, failures }, null, 1))
copyFileSync(`${base}.md`, join(outDir, "latest.md"))

console.log("")
for (const section of plan) {
  if (section.loads.length === 0) continue
  console.log(`== ${section.title} (medians of ${reps}; ms; overhead = target − direct, paired per repetition)`)
  console.log(textTable(textHead, mainRows(section.key, section.loads, { md: false })))
  console.log("")
}
if (streams.length > 0) {
  console.log("== stream TTFB (1 connection)")
  console.log(textTable(["target", "", "p50", "p99", "ovh p50", "ovh p99", "n"], order.map((id) => [id, streamAgg(id)]).filter(([, a]) => a !== undefined).map(([id, a]) => [a.label, "", fmt(a.p50, 3), fmt(a.p99, 3), id === "direct" ? "—" : fmtSigned(a.ovh50, 3), id === "direct" ? "—" : fmtSigned(a.ovh99, 3), String(a.n)])))
  console.log("")
}
console.log("== targets")
for (const c of checks) console.log(`${c.verdict.padEnd(4)}  ${c.name}: ${c.text}`)
console.log("")
console.log(`bench: report ${base}.md (and ${join(outDir, "latest.md")}); ${fmt(minutes, 1)} min; load average before ${loadBefore}, after ${loadAfter}`)
if (profileDir !== undefined) console.log(`bench: CPU profiles in ${profileDir} (summarise one with \`node bench/top-frames.mjs FILE\`)`)
if (totalErrors > 0) { console.error(`bench: ${totalErrors} request(s) failed (see the errors columns)`); exitCode = 1 }
if (failures.length > 0) { for (const f of failures) console.error(`bench: ${f}`); exitCode = 1 }
process.exit(exitCode)

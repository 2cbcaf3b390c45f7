// Soak: the gateway on Postgres (budgets, audit, API key, cache off) at a steady moderate rate
// for a long time, its RSS sampled at fixed intervals, and a least-squares slope (MiB/min) over
// the second half of the samples (the first half includes JIT and heap warm-up). Same process
// tree and pinning as `bench/run.mjs`: gateway on CPU 0, mock upstream + autocannon on CPU 1.
//
//   node bench/soak.mjs [--minutes 10] [--rate 300] [--connections 10] [--sample-seconds 10]
//        [--durability sync|buffered] [--upstream-latency 0] [--database-url URL] [--out DIR]
//
// Writes bench/results/soak-YYYY-MM-DD.md. Exit code 1 when requests errored or the gateway
// died; 2 on the global deadline (run time + 5 min).
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import {
  alive, deadline, ensureDir, fmt, load, loadavg, machineInfo, mdTable, memMiB, newWorkDir, onSignals, opt, pinSelf, removeDir, root, scratchDatabase,
  settle, startGateway, startUpstream, stamp, stopAll, tasksetPath
} from "./lib.mjs"

const minutes = Number(opt("minutes", 10))
const rate = Number(opt("rate", 300))
const connections = Number(opt("connections", 10))
const sampleSeconds = Number(opt("sample-seconds", 10))
const durability = opt("durability", "sync")
const upstreamLatency = Number(opt("upstream-latency", 0))
const outDir = ensureDir(opt("out", join(root, "bench/results")))
if (!(minutes > 0 && rate > 0 && connections > 0 && sampleSeconds > 0)) { console.error("soak: bad arguments"); process.exit(1) }

const pinnedSelf = pinSelf(1)
const pinning = pinnedSelf ? `gateway on CPU 0 (\`taskset -c 0\`); autocannon and mock upstream on CPU 1 (${tasksetPath})` : "none: every process shares every CPU"
const machine = machineInfo()
const startedAt = new Date()
const loadBefore = loadavg()
const work = newWorkDir()
let gateway
const cleanup = async () => {
  if (gateway !== undefined) await gateway.stop().catch(() => {})
  await stopAll()
  removeDir(work)
}
deadline((minutes * 60 + 300) * 1000, cleanup)
onSignals(cleanup)

/** Least-squares slope of y over x. */
const slope = (xs, ys) => {
  const n = xs.length
  if (n < 2) return NaN
  const mx = xs.reduce((a, b) => a + b, 0) / n
  const my = ys.reduce((a, b) => a + b, 0) / n
  let num = 0
  let den = 0
  for (let i = 0; i < n; i++) { num += (xs[i] - mx) * (ys[i] - my); den += (xs[i] - mx) ** 2 }
  return den === 0 ? NaN : num / den
}

let exitCode = 0
const samples = []
let result
let failure
try {
  console.log(`soak: ${minutes} min at ${rate} req/s over ${connections} connections, RSS every ${sampleSeconds} s; audit ${durability}; upstream ${upstreamLatency} ms; ${pinning}; load average ${loadBefore}`)
  const upstream = await startUpstream({ latencies: [upstreamLatency], cpu: 1, logDir: work })
  const databaseUrl = opt("database-url") ?? scratchDatabase("tidyllm_soak")
  gateway = await startGateway({ id: "gateway-pg-soak", label: `gateway-pg (${durability})`, upstreamUrl: upstream.url(upstreamLatency), durability, databaseUrl, workDir: work })
  console.log(`soak: gateway pid ${gateway.pid} ready in ${gateway.readyMs} ms, RSS ${fmt(gateway.startMem.rss)} MiB; warming up 15 s`)
  await load(gateway, { connections, seconds: 15, overallRate: rate })
  await settle(gateway.pid)
  const t0 = Date.now()
  samples.push({ t: 0, ...memMiB(gateway.pid) })
  result = await load(gateway, {
    connections, seconds: minutes * 60, overallRate: rate, rssEveryMs: sampleSeconds * 1000, upstreamPid: upstream.pid,
    onRss: (m) => {
      const t = (Date.now() - t0) / 1000
      samples.push({ t, ...m })
      console.log(`soak: ${fmt(t)} s  RSS ${fmt(m.rss, 1)} MiB  (peak ${fmt(m.hwm, 1)})`)
    }
  })
  if (!alive(gateway.child)) failure = `the gateway exited (${gateway.child.exitCode ?? gateway.child.signalCode})`
} catch (e) {
  console.error(`soak: ${e.stack ?? e}`)
  failure = String(e.message ?? e).split("\n")[0]
  exitCode = 1
} finally {
  await cleanup()
}

// ------------------------------------------------------------------------------------------
// Report

const half = samples.filter((s) => s.t >= (minutes * 60) / 2 && Number.isFinite(s.rss))
const slopeMiBPerMin = slope(half.map((s) => s.t / 60), half.map((s) => s.rss))
const wholeSlope = slope(samples.filter((s) => Number.isFinite(s.rss)).map((s) => s.t / 60), samples.filter((s) => Number.isFinite(s.rss)).map((s) => s.rss))
// V8's heap is a saw-tooth: the per-minute minimum (the floor after collections) shows a leak better.
const floors = []
for (let m = 0; m < Math.ceil(minutes); m++) {
  const w = samples.filter((x) => x.t >= m * 60 && x.t < (m + 1) * 60 && Number.isFinite(x.rss))
  if (w.length > 0) floors.push({ t: m + 0.5, rss: Math.min(...w.map((x) => x.rss)) })
}
const floorHalf = floors.filter((f) => f.t >= minutes / 2)
const floorSlope = slope(floorHalf.map((f) => f.t), floorHalf.map((f) => f.rss))
const threshold = 0.5
const verdict = !Number.isFinite(slopeMiBPerMin)
  ? "n/a (too few samples)"
  : Math.abs(slopeMiBPerMin) <= threshold
    ? `no growth trend (|slope| ≤ ${threshold} MiB/min over the second half)`
    : `${slopeMiBPerMin > 0 ? "GROWTH" : "shrinking"}: ${fmt(slopeMiBPerMin, 2)} MiB/min over the second half (≈ ${fmt(slopeMiBPerMin * 60, 0)} MiB/hour)`
const errors = result === undefined ? NaN : result.non2xx + result.errors + result.timeouts
if (failure !== undefined || !(errors === 0)) exitCode = 1

const s = stamp(startedAt)
const md = []
md.push(`# Soak, ${s.day} ${s.hm.slice(0, 2)}:${s.hm.slice(2)}`)
md.push("")
md.push(`- machine: ${machine.nproc} CPUs (${machine.cpuModel}); node ${machine.node}; commit ${machine.commit}; load average before ${loadBefore}, after ${loadavg()}`)
md.push(`- pinning: ${pinning}`)
md.push(`- gateway on Postgres (scratch database), audit ${durability}, budgets on, API key, response cache off; upstream mock at ${upstreamLatency} ms`)
md.push(`- load: autocannon \`overallRate\` ${rate} req/s over ${connections} connections for ${minutes} min, after a 15 s warm-up; RSS (VmRSS) every ${sampleSeconds} s`)
if (failure !== undefined) md.push(`- **failure:** ${failure}`)
md.push("")
md.push(`**Verdict: ${verdict}.** Slope over the whole run: ${fmt(wholeSlope, 2)} MiB/min; slope of the per-minute RSS minima over the second half: ${fmt(floorSlope, 2)} MiB/min (minima: ${floors.map((f) => fmt(f.rss)).join(", ")} MiB).`)
md.push("")
if (result !== undefined) {
  md.push(mdTable(["achieved req/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "CPU ms/req", "CPU util", "PG CPU ms/req", "RSS max MiB", "VmHWM MiB", "errors"],
    [[fmt(result.rps), fmt(result.p50, 2), fmt(result.p90, 2), fmt(result.p99, 2), fmt(result.max, 1), fmt(result.cpuPerReq, 3), fmt(result.cpuUtil, 2), fmt(result.pgCpuPerReq, 3), fmt(result.rssMax, 1), fmt(result.hwm, 1), String(errors)]]))
  md.push("")
}
md.push("## RSS samples")
md.push("")
md.push(mdTable(["t (s)", "RSS MiB", "VmHWM MiB"], samples.map((x) => [fmt(x.t), fmt(x.rss, 1), fmt(x.hwm, 1)])))
md.push("")
const file = join(outDir, `soak-${s.day}.md`)
writeFileSync(file, md.join("\n"))
console.log("")
if (result !== undefined) console.log(`soak: ${fmt(result.rps)} req/s achieved (asked ${rate}), p50 ${fmt(result.p50, 2)} p99 ${fmt(result.p99, 2)} ms, CPU ${fmt(result.cpuPerReq, 3)} ms/req, errors ${errors}`)
console.log(`soak: ${verdict}; whole-run slope ${fmt(wholeSlope, 2)} MiB/min; per-minute minima slope (second half) ${fmt(floorSlope, 2)} MiB/min`)
console.log(`soak: report ${file}`)
if (failure !== undefined) console.error(`soak: ${failure}`)
process.exit(exitCode)

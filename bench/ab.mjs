// One side of an A/B comparison of two builds: the current build of the gateway (Postgres, audit
// `sync` unless --durability, budgets, an API key), started afresh --rounds times on a scratch
// database, each time warmed up (--warm s at 100 connections), then loaded for --secs s at each of
// --conns; prints the CPU per request (from /proc), requests/s and p50 of every run and their
// medians. With --stream S it runs the 1-connection stream loop instead (TTFB p50/p90 and the
// count of streams, 3 loops of S s per round). Build A, run it, build B, run it, back to back on a
// quiet machine; differences within the run-to-run noise (±5-10 %) mean nothing. With
// --provider bedrock the gateway answers through its Bedrock provider (the AWS SDK, HTTP/2) on the
// mock upstream's Bedrock listener instead of the OpenAI-compatible one.
//
// With --profile DIR the gateways write CPU profiles there (`node bench/top-frames.mjs FILE`).
// --node-flags passes flags to the gateways' node; BENCH_SERVER_MAIN=apps/server/dist/main.js runs
// the unbundled build instead of the bundle.
//
//   pnpm build && node bench/ab.mjs --label before [--rounds 3] [--conns 100,10] [--secs 4] [--warm 6] [--stream 3] [--provider bedrock] [--profile DIR] [--node-flags "--max-old-space-size=128 …"]
import { load, median, newWorkDir, opt, pinSelf, removeDir, scratchDatabase, startGateway, startUpstream, stopAll, ttfbLoop } from "./lib.mjs"

pinSelf(1)
const label = opt("label", "build")
const rounds = Number(opt("rounds", 3))
const conns = opt("conns", "100,10").split(",").map(Number)
const secs = Number(opt("secs", 4))
const warm = Number(opt("warm", 6))
const streamSecs = Number(opt("stream", 0))
const nodeFlags = opt("node-flags", "").split(" ").filter((f) => f !== "")
const work = newWorkDir()
const runs = {}
try {
  const bedrock = opt("provider", "upstream") === "bedrock"
  const upstream = await startUpstream({ latencies: [0], cpu: 1, logDir: work, bedrock })
  const databaseUrl = scratchDatabase("tidyllm_ab")
  for (let r = 1; r <= rounds; r++) {
    const g = await startGateway({ id: `ab-${r}`, nodeFlags, label, upstreamUrl: upstream.url(0), durability: opt("durability", "sync"), databaseUrl, workDir: work, profileDir: opt("profile", undefined), ...(bedrock ? { bedrockUrl: upstream.bedrockUrl() } : {}) })
    if (streamSecs > 0) {
      await ttfbLoop(g, { seconds: 2 })
      for (let k = 0; k < 3; k++) {
        const t = await ttfbLoop(g, { seconds: streamSecs })
        ;(runs.stream ??= []).push({ p50: t.p50, p90: t.p90, n: t.n })
        console.log(`${label} round ${r}: stream TTFB p50 ${t.p50.toFixed(3)} p90 ${t.p90.toFixed(3)} ms, ${t.n} streams in ${streamSecs} s`)
      }
    } else {
      await load(g, { connections: 100, seconds: warm })
      for (const c of conns) {
        const x = await load(g, { connections: c, seconds: secs })
        ;(runs[c] ??= []).push(x)
        console.log(`${label} round ${r}, ${c} conns: ${x.cpuPerReq.toFixed(3)} ms CPU/req, ${x.rps.toFixed(0)} req/s, p50 ${x.p50.toFixed(2)} ms, RSS peak ${x.rssMax.toFixed(0)} MiB${x.non2xx + x.errors > 0 ? `, ${x.non2xx} non-2xx, ${x.errors} errors` : ""}`)
      }
    }
    await g.stop()
  }
} finally {
  await stopAll()
  removeDir(work)
}
console.log(`\n${label}: medians of ${rounds}`)
for (const [k, xs] of Object.entries(runs)) {
  if (k === "stream") console.log(`  stream: TTFB p50 ${median(xs.map((x) => x.p50)).toFixed(3)} ms, p90 ${median(xs.map((x) => x.p90)).toFixed(3)}, streams ${median(xs.map((x) => x.n))}`)
  else console.log(`  ${k} conns: ${median(xs.map((x) => x.cpuPerReq)).toFixed(3)} ms CPU/req [${xs.map((x) => x.cpuPerReq.toFixed(3)).join(" ")}], ${median(xs.map((x) => x.rps)).toFixed(0)} req/s, p50 ${median(xs.map((x) => x.p50)).toFixed(2)} ms, RSS peak ${median(xs.map((x) => x.rssMax)).toFixed(0)} MiB`)
}
process.exit(0)

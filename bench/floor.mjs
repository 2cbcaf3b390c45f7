// The floor of the overhead on this machine: the bench's 1-connection stream loop against the
// mock upstream directly and through a plain Node proxy (node:http server forwarding to the
// upstream over a keep-alive agent, no logic at all), pinned as a gateway is (proxy on CPU 0,
// upstream and client on CPU 1). What a gateway adds beyond this is its own.
//
// With --load, the same for the chat completion under load instead: a proxy that does what the
// gateway's JSON path must do at the least (read the body, parse it, send it upstream over an
// undici pool as the gateway's provider does, parse the answer, send it back), at each of
// --conns, with its CPU per request, requests/s and p50 over the upstream's. With --effect, also
// the same proxy with each request run as an Effect fiber (the body read and the upstream call as
// `Effect.async` steps that can be interrupted, as the gateway's lane does): what Effect's runtime
// alone adds to that path.
//
//   node bench/floor.mjs [--seconds 3] [--rounds 3]
//   node bench/floor.mjs --load [--conns 1,10,100] [--seconds 5] [--rounds 3] [--effect]
import { spawn } from "node:child_process"
import { createInterface } from "node:readline"
import { createRequire } from "node:module"
import { join } from "node:path"
import { flag, load, median, newWorkDir, opt, pinSelf, removeDir, root, startUpstream, stopAll, ttfbLoop } from "./lib.mjs"

const proxySource = `
const http = require("node:http")
const upstream = new URL(process.argv[1])
const agent = new http.Agent({ keepAlive: true })
http.createServer((req, res) => {
  const chunks = []
  req.on("data", (c) => chunks.push(c))
  req.on("end", () => {
    const body = Buffer.concat(chunks)
    const out = http.request({ host: upstream.hostname, port: upstream.port, path: req.url, method: "POST", agent,
      headers: { "content-type": "application/json", "content-length": body.length } }, (up) => {
      res.writeHead(up.statusCode, { "content-type": up.headers["content-type"] ?? "application/json" })
      up.pipe(res)
    })
    out.end(body)
  })
}).listen(0, "127.0.0.1", function () { console.log(JSON.stringify({ port: this.address().port })) })
`

// The least a JSON chat completion costs a Node proxy: the undici pool the gateway's provider uses.
const poolProxySource = `
const http = require("node:http")
const { Pool } = require(process.argv[2])
const upstream = new URL(process.argv[1])
const pool = new Pool(upstream.origin, { connections: 128 })
http.createServer((req, res) => {
  const chunks = []
  req.on("data", (c) => chunks.push(c))
  req.on("end", async () => {
    const body = JSON.stringify(JSON.parse(Buffer.concat(chunks).toString("utf8")))
    const r = await pool.request({ path: "/v1/chat/completions", method: "POST", headers: { "content-type": "application/json" }, body })
    const text = JSON.stringify(await r.body.json())
    res.writeHead(r.statusCode, { "content-type": "application/json", "content-length": Buffer.byteLength(text) })
    res.end(text)
  })
}).listen(0, "127.0.0.1", function () { console.log(JSON.stringify({ port: this.address().port })) })
`

// The same, each request an Effect fiber: a body read and an upstream call that interruption
// cancels (listeners removed, request aborted), as the gateway's lane runs a request.
const effectProxySource = `
const http = require("node:http")
const { Pool } = require(process.argv[2])
const { Effect, Runtime } = require(process.argv[3])
const upstream = new URL(process.argv[1])
const pool = new Pool(upstream.origin, { connections: 128 })
const runFork = Runtime.runFork(Runtime.defaultRuntime)
const readBody = (req) => Effect.async((resume) => {
  const chunks = []
  const onData = (c) => chunks.push(c)
  const onEnd = () => resume(Effect.succeed(Buffer.concat(chunks).toString("utf8")))
  req.on("data", onData)
  req.on("end", onEnd)
  return Effect.sync(() => { req.off("data", onData); req.off("end", onEnd) })
})
// Aborted through an EventEmitter, which undici takes for a signal, as the gateway's provider does.
const { EventEmitter } = require("node:events")
const call = (body) => Effect.async((resume) => {
  const signal = new EventEmitter()
  pool.request({ path: "/v1/chat/completions", method: "POST", headers: { "content-type": "application/json" }, body, signal })
    .then((r) => r.body.json().then((json) => resume(Effect.succeed({ status: r.statusCode, json }))))
    .catch((e) => resume(Effect.die(e)))
  return Effect.sync(() => signal.emit("abort"))
})
http.createServer((req, res) => {
  runFork(Effect.flatMap(readBody(req), (text) => Effect.flatMap(call(JSON.stringify(JSON.parse(text))), ({ status, json }) => Effect.sync(() => {
    const text = JSON.stringify(json)
    res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) })
    res.end(text)
  }))))
}).listen(0, "127.0.0.1", function () { console.log(JSON.stringify({ port: this.address().port })) })
`

pinSelf(1)
const seconds = Number(opt("seconds", flag("load") ? 5 : 3))
const rounds = Number(opt("rounds", 3))
const work = newWorkDir()
const proxies = []
try {
  const up = await startUpstream({ latencies: [0], cpu: 1, logDir: work })
  const headers = { "content-type": "application/json" }
  const direct = { url: `${up.url(0)}/v1/chat/completions`, headers, pid: up.pid, usesPostgres: false }
  if (flag("load")) {
    const require = createRequire(join(root, "packages/providers/package.json"))
    const undici = require.resolve("undici")
    const effect = require.resolve("effect")
    const start = async (source, ...args) => {
      const child = spawn("taskset", ["-c", "0", process.execPath, "-e", source, up.url(0), ...args], { stdio: ["ignore", "pipe", "inherit"] })
      proxies.push(child)
      const port = await new Promise((resolve) => createInterface({ input: child.stdout }).once("line", (l) => resolve(JSON.parse(l).port)))
      return { url: `http://127.0.0.1:${port}/v1/chat/completions`, headers, pid: child.pid, usesPostgres: false }
    }
    const targets = [["plain undici proxy", await start(poolProxySource, undici)]]
    if (flag("effect")) targets.push(["the same as Effect fibers", await start(effectProxySource, undici, effect)])
    for (const [, t] of targets) await load(t, { connections: 100, seconds: 3 })
    for (const c of opt("conns", "1,10,100").split(",").map(Number)) {
      const runs = targets.map(() => [])
      for (let r = 1; r <= rounds; r++) {
        const d = await load(direct, { connections: c, seconds })
        for (const [i, [, t]] of targets.entries()) {
          const p = await load(t, { connections: c, seconds })
          runs[i].push({ cpu: p.cpuPerReq, rps: p.rps, over: p.p50 - d.p50 })
        }
      }
      for (const [i, [name]] of targets.entries()) {
        const xs = runs[i]
        console.log(`${c} conns: ${name} ${median(xs.map((x) => x.cpu)).toFixed(3)} ms CPU/req, ${median(xs.map((x) => x.rps)).toFixed(0)} req/s, p50 +${median(xs.map((x) => x.over)).toFixed(3)} ms over direct (medians of ${rounds})`)
      }
    }
  } else {
    const proxy = spawn("taskset", ["-c", "0", process.execPath, "-e", proxySource, up.url(0)], { stdio: ["ignore", "pipe", "inherit"] })
    proxies.push(proxy)
    const port = await new Promise((resolve) => createInterface({ input: proxy.stdout }).once("line", (l) => resolve(JSON.parse(l).port)))
    const plain = { url: `http://127.0.0.1:${port}/v1/chat/completions`, headers }
    await ttfbLoop(plain, { seconds: 1 })
    for (let r = 1; r <= rounds; r++) {
      const d = await ttfbLoop(direct, { seconds })
      const p = await ttfbLoop(plain, { seconds })
      console.log(`round ${r}: direct TTFB p50 ${d.p50.toFixed(3)} ms, plain proxy ${p.p50.toFixed(3)} ms (+${(p.p50 - d.p50).toFixed(3)})`)
    }
  }
} finally {
  for (const p of proxies) p.kill()
  await stopAll()
  removeDir(work)
}
process.exit(0)

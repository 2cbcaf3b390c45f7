// Where a request's time goes inside the gateway, without touching its code: loaded into the
// gateway's process with `--import`, it follows each POST from Node's `http.server.request.start`
// to the end of its body, to undici's upstream request (`undici:request:create`, then its headers
// sent and the upstream's response headers), and to the first write of the answer; at exit it
// appends the p50/p90 of each stretch (the first 200 requests left out, as warm-up) to
// $TIMELINE_OUT (default: tidyllm-timeline.txt in the temp directory). One request at a time:
// run it with one connection.
//
//   node bench/ab.mjs --rounds 1 --stream 3 --node-flags "--import=$PWD/bench/timeline.mjs"
//   node bench/ab.mjs --rounds 1 --conns 1 --node-flags "--import=$PWD/bench/timeline.mjs"
import dc from "node:diagnostics_channel"
import { appendFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"

const out = process.env.TIMELINE_OUT ?? join(tmpdir(), "tidyllm-timeline.txt")
const rows = []
let current

dc.subscribe("http.server.request.start", ({ request, response }) => {
  if (request.method !== "POST") return
  const t = { req: performance.now() }
  current = t
  request.once("end", () => { t.body ??= performance.now() })
  // A body taken whole from Node's buffer (read() while nobody reads it in flowing mode) is read
  // then; its `end` comes only later.
  const { read } = request
  request.read = function (...args) {
    const bytes = read.apply(this, args)
    if (bytes !== null && this.readableFlowing === null) t.body ??= performance.now()
    return bytes
  }
  const first = () => {
    if (t.first !== undefined) return
    t.first = performance.now()
    rows.push(t)
  }
  const { write, end } = response
  response.write = function (...args) { first(); return write.apply(this, args) }
  response.end = function (...args) { first(); return end.apply(this, args) }
})
dc.subscribe("undici:request:create", () => { if (current !== undefined && current.create === undefined) current.create = performance.now() })
dc.subscribe("undici:client:sendHeaders", () => { if (current !== undefined && current.sent === undefined) current.sent = performance.now() })
dc.subscribe("undici:request:headers", () => { if (current !== undefined && current.headers === undefined) current.headers = performance.now() })

let dumped = false
const dump = () => {
  if (dumped) return
  dumped = true
  const s = rows.slice(200)
  const stretch = (from, to) => s.map((r) => r[to] - r[from]).filter(Number.isFinite).sort((a, b) => a - b)
  const line = (name, from, to) => {
    const xs = stretch(from, to)
    return `  ${name.padEnd(34)} p50 ${xs[Math.floor(xs.length / 2)]?.toFixed(3)} ms, p90 ${xs[Math.floor(xs.length * 0.9)]?.toFixed(3)}`
  }
  appendFileSync(out, [
    `pid ${process.pid}, ${s.length} requests:`,
    line("request head → body read", "req", "body"),
    line("body read → upstream request", "body", "create"),
    line("upstream request → headers sent", "create", "sent"),
    line("headers sent → upstream's headers", "sent", "headers"),
    line("upstream's headers → first write", "headers", "first"),
    line("request head → first write", "req", "first"),
    ""
  ].join("\n"))
}
process.on("exit", dump)
process.on("SIGTERM", dump)

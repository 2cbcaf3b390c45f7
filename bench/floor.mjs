// The floor of the stream time-to-first-byte overhead on this machine: the bench's 1-connection
// stream loop against the mock upstream directly and through a plain Node proxy (node:http server
// forwarding to the upstream over a keep-alive agent, no logic at all), pinned as a gateway is
// (proxy on CPU 0, upstream and client on CPU 1). What a gateway adds beyond this is its own.
//
//   node bench/floor.mjs [--seconds 3] [--rounds 3]
import { spawn } from "node:child_process"
import { createInterface } from "node:readline"
import { newWorkDir, opt, pinSelf, removeDir, startUpstream, stopAll, ttfbLoop } from "./lib.mjs"

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

pinSelf(1)
const seconds = Number(opt("seconds", 3))
const rounds = Number(opt("rounds", 3))
const work = newWorkDir()
let proxy
try {
  const up = await startUpstream({ latencies: [0], cpu: 1, logDir: work })
  proxy = spawn("taskset", ["-c", "0", process.execPath, "-e", proxySource, up.url(0)], { stdio: ["ignore", "pipe", "inherit"] })
  const port = await new Promise((resolve) => createInterface({ input: proxy.stdout }).once("line", (l) => resolve(JSON.parse(l).port)))
  const headers = { "content-type": "application/json" }
  const direct = { url: `${up.url(0)}/v1/chat/completions`, headers }
  const plain = { url: `http://127.0.0.1:${port}/v1/chat/completions`, headers }
  await ttfbLoop(plain, { seconds: 1 })
  for (let r = 1; r <= rounds; r++) {
    const d = await ttfbLoop(direct, { seconds })
    const p = await ttfbLoop(plain, { seconds })
    console.log(`round ${r}: direct TTFB p50 ${d.p50.toFixed(3)} ms, plain proxy ${p.p50.toFixed(3)} ms (+${(p.p50 - d.p50).toFixed(3)})`)
  }
} finally {
  proxy?.kill()
  await stopAll()
  removeDir(work)
}
process.exit(0)

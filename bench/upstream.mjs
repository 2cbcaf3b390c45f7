// A mock OpenAI-compatible upstream for the bench: raw `node:http`, `POST /v1/chat/completions`
// answers a fixed, realistic `chat.completion` (with usage), or with `"stream": true` a fixed SSE
// stream (role chunk, content chunks, finish chunk, usage chunk, `data: [DONE]`). Every answer is
// a precomputed Buffer, so a request costs little more than Node's HTTP parsing.
//
//   node bench/upstream.mjs --port 0 --latency 0 [--port 0 --latency 50 …]
//
// Each `--port P --latency MS` pair opens one listener on 127.0.0.1 (P = 0: a free port) that waits
// MS milliseconds before answering. When all listen, it prints one JSON line on stdout:
// `{"ready":true,"ports":{"0":PORT0,"50":PORT50}}` (latency → port), then serves until SIGTERM.
// `GET /health` answers 200. Also importable: `startUpstream({ port, latencyMs })`.
//
// `--bedrock-port P` also opens a Bedrock Runtime listener (cleartext HTTP/2, as the AWS SDK speaks
// it; latency 0): `POST /model/{id}/converse` answers the same text as a Converse response, and
// `/converse-stream` as a ConverseStream event stream (AWS event-stream frames: messageStart, the
// same pieces as contentBlockDeltas, contentBlockStop, messageStop, metadata); its port is in the
// ready line as `"bedrock"`. Also importable: `startBedrockUpstream({ port })`.
import { createServer } from "node:http"
import { createServer as createH2Server } from "node:http2"
import { fileURLToPath } from "node:url"

const MODEL = "gpt-4o-mini"
const CREATED = 1_735_689_600
const TEXT = "A corporate LLM gateway centralises access control, cost limits, audit trails and provider failover, so teams ship LLM features safely without each rebuilding the same controls."
const USAGE = { prompt_tokens: 31, completion_tokens: 36, total_tokens: 67 }

const completion = Buffer.from(JSON.stringify({
  id: "chatcmpl-bench0000000000000000000001",
  object: "chat.completion",
  created: CREATED,
  model: MODEL,
  system_fingerprint: "fp_bench",
  choices: [{ index: 0, message: { role: "assistant", content: TEXT, refusal: null }, logprobs: null, finish_reason: "stop" }],
  usage: { ...USAGE, prompt_tokens_details: { cached_tokens: 0 }, completion_tokens_details: { reasoning_tokens: 0 } }
}))

const chunk = (delta, finish = null, usage) => `data: ${JSON.stringify({
  id: "chatcmpl-bench0000000000000000000002",
  object: "chat.completion.chunk",
  created: CREATED,
  model: MODEL,
  system_fingerprint: "fp_bench",
  choices: usage === undefined ? [{ index: 0, delta, logprobs: null, finish_reason: finish }] : [],
  ...(usage === undefined ? {} : { usage })
})}\n\n`
const words = TEXT.split(/(?<= )/)
const pieces = []
for (let i = 0; i < words.length; i += 4) pieces.push(words.slice(i, i + 4).join(""))
const stream = Buffer.from([
  chunk({ role: "assistant", content: "" }),
  ...pieces.map((p) => chunk({ content: p })),
  chunk({}, "stop"),
  chunk(undefined, null, USAGE),
  "data: [DONE]\n\n"
].join(""))

const jsonHeaders = { "content-type": "application/json", "content-length": String(completion.length) }
const sseHeaders = { "content-type": "text/event-stream", "cache-control": "no-cache", "content-length": String(stream.length) }
const isStream = /"stream"\s*:\s*true/

const answer = (req, res, body) => {
  if (isStream.test(body)) {
    res.writeHead(200, sseHeaders)
    res.end(stream)
  } else {
    res.writeHead(200, jsonHeaders)
    res.end(completion)
  }
}

/** Starts one listener; resolves with the server once it listens. */
export const startUpstream = ({ port = 0, latencyMs = 0, host = "127.0.0.1" } = {}) =>
  new Promise((resolve, reject) => {
    const server = createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
      if (req.method === "POST" && req.url.endsWith("/chat/completions")) {
        let body = ""
        req.setEncoding("utf8")
        req.on("data", (d) => { body += d })
        req.on("end", () => {
          if (latencyMs > 0) setTimeout(answer, latencyMs, req, res, body)
          else answer(req, res, body)
        })
      } else if (req.method === "GET" && (req.url === "/health" || req.url === "/v1/models")) {
        res.writeHead(200, { "content-type": "application/json" })
        res.end(`{"object":"list","data":[{"id":"${MODEL}","object":"model","owned_by":"bench"}]}`)
      } else {
        req.resume()
        res.writeHead(404, { "content-type": "application/json" })
        res.end('{"error":{"message":"not found","type":"invalid_request_error"}}')
      }
    })
    server.headersTimeout = 60_000
    server.requestTimeout = 0
    server.once("error", reject)
    server.listen(port, host, () => resolve(server))
  })

// --- Bedrock Runtime (Converse, ConverseStream) ------------------------------------------------

const converse = Buffer.from(JSON.stringify({
  output: { message: { role: "assistant", content: [{ text: TEXT }] } },
  stopReason: "end_turn",
  usage: { inputTokens: USAGE.prompt_tokens, outputTokens: USAGE.completion_tokens, totalTokens: USAGE.total_tokens },
  metrics: { latencyMs: 0 }
}))

const crcTable = Array.from({ length: 256 }, (_, n) => {
  let c = n
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
  return c >>> 0
})
const crc32 = (bytes) => {
  let c = 0xffffffff
  for (const b of bytes) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8)
  return (c ^ 0xffffffff) >>> 0
}
/** One AWS event-stream message: prelude (lengths, CRC), string headers, JSON payload, CRC. */
const frame = (eventType, payload) => {
  const headers = Buffer.concat(Object.entries({ ":event-type": eventType, ":content-type": "application/json", ":message-type": "event" }).map(([k, v]) => {
    const name = Buffer.from(k)
    const value = Buffer.from(v)
    const h = Buffer.alloc(1 + name.length + 3 + value.length)
    h.writeUInt8(name.length, 0)
    name.copy(h, 1)
    h.writeUInt8(7, 1 + name.length)
    h.writeUInt16BE(value.length, 2 + name.length)
    value.copy(h, 4 + name.length)
    return h
  }))
  const body = Buffer.from(JSON.stringify(payload))
  const total = 12 + headers.length + body.length + 4
  const out = Buffer.alloc(total)
  out.writeUInt32BE(total, 0)
  out.writeUInt32BE(headers.length, 4)
  out.writeUInt32BE(crc32(out.subarray(0, 8)), 8)
  headers.copy(out, 12)
  body.copy(out, 12 + headers.length)
  out.writeUInt32BE(crc32(out.subarray(0, total - 4)), total - 4)
  return out
}
const converseStream = Buffer.concat([
  frame("messageStart", { role: "assistant" }),
  ...pieces.map((text) => frame("contentBlockDelta", { contentBlockIndex: 0, delta: { text } })),
  frame("contentBlockStop", { contentBlockIndex: 0 }),
  frame("messageStop", { stopReason: "end_turn" }),
  frame("metadata", { usage: { inputTokens: USAGE.prompt_tokens, outputTokens: USAGE.completion_tokens, totalTokens: USAGE.total_tokens }, metrics: { latencyMs: 0 } })
])

/** Starts the Bedrock Runtime listener (h2c); resolves with the server once it listens. */
export const startBedrockUpstream = ({ port = 0, host = "127.0.0.1" } = {}) =>
  new Promise((resolve, reject) => {
    const server = createH2Server((req, res) => {
      req.resume()
      req.on("end", () => {
        if (req.method === "POST" && req.url.endsWith("/converse-stream")) {
          res.writeHead(200, { "content-type": "application/vnd.amazon.eventstream", "x-amzn-requestid": "bench" })
          res.end(converseStream)
        } else if (req.method === "POST" && req.url.endsWith("/converse")) {
          res.writeHead(200, { "content-type": "application/json", "x-amzn-requestid": "bench" })
          res.end(converse)
        } else {
          res.writeHead(404, { "content-type": "application/json", "x-amzn-errortype": "UnknownOperationException" })
          res.end('{"message":"not found"}')
        }
      })
    })
    server.once("error", reject)
    server.listen(port, host, () => resolve(server))
  })

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2)
  const pairs = []
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--port") pairs.push({ port: Number(args[i + 1]), latencyMs: 0 })
    if (args[i] === "--latency" && pairs.length > 0) pairs[pairs.length - 1].latencyMs = Number(args[i + 1])
  }
  if (pairs.length === 0) pairs.push({ port: 0, latencyMs: 0 })
  const servers = await Promise.all(pairs.map((p) => startUpstream(p)))
  const ports = {}
  servers.forEach((s, i) => { ports[String(pairs[i].latencyMs)] = s.address().port })
  const b = args.indexOf("--bedrock-port")
  if (b >= 0) {
    const bedrock = await startBedrockUpstream({ port: Number(args[b + 1]) })
    servers.push(bedrock)
    ports.bedrock = bedrock.address().port
  }
  process.stdout.write(`${JSON.stringify({ ready: true, pid: process.pid, ports })}\n`)
  const stop = () => {
    for (const s of servers) { s.close(); s.closeAllConnections?.() }
    setTimeout(() => process.exit(0), 200).unref()
  }
  process.on("SIGTERM", stop)
  process.on("SIGINT", stop)
  // Bounded life: never outlive a bench that forgot to stop it (default 2 h).
  const maxLife = Number(process.env.BENCH_UPSTREAM_MAX_SECONDS ?? 7200)
  setTimeout(() => process.exit(0), maxLife * 1000).unref()
}

// CPU per Bedrock Converse call through the AWS SDK alone (no gateway), against the mock upstream's
// Bedrock listener (h2c, pinned to CPU 1), 10 concurrent callers, 3 × 3 s after 2 s of warm-up:
// the client as the SDK makes it (a new HTTP/2 connection per request) or, with `pooled`, with the
// adapter's `NodeHttp2Handler` that shares connections. Run it pinned:
//
//   taskset -c 0 node bench/bedrock-sdk.mjs [default|pooled]
import { spawn } from "node:child_process"
import { createInterface } from "node:readline"

const sdk = new URL("../packages/providers/node_modules/", import.meta.url).pathname
const { BedrockRuntimeClient, ConverseCommand } = await import(`${sdk}@aws-sdk/client-bedrock-runtime/dist-cjs/index.js`)
const { NodeHttp2Handler } = await import(`${sdk}@smithy/node-http-handler/dist-cjs/index.js`)
const up = spawn("taskset", ["-c", "1", process.execPath, new URL("upstream.mjs", import.meta.url).pathname, "--port", "0", "--bedrock-port", "0"], { stdio: ["ignore", "pipe", "inherit"] })
try {
  const ports = await new Promise((resolve) => createInterface({ input: up.stdout }).once("line", (l) => resolve(JSON.parse(l).ports)))
  const mode = process.argv[2] ?? "default"
  const client = new BedrockRuntimeClient({
    region: "us-east-1",
    endpoint: `http://127.0.0.1:${ports.bedrock}`,
    maxAttempts: 1,
    credentials: { accessKeyId: "AKIDBENCH", secretAccessKey: "bench-secret" },
    ...(mode === "pooled" ? { requestHandler: new NodeHttp2Handler({ disableConcurrentStreams: false, maxConcurrentStreams: 100 }) } : {})
  })
  const input = {
    modelId: "anthropic.claude-bench-v1:0",
    system: [{ text: "You are terse." }],
    messages: [{ role: "user", content: [{ text: "Say what an LLM gateway is for, in one sentence." }] }],
    inferenceConfig: { maxTokens: 64 }
  }
  const run = async (ms) => {
    let n = 0
    const end = Date.now() + ms
    await Promise.all(Array.from({ length: 10 }, async () => {
      while (Date.now() < end) {
        await client.send(new ConverseCommand(input))
        n++
      }
    }))
    return n
  }
  await run(2000)
  for (let i = 0; i < 3; i++) {
    const before = process.cpuUsage()
    const n = await run(3000)
    const used = process.cpuUsage(before)
    console.log(`${mode}: ${((used.user + used.system) / 1000 / n).toFixed(3)} ms CPU per call, ${n} calls`)
  }
  client.destroy()
} finally {
  up.kill()
}
process.exit(0)

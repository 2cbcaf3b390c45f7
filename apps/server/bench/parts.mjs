// The CPU per call of each piece of a chat completion, in-process (no HTTP): the gateway's services
// built with `Layers.layer(config)` on Postgres (a scratch database `tidyllm_parts`), the bench's
// mock upstream in a child process, N concurrent callers for 3 × S seconds per piece, the median
// of `process.cpuUsage()` per call. Run it pinned to one CPU (the upstream goes to the other):
//
//   pnpm build && taskset -c 0 node apps/server/bench/parts.mjs [--conc 10] [--secs 3] [--durability sync|buffered] [--only a,b] [--ops]
//
// Every piece runs with tracing off, as the fast lane does. With `--ops` it also counts the Effect
// operations each call runs (its fiber and the fibers it forks; a supervisor sees every step of
// the run loop).
//
// It lives in the server package so that `effect` and the workspace packages resolve from here.
import { writeFileSync, mkdtempSync, rmSync } from "node:fs"
import { join } from "node:path"
import { tmpdir } from "node:os"
import { spawn } from "node:child_process"
import { createInterface } from "node:readline"
import { Readable } from "node:stream"
import { Effect, Layer, ManagedRuntime, Option, RuntimeFlags, RuntimeFlagsPatch, Stream, Supervisor } from "effect"
import * as NodeContext from "@effect/platform-node/NodeContext"
import { AuditLog, BudgetLedger, LlmProviders, CorporateLlmGateway } from "@tidyllm/corporate-llm"
import * as SqlClient from "@effect/sql/SqlClient"
import { AiProcessingGateway } from "@tidyllm/ai-processing"
import { ModelCatalog } from "@tidyllm/core"
import { Layers, Load } from "../dist/index.js"
import * as Chat from "../dist/chat/Http.js"
import * as Sse from "../dist/chat/Sse.js"
import { scratchDatabase } from "../../../bench/lib.mjs"

const arg = (n, d) => { const i = process.argv.indexOf(`--${n}`); return i > 0 ? process.argv[i + 1] : d }
const conc = Number(arg("conc", 10)), secs = Number(arg("secs", 3)), durability = arg("durability", "sync")
const only = arg("only")?.split(",")
const countOps = process.argv.includes("--ops")

const up = spawn("taskset", ["-c", "1", process.execPath, new URL("../../../bench/upstream.mjs", import.meta.url).pathname, "--port", "0", "--latency", "0", "--bedrock-port", "0"], { stdio: ["ignore", "pipe", "inherit"] })
const ports = await new Promise((resolve) => createInterface({ input: up.stdout }).once("line", (l) => resolve(JSON.parse(l).ports)))
const port = ports["0"]
const dir = mkdtempSync(join(tmpdir(), "tidyllm-parts-"))
const configPath = join(dir, "tidyllm.yaml")
writeFileSync(configPath, `corporate_llm:
  default_provider: upstream
  default_model: gpt-4o-mini
  budget_limit_daily_usd: 1000000
  max_cost_per_request_usd: 100
  audit_durability: ${durability}
ai_processing:
  enable_caching: false
providers:
  openai_compatible:
    upstream:
      base_url: http://127.0.0.1:${port}/v1
  bedrock:
    region: us-east-1
    endpoint: http://127.0.0.1:${ports.bedrock}
    access_key_id: AKIDBENCH
    secret_access_key: bench-secret
models:
  - id: claude-bench
    provider_ids: { bedrock: anthropic.claude-bench-v1:0 }
    input_usd_per_million: 0.25
    output_usd_per_million: 1.25
    context_window: 200000
    max_output_tokens: 4096
  - id: gpt-4o-mini
    provider_ids: { upstream: gpt-4o-mini }
    input_usd_per_million: 0.15
    output_usd_per_million: 0.6
    context_window: 128000
    max_output_tokens: 16384
storage:
  data_dir: ${JSON.stringify(join(dir, "data"))}
`)
const env = { DATABASE_URL: scratchDatabase("tidyllm_parts") }
const loaded = await Effect.runPromise(Load.load({ configPath, env, dotenv: false }).pipe(Effect.provide(NodeContext.layer)))
// Built with the tracer off, as the server builds its services while tracing is off: the audit
// writer and the other fibers the layers fork inherit it (else every batch made spans).
const rt = ManagedRuntime.make(Layer.provide(Layers.layer(loaded.config), Layer.setTracerEnabled(false)))
const get = (tag) => rt.runPromise(tag)
const audit = await get(AuditLog.AuditLog)
const ledger = await get(BudgetLedger.BudgetLedger)
const providers = await get(LlmProviders.LlmProviders)
const gw1 = await get(CorporateLlmGateway.CorporateLlmGateway)
const gw2 = await get(AiProcessingGateway.AiProcessingGateway)
const catalog = await get(ModelCatalog.ModelCatalog)
const serve = await rt.runPromise(Chat.makeServe)
const sql = await get(SqlClient.SqlClient)

const provider = Option.getOrThrow(providers.get("upstream"))
const model = Option.getOrThrow(catalog.resolve("gpt-4o-mini"))
const messages = [{ role: "system", content: "You are terse." }, { role: "user", content: "Say what an LLM gateway is for, in one sentence." }]
const request = { messages, model: "gpt-4o-mini", max_tokens: 64 }
const caller = { team: "bench", key_id: "k1", user_id: "u" }
const context = () => ({ request_id: crypto.randomUUID(), caller, reason: "parts" })
const scopes = gw1.scopes(caller)
const entry = () => ({
  id: crypto.randomUUID(), request_id: crypto.randomUUID(), created_at: new Date(), caller: "parts", user_id: null, team: "bench", key_id: "k1",
  reason: "parts", provider: "upstream", model: "gpt-4o-mini", status: "success", input_tokens: 31, output_tokens: 36, cost: 27, latency_ms: 1,
  error_type: null, error_message: null, prompt: "[redacted]", audit_level: "redacted", attempt: 1
})
// The same request to Bedrock (the AWS SDK over HTTP/2 to the upstream's Bedrock listener).
const bedrockProvider = Option.getOrThrow(providers.get("bedrock"))
const bedrockModel = Option.getOrThrow(catalog.resolve("claude-bench"))
const bedrockRequest = { messages, model: "claude-bench", provider: "bedrock", max_tokens: 64 }
const bodyText = JSON.stringify(request)
const streamText = JSON.stringify({ ...request, stream: true })
const incomingStream = () => Object.assign(Readable.from([Buffer.from(streamText)]), { headers: { "content-type": "application/json", "content-length": String(streamText.length) } })
/** A request body as Node's server gives it to the handler. */
const incoming = () => Object.assign(Readable.from([Buffer.from(bodyText)]), { headers: { "content-type": "application/json", "content-length": String(bodyText.length) } })

/** Closes the services, stops the upstream and removes the scratch directory. */
const finish = async () => {
  await rt.dispose()
  up.kill()
  rmSync(dir, { recursive: true, force: true })
}

const pieces = {
  // What the harness itself costs per call (a fiber and its promise), to subtract from the rest.
  "(harness) Effect.void": () => Effect.void,
  "ledger reserve+settle": () => Effect.flatMap(ledger.reserve({ scopes, amount: 1000, request_id: "parts", ttl_ms: 900_000 }), (r) => ledger.settle(r, 500)),
  "audit.write": () => audit.write(entry()),
  "sql insert (bare)": () => { const { cost: _, ...row } = entry(); return sql`INSERT INTO llm_audit_log ${sql.insert({ ...row, cost: "0.000000027" })} ON CONFLICT (id) DO NOTHING` },
  "provider.complete": () => provider.complete({ model, model_id: "gpt-4o-mini", messages, max_tokens: 64 }),
  "gw1.process": () => gw1.process(request, { ...context(), attempt: 1, timeout_ms: 30_000 }),
  "gw2.process": () => gw2.process(request, context()),
  "handler (makeServe)": () => serve(incoming(), context()),
  "gw2.processStream (whole)": () => Stream.runDrain(gw2.processStream(request, context())),
  "gw1.openStream (first pull)": () => Effect.scoped(Effect.flatMap(gw1.openStream(request, { ...context(), attempt: 1, timeout_ms: 30_000 }), (pull) => pull)),
  "gw2.openStream (first pull)": () => Effect.scoped(Effect.flatMap(gw2.openStream(request, context()), (pull) => pull)),
  // The answer's bytes pulled as the fast lane pulls them (no \`Stream\` stage).
  "handler stream (as the lane)": () => Effect.scoped(Effect.flatMap(serve(incomingStream(), context()), (a) => Effect.flatMap(a.open, (events) => {
    const next = Sse.bytes(events)
    const loop = Effect.matchEffect(next, { onFailure: () => Effect.void, onSuccess: () => loop })
    return loop
  }))),
  "handler stream (whole)": () => Effect.scoped(Effect.flatMap(serve(incomingStream(), context()), (a) => Effect.flatMap(a.open, (events) => Stream.runDrain(Sse.toStream(events))))),
  "bedrock: provider.complete": () => bedrockProvider.complete({ model: bedrockModel, model_id: "anthropic.claude-bench-v1:0", messages, max_tokens: 64 }),
  "bedrock: gw1.process": () => gw1.process(bedrockRequest, { ...context(), attempt: 1, timeout_ms: 30_000 }),
  "bedrock: gw1 stream (whole)": () => Stream.runDrain(gw1.processStream(bedrockRequest, { ...context(), attempt: 1, timeout_ms: 30_000 }))
}

// A piece named on the command line that does not exist: say which do, and clean up.
const named = ["trace", "leak", "alloc", "seq"].map((k) => arg(k)).concat(arg("lat")?.split(",") ?? [], arg("pre")?.split(",") ?? [], only ?? []).filter((n) => n !== undefined)
const unknown = named.filter((n) => !(n in pieces))
if (unknown.length > 0) {
  console.error(`unknown piece ${unknown.map((n) => JSON.stringify(n)).join(", ")}; the pieces: ${Object.keys(pieces).map((n) => JSON.stringify(n)).join(", ")}`)
  await finish()
  process.exit(2)
}

const run = async (piece, ms) => {
  let n = 0
  const end = Date.now() + ms
  await Promise.all(Array.from({ length: conc }, async () => {
    while (Date.now() < end) {
      // Tracing off, as the fast lane serves while no OTLP endpoint is configured.
      await rt.runPromise(Effect.withTracerEnabled(piece(), false))
      n++
    }
  }))
  return n
}

/** Counts the steps of the run loop of the fibers it supervises. */
class OpCounter extends Supervisor.AbstractSupervisor {
  count = 0
  get value() { return Effect.sync(() => this.count) }
  onEffect() { this.count++ }
}
const opsPerCall = async (piece, calls = 200) => {
  const counter = new OpCounter()
  for (let i = 0; i < calls; i++) {
    await rt.runPromise(piece().pipe(
      Effect.withTracerEnabled(false),
      Effect.supervised(counter),
      Effect.withRuntimeFlagsPatch(RuntimeFlagsPatch.enable(RuntimeFlags.OpSupervision))
    ))
  }
  return counter.count / calls
}

/** Wall time from the call to a stream's first event, one caller at a time (median, p90 of --n calls). */
const firstEvent = async (name, stream, n = Number(arg("n", 400))) => {
  const times = []
  for (let i = 0; i < n + 50; i++) {
    const start = performance.now()
    let first
    await rt.runPromise(Effect.withTracerEnabled(Stream.runForEach(stream(), () => Effect.sync(() => { first ??= performance.now() })), false))
    if (i >= 50) times.push(first - start)
  }
  times.sort((a, b) => a - b)
  let ops = ""
  if (countOps) {
    const counter = new OpCounter()
    let atFirst = 0
    for (let i = 0; i < 100; i++) {
      let seen = false
      const before = counter.count
      await rt.runPromise(Stream.runForEach(stream(), () => Effect.sync(() => { if (!seen) { seen = true; atFirst += counter.count - before } })).pipe(
        Effect.withTracerEnabled(false),
        Effect.supervised(counter),
        Effect.withRuntimeFlagsPatch(RuntimeFlagsPatch.enable(RuntimeFlags.OpSupervision))
      ))
    }
    ops = `, ${(atFirst / 100).toFixed(0)} Effect ops to the first event, ${(counter.count / 100).toFixed(0)} in all`
  }
  console.log(`${name.padEnd(28)} first event p50 ${times[Math.floor(n / 2)].toFixed(3)} ms, p90 ${times[Math.floor(n * 0.9)].toFixed(3)}${ops}`)
}

/** With --trace NAME: a histogram of the Effect operations of one piece, by operation and the code that made it. */
if (arg("trace") !== undefined) {
  const piece = pieces[arg("trace")]
  class Tracer extends Supervisor.AbstractSupervisor {
    hist = new Map()
    get value() { return Effect.void }
    onEffect(_fiber, effect) {
      const f = effect.effect_instruction_i0 ?? effect.effect_instruction_i1
      const where = typeof f === "function" ? (f.name || f.toString().replace(/\s+/g, " ").slice(0, 90)) : String(effect._op)
      let key = `${effect._op} ${where}`
      if (effect._op === "UpdateRuntimeFlags" && process.argv.includes("--regions")) {
        const st = _fiber._stack ?? []
        const frames = []
        for (let k = st.length - 1; k >= 0 && frames.length < 4; k--) {
          const fr = st[k]
          if (fr._op === "RevertFlags") continue
          const g = fr.effect_instruction_i1 ?? fr.effect_instruction_i2
          const src = typeof g === "function" ? g.toString().replace(/\s+/g, " ") : ""
          if (/^(a|exit|cause|cause1|self|b|value|_) =>/.test(src) && src.length < 60) continue
          frames.push(src.slice(0, 70))
        }
        key = `Region | ${frames.join(" | ")}`
      } else if (effect._op === "Success" || effect._op === "UpdateRuntimeFlags" || effect._op === "OnSuccess") {
        const top = _fiber._stack?.[_fiber._stack.length - 1]
        const k = top?.effect_instruction_i1 ?? top?.effect_instruction_i2 ?? top?.effect_instruction_i0
        const src = typeof k === "function" ? (k.name || k.toString().replace(/\s+/g, " ").slice(0, 100)) : String(top?._op)
        key = `${effect._op} -> ${src}`
      }
      this.hist.set(key, (this.hist.get(key) ?? 0) + 1)
    }
  }
  for (let i = 0; i < 50; i++) await rt.runPromise(Effect.withTracerEnabled(piece(), false))
  const t = new Tracer()
  const calls = 100
  for (let i = 0; i < calls; i++) {
    await rt.runPromise(piece().pipe(Effect.withTracerEnabled(false), Effect.supervised(t), Effect.withRuntimeFlagsPatch(RuntimeFlagsPatch.enable(RuntimeFlags.OpSupervision))))
  }
  const rows = [...t.hist].sort((a, b) => b[1] - a[1])
  console.log(`${arg("trace")}: ${(rows.reduce((n, r) => n + r[1], 0) / calls).toFixed(0)} ops per call`)
  for (const [k, n] of rows.slice(0, Number(arg("top", 60)))) console.log(`${(n / calls).toFixed(1).padStart(6)}  ${k}`)
  await finish()
  process.exit(0)
}

if (arg("seq") !== undefined) {
  const piece = pieces[arg("seq")]
  const log = []
  class Seq extends Supervisor.AbstractSupervisor {
    get value() { return Effect.void }
    onEffect(fiber, effect) {
      const f = effect.effect_instruction_i0 ?? effect.effect_instruction_i1
      let where = typeof f === "function" ? (f.name || f.toString().replace(/\s+/g, " ").slice(0, 110)) : String(effect._op)
      if (effect._op === "Success" || effect._op === "OnSuccess" || effect._op === "UpdateRuntimeFlags") {
        const top = fiber._stack?.[fiber._stack.length - 1]
        const k = top?.effect_instruction_i1 ?? top?.effect_instruction_i2 ?? top?.effect_instruction_i0
        where = "-> " + (typeof k === "function" ? (k.name || k.toString().replace(/\s+/g, " ").slice(0, 110)) : String(top?._op))
      }
      log.push(`${fiber.id().id} ${effect._op} ${where}`)
    }
  }
  for (let i = 0; i < 50; i++) await rt.runPromise(Effect.withTracerEnabled(piece(), false))
  const t = new Seq()
  await rt.runPromise(piece().pipe(Effect.withTracerEnabled(false), Effect.supervised(t), Effect.withRuntimeFlagsPatch(RuntimeFlagsPatch.enable(RuntimeFlags.OpSupervision))))
  console.log(log.join("\n"))
  await finish()
  process.exit(0)
}

/** With --pre A,B: the wall time from a call's start to its upstream request (undici's request:create), one caller at a time. */
if (arg("pre") !== undefined) {
  const dc = await import("node:diagnostics_channel")
  let created = NaN
  dc.subscribe("undici:request:create", () => { if (Number.isNaN(created)) created = performance.now() })
  for (const name of arg("pre").split(",")) {
    const times = []
    for (let i = 0; i < 1200; i++) {
      created = NaN
      const start = performance.now()
      await rt.runPromise(Effect.withTracerEnabled(pieces[name](), false))
      if (i >= 200) times.push(created - start)
    }
    times.sort((a, b) => a - b)
    console.log(`${name.padEnd(28)} to the upstream request: p50 ${times[500].toFixed(3)} ms, p90 ${times[900].toFixed(3)}`)
  }
  await finish()
  process.exit(0)
}

/** With --leak PIECE: heap after a full GC every N calls (run with --expose-gc): a growth that does not level off is a leak. */
if (arg("leak") !== undefined) {
  const piece = pieces[arg("leak")]
  const heap = () => { globalThis.gc(); globalThis.gc(); return process.memoryUsage().heapUsed / 2 ** 20 }
  const line = []
  for (let round = 0; round < Number(arg("rounds", 6)); round++) {
    await Promise.all(Array.from({ length: conc }, async () => {
      for (let i = 0; i < Number(arg("calls", 4000)) / conc; i++) await rt.runPromise(Effect.withTracerEnabled(piece(), false))
    }))
    line.push(heap().toFixed(1))
  }
  console.log(`${arg("leak")}: heap MiB after each round of ${arg("calls", 4000)} calls: ${line.join(" ")}`)
  await finish()
  process.exit(0)
}

/**
 * With --alloc PIECE: the bytes one call allocates, collected or not (V8's sampling heap profiler
 * with the objects that GC took included), by the function that allocated them.
 */
if (arg("alloc") !== undefined) {
  const piece = pieces[arg("alloc")]
  const { Session } = await import("node:inspector/promises")
  const session = new Session()
  session.connect()
  for (let i = 0; i < 500; i++) await rt.runPromise(Effect.withTracerEnabled(piece(), false))
  await session.post("HeapProfiler.startSampling", { samplingInterval: 256, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true })
  const calls = Number(arg("calls", 2000))
  await Promise.all(Array.from({ length: conc }, async () => {
    for (let i = 0; i < calls / conc; i++) await rt.runPromise(Effect.withTracerEnabled(piece(), false))
  }))
  const { profile } = await session.post("HeapProfiler.stopSampling")
  const bySite = new Map()
  const byPackage = new Map()
  let total = 0
  const walk = (node) => {
    const self = node.selfSize
    if (self > 0) {
      const f = node.callFrame
      const file = f.url.replace(/^file:\/\//, "").replace(/.*node_modules\/(\.pnpm\/[^/]+\/node_modules\/)?/, "").replace(/^\/work\/main\//, "")
      const site = `${f.functionName || "(anonymous)"}  ${file}:${f.lineNumber + 1}`
      bySite.set(site, (bySite.get(site) ?? 0) + self)
      const pkg = file.startsWith("node:") || file === "" ? (file || "(native)") : file.split("/").slice(0, file.startsWith("@") ? 2 : (file.startsWith("packages/") || file.startsWith("apps/")) ? 2 : 1).join("/")
      byPackage.set(pkg, (byPackage.get(pkg) ?? 0) + self)
      total += self
    }
    for (const c of node.children) walk(c)
  }
  walk(profile.head)
  console.log(`${arg("alloc")}: ${(total / calls / 1024).toFixed(1)} KiB allocated per call (sampled)`)
  for (const [k, v] of [...byPackage].sort((a, b) => b[1] - a[1]).slice(0, 12)) console.log(`${(v / calls / 1024).toFixed(1).padStart(8)} KiB  ${k}`)
  console.log("")
  for (const [k, v] of [...bySite].sort((a, b) => b[1] - a[1]).slice(0, Number(arg("top", 40)))) console.log(`${(v / calls / 1024).toFixed(2).padStart(8)} KiB  ${k}`)
  session.disconnect()
  await finish()
  process.exit(0)
}

/** With --lat A,B: the wall time of one call of each piece, one caller at a time (p50, p90 of 1000 calls). */
if (arg("lat") !== undefined) {
  for (const name of arg("lat").split(",")) {
    const times = []
    for (let i = 0; i < 1200; i++) {
      const start = performance.now()
      await rt.runPromise(Effect.withTracerEnabled(pieces[name](), false))
      if (i >= 200) times.push(performance.now() - start)
    }
    times.sort((a, b) => a - b)
    console.log(`${name.padEnd(28)} p50 ${times[500].toFixed(3)} ms, p90 ${times[900].toFixed(3)}`)
  }
  await finish()
  process.exit(0)
}

if (process.argv.includes("--first")) {
  try {
    const call = { model, model_id: "gpt-4o-mini", messages, max_tokens: 64 }
    const { Pool } = await import("../../../packages/providers/node_modules/undici/index.js")
    const pool = new Pool(`http://127.0.0.1:${port}`)
    const rawBody = JSON.stringify({ model: "gpt-4o-mini", messages, max_tokens: 64, stream: true })
    const raw = () => Stream.fromAsyncIterable({
      async *[Symbol.asyncIterator]() {
        const r = await pool.request({ method: "POST", path: "/v1/chat/completions", headers: { "content-type": "application/json" }, body: rawBody })
        for await (const chunk of r.body) yield chunk
      }
    }, (e) => e)
    {
      const t = []
      for (let i = 0; i < 450; i++) {
        const s = performance.now()
        const r = await pool.request({ method: "POST", path: "/v1/chat/completions", headers: { "content-type": "application/json" }, body: rawBody })
        let first
        for await (const c of r.body) first ??= performance.now()
        if (i >= 50) t.push(first - s)
      }
      t.sort((a, b) => a - b)
      console.log(`${"undici pool (no Effect)".padEnd(28)} first event p50 ${t[200].toFixed(3)} ms, p90 ${t[360].toFixed(3)}`)
    }
    await firstEvent("undici pool (raw)", raw)
    await firstEvent("provider.stream", () => provider.stream(call))
    await firstEvent("gw1.processStream", () => gw1.processStream(request, { ...context(), attempt: 1, timeout_ms: 30_000 }))
    await firstEvent("gw1.processStream, no timeout", () => gw1.processStream(request, { ...context(), attempt: 1 }))
    await firstEvent("gw2.processStream", () => gw2.processStream(request, context()))
    await firstEvent("handler (makeServe), SSE", () => Stream.unwrapScoped(Effect.flatMap(serve(incomingStream(), context()), (a) => Effect.map(a.open, Sse.toStream))))
    await pool.close()
  } finally {
    await finish()
  }
  process.exit(0)
}

try {
  console.log(`pieces of a chat completion, ${conc} concurrent callers, audit ${durability}: CPU ms per call, median (min-max) of 3 × ${secs} s`)
  for (const [name, piece] of Object.entries(pieces)) {
    if (only !== undefined && !only.includes(name)) continue
    await run(piece, 1500)
    const perCall = []
    for (let i = 0; i < 3; i++) {
      const before = process.cpuUsage()
      const n = await run(piece, secs * 1000)
      const used = process.cpuUsage(before)
      perCall.push((used.user + used.system) / 1000 / n)
    }
    perCall.sort((a, b) => a - b)
    const ops = countOps ? `  ${(await opsPerCall(piece)).toFixed(0)} Effect ops/call` : ""
    console.log(`${name.padEnd(28)} ${perCall[1].toFixed(3)} (${perCall[0].toFixed(3)}-${perCall[2].toFixed(3)})${ops}`)
  }
} finally {
  await finish()
}

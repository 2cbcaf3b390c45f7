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
import { Effect, ManagedRuntime, Option, RuntimeFlags, RuntimeFlagsPatch, Stream, Supervisor } from "effect"
import * as NodeContext from "@effect/platform-node/NodeContext"
import { AuditLog, BudgetLedger, LlmProviders, CorporateLlmGateway } from "@tidyllm/corporate-llm"
import { AiProcessingGateway } from "@tidyllm/ai-processing"
import { ModelCatalog } from "@tidyllm/core"
import { Layers, Load } from "../dist/index.js"
import * as Chat from "../dist/chat/Http.js"
import { scratchDatabase } from "../../../bench/lib.mjs"

const arg = (n, d) => { const i = process.argv.indexOf(`--${n}`); return i > 0 ? process.argv[i + 1] : d }
const conc = Number(arg("conc", 10)), secs = Number(arg("secs", 3)), durability = arg("durability", "sync")
const only = arg("only")?.split(",")
const countOps = process.argv.includes("--ops")

const up = spawn("taskset", ["-c", "1", process.execPath, new URL("../../../bench/upstream.mjs", import.meta.url).pathname, "--port", "0", "--latency", "0"], { stdio: ["ignore", "pipe", "inherit"] })
const port = await new Promise((resolve) => createInterface({ input: up.stdout }).once("line", (l) => resolve(JSON.parse(l).ports["0"])))
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
models:
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
const rt = ManagedRuntime.make(Layers.layer(loaded.config))
const get = (tag) => rt.runPromise(tag)
const audit = await get(AuditLog.AuditLog)
const ledger = await get(BudgetLedger.BudgetLedger)
const providers = await get(LlmProviders.LlmProviders)
const gw1 = await get(CorporateLlmGateway.CorporateLlmGateway)
const gw2 = await get(AiProcessingGateway.AiProcessingGateway)
const catalog = await get(ModelCatalog.ModelCatalog)
const serve = await rt.runPromise(Chat.makeServe)

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
const bodyText = JSON.stringify(request)
/** A request body as Node's server gives it to the handler. */
const incoming = () => Object.assign(Readable.from([Buffer.from(bodyText)]), { headers: { "content-type": "application/json", "content-length": String(bodyText.length) } })

const pieces = {
  "ledger reserve+settle": () => Effect.flatMap(ledger.reserve({ scopes, amount: 1000, request_id: "parts", ttl_ms: 900_000 }), (r) => ledger.settle(r, 500)),
  "audit.write": () => audit.write(entry()),
  "provider.complete": () => provider.complete({ model, model_id: "gpt-4o-mini", messages, max_tokens: 64 }),
  "gw1.process": () => gw1.process(request, { ...context(), attempt: 1, timeout_ms: 30_000 }),
  "gw2.process": () => gw2.process(request, context()),
  "handler (makeServe)": () => Effect.scoped(serve(incoming(), context())),
  "gw2.processStream (whole)": () => Stream.runDrain(gw2.processStream(request, context()))
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
  await rt.dispose()
  up.kill()
  rmSync(dir, { recursive: true, force: true })
}

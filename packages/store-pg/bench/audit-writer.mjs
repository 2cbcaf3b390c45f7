// CPU and wall time per audit row through the audit writer (`PgAuditLog`, group commit) on the
// Postgres at 127.0.0.1:5432 (a scratch database, dropped and created): --writers fibers each
// write --rows rows in a loop, --rounds times (the first rounds warm the JIT up; compare the
// last ones). With --floor, the same rows through `pg` alone with a hand-written group commit:
// what the driver and Postgres cost, below which the writer cannot go.
//
//   pnpm build && taskset -c 0 node packages/store-pg/bench/audit-writer.mjs [--durability sync|buffered] [--writers 10] [--rows 1000] [--rounds 5] [--floor]
import { createRequire } from "node:module"
import { Effect, Layer, ManagedRuntime, Redacted } from "effect"
import * as PgClient from "@effect/sql-pg/PgClient"
import { AuditLog } from "@tidyllm/corporate-llm"
import * as Migrator from "../dist/Migrator.js"
import * as PgAuditLog from "../dist/PgAuditLog.js"
import { opt, flag, scratchDatabase } from "../../../bench/lib.mjs"

const durability = opt("durability", "sync")
const writers = Number(opt("writers", 10))
const rows = Number(opt("rows", 1000))
const rounds = Number(opt("rounds", 5))
const url = scratchDatabase("tidyllm_audit_bench")
const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000 }
const entry = () => ({
  id: crypto.randomUUID(), request_id: crypto.randomUUID(), created_at: new Date(), caller: "bench", user_id: null, team: "bench", key_id: "k1",
  reason: "bench", provider: "upstream", model: "gpt-4o-mini", status: "success", input_tokens: 31, output_tokens: 36, cost: 27, latency_ms: 1,
  error_type: null, error_message: null, prompt: "[redacted]", audit_level: "redacted", attempt: 1
})
const report = (label, round, c0, t0) =>
  console.log(`${label} round ${round}: ${((cpu() - c0) / (writers * rows)).toFixed(3)} ms CPU per row, wall ${((performance.now() - t0) / (writers * rows)).toFixed(3)} ms per row`)

const client = Layer.provide(PgClient.layer({ url: Redacted.make(url) }), Layer.setTracerEnabled(false))
await Effect.runPromise(Migrator.run().pipe(Effect.provide(client)))
const rt = ManagedRuntime.make(Layer.provide(PgAuditLog.layer({ durability }), client))
const audit = await rt.runPromise(AuditLog.AuditLog)
for (let round = 1; round <= rounds; round++) {
  const c0 = cpu()
  const t0 = performance.now()
  await rt.runPromise(Effect.forEach(Array.from({ length: writers }), () =>
    Effect.gen(function*() { for (let i = 0; i < rows; i++) yield* audit.write(entry()) }), { concurrency: "unbounded", discard: true }))
  report(`PgAuditLog (${durability})`, round, c0, t0)
}
await rt.dispose()

if (flag("floor")) {
  // `pg` resolved as @effect/sql-pg resolves it.
  const pg = createRequire(createRequire(import.meta.url).resolve("@effect/sql-pg/PgClient"))("pg")
  const pool = new pg.Pool({ connectionString: url, max: 10 })
  const columns = Object.keys(entry())
  const insert = (batch) => {
    const params = []
    const tuples = batch.map((e) => `(${columns.map((c) => { params.push(c === "cost" ? "0.000000027" : e[c]); return `$${params.length}` }).join(",")})`)
    return pool.query(`INSERT INTO llm_audit_log (${columns.join(",")}) VALUES ${tuples.join(",")} ON CONFLICT (id) DO NOTHING`, params)
  }
  let waiting = []
  let busy = false
  const drain = async () => {
    if (busy || waiting.length === 0) return
    busy = true
    const batch = waiting
    waiting = []
    try {
      await insert(batch.map((p) => p.entry))
      for (const p of batch) p.resolve()
    } catch (error) {
      for (const p of batch) p.reject(error)
    }
    busy = false
    void drain()
  }
  const write = (e) => new Promise((resolve, reject) => { waiting.push({ entry: e, resolve, reject }); void drain() })
  for (let round = 1; round <= rounds; round++) {
    const c0 = cpu()
    const t0 = performance.now()
    await Promise.all(Array.from({ length: writers }, async () => { for (let i = 0; i < rows; i++) await write(entry()) }))
    report("pg alone, group commit", round, c0, t0)
  }
  await pool.end()
}

// `pnpm bench` (part 2): ANALYZE and OPTIMIZE (level high) on generated DAGs of 100, 1,000 and
// 10,000 steps, flat and as 3-level hierarchies. Prints the median time of 5 runs and the heap
// growth of one run per size, so that the growth with size is visible. Pure CPU: no network.
//
//   node --expose-gc bench/workflows.mjs [--runs 5]
import { performance } from "node:perf_hooks"
import { ModelCatalog } from "../packages/core/dist/index.js"
import { Analyze, Generate, Optimize } from "../packages/heiros/dist/index.js"

const i = process.argv.indexOf("--runs")
const runs = i >= 0 ? Number(process.argv[i + 1]) : 5
const catalog = ModelCatalog.make(ModelCatalog.defaultModels)
const options = { catalog, default_model: "claude-3-haiku", optimization_level: "high", max_optimization_iterations: 10 }
const gc = globalThis.gc ?? (() => {})

const measure = (f) => {
  const times = []
  let heap = 0
  for (let r = 0; r < runs; r++) {
    gc()
    const before = process.memoryUsage().heapUsed
    const t0 = performance.now()
    const result = f()
    times.push(performance.now() - t0)
    if (r === 0) heap = process.memoryUsage().heapUsed - before
    if (result._tag === "Left") throw new Error(`failed: ${result.left.message}`)
  }
  times.sort((a, b) => a - b)
  return { median: times[Math.floor(times.length / 2)], heapMiB: Math.max(0, heap) / 2 ** 20 }
}

const rows = []
for (const levels of [1, 3]) {
  for (const n of [100, 1_000, 10_000]) {
    const definition = Generate.generate(n, levels)
    const analyze = measure(() => Analyze.analyze(definition, options))
    const optimize = measure(() => Optimize.optimize(definition, options))
    rows.push({ steps: n, levels, analyze, optimize })
  }
}

const pad = (s, w) => String(s).padStart(w)
console.log(`\nHeirOS on generated DAGs (median of ${runs} runs; heap = growth during one run, before GC)\n`)
console.log(`${pad("steps", 7)} ${pad("levels", 6)} ${pad("ANALYZE ms", 11)} ${pad("heap MiB", 9)} ${pad("OPTIMIZE ms", 12)} ${pad("heap MiB", 9)}`)
console.log("-".repeat(60))
for (const r of rows) {
  console.log(`${pad(r.steps, 7)} ${pad(r.levels, 6)} ${pad(r.analyze.median.toFixed(1), 11)} ${pad(r.analyze.heapMiB.toFixed(1), 9)} ${pad(r.optimize.median.toFixed(1), 12)} ${pad(r.optimize.heapMiB.toFixed(1), 9)}`)
}

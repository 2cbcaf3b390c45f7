// Summarises a V8 `.cpuprofile` (from `node --cpu-prof`, e.g. `pnpm bench -- --profile`) without
// a GUI: self time by function and by package/file, top N (default 40).
//
//   node bench/top-frames.mjs FILE.cpuprofile [--top 40] [--by function|package|file|all]
import { readFileSync } from "node:fs"

const args = process.argv.slice(2)
const file = args.find((a) => !a.startsWith("--") && args[args.indexOf(a) - 1] !== "--top" && args[args.indexOf(a) - 1] !== "--by")
const opt = (n, d) => { const i = args.indexOf(`--${n}`); return i >= 0 && args[i + 1] !== undefined ? args[i + 1] : d }
const top = Number(opt("top", 40))
const by = opt("by", "all")
if (file === undefined) {
  console.error("usage: node bench/top-frames.mjs FILE.cpuprofile [--top 40] [--by function|package|file|all]")
  process.exit(1)
}

const profile = JSON.parse(readFileSync(file, "utf8"))
const nodes = new Map(profile.nodes.map((n) => [n.id, n]))
// Self time per node: the time delta before each sample goes to the node sampled.
const self = new Map()
const { samples = [], timeDeltas = [] } = profile
for (let i = 0; i < samples.length; i++) {
  const dt = Math.max(0, timeDeltas[i] ?? 0)
  self.set(samples[i], (self.get(samples[i]) ?? 0) + dt)
}
let total = 0
for (const v of self.values()) total += v

/** node_modules/(@scope/)?name → that package; node:internal → node; else the path from the workspace root. */
const packageOf = (url) => {
  if (url === "" || url === undefined) return "(native / V8)"
  if (url.startsWith("node:")) return "node (built-in)"
  const path = url.replace(/^file:\/\//, "")
  const m = /.*node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(path)
  if (m) return m[1]
  const w = /\/(apps|packages)\/([^/]+)\//.exec(path)
  if (w) return `${w[1]}/${w[2]}`
  return path
}
const shortFile = (url) => {
  if (url === "" || url === undefined) return "(native / V8)"
  const path = url.replace(/^file:\/\//, "")
  const m = /.*node_modules\/(.+)$/.exec(path)
  if (m) return m[1].replace(/^\.pnpm\/[^/]+\/node_modules\//, "")
  const w = /\/((?:apps|packages)\/.+)$/.exec(path)
  return w ? w[1] : path
}

const add = (map, key, v) => map.set(key, (map.get(key) ?? 0) + v)
const byFunction = new Map()
const byPackage = new Map()
const byFile = new Map()
for (const [id, t] of self) {
  const n = nodes.get(id)
  if (n === undefined) continue
  const cf = n.callFrame
  const name = cf.functionName || (cf.url ? "(anonymous)" : `(${cf.functionName || "program"})`)
  const where = cf.url ? `${shortFile(cf.url)}:${cf.lineNumber + 1}` : ""
  add(byFunction, `${name}${where ? `  ${where}` : ""}`, t)
  add(byPackage, packageOf(cf.url), t)
  add(byFile, shortFile(cf.url), t)
}

const print = (title, map) => {
  console.log(`\n== self time by ${title} (top ${top})`)
  console.log("     ms      %  ")
  const rows = [...map.entries()].sort((a, b) => b[1] - a[1]).slice(0, top)
  for (const [k, v] of rows) console.log(`${(v / 1000).toFixed(1).padStart(8)}  ${((100 * v) / total).toFixed(1).padStart(5)}  ${k}`)
}
const durationMs = (profile.endTime - profile.startTime) / 1000
console.log(`${file}: ${samples.length} samples, ${(total / 1000).toFixed(0)} ms sampled over ${durationMs.toFixed(0)} ms of wall time`)
const idle = [...self].filter(([id]) => nodes.get(id)?.callFrame.functionName === "(idle)").reduce((s, [, t]) => s + t, 0)
const gc = [...self].filter(([id]) => nodes.get(id)?.callFrame.functionName === "(garbage collector)").reduce((s, [, t]) => s + t, 0)
console.log(`idle ${((100 * idle) / total).toFixed(1)} %, garbage collector ${((100 * gc) / total).toFixed(1)} % (of sampled time), ${(100 * gc / Math.max(1, total - idle)).toFixed(1)} % of busy time`)
if (by === "all" || by === "function") print("function", byFunction)
if (by === "all" || by === "package") print("package", byPackage)
if (by === "all" || by === "file") print("file", byFile)

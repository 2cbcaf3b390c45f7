// The bytes the gateway allocates per request under load, and where: the bundle-free build
// (apps/server/dist/main.js, so sites name their package and file) on Postgres with the bench's
// request, warmed up, then V8's sampling heap profiler (bench/alloc-preload.mjs) over one run of
// --secs at --conns. The profiler slows the gateway down (~3×); the bytes per request are what it
// measures. Reported per request: by package, by allocating function, and by the nearest function
// of the project's own on the stack (what a change in our code can remove); --survivors counts
// only objects that outlived a scavenge (what the young generation copies and promotes).
//
//   pnpm build && node bench/alloc.mjs [--conns 100] [--secs 5] [--durability buffered|sync] [--top 30] [--survivors] [--json FILE]
import { existsSync, readFileSync } from "node:fs"
import { join } from "node:path"

const root = new URL("..", import.meta.url).pathname
// lib.mjs reads the server's entry point as it loads.
process.env.BENCH_SERVER_MAIN ??= join(root, "apps/server/dist/main.js")
const { load, newWorkDir, opt, pinSelf, removeDir, scratchDatabase, startGateway, startUpstream, stopAll } = await import("./lib.mjs")

const conns = Number(opt("conns", 100))
const secs = Number(opt("secs", 5))
const top = Number(opt("top", 30))
const survivors = process.argv.includes("--survivors")

pinSelf(1)
const work = newWorkDir()
const out = join(work, "alloc.heapprofile")
let profile
let requests
try {
  process.env.ALLOC_OUT = out
  process.env.ALLOC_SURVIVORS = survivors ? "1" : "0"
  const upstream = await startUpstream({ latencies: [0], cpu: 1, logDir: work })
  const g = await startGateway({
    id: "alloc", label: "alloc", nodeFlags: [`--import=${join(root, "bench/alloc-preload.mjs")}`], upstreamUrl: upstream.url(0),
    durability: opt("durability", "buffered"), databaseUrl: scratchDatabase("tidyllm_alloc"), workDir: work
  })
  await load(g, { connections: 100, seconds: 5 })
  process.kill(g.pid, "SIGUSR2")
  const run = await load(g, { connections: conns, seconds: secs })
  process.kill(g.pid, "SIGUSR2")
  requests = run.ok
  for (let i = 0; i < 100 && !existsSync(out); i++) await new Promise((r) => setTimeout(r, 100))
  profile = JSON.parse(readFileSync(out, "utf8"))
  await g.stop()
} finally {
  await stopAll()
  removeDir(work)
}
if (profile?.head === undefined) {
  console.error(`no profile: ${JSON.stringify(profile)}`)
  process.exit(1)
}

const clean = (url) => url.replace(/^file:\/\//, "").replace(/.*node_modules\/(\.pnpm\/[^/]+\/node_modules\/)?/, "").replace(root, "")
const own = (url) => /^file:\/\/.*\/(apps|packages)\/[^/]+\/dist\//.test(url) && !url.includes("node_modules")
const packageOf = (file) => file.startsWith("node:") || file === "" ? (file || "(native)") : file.split("/").slice(0, file.startsWith("@") || file.startsWith("packages/") || file.startsWith("apps/") ? 2 : 1).join("/")
const byPackage = new Map()
const bySite = new Map()
const byOwn = new Map()
const add = (m, k, v) => m.set(k, (m.get(k) ?? 0) + v)
let total = 0
const walk = (node, nearest) => {
  const f = node.callFrame
  const file = clean(f.url)
  const site = `${f.functionName || "(anonymous)"}  ${file}:${f.lineNumber + 1}`
  const mine = own(f.url) ? site : nearest
  if (node.selfSize > 0) {
    total += node.selfSize
    add(byPackage, packageOf(file), node.selfSize)
    add(bySite, site, node.selfSize)
    add(byOwn, mine ?? `(no function of ours on the stack: ${packageOf(file)})`, node.selfSize)
  }
  for (const c of node.children) walk(c, mine)
}
walk(profile.head, undefined)
const kib = (v) => (v / requests / 1024).toFixed(2).padStart(8)
const list = (title, m, n) => {
  console.log(`\n${title}`)
  for (const [k, v] of [...m].sort((a, b) => b[1] - a[1]).slice(0, n)) console.log(`${kib(v)} KiB  ${k}`)
}
console.log(`${(total / requests / 1024).toFixed(1)} KiB allocated per request${survivors ? " and alive at a scavenge" : ""} (sampled; ${requests} requests at ${conns} connections, audit ${opt("durability", "buffered")})`)
list("by package", byPackage, 12)
list("by the function that allocated", bySite, top)
list("by the nearest function of ours on the stack", byOwn, top)

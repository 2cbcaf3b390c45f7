#!/usr/bin/env node
// The project's layering check: every package may import only what its row of the table in
// DESIGN.md allows, and domain packages do no I/O. Exits 1 on any finding. Run by `pnpm check` and CI.
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs"
import { join, relative } from "node:path"

const root = new URL("..", import.meta.url).pathname
const ports = ["core", "corporate-llm", "ai-processing", "session-manager", "heiros"]
/** package → [workspace packages it may import, external modules it may import (regex), is it a domain package] */
const table = {
  core: [[], /^effect(\/|$)/, true],
  "corporate-llm": [["core"], /^effect(\/|$)/, true],
  "ai-processing": [["core", "corporate-llm"], /^effect(\/|$)/, true],
  "session-manager": [["core"], /^effect(\/|$)/, true],
  heiros: [["core"], /^effect(\/|$)/, true],
  "workflow-optimizer": [["core", "ai-processing", "session-manager", "heiros"], /^effect(\/|$)/, true],
  // DESIGN.md: "AWS SDK, fetch"; undici is the client under Node's fetch, used directly by the
  // OpenAI-compatible adapter's calls (a pool costs a quarter of fetch's CPU per call), with
  // eventsource-parser reading its streams' server-sent events.
  providers: [["core", "corporate-llm"], /^effect(\/|$)|^(@aws-sdk|@smithy)\/|^(openai|@anthropic-ai\/sdk|undici|eventsource-parser)(\/|$)/, false],
  "store-pg": [ports, /^(effect|@effect\/(sql|sql-pg|platform|experimental)|@electric-sql\/pglite)(\/|$)/, false],
  "store-objects": [ports, /^(effect|@effect\/platform|@effect\/platform-node|ioredis)(\/|$)|^(@aws-sdk|@smithy)\//, false]
}
const io = /^(node:)?(fs|fs\/promises|child_process|net|tls|http|https|http2|dgram|worker_threads|process)$|^(pg|pg-pool|ioredis|redis|undici|@aws-sdk\/.*|@smithy\/.*|@effect\/sql.*|@effect\/platform.*|@electric-sql\/.*|openai|@anthropic-ai\/.*)$/
const nodeBuiltinOk = /^node:(crypto|path|url|util|buffer|events|stream|timers|os)$/
// An import/export's clause holds no `=` or backtick: a declaration (`export const f = …`) whose
// body says "from '…'" in a string is not an import.
const importRe = /import\s+['"]([^'"]+)['"]|(?:import|export)\s[^'"=`]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)|require\(\s*['"]([^'"]+)['"]\s*\)/g

const walk = (dir) => !existsSync(dir) ? [] : readdirSync(dir).flatMap((name) => {
  const p = join(dir, name)
  if (name === "node_modules" || name === "dist") return []
  return statSync(p).isDirectory() ? walk(p) : /\.tsx?$/.test(name) && !name.endsWith(".d.ts") ? [p] : []
})

const findings = []
for (const [pkg, [allowed, external, domain]] of Object.entries(table)) {
  const dir = join(root, "packages", pkg)
  if (!existsSync(dir)) { findings.push(`missing package packages/${pkg}`); continue }
  for (const file of walk(join(dir, "src"))) {
    const rel = relative(root, file)
    const text = readFileSync(file, "utf8")
    for (const m of text.matchAll(importRe)) {
      const spec = m[1] ?? m[2] ?? m[3] ?? m[4]
      if (spec.startsWith(".")) continue
      const ws = /^@tidyllm\/([^/]+)(\/.*)?$/.exec(spec)
      if (ws) {
        if (ws[1] !== pkg && !allowed.includes(ws[1])) findings.push(`${rel}: packages/${pkg} may not import @tidyllm/${ws[1]} (allowed: ${allowed.join(", ") || "none"})`)
        if (ws[2]?.includes("internal")) findings.push(`${rel}: imports another package's internal module ${spec}`)
        continue
      }
      if (domain && io.test(spec)) { findings.push(`${rel}: domain package imports I/O module '${spec}'`); continue }
      if (spec.startsWith("node:") ? !(nodeBuiltinOk.test(spec) || !domain) : !external.test(spec)) findings.push(`${rel}: packages/${pkg} may not import '${spec}'`)
    }
    if (domain && /\bprocess\.(env|argv|exit|cwd)\b/.test(text)) findings.push(`${rel}: domain package touches the process (config comes in through a Layer)`)
    if (domain && /(^|[^.\w])fetch\(/.test(text)) findings.push(`${rel}: domain package calls fetch`)
  }
  const deps = Object.keys(JSON.parse(readFileSync(join(dir, "package.json"), "utf8")).dependencies ?? {})
  for (const d of deps) {
    const ws = /^@tidyllm\/(.+)$/.exec(d)
    if (ws ? !allowed.includes(ws[1]) : !external.test(d)) findings.push(`packages/${pkg}/package.json: dependency ${d} is outside its layer`)
  }
}
for (const f of findings) console.log(f)
console.log(findings.length ? `layers: ${findings.length} finding(s)` : `layers: all ${Object.keys(table).length} packages keep to their rows of DESIGN.md`)
process.exit(findings.length ? 1 : 0)

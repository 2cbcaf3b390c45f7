#!/usr/bin/env node
// `pnpm tidyllm <command>`: runs the CLI from the checkout, building it first on a fresh clone.
import { spawnSync } from "node:child_process"
import { existsSync } from "node:fs"

const root = new URL("..", import.meta.url).pathname
const main = `${root}apps/cli/dist/main.js`
if (!existsSync(main)) {
  process.stderr.write("tidyllm: building the workspace first (pnpm build)…\n")
  const build = spawnSync("pnpm", ["build"], { cwd: root, stdio: ["ignore", "ignore", "inherit"] })
  if (build.status !== 0) process.exit(build.status ?? 1)
}
const run = spawnSync(process.execPath, [main, ...process.argv.slice(2)], { stdio: "inherit" })
process.exit(run.status ?? (run.signal === null ? 1 : 128))

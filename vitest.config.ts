import { readdirSync, readFileSync, existsSync } from "node:fs"
import { join, resolve } from "node:path"
import { defineConfig } from "vitest/config"

// Tests run against the workspace packages' sources, so `pnpm test` needs no build first.
const root = import.meta.dirname
const alias = ["packages", "apps"].flatMap((group) =>
  readdirSync(join(root, group)).flatMap((dir) => {
    const pj = join(root, group, dir, "package.json")
    if (!existsSync(pj)) return []
    const name = (JSON.parse(readFileSync(pj, "utf8")) as { name: string }).name
    const src = resolve(root, group, dir, "src")
    return [
      { find: new RegExp(`^${name}$`), replacement: join(src, "index.ts") },
      { find: new RegExp(`^${name}/(.*)$`), replacement: join(src, "$1.ts") }
    ]
  })
)

/** Suites that need an external service (Postgres) are named `*.pg.test.ts` and run by `pnpm test:services`. */
export const serviceSuites = ["**/*.pg.test.ts"]

export default defineConfig({
  resolve: { alias },
  test: {
    include: ["packages/*/test/**/*.test.ts", "apps/*/test/**/*.test.ts"],
    exclude: ["**/node_modules/**", "**/dist/**", ...serviceSuites],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: "forks",
    sequence: { hooks: "list" }
  }
})

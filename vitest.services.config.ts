import { defineConfig } from "vitest/config"
import base from "./vitest.config.js"

// Suites against real services (Postgres at DATABASE_URL), named `*.pg.test.ts`; `.ci/run` starts what is missing.
export default defineConfig({
  resolve: base.resolve,
  test: {
    ...base.test,
    include: ["packages/*/test/**/*.pg.test.ts", "apps/*/test/**/*.pg.test.ts"],
    exclude: ["**/node_modules/**", "**/dist/**"]
  }
})

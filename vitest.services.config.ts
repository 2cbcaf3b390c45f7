import { defineConfig, mergeConfig } from "vitest/config"
import base, { serviceSuites } from "./vitest.config.js"

// Suites against real services (Postgres at DATABASE_URL); `.ci/run` starts what is missing.
export default mergeConfig(base, defineConfig({
  test: { include: serviceSuites.map((p) => `packages/*/test/${p.slice(3)}`).concat(serviceSuites.map((p) => `apps/*/test/${p.slice(3)}`)), exclude: ["**/node_modules/**", "**/dist/**"] }
}), true)

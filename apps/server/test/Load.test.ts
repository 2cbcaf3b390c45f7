/** The config loader: file + `.env` + environment, validated, with messages that name the bad key. */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as NodePath from "@effect/platform-node/NodePath"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Layer, Redacted } from "effect"
import type { Scope } from "effect"
import * as Load from "../src/config/Load.js"

const node = Layer.merge(NodeFileSystem.layer, NodePath.layer)

/** A temporary directory with the given files, removed with the scope. */
const dirWith = (files: Record<string, string>): Effect.Effect<string, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const dir = mkdtempSync(join(tmpdir(), "tidyllm-config-"))
      for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content)
      return dir
    }),
    (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
  )

const load = (files: Record<string, string>, env: Load.Env = {}, configPath?: string) =>
  Effect.flatMap(dirWith(files), (cwd) => Load.load({ cwd, env, configPath })).pipe(Effect.provide(node))

const failure = (files: Record<string, string>, env: Load.Env = {}) => Effect.flip(load(files, env))

describe("config loader", () => {
  it.scoped("names an unknown key, with a hint for a likely typo", () =>
    Effect.gen(function*() {
      const e = yield* failure({ "tidyllm.yaml": "corporate_llm:\n  budgte_limit: 5\n" })
      expect(e._tag).toBe("ConfigError")
      expect(e.message).toContain("corporate_llm.budgte_limit: unknown key")
      expect(e.issues).toHaveLength(1)
    }))

  it.scoped("names a bad value with what was expected and what was given", () =>
    Effect.gen(function*() {
      const e = yield* failure({ "tidyllm.yaml": "corporate_llm:\n  budget_limit_daily_usd: abc\nserver:\n  port: 70000\n" })
      expect(e.issues).toContain(`corporate_llm.budget_limit_daily_usd: expected a non-negative number, got "abc"`)
      expect(e.issues.some((i) => i.startsWith("server.port: expected") && i.endsWith("got 70000"))).toBe(true)
    }))

  it.scoped("reports every problem at once, including an unknown section", () =>
    Effect.gen(function*() {
      const e = yield* failure({ "tidyllm.yaml": "corporate_lm: {}\nai_processing:\n  max_retries: -1\n  enable_caching: maybe\n" })
      expect(e.issues).toHaveLength(3)
      expect(e.message).toContain("corporate_lm: unknown key (did you mean 'corporate_llm'?)")
      expect(e.message).toContain("ai_processing.max_retries")
      expect(e.message).toContain(`ai_processing.enable_caching: expected a boolean, got "maybe"`)
    }))

  it.scoped("names a bad number in the environment by its variable", () =>
    Effect.gen(function*() {
      const e = yield* failure({}, { LLM_DAILY_BUDGET_USD: "abc", PORT: "80a" })
      expect(e.issues).toContain(`LLM_DAILY_BUDGET_USD: expected a number, got "abc"`)
      expect(e.issues).toContain(`PORT: expected a whole number, got "80a"`)
    }))

  it.scoped("says which variable set a value that fails the schema", () =>
    Effect.gen(function*() {
      const e = yield* failure({}, { LLM_AUDIT_LEVEL: "loud", LLM_MAX_COST_PER_REQUEST: "-2" })
      expect(e.message).toContain(`corporate_llm.audit_level (from LLM_AUDIT_LEVEL): expected "full" | "redacted" | "hash", got "loud"`)
      expect(e.message).toContain("corporate_llm.max_cost_per_request_usd (from LLM_MAX_COST_PER_REQUEST): expected a non-negative number, got -2")
    }))

  it.scoped("never prints a secret it rejects", () =>
    Effect.gen(function*() {
      const e = yield* failure({ "tidyllm.yaml": "providers:\n  bedrock:\n    secret_access_key: 123456789\n" })
      expect(e.message).toContain("providers.bedrock.secret_access_key")
      expect(e.message).not.toContain("123456789")
    }))

  it.scoped("the environment overrides the file, and .env fills in below the environment", () =>
    Effect.gen(function*() {
      const loaded = yield* load(
        {
          "tidyllm.yaml": "corporate_llm:\n  budget_limit_daily_usd: 10\n  max_cost_per_request_usd: 1\nserver:\n  port: 9000\n",
          ".env": "# local settings\nLLM_DAILY_BUDGET_USD=30\nexport LLM_MAX_COST_PER_REQUEST=\"2.5\"\nHOST=0.0.0.0 # all interfaces\n"
        },
        { LLM_DAILY_BUDGET_USD: "25", PORT: "9090" }
      )
      expect(loaded.config.corporate_llm.budget_limit_daily_usd).toBe(25)
      expect(loaded.config.corporate_llm.max_cost_per_request_usd).toBe(2.5)
      expect(loaded.config.server.port).toBe(9090)
      expect(loaded.config.server.host).toBe("0.0.0.0")
      expect(loaded.file).toMatch(/tidyllm\.yaml$/)
      expect(loaded.dotenv).toMatch(/\.env$/)
    }))

  it.scoped("without AWS credentials the default provider is the mock, and the notes say so", () =>
    Effect.gen(function*() {
      const loaded = yield* load({}, { AWS_REGION: "eu-west-1" })
      expect(loaded.config.corporate_llm.default_provider).toBe("mock")
      expect(loaded.defaultProviderImplicit).toBe(true)
      expect(loaded.awsCredentials).toBe("none")
      expect(loaded.notes.join("\n")).toMatch(/mock/)
      expect(loaded.config.providers.bedrock?.region).toBe("eu-west-1")
    }))

  it.scoped("with AWS credentials the default provider is Bedrock, unless one is named", () =>
    Effect.gen(function*() {
      const keys = { AWS_ACCESS_KEY_ID: "AKIDEXAMPLE", AWS_SECRET_ACCESS_KEY: "secret-example" }
      const withKeys = yield* load({}, keys)
      expect(withKeys.config.corporate_llm.default_provider).toBe("bedrock")
      expect(withKeys.awsCredentials).toBe("static")
      const secret = withKeys.config.providers.bedrock?.secret_access_key
      expect(secret !== undefined && Redacted.value(secret)).toBe("secret-example")
      // Redacted: the secret never reaches a log line or a JSON dump of the config.
      expect(JSON.stringify(withKeys.config)).not.toContain("secret-example")
      const named = yield* load({}, { ...keys, LLM_DEFAULT_PROVIDER: "mock" })
      expect(named.config.corporate_llm.default_provider).toBe("mock")
      const profile = yield* load({}, { AWS_PROFILE: "dev" })
      expect(profile.config.corporate_llm.default_provider).toBe("bedrock")
      expect(profile.awsCredentials).toBe("chain")
    }))

  it.scoped("--config wins over TIDYLLM_CONFIG, and a named file that is missing is an error", () =>
    Effect.gen(function*() {
      const cwd = yield* dirWith({ "a.yaml": "server:\n  port: 1111\n", "b.yaml": "server:\n  port: 2222\n" })
      const run = (env: Load.Env, configPath?: string) => Load.load({ cwd, env, configPath }).pipe(Effect.provide(node))
      expect((yield* run({ TIDYLLM_CONFIG: "b.yaml" })).config.server.port).toBe(2222)
      expect((yield* run({ TIDYLLM_CONFIG: "b.yaml" }, "a.yaml")).config.server.port).toBe(1111)
      const missing = yield* Effect.flip(run({}, "nope.yaml"))
      expect(missing.message).toContain("config file not found")
      expect(Load.configPathFromArgv(["--no-migrate", "--config", "x.yaml"])).toBe("x.yaml")
      expect(Load.configPathFromArgv(["--config=y.yaml"])).toBe("y.yaml")
    }))

  it.scoped("invalid YAML is reported with its position", () =>
    Effect.gen(function*() {
      const e = yield* failure({ "tidyllm.yaml": "corporate_llm:\n  a: [1, 2\n" })
      expect(e.message).toMatch(/invalid YAML/)
    }))

  it("a team name that could not be a storage path or a budget scope is refused, naming it; a good one is taken", () => {
    const bad = Load.resolve({ corporate_llm: { teams: { "a/b": { budget_daily_usd: 1 } } } }, {})
    expect(Either.isLeft(bad) && bad.left.message).toContain("corporate_llm.teams.a/b: not an acceptable key")
    const good = Load.resolve({ corporate_llm: { teams: { "risk-desk.eu": { budget_daily_usd: 1, models: ["claude-3-haiku"] } } } }, {})
    expect(Either.isRight(good) && good.right.config.corporate_llm.teams["risk-desk.eu"]).toEqual({ budget_daily_usd: 1, models: ["claude-3-haiku"] })
  })

  it("the heap's growth is a whole percentage from 0 to 1000; anything else is refused, naming the setting", () => {
    for (const bad of [-1, 1001, 50.5, "lots"]) {
      const r = Load.resolve({ server: { heap_growth_percent: bad } }, {})
      expect(Either.isLeft(r) && r.left.message).toContain("server.heap_growth_percent")
    }
    const off = Load.resolve({ server: { heap_growth_percent: 0 } }, {})
    expect(Either.isRight(off) && off.right.config.server.heap_growth_percent).toBe(0)
    const env = Load.resolve({ server: { heap_growth_percent: 50 } }, { TIDYLLM_HEAP_GROWTH_PERCENT: "0" })
    expect(Either.isRight(env) && env.right.config.server.heap_growth_percent).toBe(0)
    const badEnv = Load.resolve(undefined, { TIDYLLM_HEAP_GROWTH_PERCENT: "half" })
    expect(Either.isLeft(badEnv) && badEnv.left.message).toContain("TIDYLLM_HEAP_GROWTH_PERCENT")
  })

  it("resolve is pure: embedded defaults with no file and no environment", () => {
    const r = Load.resolve(undefined, {})
    expect(Either.isRight(r)).toBe(true)
    if (Either.isRight(r)) {
      expect(r.right.config.server).toEqual({ host: "127.0.0.1", port: 8080, max_body_bytes: 1_048_576, auth: "auto", key_cache_seconds: 5, shutdown_grace_seconds: 10, heap_growth_percent: 100 })
      expect(r.right.config.storage.data_dir).toBe(".tidyllm")
      expect(r.right.config.corporate_llm.default_provider).toBe("mock")
    }
  })

  it("parses .env files", () => {
    expect(Load.parseDotenv([
      "A=1",
      "export B = two ",
      "C=\"line\\nbreak\" ",
      "D='single # not a comment'",
      "E=value # comment",
      "# F=commented",
      "G=\"multi",
      "line\""
    ].join("\n"))).toEqual({ A: "1", B: "two", C: "line\nbreak", D: "single # not a comment", E: "value", G: "multi\nline" })
  })
})

/**
 * The configuration reference in README.md is generated from the config schema
 * (`scripts/config-reference.mjs`, `pnpm docs:config`); here the same generator runs on the
 * sources, so a key added, renamed, re-typed or re-documented without regenerating fails.
 */
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Schema } from "effect"
import { Config } from "@tidyllm/core"
import { environmentOverrides } from "../src/config/Load.js"
import * as Reference from "../../../scripts/config-reference.mjs"

const sources = Reference.readSources(Reference.root)
const generated = Reference.generate({ config: Config, overrides: environmentOverrides, sources })
const readme = readFileSync(join(Reference.root, "README.md"), "utf8")

/** The table row of one key, split into its cells (key, type, default, environment, description). */
const row = (reference: string, key: string): ReadonlyArray<string> | undefined => {
  const line = reference.split("\n").find((l) => l.startsWith(`| \`${key}\` |`))
  return line?.split(/(?<!\\)\|/).slice(1, -1).map((c) => c.trim())
}

describe("config reference", () => {
  it("README.md holds exactly what the schema generates (run `pnpm docs:config` after changing the config schema)", () => {
    const current = Reference.extract(readme)
    expect(current, "README.md lacks the config-reference markers").toBeDefined()
    if (current !== generated) {
      expect.fail(["README.md's config reference is stale; run `pnpm docs:config`:", ...Reference.diff(current ?? "", generated)].join("\n"))
    }
  })

  it("lists every environment variable and every key, with type, default, secrecy and JSDoc", () => {
    for (const o of environmentOverrides) {
      expect(row(generated, o.path.join("."))?.[3], o.name).toContain(`\`${o.name}\``)
    }
    const walk = (fields: Readonly<Record<string, unknown>>, prefix: string) => {
      for (const key of Object.keys(fields)) expect(row(generated, `${prefix}${key}`), `${prefix}${key}`).toBeDefined()
    }
    walk(Config.ServerSettings.fields, "server.")
    walk(Config.StorageSettings.fields, "storage.")
    walk(Config.ObservabilitySettings.fields, "observability.")
    walk(Config.TeamSettings.fields, "corporate_llm.teams.<name>.")

    expect(row(generated, "server.shutdown_grace_seconds")).toEqual([
      "`server.shutdown_grace_seconds`", "number ≥ 0", "`10`", "`TIDYLLM_SHUTDOWN_GRACE_SECONDS`",
      "On SIGTERM/SIGINT, how long in-flight requests may finish before their connections are cut."
    ])
    expect(row(generated, "storage.database_url")?.[1]).toBe("string, **secret**")
    expect(row(generated, "server.admin_key")?.[1]).toBe("string of ≥ 32 characters, **secret**")
    expect(row(generated, "corporate_llm.audit_level")?.[1]).toBe("`full` \\| `redacted` \\| `hash`")
    expect(row(generated, "corporate_llm.budget_slice_fraction")?.slice(1, 3)).toEqual(["number 0–1", "`0.01`"])
    expect(row(generated, "corporate_llm.budget_slice_fraction")?.[4]).toMatch(/^Budget slices: a replica leases/)
    expect(row(generated, "storage.s3.bucket")?.slice(2, 4)).toEqual(["**required**", "`S3_BUCKET`"])
    expect(row(generated, "models[].id")?.[2]).toBe("**required**")
    // Two variables for one key: the one that wins (later in `environmentOverrides`) first.
    expect(row(generated, "providers.bedrock.region")?.[3]).toBe("`AWS_REGION`, `AWS_DEFAULT_REGION`")
    // Anthropic and OpenAI-compatible settings have the same keys; each row gets its own struct's doc.
    expect(row(generated, "providers.anthropic")?.[4]).toMatch(/^Anthropic/)
    expect(row(generated, "providers.openai_compatible.<name>.base_url")).toBeDefined()
  })

  it("changes when a key is added, so a key without `pnpm docs:config` fails the first test", () => {
    const ServerSettings = Schema.Struct({
      ...Config.ServerSettings.fields,
      drain_seconds: Schema.optionalWith(Schema.Number.pipe(Schema.nonNegative()), { default: () => 3 })
    })
    const GatewayConfig = Schema.Struct({
      ...Config.GatewayConfig.fields,
      server: Schema.optionalWith(ServerSettings, { default: () => Schema.decodeSync(ServerSettings)({}) })
    })
    const withKey = Reference.generate({ config: { ...Config, GatewayConfig }, overrides: environmentOverrides, sources })
    expect(withKey).not.toBe(generated)
    expect(row(withKey, "server.drain_seconds")?.slice(1, 3)).toEqual(["number ≥ 0", "`3`"])
  })

  it("refuses an environment variable that sets a key the schema does not have", () => {
    expect(() => Reference.generate({ config: Config, overrides: [...environmentOverrides, { name: "TIDYLLM_NOPE", path: ["server", "nope"] }], sources }))
      .toThrow(/TIDYLLM_NOPE → server\.nope/)
  })

  it("reads JSDoc past strings, regex literals and templates holding brackets", () => {
    const { structs, constDocs } = Reference.parseSource([
      "const re = /[{(]\\/*/g",
      "/** The thing. */",
      "export const Thing = Schema.Struct({",
      "  /** First, with a brace } in its doc. */",
      "  a: Schema.String.pipe(Schema.pattern(/^[}]+$/)),",
      "  b: dflt(Schema.Literal(\"{\", \"(\"), () => `${\"}\"}` as const),",
      "  // not a doc",
      "  /** Nested. */",
      "  c: Schema.Struct({ /** Deep. */ d: Schema.Number }),",
      "  /** Last. */ e: Schema.Boolean",
      "})"
    ].join("\n"))
    expect(constDocs.get("Thing")).toBe("The thing.")
    expect(structs.map((s) => [s.name, s.keys.join(",")])).toEqual([["Thing", "a,b,c,e"], ["Thing.c", "d"]])
    const [thing, nested] = structs
    expect(Object.fromEntries(thing?.docs ?? [])).toEqual({ a: "First, with a brace } in its doc.", c: "Nested.", e: "Last." })
    expect(nested?.doc).toBe("Nested.")
    expect(nested?.docs.get("d")).toBe("Deep.")
  })
})

/** `tidyllm keys create|list|revoke` and `tidyllm budget [--team] [--key]`, run in-process on embedded PGlite. */
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as SqlClient from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Option } from "effect"
import { Money } from "@tidyllm/core"
import { ApiKeys, BudgetLedger, CorporateLlmGateway } from "@tidyllm/corporate-llm"
import * as Load from "@tidyllm/server/config/Load"
import { PgApiKeys, PgliteClient } from "@tidyllm/store-pg"
import { services } from "../src/Root.js"
import { type Sandbox, sandboxes } from "./harness.js"

const fresh = sandboxes()

/** Every run opens the embedded database, which takes seconds on a busy machine. */
const slow = { timeout: 180_000 }

const DAY_MS = 86_400_000

/** A key as `keys list --json` and `keys create --json` show it. */
interface KeyJson {
  readonly id: string
  readonly name: string | null
  readonly team: string | null
  readonly role: string
  readonly status: string
  readonly created_at: string
  readonly created_by: string
  readonly expires_at: string | null
  readonly revoked_at: string | null
  readonly limits: Record<string, number>
}

/** Runs `f` with the sandbox's key store and SQL client (while no command holds the database). */
const onStore = <A>(s: Sandbox, f: (keys: ApiKeys.Service, sql: SqlClient.SqlClient) => Effect.Effect<A, unknown>) =>
  Effect.gen(function*() {
    return yield* f(yield* ApiKeys.ApiKeys, yield* SqlClient.SqlClient)
  }).pipe(
    Effect.provide(PgApiKeys.layer.pipe(Layer.provideMerge(PgliteClient.layer({ dataDir: join(s.env.TIDYLLM_DATA_DIR ?? "", "pgdata") })))),
    Effect.orDie
  )

const secretLine = /^ {2}secret {3}(tlk_[0-9a-f]{16}_[A-Za-z0-9_-]{43})$/m

describe("tidyllm keys", () => {
  const s = fresh()

  it.live("create prints the secret once; list shows the key active without it; the secret hashes to the stored hash; revoke → list --all shows it revoked", () =>
    Effect.gen(function*() {
      const created = yield* s.run([
        "keys", "create", "--role", "user", "--team", "risk-desk", "--name", "ci pipeline", "--expires-in-days", "30",
        "--budget-daily", "5", "--budget-monthly", "100.5", "--rpm", "60", "--tpm", "20000"
      ])
      expect(created.stderr).toBe("")
      expect(created.code).toBe(0)
      const secret = secretLine.exec(created.stdout)?.[1] ?? ""
      expect(secret).not.toBe("")
      // The secret is printed exactly once, with the warning beside it.
      expect(created.stdout.split(secret)).toHaveLength(2)
      expect(created.stdout).toContain("This secret is shown once and will not be shown again")
      const id = Option.getOrThrow(ApiKeys.idOfSecret(secret))
      expect(created.stdout).toMatch(new RegExp(`^API key ${id} created$`, "m"))
      expect(created.stdout).toMatch(new RegExp(`^ {2}id {7}${id}$`, "m"))
      expect(created.stdout).toMatch(/^ {2}team {5}risk-desk$/m)
      expect(created.stdout).toMatch(/^ {2}role {5}user$/m)
      expect(created.stdout).toMatch(/^ {2}expires {2}\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/m)
      expect(created.stdout).toMatch(/^ {2}limits {3}\$5\.00\/day, \$100\.50\/month, 60 req\/min, 20000 tok\/min$/m)

      // The store holds the secret's SHA-256 (never the secret), and finds the key by it.
      const stored = yield* onStore(s, (keys, sql) =>
        Effect.gen(function*() {
          const rows = yield* sql<{ readonly hash: string }>`SELECT hash FROM api_keys WHERE id = ${id}`
          const found = yield* keys.findByHash(ApiKeys.hashSecret(secret))
          const wrong = yield* keys.findByHash(ApiKeys.hashSecret(`${secret}x`))
          return { hashes: rows.map((r) => r.hash), found, wrong }
        }))
      expect(stored.hashes).toEqual([ApiKeys.hashSecret(secret)])
      expect(Option.isNone(stored.wrong)).toBe(true)
      const key = Option.getOrThrow(stored.found)
      expect(key).toMatchObject({
        id, name: "ci pipeline", team: "risk-desk", role: "user", created_by: "cli",
        limits: { budget_daily_usd: 5, budget_monthly_usd: 100.5, requests_per_minute: 60, tokens_per_minute: 20000 }
      })
      expect(key.revoked_at).toBeUndefined()
      expect(Math.abs((key.expires_at?.getTime() ?? 0) - (key.created_at.getTime() + 30 * DAY_MS))).toBeLessThan(120_000)

      // A team-less admin key, as JSON: the shape of POST /v1/keys; the warning goes to stderr.
      const admin = yield* s.run(["keys", "create", "--role", "admin", "--json"])
      expect(admin.code).toBe(0)
      const adminJson = JSON.parse(admin.stdout) as { key: KeyJson; secret: string }
      expect(adminJson.key).toMatchObject({ role: "admin", team: null, name: null, status: "active", created_by: "cli", expires_at: null, revoked_at: null, limits: {} })
      expect(ApiKeys.idOfSecret(adminJson.secret)).toEqual(Option.some(adminJson.key.id))
      expect(admin.stderr).toContain("will not be shown again")

      const listed = yield* s.run(["keys", "list"])
      expect(listed.code).toBe(0)
      const [header, ...rows] = listed.stdout.split("\n")
      expect(header).toMatch(/^id +name +team +role +status +created \(UTC\) +expires \(UTC\) +limits$/)
      expect(rows).toHaveLength(2)
      // Newest first.
      expect(rows[0]).toMatch(new RegExp(`^${adminJson.key.id} +- +- +admin +active +\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d +never +-$`))
      expect(rows[1]).toMatch(new RegExp(`^${id} +ci pipeline +risk-desk +user +active +\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d +\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d +\\$5\\.00/day, \\$100\\.50/month, 60 req/min, 20000 tok/min$`))
      const listedJson = yield* s.run(["keys", "list", "--json"])
      for (const out of [listed.stdout, listedJson.stdout]) {
        for (const hidden of [secret, adminJson.secret, ApiKeys.hashSecret(secret), ApiKeys.hashSecret(adminJson.secret)]) {
          expect(out).not.toContain(hidden)
        }
      }
      const keysJson = (JSON.parse(listedJson.stdout) as { keys: ReadonlyArray<KeyJson> }).keys
      expect(keysJson.map((k) => [k.id, k.status])).toEqual([[adminJson.key.id, "active"], [id, "active"]])
      expect(Object.keys(keysJson[1] ?? {}).sort()).toEqual(["created_at", "created_by", "expires_at", "id", "limits", "name", "revoked_at", "role", "status", "team"])
      const team = JSON.parse((yield* s.run(["keys", "list", "--team", "risk-desk", "--json"])).stdout) as { keys: ReadonlyArray<KeyJson> }
      expect(team.keys.map((k) => k.id)).toEqual([id])

      const revoked = yield* s.run(["keys", "revoke", id])
      expect(revoked.code).toBe(0)
      expect(revoked.stdout).toMatch(new RegExp(`^✓ API key ${id} revoked at \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d UTC$`, "m"))
      const again = yield* s.run(["keys", "revoke", id])
      expect(again.code).toBe(0)
      expect(again.stdout).toMatch(new RegExp(`^API key ${id} was already revoked at `))

      const active = JSON.parse((yield* s.run(["keys", "list", "--json"])).stdout) as { keys: ReadonlyArray<KeyJson> }
      expect(active.keys.map((k) => k.id)).toEqual([adminJson.key.id])
      const all = yield* s.run(["keys", "list", "--all"])
      expect(all.stdout.split("\n").find((l) => l.startsWith(id))).toMatch(/ user +revoked +/)
      const allJson = JSON.parse((yield* s.run(["keys", "list", "--all", "--json"])).stdout) as { keys: ReadonlyArray<KeyJson> }
      const gone = allJson.keys.find((k) => k.id === id)
      expect(gone?.status).toBe("revoked")
      expect(gone?.revoked_at).toMatch(/^\d{4}-\d\d-\d\dT/)
      // The store agrees: the key is unusable.
      const after = yield* onStore(s, (keys) => keys.findByHash(ApiKeys.hashSecret(secret)))
      expect(ApiKeys.unusable(Option.getOrThrow(after), new Date())).toEqual(Option.some("revoked"))
    }), slow)

  it.live("an expired key is listed as expired; revoking an unknown id is a not_found error with exit code 1", () =>
    Effect.gen(function*() {
      const { secret } = yield* onStore(s, (keys) =>
        Effect.gen(function*() {
          const g = ApiKeys.generate()
          yield* keys.create({ id: g.id, hash: g.hash, role: "approver", team: "quants", created_by: "test", expires_at: new Date(Date.now() - 1000), limits: {} })
          return g
        }))
      const id = Option.getOrThrow(ApiKeys.idOfSecret(secret))
      const listed = yield* s.run(["keys", "list", "--team", "quants"])
      expect(listed.stdout.split("\n")[1]).toMatch(new RegExp(`^${id} +- +quants +approver +expired `))

      const unknown = yield* s.run(["keys", "revoke", "0123456789abcdef"])
      expect(unknown.code).toBe(1)
      expect(unknown.stderr).toBe("error: not_found: no API key '0123456789abcdef' (tidyllm keys list --all shows them)")
      expect(unknown.stdout).toBe("")
    }), slow)
})

describe("tidyllm keys: bad options", () => {
  const s = fresh()

  it.live("a bad role, team, number or expiry is a usage error naming the option (exit 2), and creates nothing", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<readonly [ReadonlyArray<string>, string]> = [
        [["--role", "boss"], "error: usage: --role: 'boss' is not a role; one of: user, approver, compliance, admin"],
        [["--role", "user", "--team", "risk desk"], "error: usage: --team: a team name is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"],
        [["--role", "user", "--team", "-leading"], "error: usage: --team: a team name is"],
        [["--role", "user", "--team", "x".repeat(65)], "error: usage: --team: a team name is"],
        [["--role", "user", "--budget-daily", "lots"], "error: usage: --budget-daily: expected an amount of dollars"],
        [["--role", "user", "--budget-monthly", "-5"], "error: usage: --budget-monthly: expected an amount of dollars"],
        [["--role", "user", "--budget-daily", "1e3"], "error: usage: --budget-daily: expected an amount of dollars"],
        [["--role", "user", "--rpm", "1.5"], "error: usage: --rpm: expected a whole number greater than 0, not '1.5'"],
        [["--role", "user", "--rpm", "0"], "error: usage: --rpm: expected a whole number greater than 0, not '0'"],
        [["--role", "user", "--tpm", "many"], "error: usage: --tpm: expected a whole number greater than 0"],
        [["--role", "user", "--expires-in-days", "soon"], "error: usage: --expires-in-days: expected a number of days"],
        [["--role", "user", "--expires-in-days", "5000"], "error: usage: --expires-in-days: "],
        [["--role", "user", "--expires-at", "tomorrow"], "error: usage: --expires-at: expires_at must be an ISO 8601 date-time with a zone"],
        [["--role", "user", "--expires-at", "2020-01-01T00:00:00Z"], "error: usage: --expires-at: expires_at 2020-01-01T00:00:00Z is in the past"],
        [["--role", "user", "--expires-at", "2099-01-01T00:00:00Z", "--expires-in-days", "3"], "error: usage: --expires-at: give --expires-at or --expires-in-days, not both"],
        [["--role", "user", "--name", ""], "error: usage: --name: "],
        [[], "--role"]
      ]
      for (const [args, message] of cases) {
        const r = yield* s.run(["keys", "create", ...args])
        expect(r.code, args.join(" ")).toBe(2)
        expect(r.stderr, args.join(" ")).toContain(message)
        expect(r.stdout, args.join(" ")).not.toMatch(/tlk_/)
      }
      const none = yield* s.run(["keys"])
      expect(none.code).toBe(2)
      expect(none.stderr).toContain("keys needs a subcommand")
      const revokeNothing = yield* s.run(["keys", "revoke"])
      expect(revokeNothing.code).toBe(2)

      const listed = JSON.parse((yield* s.run(["keys", "list", "--all", "--json"])).stdout) as { keys: ReadonlyArray<KeyJson> }
      expect(listed.keys).toEqual([])
      expect((yield* s.run(["keys", "list"])).stdout).toBe("no API keys (revoked ones: add --all)")
    }), slow)
})

describe("tidyllm budget", () => {
  const s = fresh()
  const config = join(s.dir, "budget.yaml")
  // Slices off, so the ledger's rows are exactly what the test reserves and settles.
  writeFileSync(config, [
    "corporate_llm:",
    "  budget_limit_daily_usd: 100",
    "  budget_limit_monthly_usd: 1000",
    "  budget_slice_fraction: 0",
    "  teams:",
    "    risk-desk:",
    "      budget_daily_usd: 10",
    "      budget_monthly_usd: 200",
    "    quants:",
    "      budget_daily_usd: 20",
    ""
  ].join("\n"))
  const run = (args: ReadonlyArray<string>) => s.run(["--config", config, ...args])

  interface BudgetJson {
    readonly budgets: ReadonlyArray<{
      readonly scope: string
      readonly period: string
      readonly period_start: string
      readonly limit_usd: string
      readonly spent_usd: string
      readonly reserved_usd: string
      readonly remaining_usd: string
    }>
  }
  const budgets = (stdout: string) =>
    (JSON.parse(stdout) as BudgetJson).budgets.map((b) => [b.scope, b.period, b.limit_usd, b.spent_usd, b.reserved_usd, b.remaining_usd])

  /** The gateway and ledger the commands build (same configuration, same database), while no command holds it. */
  const withLedger = <A>(f: (gateway: CorporateLlmGateway.Service, ledger: BudgetLedger.Service, keys: ApiKeys.Service) => Effect.Effect<A, unknown>) =>
    Effect.gen(function*() {
      const loaded = yield* Load.load({ configPath: config, env: s.env, cwd: join(s.dir, "work") })
      return yield* Effect.gen(function*() {
        return yield* f(yield* CorporateLlmGateway.CorporateLlmGateway, yield* BudgetLedger.BudgetLedger, yield* ApiKeys.ApiKeys)
      }).pipe(Effect.provide(services(loaded)))
    }).pipe(Effect.provide(NodeContext.layer), Effect.orDie)

  it.live("shows the global budgets and every configured team's with what was spent and reserved; --team one team; --key a key's own", () =>
    Effect.gen(function*() {
      const created = yield* run(["keys", "create", "--role", "user", "--team", "risk-desk", "--budget-daily", "2", "--json"])
      expect(created.code).toBe(0)
      const keyId = (JSON.parse(created.stdout) as { key: KeyJson }).key.id

      // A risk-desk request by that key: reserved $1.25, settled at $0.75. A quants request still in flight: $0.50 reserved.
      yield* withLedger((gateway, ledger, keys) =>
        Effect.gen(function*() {
          const key = Option.getOrThrow(yield* keys.get(keyId))
          const done = yield* ledger.reserve({ scopes: gateway.scopes(ApiKeys.callerOf(key)), amount: Money.fromUsd(1.25), request_id: "t-1", ttl_ms: 3_600_000 })
          yield* ledger.settle(done, Money.fromUsd(0.75))
          yield* ledger.reserve({ scopes: gateway.scopes({ team: "quants" }), amount: Money.fromUsd(0.5), request_id: "t-2", ttl_ms: 3_600_000 })
        }))

      const all = yield* run(["budget", "--json"])
      expect(all.stderr).toBe("")
      expect(all.code).toBe(0)
      expect(budgets(all.stdout)).toEqual([
        ["global", "day", "100.000000000", "0.750000000", "0.500000000", "98.750000000"],
        ["global", "month", "1000.000000000", "0.750000000", "0.500000000", "998.750000000"],
        ["team:risk-desk", "day", "10.000000000", "0.750000000", "0.000000000", "9.250000000"],
        ["team:risk-desk", "month", "200.000000000", "0.750000000", "0.000000000", "199.250000000"],
        ["team:quants", "day", "20.000000000", "0.000000000", "0.500000000", "19.500000000"]
      ])
      const now = new Date().toISOString()
      const starts = (JSON.parse(all.stdout) as BudgetJson).budgets.map((b) => b.period_start)
      expect(starts).toEqual([now.slice(0, 10), `${now.slice(0, 7)}-01`, now.slice(0, 10), `${now.slice(0, 7)}-01`, now.slice(0, 10)])

      const human = yield* run(["budget"])
      expect(human.code).toBe(0)
      const [header, ...rows] = human.stdout.split("\n")
      expect(header).toMatch(/^scope +period +period start +limit +spent +reserved +remaining +used$/)
      expect(rows).toHaveLength(5)
      expect(rows[0]).toMatch(/^global +day +\d{4}-\d\d-\d\d +\$100\.00 +\$0\.75 +\$0\.50 +\$98\.75 +1\.25 %$/)
      expect(rows[2]).toMatch(/^team:risk-desk +day +\d{4}-\d\d-\d\d +\$10\.00 +\$0\.75 +\$0\.00 +\$9\.25 +7\.50 %$/)
      expect(rows[4]).toMatch(/^team:quants +day +\d{4}-\d\d-\d\d +\$20\.00 +\$0\.00 +\$0\.50 +\$19\.50 +2\.50 %$/)

      const quants = yield* run(["budget", "--team", "quants", "--json"])
      expect(budgets(quants.stdout).map(([scope, period]) => `${scope}@${period}`)).toEqual(["global@day", "global@month", "team:quants@day"])

      const withKey = yield* run(["budget", "--team", "risk-desk", "--key", keyId, "--json"])
      expect(withKey.code).toBe(0)
      expect(budgets(withKey.stdout)).toEqual([
        ["global", "day", "100.000000000", "0.750000000", "0.500000000", "98.750000000"],
        ["global", "month", "1000.000000000", "0.750000000", "0.500000000", "998.750000000"],
        ["team:risk-desk", "day", "10.000000000", "0.750000000", "0.000000000", "9.250000000"],
        ["team:risk-desk", "month", "200.000000000", "0.750000000", "0.000000000", "199.250000000"],
        [`key:${keyId}`, "day", "2.000000000", "0.750000000", "0.000000000", "1.250000000"]
      ])

      const unknownTeam = yield* run(["budget", "--team", "nope"])
      expect(unknownTeam.code).toBe(2)
      expect(unknownTeam.stderr).toBe("error: usage: --team: team 'nope' has no budget: corporate_llm.teams has risk-desk, quants")
      const unknownKey = yield* run(["budget", "--key", "0123456789abcdef"])
      expect(unknownKey.code).toBe(1)
      expect(unknownKey.stderr).toContain("error: not_found: no API key '0123456789abcdef'")

      // A key without budgets of its own says so.
      const plain = JSON.parse((yield* run(["keys", "create", "--role", "user", "--json"])).stdout) as { key: KeyJson }
      const noBudget = yield* run(["budget", "--team", "quants", "--key", plain.key.id])
      expect(noBudget.code).toBe(0)
      expect(noBudget.stdout.split("\n").at(-1)).toBe(`API key ${plain.key.id} has no budget of its own`)
    }), slow)
})

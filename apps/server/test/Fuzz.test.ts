/**
 * Property-based fuzzing of every route of the running server (127.0.0.1, embedded PGlite, the
 * mock provider) over raw TCP: random JSON, valid requests with fields mutated to wrong types or
 * hostile values, deep nesting, long strings, NUL and unpaired surrogates, invalid UTF-8, random
 * identity, authorization and request-id headers, weird path ids and query strings (the audit
 * query's filters too). The server runs in keys mode: most requests carry the bootstrap admin key
 * or a team user's key, the rest a hostile or broken `Authorization` header.
 *
 * Properties: no 5xx, ever; every 4xx is the JSON error envelope with a type and a message; the
 * server still answers `/health/live` afterwards; every audit row decodes (the store's own schema)
 * and is well-formed; every request to a gateway #1/#2 route that the app read has its audit row;
 * no budget reservation is left open, and the day's spend equals the sum of the audited costs.
 *
 * The seed is fixed: a failure is replayed by running the suite again (fast-check prints the
 * shrunk counterexample and its path).
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { expect, layer } from "@effect/vitest"
import { Effect, Layer, Schema } from "effect"
import fc from "fast-check"
import { Money } from "@tidyllm/core"
import { AuditLog, BudgetLedger, CorporateLlmGateway } from "@tidyllm/corporate-llm"
import * as Testing from "../src/Testing.js"
import { send, type RawRequest, type RawResponse } from "./rawHttp.js"

const SEED = 20_251_127
/** Runs of the property; each run sends {@link BATCH} requests at once. */
const RUNS = 300
const BATCH = 4

const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "tidyllm-fuzz-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

const ADMIN = "bootstrap-admin-key-for-the-fuzz-test-0000000000000000"
/** Stands for the team user's key, created once the server is up. */
const USER_KEY = "<user key>"

const ServerLive = Layer.unwrapScoped(Effect.map(tempDir, (dir) =>
  Testing.layer(Testing.config(dir, { server: { admin_key: ADMIN }, corporate_llm: { teams: { fuzz: { budget_daily_usd: 50 } } } }))))

// --- Values -------------------------------------------------------------------------------------

const specials = [
  "\u0000", "a\u0000b", "\ud800", "x\udfff", "\udc00\ud800", "\u0007", "\u001b[31m", "\r\n", "\t", "\u007f", "\u202e", "\ufeff", "\uffff",
  "'; DROP TABLE llm_audit_log; --", "\" OR \"1\"=\"1", "%00", "%s%n", "${jndi:ldap://x}", "<script>alert(1)</script>", "../../etc/passwd",
  "claude-3-haiku", "titan-embed", "mock", "nowhere", "", " ", "🙂", "𝕏", "é", "null", "true", "1e400", "NaN"
]

/** Strings that break things: specials, any code points, mixes of both, long runs. */
const hostileString: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...specials) },
  { weight: 3, arbitrary: fc.string({ maxLength: 40 }) },
  { weight: 2, arbitrary: fc.string({ unit: "binary", maxLength: 20 }) },
  { weight: 3, arbitrary: fc.tuple(fc.string({ maxLength: 10 }), fc.constantFrom(...specials), fc.string({ maxLength: 10 })).map((parts) => parts.join("")) },
  { weight: 1, arbitrary: fc.string({ unit: "grapheme-ascii", minLength: 200, maxLength: 400 }) }
)

/**
 * Long strings: random ones past a name's limit (256) and, being incompressible, past what a
 * Postgres index entry holds (2,704 bytes); repeated characters far into the body's limit.
 */
const longString: fc.Arbitrary<string> = fc.oneof(
  { weight: 2, arbitrary: fc.string({ unit: "grapheme-ascii", minLength: 2_000, maxLength: 4_000 }) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom("a", "é", "🙂", "\u0000", " "), fc.integer({ min: 10_000, max: 200_000 })).map(([c, n]) => c.repeat(n)) }
)

const hostileNumber: fc.Arbitrary<number> = fc.oneof(
  fc.constantFrom(-1, 0, 0.5, 1, 2, 2.0000001, -0.5, 1.5, 4096, 4097, 1_000_000, 1_000_001, 1e15, Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER, 1e308, 5e-324),
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true })
)

/** Any value a field could be given, hostile ones first. */
const hostileValue: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 4, arbitrary: hostileString },
  { weight: 3, arbitrary: hostileNumber },
  { weight: 1, arbitrary: fc.constantFrom<unknown>(null, true, false, [], {}, [null], { "": "" }) },
  { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 80 }).map((d) => JSON.parse(`${"[".repeat(d)}${"]".repeat(d)}`) as unknown) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 80 }).map((d) => JSON.parse(`${"{\"a\":".repeat(d)}1${"}".repeat(d)}`) as unknown) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 12_000 }).map((n) => Array.from({ length: n }, (_, i) => i)) },
  { weight: 1, arbitrary: fc.array(fc.record({ role: fc.constantFrom("user", "system", "assistant", "tool", "bogus"), content: messageContent() }), { maxLength: 4 }) }
)

/** What a message's `content` could be given (a function so that `hostileValue` above can use it). */
function messageContent(): fc.Arbitrary<unknown> {
  return fc.oneof(hostileString, hostileNumber, fc.constant(null), fc.array(fc.record({ type: fc.constantFrom("text", "image_url"), text: hostileString }), { maxLength: 3 }))
}

// --- Requests -----------------------------------------------------------------------------------

type Json = null | boolean | number | string | ReadonlyArray<Json> | { readonly [key: string]: Json }

const step = (id: string, depends: ReadonlyArray<string> = []) => ({ id, type: "task", depends_on: depends })
const workflow = { name: "fuzz", type: "hierarchical_dag", steps: [step("a"), step("b", ["a"]), step("c", ["b"])] }

/** A valid body per route: mutated, it becomes the interesting invalid one. */
const templates: Readonly<Record<string, Json>> = {
  chat: { model: "claude-3-haiku", messages: [{ role: "system", content: "be terse" }, { role: "user", content: "hi" }], max_tokens: 64, temperature: 0.2, metadata: { reason: "fuzz" } },
  embeddings: { model: "titan-embed", input: ["one", "two"], reason: "fuzz" },
  llm: { prompt: "hi", model: "claude-3-haiku", max_tokens: 64, reason: "fuzz" },
  ai: { messages: [{ role: "user", content: "hi" }], model: "claude-3-haiku", temperature: 0.1, use_cache: true, reason: "fuzz" },
  workflow: { workflow, reason: "fuzz", optimization_level: "medium" },
  store: { workflow, reason: "fuzz" },
  decision: { comment: "looks fine" }
}

/** Every path into a JSON value (objects and arrays), the root included. */
const pathsOf = (value: Json, prefix: ReadonlyArray<string | number> = []): Array<ReadonlyArray<string | number>> => {
  const out: Array<ReadonlyArray<string | number>> = [prefix]
  if (Array.isArray(value)) value.forEach((v: Json, i) => out.push(...pathsOf(v, [...prefix, i])))
  else if (typeof value === "object" && value !== null) for (const [k, v] of Object.entries(value)) out.push(...pathsOf(v, [...prefix, k]))
  return out
}

type Mutation =
  | { readonly kind: "set"; readonly path: ReadonlyArray<string | number>; readonly value: unknown }
  | { readonly kind: "delete"; readonly path: ReadonlyArray<string | number> }
  | { readonly kind: "add"; readonly path: ReadonlyArray<string | number>; readonly key: string; readonly value: unknown }

const at = (value: Json, path: ReadonlyArray<string | number>): Json | undefined => {
  let current: Json | undefined = value
  for (const segment of path) current = typeof current === "object" && current !== null ? (current as Record<string | number, Json>)[segment] : undefined
  return current
}

/**
 * A change to a valid body. Most keep the field's type (a hostile string where a string was, an
 * odd number where a number was), so the request stays valid and carries the value all the way
 * to the provider, the store and the audit row; the others break the shape.
 */
const mutation = (template: Json): fc.Arbitrary<Mutation> => {
  const paths = pathsOf(template)
  const strings = paths.filter((p) => typeof at(template, p) === "string")
  const numbers = paths.filter((p) => typeof at(template, p) === "number")
  return fc.oneof(
    { weight: 5, arbitrary: fc.record({ kind: fc.constant("set" as const), path: fc.constantFrom(...strings), value: fc.oneof({ weight: 3, arbitrary: hostileString }, { weight: 2, arbitrary: longString }) }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant("set" as const), path: fc.constantFrom(...numbers.length > 0 ? numbers : strings), value: hostileNumber }) },
    { weight: 3, arbitrary: fc.record({ kind: fc.constant("set" as const), path: fc.constantFrom(...paths), value: hostileValue }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant("delete" as const), path: fc.constantFrom(...paths.filter((p) => p.length > 0)) }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant("add" as const), path: fc.constantFrom(...paths), key: hostileString, value: hostileValue }) }
  )
}

const apply = (template: Json, mutations: ReadonlyArray<Mutation>): unknown => {
  let root = structuredClone(template) as unknown
  for (const m of mutations) {
    if (m.path.length === 0) {
      if (m.kind === "set") root = m.value
      else if (m.kind === "add" && typeof root === "object" && root !== null && !Array.isArray(root)) (root as Record<string, unknown>)[m.key] = m.value
      continue
    }
    let parent: unknown = root
    for (const segment of m.path.slice(0, -1)) parent = typeof parent === "object" && parent !== null ? (parent as Record<string | number, unknown>)[segment] : undefined
    if (typeof parent !== "object" || parent === null) continue
    const last = m.path[m.path.length - 1] as string | number
    const target = parent as Record<string | number, unknown>
    if (m.kind === "set") target[last] = m.value
    else if (m.kind === "delete") delete target[last]
    else {
      const child = target[last]
      if (typeof child === "object" && child !== null && !Array.isArray(child)) (child as Record<string, unknown>)[m.key] = m.value
    }
  }
  return root
}

/** The body as bytes, sometimes damaged: truncated, a byte flipped, invalid UTF-8 spliced in. */
const damaged = (text: string): fc.Arbitrary<string | Buffer> =>
  fc.oneof(
    { weight: 8, arbitrary: fc.constant(text) },
    { weight: 1, arbitrary: fc.nat({ max: Math.max(0, text.length) }).map((n) => text.slice(0, n)) },
    {
      weight: 1,
      arbitrary: fc.tuple(fc.nat({ max: Math.max(0, text.length) }), fc.uint8Array({ minLength: 1, maxLength: 4 })).map(([at, bytes]) => {
        const raw = Buffer.from(text, "utf8")
        const cut = Math.min(at, raw.length)
        return Buffer.concat([raw.subarray(0, cut), Buffer.from(bytes), raw.subarray(cut)])
      })
    },
    { weight: 1, arbitrary: fc.constantFrom(`{"max_tokens":1e400,"prompt":"x","reason":"r"}`, "{", "[]", "null", "\"\"", "0", "{\"a\":NaN}", "\uFEFF{}", "{}{}") }
  )

/**
 * The template with one field replaced by JSON nested far beyond the limit (deep enough to
 * overflow anything recursive), built as text: this test's own `JSON.stringify` would overflow too.
 */
const deepBody = (template: Json): fc.Arbitrary<string> => {
  const keys = typeof template === "object" && template !== null && !Array.isArray(template) ? Object.keys(template) : []
  return fc.record({
    key: fc.constantFrom(...keys, "metadata", "extra"),
    depth: fc.integer({ min: 5_000, max: 30_000 }),
    array: fc.boolean()
  }).map(({ array, depth, key }) => {
    const deep = array ? `${"[".repeat(depth)}"x"${"]".repeat(depth)}` : `${"{\"a\":".repeat(depth)}"x"${"}".repeat(depth)}`
    // A repeated key: the last one wins.
    return `${JSON.stringify(template).slice(0, -1)},${JSON.stringify(key)}:${deep}}`
  })
}

const bodyFor = (template: Json): fc.Arbitrary<string | Buffer> =>
  fc.oneof(
    { weight: 2, arbitrary: deepBody(template) },
    { weight: 6, arbitrary: fc.array(mutation(template), { minLength: 1, maxLength: 3 }).map((ms) => JSON.stringify(apply(template, ms)) ?? "null") },
    { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v)) },
    { weight: 1, arbitrary: fc.constant(JSON.stringify(template)) }
  ).chain(damaged)

/** Header values a client can put on the wire (Node refuses some: that is part of the test). */
const headerValue: fc.Arbitrary<string | Buffer> = fc.oneof(
  { weight: 6, arbitrary: fc.stringMatching(/^[ -~]{1,40}$/) },
  { weight: 4, arbitrary: fc.constantFrom("alice", "platform", "approver", "compliance", "fuzz reason", "'; DROP TABLE llm_audit_log; --") },
  { weight: 1, arbitrary: fc.integer({ min: 200, max: 400 }).map((n) => "h".repeat(n)) },
  { weight: 1, arbitrary: fc.constantFrom("a\tb", "a\u0001b", "a\u007fb", "a\rb", "a\u0000b") },
  { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 8 }).map((b) => Buffer.from(b.map((x) => (x === 10 || x === 13 ? 32 : x)))) }
)

/** No extra headers half the time (so the body's problems are reached), else a few of these. */
const identityHeaders: fc.Arbitrary<ReadonlyArray<readonly [string, string | Buffer]>> = fc.oneof(
  fc.constant([]),
  fc.subarray(["x-tidyllm-user", "x-tidyllm-team", "x-tidyllm-role", "x-tidyllm-reason", "content-type", "x-forwarded-for", "x-request-id"], { maxLength: 3 })
    .chain((names) => fc.tuple(...names.map((name) => headerValue.map((v) => [name, v] as const))))
)

/** A path segment: a plausible id, any string percent-encoded, or raw bytes (Node may refuse the line). */
const idSegment: fc.Arbitrary<string | Buffer> = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom("fst", "a", "wf-1", "x.y", "..", ".hidden", "%00", "%2e%2e%2f", "%E0%A4%A", "%ZZ", "a%00b", "00000000-0000-0000-0000-000000000000") },
  { weight: 3, arbitrary: hostileString.map((s) => encodeURIComponent(s.replace(/[\ud800-\udfff]/g, "x")).slice(0, 300)) },
  { weight: 2, arbitrary: fc.uuid() },
  { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 6 }).map((b) => Buffer.from(b)) }
)

/** A query string over `names` (and a few unknown ones), with hostile values percent-encoded. */
const queryOf = (...names: ReadonlyArray<string>): fc.Arbitrary<string> => {
  const value = fc.oneof(
    fc.constantFrom("1", "0", "-1", "1e400", "100000", "2025-01-31", "2025-01-31T12:00:00Z", "success", "error,stream_error", "csv", "json", "fst", "%", "_", "\\"),
    hostileString
  ).map((s) => encodeURIComponent(s.replace(/[\ud800-\udfff]/g, "x")).slice(0, 300))
  return fc.array(fc.tuple(fc.constantFrom(...names, "x", ""), value), { maxLength: 4 })
    .map((pairs) => (pairs.length === 0 ? "" : `?${pairs.map(([k, v]) => `${k}=${v}`).join("&")}`))
}
const queryString = queryOf("version", "workflow_id", "status", "limit")
const auditQuery = queryOf("from", "to", "team", "key_id", "model", "provider", "status", "reason", "request_id", "limit", "cursor", "format")

const keysQuery = queryOf("team", "include_revoked")
const budgetQuery = queryOf("team", "key_id")

/** The `Authorization` header: mostly a good key, else broken in the ways clients and attackers break it. */
const authorization: fc.Arbitrary<string | Buffer | undefined> = fc.oneof(
  { weight: 8, arbitrary: fc.constant(`Bearer ${ADMIN}`) },
  { weight: 4, arbitrary: fc.constant(`Bearer ${USER_KEY}`) },
  { weight: 1, arbitrary: fc.constant(undefined) },
  { weight: 1, arbitrary: fc.constantFrom("Bearer", "Bearer ", "Basic YWxhZGRpbjpvcGVuc2VzYW1l", `Bearer ${ADMIN}x`, `bearer   ${ADMIN}`, `Bearer ${ADMIN} extra`, "Bearer tlk_0123456789abcdef_", `Bearer tlk_0123456789abcdef_${"A".repeat(43)}`, "Bearer ' OR 1=1 --") },
  { weight: 1, arbitrary: headerValue.map((v) => (Buffer.isBuffer(v) ? Buffer.concat([Buffer.from("Bearer "), v]) : `Bearer ${v}`)) }
)

const target = (prefix: string, segment: string | Buffer, suffix = "") =>
  Buffer.isBuffer(segment) ? Buffer.concat([Buffer.from(prefix), segment, Buffer.from(suffix)]) : `${prefix}${segment}${suffix}`

/** A generated request and what the checks need to know of it. */
interface FuzzCase {
  readonly route: string
  readonly method: string
  readonly target: string | Buffer
  readonly body?: string | Buffer | undefined
  readonly headers: ReadonlyArray<readonly [string, string | Buffer]>
  /** A gateway #1/#2 route: a request the app read must leave an audit row. */
  readonly audited: boolean
  readonly authorization?: string | Buffer | undefined
}

const post = (route: string, path: string, template: Json, audited: boolean): fc.Arbitrary<FuzzCase> =>
  fc.record({ body: bodyFor(template), headers: identityHeaders }).map(({ body, headers }) => ({ route, method: "POST", target: path, body, headers, audited }))

/** Every route, weighted towards the ones that take a body. */
const routes: ReadonlyArray<readonly [number, fc.Arbitrary<FuzzCase>]> = [
  [3, post("POST /v1/chat/completions", "/v1/chat/completions", templates["chat"] ?? null, true)],
  [3, post("POST /v1/embeddings", "/v1/embeddings", templates["embeddings"] ?? null, true)],
  [3, post("POST /v1/llm", "/v1/llm", templates["llm"] ?? null, true)],
  [3, post("POST /v1/ai", "/v1/ai", templates["ai"] ?? null, true)],
  [3, fc.constantFrom("validate", "analyze", "optimize").chain((op) => post(`POST /v1/workflows/${op}`, `/v1/workflows/${op}`, templates["workflow"] ?? null, false))],
  [2, fc.record({ id: idSegment, body: bodyFor(templates["store"] ?? null), headers: identityHeaders })
    .map(({ body, headers, id }) => ({ route: "PUT /v1/workflows/:id", method: "PUT", target: target("/v1/workflows/", id), body, headers, audited: false }))],
  [1, fc.record({ id: idSegment, q: queryString, headers: identityHeaders })
    .map(({ headers, id, q }) => ({ route: "GET /v1/workflows/:id", method: "GET", target: target("/v1/workflows/", id, q), headers, audited: false }))],
  [1, fc.record({ q: queryString, headers: identityHeaders })
    .map(({ headers, q }) => ({ route: "GET /v1/workflows", method: "GET", target: `/v1/workflows${q}`, headers, audited: false }))],
  [1, fc.record({ q: queryString, headers: identityHeaders })
    .map(({ headers, q }) => ({ route: "GET /v1/agreements", method: "GET", target: `/v1/agreements${q}`, headers, audited: false }))],
  [1, fc.record({ id: idSegment, headers: identityHeaders })
    .map(({ headers, id }) => ({ route: "GET /v1/agreements/:id", method: "GET", target: target("/v1/agreements/", id), headers, audited: false }))],
  [1, fc.record({ id: idSegment, decision: fc.constantFrom("approve", "reject"), body: fc.option(bodyFor(templates["decision"] ?? null), { nil: undefined }), headers: identityHeaders })
    .map(({ body, decision, headers, id }) => ({ route: `POST /v1/agreements/:id/${decision}`, method: "POST", target: target("/v1/agreements/", id, `/${decision}`), body, headers, audited: false }))],
  [2, fc.record({ q: auditQuery, headers: identityHeaders })
    .map(({ headers, q }) => ({ route: "GET /v1/audit", method: "GET", target: `/v1/audit${q}`, headers, audited: false }))],
  [1, fc.record({ path: fc.constantFrom("/v1/models", "/health", "/health/live", "/health/ready", "/metrics", "/docs/openapi.json"), q: queryString, headers: identityHeaders })
    .map(({ headers, path, q }) => ({ route: `GET ${path}`, method: "GET", target: `${path}${q}`, headers, audited: false }))],
  // Wrong methods, unknown paths, bodies where none is expected.
  [1, fc.record({
    method: fc.constantFrom("GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "POST"),
    path: fc.constantFrom("/v1/llm", "/v1/ai", "/v1/models", "/v1/chat/completions", "/v1/nothing", "/", "/v1/workflows/x/y", "//v1/llm", "/v1/llm/", "/V1/LLM", "/v1/%2e%2e/health"),
    body: fc.option(fc.jsonValue({ maxDepth: 2 }).map((v) => JSON.stringify(v)), { nil: undefined }),
    headers: identityHeaders
  }).map(({ body, headers, method, path }) => ({ route: "other", method, target: path, body, headers, audited: false }))]
]

const keyRoutes: ReadonlyArray<readonly [number, fc.Arbitrary<FuzzCase>]> = [
  [2, post("POST /v1/keys", "/v1/keys", { role: "user", team: "fuzz", name: "fuzzed", expires_in_days: 30, budget_daily_usd: 1, requests_per_minute: 1000, tokens_per_minute: 1000000 }, false)],
  [1, fc.record({ headers: identityHeaders, q: keysQuery })
    .map(({ headers, q }) => ({ route: "GET /v1/keys", method: "GET", target: `/v1/keys${q}`, headers, audited: false }))],
  [1, fc.record({ headers: identityHeaders, id: idSegment, method: fc.constantFrom("GET", "DELETE") })
    .map(({ headers, id, method }) => ({ route: `${method} /v1/keys/:id`, method, target: target("/v1/keys/", id), headers, audited: false }))],
  [1, fc.record({ headers: identityHeaders, q: budgetQuery })
    .map(({ headers, q }) => ({ route: "GET /v1/budget", method: "GET", target: `/v1/budget${q}`, headers, audited: false }))]
]

const fuzzCase: fc.Arbitrary<FuzzCase> = fc.tuple(
  fc.oneof(...[...routes, ...keyRoutes].map(([weight, arbitrary]) => ({ arbitrary, weight }))),
  authorization
).map(([c, auth]) => ({ ...c, authorization: auth }))

// --- Checks -------------------------------------------------------------------------------------

const ErrorEnvelope = Schema.Struct({
  error: Schema.Struct({ type: Schema.NonEmptyString, message: Schema.NonEmptyString, request_id: Schema.NonEmptyString }, { key: Schema.String, value: Schema.Unknown })
})
const isErrorEnvelope = Schema.is(ErrorEnvelope)

layer(ServerLive, { excludeTestServices: true, timeout: "300 seconds" })("fuzzing every route of the running server", (it) => {
  it.effect("no 5xx, typed 4xx, the server stays up, audit rows and the budget stay consistent", () =>
    Effect.gen(function*() {
      const url = yield* Testing.ServerUrl
      const created = yield* Effect.promise(() =>
        send(url, { method: "POST", target: "/v1/keys", headers: [["authorization", `Bearer ${ADMIN}`], ["content-type", "application/json"]], body: JSON.stringify({ role: "user", team: "fuzz" }) }))
      expect(created.status).toBe(201)
      const userKey = (created.json as { secret: string }).secret
      let sent = 0
      const statuses = new Map<number, number>()
      const perRoute = new Map<string, number>()
      /** Request ids of requests a gateway #1/#2 route read: each must have an audit row. */
      const mustAudit = new Set<string>()

      const run = async (c: FuzzCase): Promise<RawResponse> => {
        const id = `fuzz-${++sent}`
        // A generated x-request-id (hostile or not) replaces ours; then the audit cross-check skips this one.
        const ownId = !c.headers.some(([name]) => name === "x-request-id")
        const auth: ReadonlyArray<readonly [string, string | Buffer]> = c.authorization === undefined
          ? []
          : [["authorization", typeof c.authorization === "string" ? c.authorization.replace(USER_KEY, userKey) : c.authorization]]
        const headers = [...auth, ...c.headers]
        const request: RawRequest = { method: c.method, target: c.target, body: c.body, headers: ownId ? [["x-request-id", id], ...headers] : headers }
        const res = await send(url, request)
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1)
        perRoute.set(c.route, (perRoute.get(c.route) ?? 0) + 1)
        if (res.status >= 500) throw new Error(`${res.status} from ${c.route}: ${res.text.slice(0, 500)}`)
        if (res.status >= 400 && c.method !== "HEAD") {
          expect(res.headers["content-type"], res.text.slice(0, 200)).toContain("application/json")
          expect(isErrorEnvelope(res.json), res.text.slice(0, 300)).toBe(true)
        }
        if (res.status === 200 && (res.headers["content-type"] ?? "").includes("event-stream")) {
          expect(res.text).not.toContain("internal_error")
        }
        // The app read it (it echoes our id); Node's parser refusing it leaves no row, by design.
        // Refused before the app read it (no usable key, a role the route does not allow): no row, by design.
        const error = (res.json as { error?: { type?: string; code?: string } } | undefined)?.error
        const refusedAtTheDoor = error?.type === "authentication_error" || (error?.type === "permission_denied" && error.code === "role")
        if (c.audited && ownId && res.headers["x-request-id"] === id && !refusedAtTheDoor) mustAudit.add(id)
        return res
      }

      const started = Date.now()
      yield* Effect.promise(() =>
        fc.assert(
          fc.asyncProperty(fc.array(fuzzCase, { minLength: BATCH, maxLength: BATCH }), async (batch) => {
            await Promise.all(batch.map(run))
          }),
          { seed: SEED, numRuns: RUNS, endOnFailure: true }
        ))
      const seconds = (Date.now() - started) / 1000

      // Still up.
      const live = yield* Effect.promise(() => send(url, { method: "GET", target: "/health/live" }))
      expect(live.status).toBe(200)
      const health = yield* Effect.promise(() => send(url, { method: "GET", target: "/health" }))
      expect(health.json).toMatchObject({ status: "healthy" })

      // Every audit row decodes (PgAuditLog.list dies on a row that fails its schema) and is well-formed.
      const audit = yield* AuditLog.AuditLog
      const rows = yield* Effect.orDie(audit.list({ limit: 10_000 }))
      expect(rows.length).toBeLessThan(10_000)
      for (const row of rows) {
        expect(Schema.is(AuditLog.AuditStatus)(row.status), row.id).toBe(true)
        for (const n of [row.input_tokens, row.output_tokens, row.latency_ms, row.cost]) {
          expect(Number.isInteger(n) && n >= 0, `${row.id}: ${n}`).toBe(true)
        }
        expect(row.attempt).toBeGreaterThanOrEqual(1)
        expect(row.reason).not.toBe("")
        expect(row.created_at.getTime()).not.toBeNaN()
        // Nothing was stored altered: the generators never produce U+FFFD, a decoder's replacement for what it could not read.
        for (const text of [row.reason, row.prompt, row.caller, row.model, row.provider, row.user_id ?? "", row.team ?? ""]) expect(text, row.id).not.toContain("\ufffd")
        if (row.status === "success" || row.status === "cache_hit") expect(row.error_type).toBeNull()
        else expect(row.error_type).not.toBeNull()
      }
      const audited = new Set(rows.map((r) => r.request_id))
      const missing = [...mustAudit].filter((id) => !audited.has(id))
      expect(missing, "requests read by a gateway route without an audit row").toEqual([])

      // The ledger: nothing left reserved; the day's spend is what the audit rows say was spent.
      const ledger = yield* BudgetLedger.BudgetLedger
      const gw1 = yield* CorporateLlmGateway.CorporateLlmGateway
      expect(yield* Effect.orDie(ledger.openReservations)).toBe(0)
      const [global] = yield* Effect.orDie(ledger.status(gw1.scopes({})))
      expect(global?.reserved).toBe(Money.zero)
      expect(global?.spent).toBe(rows.reduce((sum, r) => Money.add(sum, r.cost), Money.zero))

      console.log(
        `fuzz: ${sent} requests (${RUNS} runs x ${BATCH}, seed ${SEED}) in ${seconds.toFixed(1)} s; ` +
          `statuses ${JSON.stringify(Object.fromEntries([...statuses].sort(([a], [b]) => a - b)))}; ` +
          `audit rows ${rows.length} (${mustAudit.size} cross-checked); routes ${JSON.stringify(Object.fromEntries(perRoute))}`
      )
      expect(sent).toBeGreaterThanOrEqual(RUNS * BATCH)
    }))
})

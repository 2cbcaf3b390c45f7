/**
 * Hostile input, one case per problem: each is answered with a typed 4xx whose message (and
 * `param`, when a field or header is at fault) names the problem, and each request refused on a
 * gateway #1/#2 route still has its audit row. The real server on 127.0.0.1 over embedded
 * PGlite — a Postgres text column refuses NUL, which an in-memory store would not show — driven
 * over raw TCP so that bytes `fetch` refuses to send (control characters, invalid UTF-8) get sent.
 */
import { randomBytes } from "node:crypto"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Layer, Schema } from "effect"
import { AuditLog } from "@tidyllm/corporate-llm"
import * as Testing from "../src/Testing.js"
import { send, type RawRequest, type RawResponse } from "./rawHttp.js"

const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "tidyllm-hostile-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

const MAX_BODY = 1_048_576
const ServerLive = Layer.unwrapScoped(Effect.map(tempDir, (dir) => Testing.layer(Testing.config(dir))))

const Envelope = Schema.Struct({
  error: Schema.Struct({
    type: Schema.String,
    message: Schema.String,
    request_id: Schema.String,
    param: Schema.NullOr(Schema.String)
  }, { key: Schema.String, value: Schema.Unknown })
})
const errorOf = (res: RawResponse) => Schema.decodeUnknownSync(Envelope)(res.json).error

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

const json = (method: string, target: string, body: string | Buffer, headers: ReadonlyArray<readonly [string, string | Buffer]> = []): RawRequest => ({
  method,
  target,
  headers: [["content-type", "application/json"], ...headers],
  body
})

const chat = (extra: Record<string, unknown> = {}, content: string = "hello") =>
  JSON.stringify({ model: "claude-3-haiku", messages: [{ role: "user", content }], metadata: { reason: "hostile input test" }, ...extra })
const llm = (extra: Record<string, unknown> = {}) => JSON.stringify({ prompt: "hello", reason: "hostile input test", ...extra })

/** `depth` nested arrays around a zero: `[[[0]]]` is depth 3. */
const nested = (depth: number) => `${"[".repeat(depth)}0${"]".repeat(depth)}`

/**
 * One hostile request. `audit`: the status of the audit row it must leave (gateway #1/#2 routes),
 * or why it leaves none.
 */
interface Case {
  readonly name: string
  readonly request: RawRequest
  readonly status: number
  readonly type: string
  /** Text the message must contain. */
  readonly names: string | RegExp
  /** `error.param`, when a field or header is named. */
  readonly param?: string | null | undefined
  readonly audit: "rejected_policy" | "none: not read by the app (Node's parser refused it)" | "none: gateway #3 route (no llm_audit_log row)" | "none: a read of the audit log (not itself audited)"
}

const cases: ReadonlyArray<Case> = [
  // Size.
  {
    name: "a declared body over server.max_body_bytes",
    request: json("POST", "/v1/chat/completions", chat({}, "a".repeat(MAX_BODY + 10))),
    status: 413, type: "request_too_large", names: `server.max_body_bytes = ${MAX_BODY} bytes`, audit: "rejected_policy"
  },
  {
    name: "a chunked body over server.max_body_bytes (no content-length to refuse it by)",
    request: {
      method: "POST", target: "/v1/llm",
      headers: [["content-type", "application/json"], ["transfer-encoding", "chunked"]],
      body: (() => {
        const payload = Buffer.from(llm({ prompt: "b".repeat(MAX_BODY + 10) }))
        return Buffer.concat([Buffer.from(`${payload.length.toString(16)}\r\n`), payload, Buffer.from("\r\n0\r\n\r\n")])
      })()
    },
    status: 413, type: "request_too_large", names: "server.max_body_bytes", audit: "rejected_policy"
  },
  // Shape.
  {
    name: "JSON nested deeper than 64 levels",
    request: json("POST", "/v1/llm", `{"prompt":"x","reason":"r","metadata":{"a":${nested(70)}}}`),
    status: 400, type: "invalid_request_error", names: "nested deeper than 64 levels (at metadata.a[0]", audit: "rejected_policy"
  },
  {
    name: "JSON nested 100,000 levels (no stack overflow)",
    request: json("POST", "/v1/chat/completions", `{"model":"claude-3-haiku","messages":${nested(100_000)}}`),
    status: 400, type: "invalid_request_error", names: "nested deeper than 64 levels", audit: "rejected_policy"
  },
  {
    name: "an array of more than 10,000 elements",
    request: json("POST", "/v1/chat/completions", chat({ messages: Array.from({ length: 10_001 }, () => ({ role: "user", content: "x" })) })),
    status: 400, type: "invalid_request_error", names: "messages has 10001 elements; an array may have at most 10000", param: "messages", audit: "rejected_policy"
  },
  {
    name: "more than 100,000 JSON values in all",
    request: json("POST", "/v1/llm", llm({ metadata: { a: Array.from({ length: 11 }, () => Array.from({ length: 9_500 }, () => 0)) } })),
    status: 400, type: "invalid_request_error", names: "more than 100000 JSON values", audit: "rejected_policy"
  },
  // Encoding.
  {
    name: "a body that is not UTF-8",
    request: json("POST", "/v1/llm", Buffer.concat([Buffer.from(`{"prompt":"caf`), Buffer.from([0xe9]), Buffer.from(`","reason":"r"}`)])),
    status: 400, type: "invalid_request_error", names: "the request body is not valid UTF-8 (byte offset 14)", audit: "rejected_policy"
  },
  {
    name: "a surrogate encoded as UTF-8 (CESU-8 / WTF-8 bytes)",
    request: json("POST", "/v1/ai", Buffer.concat([Buffer.from(`{"prompt":"`), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from(`","reason":"r"}`)])),
    status: 400, type: "invalid_request_error", names: "not valid UTF-8 (byte offset 11)", audit: "rejected_policy"
  },
  {
    name: "a NUL in message content",
    request: json("POST", "/v1/chat/completions", chat({}, "before\u0000after")),
    status: 400, type: "invalid_request_error", names: "NUL character (U+0000) at index 6", param: "messages[0].content", audit: "rejected_policy"
  },
  {
    name: "a NUL in the reason",
    request: json("POST", "/v1/llm", llm({ reason: "audit\u0000me" })),
    status: 400, type: "invalid_request_error", names: "NUL character", param: "reason", audit: "rejected_policy"
  },
  {
    name: "a NUL in a key",
    request: json("POST", "/v1/llm", llm({ metadata: { "a\u0000b": 1 } })),
    status: 400, type: "invalid_request_error", names: "the key metadata.a\\u0000b contains a NUL character", param: "metadata.a\\u0000b", audit: "rejected_policy"
  },
  {
    name: "a NUL in an embeddings input",
    request: json("POST", "/v1/embeddings", JSON.stringify({ model: "titan-embed", input: ["ok", "not\u0000ok"], reason: "r" })),
    status: 400, type: "invalid_request_error", names: "NUL character", param: "input[1]", audit: "rejected_policy"
  },
  {
    name: "a NUL in a workflow definition",
    request: json("PUT", "/v1/workflows/hostile-nul", JSON.stringify({ workflow: { name: "n\u0000", type: "hierarchical_dag", steps: [] }, reason: "r" })),
    status: 400, type: "invalid_request_error", names: "NUL character", param: "workflow.name", audit: "none: gateway #3 route (no llm_audit_log row)"
  },
  {
    name: "an unpaired surrogate (\\ud800)",
    request: json("POST", "/v1/llm", `{"prompt":"x\\ud800y","reason":"r"}`),
    status: 400, type: "invalid_request_error", names: "unpaired UTF-16 surrogate (U+D800) at index 1", param: "prompt", audit: "rejected_policy"
  },
  {
    name: "a control character in the reason",
    request: json("POST", "/v1/llm", llm({ reason: "ring\u0007the bell" })),
    status: 400, type: "invalid_request_error", names: "control character (U+0007) at index 4", param: "reason", audit: "rejected_policy"
  },
  {
    name: "a line break in the model name",
    request: json("POST", "/v1/chat/completions", chat({ model: "claude-3-haiku\nX-Injected: 1" })),
    status: 400, type: "invalid_request_error", names: "control character (U+000A)", param: "model", audit: "rejected_policy"
  },
  {
    // Random, so that Postgres cannot compress it below its index entry limit (2,704 bytes).
    name: "a model name longer than 256 characters (an incompressible 3,200 would not fit the audit row's index)",
    request: json("POST", "/v1/ai", llm({ model: randomBytes(2_400).toString("base64") })),
    status: 400, type: "invalid_request_error", names: "model: the string is 3200 characters long; a name or id may have at most 256", param: "model", audit: "rejected_policy"
  },
  // Numbers.
  {
    name: "a number that overflows (1e400)",
    request: json("POST", "/v1/llm", `{"prompt":"x","reason":"r","max_tokens":1e400}`),
    status: 400, type: "invalid_request_error", names: "max_tokens: the number is out of range", param: "max_tokens", audit: "rejected_policy"
  },
  {
    name: "NaN (not JSON)",
    request: json("POST", "/v1/llm", `{"prompt":"x","reason":"r","temperature":NaN}`),
    status: 400, type: "invalid_request_error", names: "not valid JSON", audit: "rejected_policy"
  },
  {
    name: "a negative max_tokens",
    request: json("POST", "/v1/chat/completions", chat({ max_tokens: -1 })),
    status: 400, type: "invalid_request_error", names: "max_tokens: expected a number greater than or equal to 1, got -1", param: "max_tokens", audit: "rejected_policy"
  },
  {
    name: "a fractional max_tokens",
    request: json("POST", "/v1/llm", llm({ max_tokens: 10.5 })),
    status: 400, type: "invalid_request_error", names: "max_tokens: expected an integer, got 10.5", param: "max_tokens", audit: "rejected_policy"
  },
  {
    name: "a huge max_tokens",
    request: json("POST", "/v1/ai", llm({ max_tokens: 1e15 })),
    status: 400, type: "invalid_request_error", names: "max_tokens", param: "max_tokens", audit: "rejected_policy"
  },
  {
    name: "max_tokens above the model's limit",
    request: json("POST", "/v1/chat/completions", chat({ max_tokens: 100_000 })),
    status: 400, type: "invalid_request_error", names: "max_tokens 100000 is above the limit of model 'claude-3-haiku' (4096)", param: "max_tokens", audit: "rejected_policy"
  },
  {
    name: "a temperature out of range",
    request: json("POST", "/v1/chat/completions", chat({ temperature: -0.5 })),
    status: 400, type: "invalid_request_error", names: "temperature: expected a number between 0 and 2, got -0.5", param: "temperature", audit: "rejected_policy"
  },
  {
    name: "a number given as a string",
    request: json("POST", "/v1/llm", llm({ top_p: "NaN" })),
    status: 400, type: "invalid_request_error", names: "top_p: expected", param: "top_p", audit: "rejected_policy"
  },
  {
    name: "an embeddings dimension that is not whole",
    request: json("POST", "/v1/embeddings", JSON.stringify({ model: "titan-embed", input: "x", dimensions: 1.5, reason: "r" })),
    status: 400, type: "invalid_request_error", names: "dimensions", param: "dimensions", audit: "rejected_policy"
  },
  // Unknown fields: the native API is strict.
  {
    name: "an unknown field on the native API",
    request: json("POST", "/v1/ai", llm({ resaon: "typo" })),
    status: 400, type: "invalid_request_error", names: "resaon: unknown key", param: "resaon", audit: "rejected_policy"
  },
  {
    name: "an unknown field on a workflow request",
    request: json("POST", "/v1/workflows/validate", JSON.stringify({ workflow: { name: "w", type: "hierarchical_dag", steps: [] }, reason: "r", extra: 1 })),
    status: 400, type: "invalid_request_error", names: "extra: unknown key", param: "extra", audit: "none: gateway #3 route (no llm_audit_log row)"
  },
  // Not a request at all.
  {
    name: "an empty body",
    request: json("POST", "/v1/llm", ""),
    status: 400, type: "invalid_request_error", names: "the request body is empty", audit: "rejected_policy"
  },
  {
    name: "a JSON array instead of an object",
    request: json("POST", "/v1/chat/completions", "[1,2,3]"),
    status: 400, type: "invalid_request_error", names: "expected an object", audit: "rejected_policy"
  },
  // Headers.
  {
    name: "an identity header longer than 256 characters",
    request: json("POST", "/v1/llm", llm(), [["x-tidyllm-user", "u".repeat(300)]]),
    status: 400, type: "invalid_request_error", names: "header x-tidyllm-user is 300 characters long; at most 256", param: "x-tidyllm-user", audit: "rejected_policy"
  },
  {
    name: "a reason header longer than 256 characters",
    request: json("POST", "/v1/chat/completions", chat({ metadata: null }), [["x-tidyllm-reason", "r".repeat(257)]]),
    status: 400, type: "invalid_request_error", names: "send a longer reason in the body", param: "x-tidyllm-reason", audit: "rejected_policy"
  },
  {
    name: "a tab inside an identity header",
    request: json("POST", "/v1/ai", llm(), [["x-tidyllm-team", "plat\tform"]]),
    status: 400, type: "invalid_request_error", names: "header x-tidyllm-team contains a control character (U+0009) at index 4", param: "x-tidyllm-team", audit: "rejected_policy"
  },
  {
    name: "bytes above 0x7F in an identity header (UTF-8 read as Latin-1)",
    request: json("POST", "/v1/embeddings", JSON.stringify({ model: "titan-embed", input: "x", reason: "r" }), [["x-tidyllm-user", Buffer.from("José", "utf8")]]),
    status: 400, type: "invalid_request_error", names: "header x-tidyllm-user contains a byte outside printable ASCII (0xC3) at index 3", param: "x-tidyllm-user", audit: "rejected_policy"
  },
  {
    name: "a control character in the role header on a GET",
    request: { method: "GET", target: "/v1/workflows", headers: [["x-tidyllm-role", "approver\tadmin"]] },
    status: 400, type: "invalid_request_error", names: "header x-tidyllm-role contains a control character", param: "x-tidyllm-role", audit: "none: gateway #3 route (no llm_audit_log row)"
  },
  {
    name: "a control character (0x01) in a header value",
    request: json("POST", "/v1/llm", llm(), [["x-tidyllm-user", "eve\u0001"]]),
    status: 400, type: "invalid_request_error", names: "a request header is not valid HTTP", audit: "none: not read by the app (Node's parser refused it)"
  },
  {
    name: "a bare CR in a header value (response splitting attempt)",
    request: json("POST", "/v1/llm", llm(), [["x-tidyllm-user", "eve\rset-cookie: a=b"]]),
    status: 400, type: "invalid_request_error", names: "a request header is not valid HTTP", audit: "none: not read by the app (Node's parser refused it)"
  },
  {
    name: "raw bytes in the request target",
    request: { method: "GET", target: Buffer.from([0x2f, 0x76, 0x31, 0x2f, 0xff, 0x00]) },
    status: 400, type: "invalid_request_error", names: "the request line is not valid HTTP", audit: "none: not read by the app (Node's parser refused it)"
  },
  // SQL metacharacters reach the database only as parameters; where an id is expected, they are refused.
  {
    name: "SQL in a workflow id filter",
    request: { method: "GET", target: "/v1/agreements?workflow_id=x'%20OR%201=1%20--" },
    status: 400, type: "invalid_request_error", names: "a workflow id is 1-128 letters", audit: "none: gateway #3 route (no llm_audit_log row)"
  },
  {
    name: "a NUL in an audit filter",
    request: { method: "GET", target: "/v1/audit?team=a%00b" },
    status: 400, type: "invalid_request_error", names: "team contains a NUL character", param: "team", audit: "none: a read of the audit log (not itself audited)"
  },
  {
    name: "a NUL in a workflow id path",
    request: { method: "GET", target: "/v1/workflows/a%00b" },
    status: 400, type: "invalid_request_error", names: "a workflow id is 1-128 letters", audit: "none: gateway #3 route (no llm_audit_log row)"
  },
  {
    name: "SQL in an agreement id",
    request: { method: "GET", target: "/v1/agreements/'%20OR%20'1'='1" },
    status: 404, type: "not_found", names: "no agreement ' OR '1'='1", audit: "none: gateway #3 route (no llm_audit_log row)"
  }
]

const auditRows = (requestId: string) =>
  Effect.flatMap(AuditLog.AuditLog, (audit) => Effect.orDie(audit.list({ limit: 10, request_id: requestId })))

const withRequestId = (request: RawRequest, id: string): RawRequest => ({ ...request, headers: [["x-request-id", id], ...(request.headers ?? [])] })

layer(ServerLive, { excludeTestServices: true, timeout: "120 seconds" })("hostile input on the real server (PGlite)", (it) => {
  describe("each problem is a typed 4xx naming it, and leaves its audit row", () => {
    cases.forEach((c, i) =>
      it.effect(c.name, () =>
        Effect.gen(function*() {
          const url = yield* Testing.ServerUrl
          const id = `hostile-${i}`
          const res = yield* Effect.promise(() => send(url, withRequestId(c.request, id)))
          expect(res.status, res.text.slice(0, 300)).toBe(c.status)
          expect(res.headers["content-type"]).toContain("application/json")
          const e = errorOf(res)
          expect(e.type).toBe(c.type)
          if (typeof c.names === "string") expect(e.message).toContain(c.names)
          else expect(e.message).toMatch(c.names)
          if (c.param !== undefined) expect(e.param).toBe(c.param)
          const rows = yield* auditRows(id)
          if (c.audit === "rejected_policy") {
            expect(rows.map((r) => [r.status, r.error_type])).toEqual([["rejected_policy", c.type]])
            expect(rows[0]?.error_message).toBe(e.message.slice(0, 1000))
            expect(e.request_id).toBe(id)
          } else {
            expect(rows).toEqual([])
          }
          if (c.audit.startsWith("none: not read")) {
            // Refused before there was a request: a fresh id, never the client's.
            expect(e.request_id).toMatch(UUID)
            expect(res.headers["x-request-id"]).toBe(e.request_id)
          }
        })))
  })

  it.effect("a refused identity header is named but never stored: the audit row has no caller", () =>
    Effect.gen(function*() {
      const url = yield* Testing.ServerUrl
      const res = yield* Effect.promise(() =>
        send(url, withRequestId(json("POST", "/v1/llm", llm(), [["x-tidyllm-user", "eve"], ["x-tidyllm-team", "t".repeat(257)]]), "hostile-caller")))
      expect(res.status).toBe(400)
      const [row] = yield* auditRows("hostile-caller")
      expect(row).toMatchObject({ status: "rejected_policy", caller: "user:eve", team: null })
    }))

  it.effect("SQL metacharacters in the reason, the caller and the prompt round-trip verbatim into the audit row", () =>
    Effect.gen(function*() {
      const url = yield* Testing.ServerUrl
      const evil = "'; DROP TABLE llm_audit_log; --"
      const body = llm({ reason: evil, prompt: `${evil} \\ $1 %s ?` })
      const res = yield* Effect.promise(() =>
        send(url, withRequestId(json("POST", "/v1/llm", body, [["x-tidyllm-user", "o'brien\"; --"], ["x-tidyllm-team", "a' OR '1'='1"]]), "hostile-sql")))
      expect(res.status).toBe(200)
      const [row] = yield* auditRows("hostile-sql")
      expect(row).toMatchObject({ status: "success", reason: evil, user_id: "o'brien\"; --", team: "a' OR '1'='1" })
      expect(row?.prompt).toContain(`${evil} \\ $1 %s ?`)
      // The header's reason too, and the table is still there.
      const viaHeader = yield* Effect.promise(() =>
        send(url, withRequestId(json("POST", "/v1/chat/completions", chat({ metadata: null }), [["x-tidyllm-reason", evil]]), "hostile-sql-2")))
      expect(viaHeader.status).toBe(200)
      expect((yield* auditRows("hostile-sql-2"))[0]?.reason).toBe(evil)
      // The audit query's filters take them as text: the reason filter finds exactly these rows, `%` and `_` are literal.
      const found = yield* Effect.promise(() => send(url, { method: "GET", target: `/v1/audit?reason=${encodeURIComponent(evil)}` }))
      expect(found.status).toBe(200)
      const page = Schema.decodeUnknownSync(Schema.Struct({ data: Schema.Array(Schema.Struct({ request_id: Schema.String, reason: Schema.String })) }))(found.json)
      expect(page.data.map((r) => r.request_id).sort()).toEqual(["hostile-sql", "hostile-sql-2"])
      const wildcard = yield* Effect.promise(() => send(url, { method: "GET", target: "/v1/audit?reason=%25&limit=1000" }))
      const all = Schema.decodeUnknownSync(Schema.Struct({ data: Schema.Array(Schema.Struct({ reason: Schema.String })) }))(wildcard.json).data
      expect(all.every((r) => r.reason.includes("%"))).toBe(true)
      const injected = yield* Effect.promise(() => send(url, { method: "GET", target: `/v1/audit?model=${encodeURIComponent("x' OR '1'='1")}` }))
      expect(injected.status).toBe(200)
      expect(injected.json).toMatchObject({ data: [] })
    }))

  it.effect("what is allowed stays allowed: line breaks in a reason, C0 controls in content, unknown fields on the OpenAI route", () =>
    Effect.gen(function*() {
      const url = yield* Testing.ServerUrl
      const multiline = yield* Effect.promise(() => send(url, withRequestId(json("POST", "/v1/llm", llm({ reason: "line one\r\n\tline two" })), "hostile-ok-1")))
      expect(multiline.status).toBe(200)
      expect((yield* auditRows("hostile-ok-1"))[0]?.reason).toBe("line one\r\n\tline two")
      const controls = yield* Effect.promise(() => send(url, withRequestId(json("POST", "/v1/chat/completions", chat({}, "bell \u0007 escape \u001b[31m")), "hostile-ok-2")))
      expect(controls.status).toBe(200)
      // The OpenAI route ignores what it does not know (clients send fields of newer API versions).
      const lenient = yield* Effect.promise(() => send(url, json("POST", "/v1/chat/completions", chat({ some_future_field: { a: 1 }, store: true }))))
      expect(lenient.status).toBe(200)
      // Emoji (surrogate pairs) and a body at exactly the depth limit are fine.
      const emoji = yield* Effect.promise(() => send(url, json("POST", "/v1/llm", llm({ prompt: "ok 👍🏽", metadata: { a: JSON.parse(nested(62)) as unknown } }))))
      expect(emoji.status, emoji.text).toBe(200)
    }))

  it.effect("x-request-id is echoed only when it is a plain token; anything else is replaced by a fresh UUID", () =>
    Effect.gen(function*() {
      const url = yield* Testing.ServerUrl
      const plain = yield* Effect.promise(() => send(url, { method: "GET", target: "/health/live", headers: [["x-request-id", "trace-42"]] }))
      expect(plain.headers["x-request-id"]).toBe("trace-42")
      for (const hostile of ["<script>alert(1)</script>", "a b", "x".repeat(129), "id;\tset-cookie=1", Buffer.from([0x61, 0xe9, 0x62])]) {
        const res = yield* Effect.promise(() => send(url, { method: "GET", target: "/v1/nowhere", headers: [["x-request-id", hostile]] }))
        expect(res.status).toBe(404)
        expect(res.headers["x-request-id"]).toMatch(UUID)
        expect(errorOf(res).request_id).toBe(res.headers["x-request-id"])
      }
    }))
})

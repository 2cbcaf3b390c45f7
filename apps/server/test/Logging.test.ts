/**
 * The server's logs: an access-log line per request with its request id, route, status, duration
 * and caller; every line of a request annotated with its request id; JSON lines (one object a
 * line) and the minimum level from `observability`.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it, layer } from "@effect/vitest"
import { Effect, FiberRef, HashMap, HashSet, Layer, List, Logger } from "effect"
import { vi } from "vitest"
import { Api } from "../src/Api.js"
import type { Principal } from "../src/auth/Auth.js"
import { accessLine } from "../src/http/Middleware.js"
import * as Layers from "../src/Layers.js"
import * as HttpMetrics from "../src/metrics/HttpMetrics.js"
import * as Logging from "../src/observability/Logging.js"
import * as Testing from "../src/Testing.js"

const ADMIN = "bootstrap-admin-key-for-the-logging-test-00000000000"

interface Line { readonly level: string; readonly message: string; readonly annotations: Record<string, unknown> }
const lines: Array<Line> = []
const capture = Logger.make<unknown, void>(({ annotations, logLevel, message }) => {
  lines.push({
    level: logLevel.label,
    message: List.isList(message) ? List.toArray(message).join(" ") : Array.isArray(message) ? message.join(" ") : String(message),
    annotations: Object.fromEntries(HashMap.toEntries(annotations))
  })
})

const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "tidyllm-logging-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

const ServerLive = Layer.unwrapScoped(Effect.map(tempDir, (dir) => {
  const cfg = Testing.config(dir, { server: { admin_key: ADMIN }, observability: { access_log: true } })
  return Testing.layerWith(cfg, Layers.gateways(cfg, Layers.storeMemory))
})).pipe(Layer.provide(Logger.replace(Logger.defaultLogger, capture)))

layer(ServerLive, { excludeTestServices: true })("access log", (it) => {
  it.effect("one line per request: request id, route template, status, duration and the caller; request lines carry the request id", () =>
    Effect.gen(function*() {
      const url = yield* Testing.ServerUrl
      const key = yield* Effect.promise(async () => {
        const r = await fetch(`${url}/v1/keys`, {
          method: "POST",
          headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/json", "x-request-id": "log-create-key" },
          body: JSON.stringify({ role: "user", team: "risk" })
        })
        return ((await r.json()) as { secret: string; key: { id: string } })
      })
      yield* Effect.promise(() =>
        fetch(`${url}/v1/llm`, {
          method: "POST",
          headers: { authorization: `Bearer ${key.secret}`, "content-type": "application/json", "x-request-id": "log-llm-1", "x-tidyllm-user": "alice" },
          body: JSON.stringify({ prompt: "hi", reason: "logging test" })
        }).then((r) => r.text()))
      // A chat completion goes through the fast lane, which sets the request's fiber refs as it makes its fiber.
      yield* Effect.promise(() =>
        fetch(`${url}/v1/chat/completions`, {
          method: "POST",
          headers: { authorization: `Bearer ${key.secret}`, "content-type": "application/json", "x-request-id": "log-chat-1", "x-tidyllm-reason": "logging test" },
          body: JSON.stringify({ model: "claude-3-haiku", messages: [{ role: "user", content: "hi" }], max_tokens: 50 })
        }).then((r) => r.text()))
      yield* Effect.promise(() => fetch(`${url}/v1/workflows/nope?secret=should-not-be-logged`, { headers: { authorization: `Bearer ${key.secret}`, "x-request-id": "log-404" } }).then((r) => r.text()))
      yield* Effect.promise(() => fetch(`${url}/v1/keys`, { headers: { authorization: `Bearer ${key.secret}`, "x-request-id": "log-403" } }).then((r) => r.text()))
      const access = lines.filter((l) => l.message === "http request")
      const llm = access.find((l) => l.annotations["request_id"] === "log-llm-1")
      expect(llm?.level).toBe("INFO")
      expect(llm?.annotations).toMatchObject({ method: "POST", route: "/v1/llm", path: "/v1/llm", status: 200, key_id: key.key.id, team: "risk", user: "alice", role: "user" })
      expect(llm?.annotations["duration_ms"]).toBeTypeOf("number")
      expect(llm?.annotations["upstream_ms"]).toBeTypeOf("number")
      const chat = access.find((l) => l.annotations["request_id"] === "log-chat-1")
      expect(chat?.annotations).toMatchObject({ method: "POST", route: "/v1/chat/completions", status: 200, key_id: key.key.id, team: "risk" })
      expect(chat?.annotations["upstream_ms"]).toBeTypeOf("number")
      const notFound = access.find((l) => l.annotations["request_id"] === "log-404")
      expect(notFound?.annotations).toMatchObject({ route: "/v1/workflows/:id", status: 404, path: "/v1/workflows/nope" })
      expect(JSON.stringify(lines)).not.toContain("should-not-be-logged")
      // The refusal's warning carries the request id too.
      const refused = lines.find((l) => l.level === "WARN" && l.message.startsWith("refused GET /v1/keys"))
      expect(refused?.annotations["request_id"]).toBe("log-403")
      expect(access.find((l) => l.annotations["request_id"] === "log-403")?.annotations).toMatchObject({ status: 403, role: "user" })
      // A secret never reaches a log line.
      expect(JSON.stringify(lines)).not.toContain(key.secret)
      expect(JSON.stringify(lines)).not.toContain(ADMIN)
    }))
})

/** Runs `self` with Effect's own set of loggers, the one the server starts with (a test's fiber may hold others). */
const withEffectLoggers = <A, E, R>(self: Effect.Effect<A, E, R>) =>
  Effect.locally(
    self,
    FiberRef.currentLoggers as FiberRef.FiberRef<HashSet.HashSet<Logger.Logger<unknown, unknown>>>,
    HashSet.make<Array<Logger.Logger<unknown, unknown>>>(Logger.defaultLogger, Logger.tracerLogger)
  )

/** Collects the lines written to stdout (where the server's loggers write) until restored. */
const captureStdout = (printed: Array<string>) =>
  vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
    printed.push(...String(chunk).split("\n").filter((l) => l !== ""))
    return true
  })

describe("log format and level", () => {
  it.effect("json: one JSON object a line with level and annotations; below log_level nothing", () =>
    Effect.gen(function*() {
      const printed: Array<string> = []
      const spy = captureStdout(printed)
      yield* Effect.gen(function*() {
        yield* Effect.logDebug("too fine")
        yield* Effect.logInfo("not shown at warning")
        yield* Effect.logWarning("shown").pipe(Effect.annotateLogs("request_id", "r-1"))
      }).pipe(Effect.provide(Logging.layer({ log_format: "json", log_level: "warning", access_log: true, service_name: "t", trace_sample_ratio: 1 })))
      spy.mockRestore()
      expect(printed).toHaveLength(1)
      const line = JSON.parse(printed[0]!) as { message: string; logLevel: string; annotations: Record<string, unknown>; timestamp: string }
      expect(line).toMatchObject({ message: "shown", logLevel: "WARN", annotations: { request_id: "r-1" } })
      expect(Number.isNaN(Date.parse(line.timestamp))).toBe(false)
    }))

  it.effect("the access line: the request's fields and the fiber's annotations, at info (none below log_level)", () =>
    Effect.gen(function*() {
      const printed: Array<string> = []
      const spy = captureStdout(printed)
      const route = HttpMetrics.make(Api).match("POST", "/v1/chat/completions")
      const principal = { role: "user", open: false, caller: { key_id: "k-1", team: "risk", user_id: "ann" } } as unknown as Principal
      const line = accessLine("POST", "/v1/chat/completions?x=1", route, 200, 0.0123456, { seconds: 0.004, calls: 1 }, principal).pipe(
        Effect.annotateLogs("request_id", "r-9")
      )
      const at = (level: "info" | "warning") => Logging.layer({ log_format: "json", log_level: level, access_log: true, service_name: "t", trace_sample_ratio: 1 })
      yield* line.pipe(Effect.provide(at("warning")))
      yield* line.pipe(Effect.provide(at("info")))
      yield* accessLine("GET", "/health", HttpMetrics.make(Api).match("GET", "/health"), 200, 0.001, { seconds: 0, calls: 0 }, undefined).pipe(Effect.provide(at("info")))
      spy.mockRestore()
      expect(printed).toHaveLength(2)
      const [chat, health] = printed.map((p) => JSON.parse(p) as { message: string; logLevel: string; annotations: Record<string, unknown> })
      expect(chat).toMatchObject({ message: "http request", logLevel: "INFO" })
      expect(chat?.annotations).toEqual({
        request_id: "r-9", method: "POST", route: "/v1/chat/completions", path: "/v1/chat/completions", status: 200,
        duration_ms: 12.346, upstream_ms: 4, key_id: "k-1", team: "risk", user: "ann", role: "user"
      })
      expect(health?.annotations).toEqual({ method: "GET", route: "/health", path: "/health", status: 200, duration_ms: 1 })
    }))

  it.effect("the access line is written as Effect's logger would write it, in both formats; with a span it goes through the loggers", () =>
    Effect.gen(function*() {
      const route = HttpMetrics.make(Api).match("POST", "/v1/chat/completions")
      // Values a logfmt line must quote: white space, quotes, `=`.
      const principal = { role: "user", open: false, caller: { key_id: "k 1", team: "risk \"ops\" = 1", user_id: "ann" } } as unknown as Principal
      const fields = {
        method: "POST", route: "/v1/chat/completions", path: "/v1/chat/completions", status: 200, duration_ms: 12.346,
        upstream_ms: 4, key_id: "k 1", team: "risk \"ops\" = 1", user: "ann", role: "user"
      }
      const direct = accessLine("POST", "/v1/chat/completions?x=1", route, 200, 0.0123456, { seconds: 0.004, calls: 1 }, principal)
      const viaEffect = Effect.logInfo("http request").pipe(Effect.annotateLogs(fields))
      const logfmt = (l: string): Record<string, string> => {
        const out: Record<string, string> = {}
        for (const [, key = "", value = ""] of l.matchAll(/(\S+?)=("(?:[^"\\]|\\.)*"|\S*)/g)) if (key !== "timestamp" && key !== "fiber") out[key] = value
        return out
      }
      for (const format of ["json", "text"] as const) {
        const printed: Array<string> = []
        const spy = captureStdout(printed)
        const layer = Logging.layer({ log_format: format, log_level: "info", access_log: true, service_name: "t", trace_sample_ratio: 1 })
        // From Effect's own set of loggers, as the server starts.
        const run = <A>(e: Effect.Effect<A>) => e.pipe(Effect.annotateLogs("request_id", "r 9"), Effect.provide(layer), withEffectLoggers)
        yield* run(direct)
        yield* run(viaEffect)
        spy.mockRestore()
        expect(printed).toHaveLength(2)
        if (format === "json") {
          const [a, b] = printed.map((p) => JSON.parse(p) as Record<string, unknown>)
          expect(Object.keys(a!)).toEqual(Object.keys(b!))
          expect({ ...a, timestamp: 0, fiberId: 0 }).toEqual({ ...b, timestamp: 0, fiberId: 0 })
          expect(a?.["annotations"]).toEqual({ request_id: "r 9", ...fields })
          // Written directly (in the order the fields were made), not through the HashMap of Effect's logger.
          expect(Object.keys(a?.["annotations"] as object)).toEqual(["request_id", ...Object.keys(fields)])
        } else {
          expect(logfmt(printed[0]!)).toEqual(logfmt(printed[1]!))
          expect(Object.keys(logfmt(printed[0]!))).toEqual(["level", "message", "request_id", ...Object.keys(fields)])
          expect(logfmt(printed[0]!)["team"]).toBe(JSON.stringify(fields.team))
        }
      }
      // Inside a span the line goes through Effect's loggers, and the tracer's logger adds it to the span.
      const printed: Array<string> = []
      const spy = captureStdout(printed)
      const span = yield* Effect.zipRight(direct, Effect.currentSpan).pipe(
        Effect.withSpan("request"),
        Effect.withTracerEnabled(true),
        Effect.provide(Logging.layer({ log_format: "json", log_level: "info", access_log: true, service_name: "t", trace_sample_ratio: 1 })),
        withEffectLoggers
      )
      spy.mockRestore()
      expect(printed).toHaveLength(1)
      expect((span as unknown as { events: Array<[string, bigint, Record<string, unknown>]> }).events.map((e) => e[0])).toEqual(["http request"])
    }))

  it.effect("in place of the pretty logger NodeRuntime.runMain installs: each line once", () =>
    Effect.gen(function*() {
      const printed: Array<string> = []
      const spy = captureStdout(printed)
      yield* Effect.logInfo("once").pipe(
        Effect.provide(Logging.layer({ log_format: "json", log_level: "info", access_log: true, service_name: "t", trace_sample_ratio: 1 })),
        // What runMain does: the default logger swapped for the pretty one.
        Effect.provide(Layer.merge(Logger.remove(Logger.defaultLogger), Logger.add(Logger.prettyLoggerDefault)))
      )
      spy.mockRestore()
      expect(printed).toHaveLength(1)
      expect(JSON.parse(printed[0]!)).toMatchObject({ message: "once" })
    }))

  it.effect("text: logfmt lines", () =>
    Effect.gen(function*() {
      const printed: Array<string> = []
      const spy = captureStdout(printed)
      yield* Effect.logInfo("hello").pipe(Effect.annotateLogs("route", "/v1/llm"), Effect.provide(Logging.layer({ log_format: "text", log_level: "info", access_log: true, service_name: "t", trace_sample_ratio: 1 })))
      spy.mockRestore()
      expect(printed).toHaveLength(1)
      expect(printed[0]).toMatch(/level=INFO .*message=hello .*route=\/v1\/llm/)
    }))
})

/**
 * `GET /metrics`: the Prometheus formatter on its own (escaping, names, cumulative histograms),
 * then the real server on PGlite with the mock provider and an unreachable OpenAI-compatible
 * backend: requests move the series they should, label values stay bounded, and every metric
 * the Grafana dashboard queries exists in a real scrape (so a renamed metric fails here).
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it, layer } from "@effect/vitest"
import { Effect, Layer, Metric, MetricBoundaries } from "effect"
import * as HttpMetrics from "../src/metrics/HttpMetrics.js"
import * as Prometheus from "../src/metrics/Prometheus.js"
import { Api } from "../src/Api.js"
import * as Testing from "../src/Testing.js"

// --- a small parser of the exposition format ---------------------------------------------------

interface Line {
  readonly name: string
  readonly labels: Readonly<Record<string, string>>
  readonly value: number
}

interface Scrape {
  readonly lines: ReadonlyArray<Line>
  readonly types: ReadonlyMap<string, string>
  readonly helps: ReadonlyMap<string, string>
}

const unescape = (s: string) => s.replace(/\\(["\\n])/g, (_, c: string) => (c === "n" ? "\n" : c))

/** Parses the text format strictly enough to catch what Prometheus would refuse. */
const parse = (text: string): Scrape => {
  const lines: Array<Line> = []
  const types = new Map<string, string>()
  const helps = new Map<string, string>()
  for (const raw of text.split("\n")) {
    if (raw === "") continue
    const meta = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(raw)
    if (meta !== null) {
      const [, kind, name, rest] = meta as unknown as [string, string, string, string]
      if (kind === "TYPE") {
        expect(types.has(name), `TYPE of ${name} given twice`).toBe(false)
        expect(["counter", "gauge", "histogram", "summary", "untyped"]).toContain(rest)
        types.set(name, rest)
      } else {
        helps.set(name, rest)
      }
      continue
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(raw)
    expect(m, `unparsable line: ${raw}`).not.toBeNull()
    const [, name, body, value] = m as unknown as [string, string, string | undefined, string]
    const labels: Record<string, string> = {}
    if (body !== undefined && body !== "") {
      const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/gy
      let consumed = 0
      for (let l = re.exec(body); l !== null; l = re.exec(body)) {
        labels[l[1] as string] = unescape(l[2] as string)
        consumed = re.lastIndex
      }
      expect(consumed, `bad labels in: ${raw}`).toBe(body.length)
    }
    const v = value === "+Inf" ? Infinity : value === "-Inf" ? -Infinity : Number(value)
    expect(Number.isNaN(v) && value !== "NaN", `bad value in: ${raw}`).toBe(false)
    lines.push({ name, labels, value: v })
  }
  return { lines, types, helps }
}

const matches = (line: Line, name: string, labels: Record<string, string>) =>
  line.name === name && Object.entries(labels).every(([k, v]) => line.labels[k] === v)

/** The sum of every series of `name` whose labels include `labels`. */
const total = (s: Scrape, name: string, labels: Record<string, string> = {}) =>
  s.lines.filter((l) => matches(l, name, labels)).reduce((n, l) => n + l.value, 0)

const family = (sampleName: string) => sampleName.replace(/_(bucket|sum|count)$/, "")

// --- the formatter -----------------------------------------------------------------------------

describe("Prometheus text format", () => {
  it("escapes label values and help, sanitises names, appends _total to counters", () => {
    const c = Metric.counter("weird.name-with spaces", { description: "a \\ backslash\nand a new line" }).pipe(
      Metric.tagged("path", "C:\\dir \"quoted\"\nnext"),
      Metric.tagged("1bad-label", "x"),
      Metric.tagged("__reserved", "y")
    )
    c.unsafeUpdate(3, [])
    const text = Prometheus.render(Prometheus.fromSnapshot(Metric.unsafeSnapshot()).families)
    expect(text).toContain("# HELP weird_name_with_spaces_total a \\\\ backslash\\nand a new line\n")
    expect(text).toContain("# TYPE weird_name_with_spaces_total counter\n")
    const line = text.split("\n").find((l) => l.startsWith("weird_name_with_spaces_total{"))
    expect(line).toBeDefined()
    expect(line).toContain("path=\"C:\\\\dir \\\"quoted\\\"\\nnext\"")
    expect(line).toContain("_1bad_label=\"x\"")
    expect(line).toContain("_reserved=\"y\"")
    expect(line?.endsWith(" 3")).toBe(true)
    // And it parses back to the original value.
    const parsed = parse(text).lines.find((l) => l.name === "weird_name_with_spaces_total")
    expect(parsed?.labels["path"]).toBe("C:\\dir \"quoted\"\nnext")
  })

  it("writes histograms as cumulative buckets ending in +Inf, with _sum and _count", () => {
    const h = Metric.histogram("test_latency_seconds", MetricBoundaries.fromIterable([0.1, 0.5, 1]), "latency").pipe(Metric.tagged("route", "/x"))
    for (const v of [0.05, 0.2, 0.3, 0.7, 5]) h.unsafeUpdate(v, [])
    const text = Prometheus.render(Prometheus.fromSnapshot(Metric.unsafeSnapshot()).families)
    const lines = text.split("\n").filter((l) => l.startsWith("test_latency_seconds"))
    expect(lines).toEqual([
      "test_latency_seconds_bucket{route=\"/x\",le=\"0.1\"} 1",
      "test_latency_seconds_bucket{route=\"/x\",le=\"0.5\"} 3",
      "test_latency_seconds_bucket{route=\"/x\",le=\"1\"} 4",
      "test_latency_seconds_bucket{route=\"/x\",le=\"+Inf\"} 5",
      "test_latency_seconds_sum{route=\"/x\"} 6.25",
      "test_latency_seconds_count{route=\"/x\"} 5"
    ])
    expect(text).toContain("# TYPE test_latency_seconds histogram\n")
  })

  it("renames a label that clashes with le, and drops a metric whose name clashes with another type", () => {
    Metric.histogram("test_clash", MetricBoundaries.fromIterable([1]), "h").pipe(Metric.tagged("le", "mine")).unsafeUpdate(0.5, [])
    Metric.gauge("test_clash", { description: "a gauge of the same name" }).unsafeUpdate(1, [])
    const { dropped, families } = Prometheus.fromSnapshot(Metric.unsafeSnapshot())
    expect(dropped).toContain("test_clash")
    const text = Prometheus.render(families)
    expect(text).toContain("test_clash_bucket{exported_le=\"mine\",le=\"1\"} 1")
    expect(text).not.toContain("# TYPE test_clash gauge")
  })

  it("formats special values and bigints", () => {
    expect(Prometheus.formatValue(Infinity)).toBe("+Inf")
    expect(Prometheus.formatValue(-Infinity)).toBe("-Inf")
    expect(Prometheus.formatValue(NaN)).toBe("NaN")
    expect(Prometheus.formatValue(1e-7)).toBe("1e-7")
    expect(Prometheus.formatValue(12345678901234567890n)).toBe("12345678901234567890")
    expect(Prometheus.sanitizeName("9lives")).toBe("_9lives")
    expect(Prometheus.sanitizeName("a:b.c")).toBe("a:b_c")
  })
})

describe("HTTP route templates", () => {
  const routes = HttpMetrics.make(Api, [["GET", "/docs"]])
  it("labels requests with the template of their endpoint, never the path's ids", () => {
    expect(routes.match("POST", "/v1/chat/completions?x=1").template).toBe("/v1/chat/completions")
    expect(routes.match("GET", "/v1/workflows/3f1c6a").template).toBe("/v1/workflows/:id")
    expect(routes.match("POST", "/v1/agreements/abc/approve").template).toBe("/v1/agreements/:id/approve")
    expect(routes.match("GET", "/v1/workflows/3f1c6a/extra").template).toBe(HttpMetrics.OTHER)
    expect(routes.match("GET", "/wp-admin.php").template).toBe(HttpMetrics.OTHER)
    expect(routes.match("BREW", "/v1/models").method).toBe("OTHER")
    expect(routes.match("GET", "/docs").template).toBe("/docs")
    expect(routes.match("GET", "/metrics").template).toBe("/metrics")
  })
  it("records overhead only for requests that called a provider", () => {
    const route = routes.match("GET", "/v1/models")
    routes.record(route, 200, 0.002, { seconds: 0, calls: 0 })
    const chat = routes.match("POST", "/v1/chat/completions")
    routes.record(chat, 200, 0.5, { seconds: 0.4995, calls: 1 })
    const s = parse(Prometheus.render(Prometheus.fromSnapshot(Metric.unsafeSnapshot()).families))
    expect(total(s, "tidyllm_gateway_overhead_seconds_count", { route: "/v1/models" })).toBe(0)
    expect(total(s, "tidyllm_gateway_overhead_seconds_count", { route: "/v1/chat/completions" })).toBe(1)
    expect(total(s, "tidyllm_gateway_overhead_seconds_bucket", { route: "/v1/chat/completions", le: "0.001" })).toBe(1)
    expect(total(s, "tidyllm_http_requests_total", { route: "/v1/models", method: "GET", status: "200" })).toBe(1)
  })
})

// --- the real server ---------------------------------------------------------------------------

const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "tidyllm-metrics-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

const ServerLive = Layer.unwrapScoped(Effect.map(tempDir, (dir) =>
  Testing.layer(Testing.config(dir, {
    ai_processing: { max_retries: 1, retry_delay_base: 0.001, circuit_breaker_failures: 2, circuit_breaker_cooldown_seconds: 600 },
    // Port 1 on loopback refuses connections: a backend that always fails with a retryable error.
    providers: { openai_compatible: { broken: { base_url: "http://127.0.0.1:1/v1" } } },
    models: [{ id: "flaky-model", provider_ids: { broken: "flaky" }, input_usd_per_million: 1, output_usd_per_million: 2, context_window: 8000, max_output_tokens: 1000 }]
  }))))

const request = (url: string, path: string, init: RequestInit = {}) =>
  Effect.promise(async () => {
    const response = await fetch(`${url}${path}`, init)
    return { status: response.status, headers: response.headers, text: await response.text() }
  })

const post = (url: string, path: string, body: unknown, headers: Record<string, string> = {}) =>
  request(url, path, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) })

const scrape = (url: string) =>
  Effect.map(request(url, "/metrics"), (r) => {
    expect(r.status).toBe(200)
    expect(r.headers.get("content-type")).toBe(Prometheus.contentType)
    return parse(r.text)
  })

const chat = (prompt: string, reason: string | undefined) => ({
  model: "claude-3-haiku",
  messages: [{ role: "user", content: prompt }],
  max_tokens: 100,
  ...(reason === undefined ? {} : { metadata: { reason } })
})

/** Every metric name a PromQL expression references (string literals removed first, so label values do not count). */
const metricNames = (expr: string): Array<string> =>
  [...expr.replace(/"(?:[^"\\]|\\.)*"/g, "\"\"").matchAll(/\b(?:tidyllm|process|nodejs)_[a-zA-Z0-9_]+\b/g)].map((m) => m[0])

/** Label names an expression selects on (`name{label=…}`) or groups by (`by (a, b)`). */
const labelNames = (expr: string): Array<string> => {
  const out: Array<string> = []
  for (const m of expr.matchAll(/\{([^}]*)\}/g)) {
    for (const l of (m[1] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)/g)) out.push(l[1] as string)
  }
  for (const m of expr.matchAll(/\b(?:by|without)\s*\(([^)]*)\)/g)) {
    for (const l of (m[1] ?? "").split(",")) if (l.trim() !== "") out.push(l.trim())
  }
  return out
}

/** Every `expr` and templating query of the dashboard, with the panel it belongs to. */
const dashboardQueries = (): Array<{ panel: string; expr: string }> => {
  const json = JSON.parse(readFileSync(new URL("../../../deploy/grafana/tidyllm-dashboard.json", import.meta.url), "utf8")) as unknown
  const out: Array<{ panel: string; expr: string }> = []
  const walk = (node: unknown, panel: string) => {
    if (Array.isArray(node)) return node.forEach((n) => walk(n, panel))
    if (typeof node !== "object" || node === null) return
    const o = node as Record<string, unknown>
    const title = typeof o["title"] === "string" ? o["title"] : panel
    if (typeof o["expr"] === "string") out.push({ panel: title, expr: o["expr"] })
    if (typeof o["definition"] === "string") out.push({ panel: `variable ${String(o["name"])}`, expr: o["definition"] })
    for (const v of Object.values(o)) walk(v, title)
  }
  walk(json, "dashboard")
  return out
}

layer(ServerLive, { excludeTestServices: true, timeout: "120 seconds" })("GET /metrics on the real server", (it) => {
  it.effect("counts requests, tokens, cost, cache, latency, budget and audit queue, with bounded labels", () =>
    Effect.gen(function*() {
      const url = yield* Testing.ServerUrl
      const before = yield* scrape(url)
      const headers = { "x-tidyllm-user": "alice-the-user", "x-tidyllm-team": "secret-team", "x-request-id": "req-metrics-42" }
      const prompt = "Tell me about unbounded label cardinality"

      const first = yield* post(url, "/v1/chat/completions", chat(prompt, "metrics test"), headers)
      expect(first.status).toBe(200)
      const again = yield* post(url, "/v1/chat/completions", chat(prompt, "metrics test"), headers)
      expect(again.status).toBe(200)
      expect(again.text).toContain("\"cache_hit\":true")
      const refused = yield* post(url, "/v1/chat/completions", chat("no reason here", undefined), headers)
      expect(refused.status).toBe(400)
      const unknown = yield* request(url, "/v1/no-such-route/123")
      expect(unknown.status).toBe(404)

      const after = yield* scrape(url)
      const delta = (name: string, labels: Record<string, string> = {}) => total(after, name, labels) - total(before, name, labels)
      const chatRoute = { route: "/v1/chat/completions", method: "POST" }

      expect(delta("tidyllm_http_requests_total", { ...chatRoute, status: "200" })).toBe(2)
      expect(delta("tidyllm_http_requests_total", { ...chatRoute, status: "400" })).toBe(1)
      expect(delta("tidyllm_http_requests_total", { route: "other", method: "GET", status: "404" })).toBe(1)
      expect(delta("tidyllm_http_request_duration_seconds_count", chatRoute)).toBe(3)
      // Overhead: only the request that reached the provider (not the cache hit, not the refusal).
      expect(delta("tidyllm_gateway_overhead_seconds_count", { route: "/v1/chat/completions" })).toBe(1)

      const haiku = { provider: "mock", model: "claude-3-haiku" }
      expect(delta("tidyllm_llm_requests_total", { ...haiku, status: "success" })).toBe(1)
      expect(delta("tidyllm_llm_requests_total", { ...haiku, status: "cache_hit" })).toBe(1)
      expect(delta("tidyllm_llm_requests_total", { ...haiku, status: "rejected_policy" })).toBe(1)
      expect(delta("tidyllm_upstream_request_duration_seconds_count", haiku)).toBe(1)
      expect(delta("tidyllm_tokens_total", { ...haiku, type: "input" })).toBeGreaterThan(0)
      expect(delta("tidyllm_tokens_total", { ...haiku, type: "output" })).toBeGreaterThan(0)
      expect(delta("tidyllm_cost_usd_total", haiku)).toBeGreaterThan(0)
      expect(delta("tidyllm_cost_usd_total", haiku)).toBeLessThan(0.001)
      // The refused request looked the cache up too (the lookup comes before policy).
      expect(delta("tidyllm_cache_lookups_total", { result: "hit" })).toBe(1)
      expect(delta("tidyllm_cache_lookups_total", { result: "miss" })).toBe(2)

      // Histograms: cumulative buckets, +Inf equal to _count, in every series.
      for (const name of ["tidyllm_http_request_duration_seconds", "tidyllm_upstream_request_duration_seconds", "tidyllm_gateway_overhead_seconds"]) {
        expect(after.types.get(name)).toBe("histogram")
        const counts = after.lines.filter((l) => l.name === `${name}_count`)
        expect(counts.length).toBeGreaterThan(0)
        for (const c of counts) {
          const buckets = after.lines.filter((l) => l.name === `${name}_bucket` && Object.entries(c.labels).every(([k, v]) => l.labels[k] === v))
          expect(buckets.at(-1)?.labels["le"]).toBe("+Inf")
          expect(buckets.at(-1)?.value).toBe(c.value)
          for (let i = 1; i < buckets.length; i++) expect(buckets[i]?.value).toBeGreaterThanOrEqual(buckets[i - 1]?.value ?? 0)
        }
      }
      expect(after.types.get("tidyllm_http_requests_total")).toBe("counter")

      // Budget: the global scope, limit - spent - reserved.
      const budget = { scope: "global", period: "day" }
      const limit = total(after, "tidyllm_budget_limit_usd", budget)
      expect(limit).toBe(100)
      expect(total(after, "tidyllm_budget_spent_usd", budget)).toBeGreaterThan(0)
      expect(total(after, "tidyllm_budget_remaining_usd", budget)).toBeCloseTo(
        limit - total(after, "tidyllm_budget_spent_usd", budget) - total(after, "tidyllm_budget_reserved_usd", budget), 9)
      // Audit queue (PGlite, sync durability: nothing waits once the answers are out).
      expect(after.lines.some((l) => l.name === "tidyllm_audit_queue_depth")).toBe(true)
      expect(total(after, "tidyllm_audit_queue_oldest_age_seconds")).toBeLessThan(5)
      expect(delta("tidyllm_audit_rows_committed_total")).toBe(3)
      expect(delta("tidyllm_audit_commit_lag_seconds_count")).toBeGreaterThan(0)
      for (const collector of ["budget", "circuit_breakers", "audit_queue", "db_pool"]) expect(total(after, "tidyllm_metrics_collector_up", { collector })).toBe(1)
      // Database pool: PGlite is one session, in use or idle (the other collectors query it during the scrape).
      const pglite = (state: string) => total(after, "tidyllm_db_pool_connections", { engine: "pglite", state })
      expect(pglite("total")).toBe(1)
      expect(pglite("in_use") + pglite("idle")).toBe(1)
      expect(after.lines.filter((l) => l.name === "tidyllm_db_pool_connections").map((l) => l.labels["state"]).sort()).toEqual(["idle", "in_use", "total", "waiting"])
      expect(total(after, "tidyllm_db_pool_max_connections", { engine: "pglite" })).toBe(1)
      expect(after.types.get("tidyllm_db_pool_connections")).toBe("gauge")
      // Process metrics.
      expect(total(after, "process_resident_memory_bytes")).toBeGreaterThan(10_000_000)
      expect(after.types.get("process_cpu_seconds_total")).toBe("counter")

      // No user, team, request id or prompt in any label value.
      for (const l of after.lines) {
        for (const v of Object.values(l.labels)) {
          expect(v).not.toMatch(/alice|secret-team|req-metrics|cardinality|no reason|no-such-route|123/)
        }
      }
    }))

  it.effect("a streamed answer: upstream time to its last event, overhead to the response head", () =>
    Effect.gen(function*() {
      const url = yield* Testing.ServerUrl
      const before = yield* scrape(url)
      const r = yield* post(url, "/v1/chat/completions", { ...chat("stream me, please", "stream test"), stream: true })
      expect(r.status).toBe(200)
      expect(r.text).toContain("data: [DONE]")
      const after = yield* scrape(url)
      const delta = (name: string, labels: Record<string, string> = {}) => total(after, name, labels) - total(before, name, labels)
      expect(delta("tidyllm_upstream_request_duration_seconds_count", { provider: "mock", model: "claude-3-haiku" })).toBe(1)
      expect(delta("tidyllm_gateway_overhead_seconds_count", { route: "/v1/chat/completions" })).toBe(1)
      expect(delta("tidyllm_llm_requests_total", { provider: "mock", model: "claude-3-haiku", status: "success" })).toBe(1)
      expect(delta("tidyllm_tokens_total", { provider: "mock", model: "claude-3-haiku", type: "output" })).toBeGreaterThan(0)
    }))

  it.effect("counts retries, failovers and circuit-breaker transitions of a failing backend", () =>
    Effect.gen(function*() {
      const url = yield* Testing.ServerUrl
      const before = yield* scrape(url)
      const body = { backend: "broken", fallback_backends: ["made-up-backend", "mock"], model: "flaky-model", prompt: "hello", reason: "failover test", use_cache: false }
      const r = yield* post(url, "/v1/ai", body)
      expect(r.status).toBe(200)
      expect(r.text).toContain("\"backend_used\":\"mock\"")
      const after = yield* scrape(url)
      const delta = (name: string, labels: Record<string, string> = {}) => total(after, name, labels) - total(before, name, labels)
      // Two attempts on `broken` (one retry), its breaker opens on the second failure; failover to a
      // backend nobody configured (counted as `other`), then to `mock`.
      expect(delta("tidyllm_retries_total", { backend: "broken", kind: "connection" })).toBe(1)
      expect(delta("tidyllm_failovers_total", { backend: "broken", reason: "connection" })).toBe(1)
      expect(delta("tidyllm_failovers_total", { backend: "other", reason: "not_configured" })).toBe(1)
      expect(delta("tidyllm_circuit_breaker_transitions_total", { backend: "broken", model: "flaky-model", to: "open" })).toBe(1)
      expect(total(after, "tidyllm_circuit_breaker_state", { backend: "broken", model: "flaky-model" })).toBe(2)
      expect(total(after, "tidyllm_circuit_breaker_state", { backend: "mock", model: "flaky-model" })).toBe(0)
      expect(delta("tidyllm_llm_requests_total", { provider: "broken", model: "flaky-model", status: "error" })).toBe(2)
      expect(delta("tidyllm_llm_requests_total", { provider: "mock", model: "flaky-model", status: "success" })).toBe(1)
      expect(delta("tidyllm_upstream_request_duration_seconds_count", { provider: "broken", model: "flaky-model" })).toBe(2)
      expect(delta("tidyllm_gateway_overhead_seconds_count", { route: "/v1/ai" })).toBe(1)

      // Again: the breaker is open, so `broken` is skipped without a call (a failover for circuit_open).
      const skipped = yield* post(url, "/v1/ai", body)
      expect(skipped.status).toBe(200)
      const last = yield* scrape(url)
      expect(total(last, "tidyllm_failovers_total", { backend: "broken", reason: "circuit_open" }) - total(after, "tidyllm_failovers_total", { backend: "broken", reason: "circuit_open" })).toBe(1)

      // A request naming a model nobody configured: counted under `other`, not its name.
      const made = yield* post(url, "/v1/llm", { model: "my-own-model-1234", prompt: "x", reason: "unknown model" })
      expect(made.status).toBe(400)
      const end = yield* scrape(url)
      expect(end.lines.some((l) => Object.values(l.labels).some((v) => v.includes("my-own-model") || v.includes("made-up-backend")))).toBe(false)
      expect(total(end, "tidyllm_llm_requests_total", { provider: "mock", model: "other", status: "rejected_policy" })).toBeGreaterThan(0)
    }))

  it.effect("every metric and label the Grafana dashboard queries exists in a real scrape", () =>
    Effect.gen(function*() {
      const url = yield* Testing.ServerUrl
      const s = yield* scrape(url)
      const sampleNames = new Set(s.lines.map((l) => l.name))
      const labelsOf = new Map<string, Set<string>>()
      for (const l of s.lines) {
        const set = labelsOf.get(l.name) ?? new Set(["job", "instance"])
        for (const k of Object.keys(l.labels)) set.add(k)
        labelsOf.set(l.name, set)
      }
      const queries = dashboardQueries()
      expect(queries.length).toBeGreaterThan(20)
      const missing: Array<string> = []
      for (const { expr, panel } of queries) {
        const names = metricNames(expr)
        expect(names.length, `no metric in "${panel}": ${expr}`).toBeGreaterThan(0)
        for (const name of names) if (!sampleNames.has(name)) missing.push(`${panel}: ${name}`)
        // Every label the query selects on or groups by is a label of one of its metrics (or a target label).
        const known = new Set(names.flatMap((n) => [...(labelsOf.get(n) ?? [])]))
        for (const label of labelNames(expr)) if (!known.has(label)) missing.push(`${panel}: label '${label}' of ${names.join(", ")}`)
      }
      expect(missing).toEqual([])
      // Each metric family named in the dashboard has HELP text.
      for (const { expr } of queries) for (const name of metricNames(expr)) expect(s.helps.has(family(name)) || s.helps.has(name), name).toBe(true)
    }))

  it.effect("the example Prometheus config scrapes /metrics", () =>
    Effect.sync(() => {
      const yml = readFileSync(new URL("../../../deploy/prometheus/prometheus.yml", import.meta.url), "utf8")
      expect(yml).toMatch(/metrics_path: \/metrics/)
      expect(yml).toMatch(/job_name: tidyllm/)
    }))
})

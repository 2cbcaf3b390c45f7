/**
 * `GET /health`'s dependency checks: each under its own timeout (TestClock), the verdict
 * (required → 503 `unhealthy`, optional → 200 `degraded`), and on the real server over the
 * in-memory store: a healthy installation, an unreachable Redis cache and MLflow fallback
 * (degraded), an S3 endpoint that refuses or never answers (unhealthy, "no answer within 2000 ms").
 */
import { mkdtempSync, rmSync } from "node:fs"
import { createServer, type Server, type Socket } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Fiber, Layer, TestClock } from "effect"
import type { Config } from "@tidyllm/core"
import { MockProvider } from "@tidyllm/corporate-llm"
import type { LlmProvider } from "@tidyllm/corporate-llm"
import * as Checks from "../src/health/Checks.js"
import * as Layers from "../src/Layers.js"
import * as Testing from "../src/Testing.js"

describe("Checks.run", () => {
  it.effect("a probe that never answers fails after the timeout, saying so", () =>
    Effect.gen(function*() {
      const fiber = yield* Effect.fork(Checks.run({ name: "object store", required: true, probe: Effect.never }, Duration.millis(1500)))
      yield* TestClock.adjust(Duration.millis(1499))
      expect(fiber.unsafePoll()).toBeNull()
      yield* TestClock.adjust(Duration.millis(1))
      expect(yield* Fiber.join(fiber)).toEqual({ name: "object store", ok: false, required: true, latency_ms: 1500, detail: "no answer within 1500 ms" })
    }))

  it.effect("times the probe; a failure keeps its reason; a defect is a failure, not a crash", () =>
    Effect.gen(function*() {
      const slow = yield* Effect.fork(Checks.run({ name: "cache", required: false, probe: Effect.as(Effect.sleep("120 millis"), { detail: "answered" }) }))
      yield* TestClock.adjust("120 millis")
      expect(yield* Fiber.join(slow)).toEqual({ name: "cache", ok: true, required: false, latency_ms: 120, detail: "answered" })
      expect(yield* Checks.run({ name: "cache", required: false, probe: Effect.fail("ECONNREFUSED") })).toMatchObject({ ok: false, detail: "ECONNREFUSED", latency_ms: 0 })
      expect(yield* Checks.run({ name: "cache", required: false, probe: Effect.die(new Error("boom")) })).toMatchObject({ ok: false, detail: "unexpected failure: boom" })
    }))

  it("the verdict: a failed required check is unhealthy, a failed optional one degraded", () => {
    const check = (required: boolean, ok: boolean): Checks.DependencyCheck => ({ name: "x", required, ok, latency_ms: 1, detail: "" })
    expect(Checks.verdict([check(true, true), check(false, true)])).toBe("healthy")
    expect(Checks.verdict([check(true, true), check(false, false)])).toBe("degraded")
    expect(Checks.verdict([check(true, false), check(false, false)])).toBe("unhealthy")
  })
})

describe("Checks.provider", () => {
  const config = Testing.config("/tmp/unused", { corporate_llm: { default_provider: "mock", fallback_provider: "mlflow" } })
  const provider = (name: string, health: LlmProvider.ProviderHealth): LlmProvider.LlmProvider => ({ ...MockProvider.make(), name, mock: false, health: Effect.succeed(health) })

  it.effect("the default provider is required; a fallback is optional; one neither configured nor routed to is skipped", () =>
    Effect.gen(function*() {
      const mock = yield* Checks.run(Checks.provider(MockProvider.make(), config))
      expect(mock).toMatchObject({ name: "provider mock", ok: true, required: true, detail: "default: offline mock provider: answers are not from a model" })
      const down = yield* Checks.run(Checks.provider(provider("mlflow", { configured: true, reachable: false, detail: "unreachable: ECONNREFUSED" }), config))
      expect(down).toMatchObject({ name: "provider mlflow", ok: false, required: false, detail: "fallback: unreachable: ECONNREFUSED" })
      const unused = yield* Checks.run(Checks.provider(provider("openai", { configured: false, detail: "OPENAI_API_KEY is missing" }), config))
      expect(unused).toMatchObject({ ok: true, skipped: true, detail: "not configured (not used by this configuration): OPENAI_API_KEY is missing" })
      const routed = yield* Checks.run(Checks.provider(provider("openai", { configured: false, detail: "OPENAI_API_KEY is missing" }), { ...config, corporate_llm: { ...config.corporate_llm, default_provider: "openai" } }))
      expect(routed).toMatchObject({ ok: false, required: true, detail: "not configured (default): OPENAI_API_KEY is missing" })
    }))
})

interface HealthBody {
  readonly status: string
  readonly services: Record<string, { readonly healthy: boolean }>
  readonly checks: ReadonlyArray<{ readonly name: string; readonly ok: boolean; readonly required: boolean; readonly latency_ms: number; readonly detail: string }>
}

const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "tidyllm-health-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

/** `GET /health` on a server over the in-memory store, configured by `overrides`. */
const healthOf = (overrides: Parameters<typeof Testing.config>[1] = {}) =>
  Effect.gen(function*() {
    const dir = yield* tempDir
    const cfg: Config.GatewayConfig = Testing.config(dir, overrides)
    const ctx = yield* Layer.build(Testing.layerWith(cfg, Layers.gateways(cfg, Layers.storeMemory)))
    const url = yield* Effect.provide(Testing.ServerUrl, Layer.succeedContext(ctx))
    return yield* Effect.promise(async () => {
      const r = await fetch(`${url}/health`)
      return { status: r.status, body: (await r.json()) as HealthBody }
    })
  })

/** A TCP server that accepts connections and never answers; its port. */
const silentServer = Effect.acquireRelease(
  Effect.async<{ readonly server: Server; readonly sockets: Set<Socket>; readonly port: number }>((resume) => {
    const sockets = new Set<Socket>()
    const server = createServer((socket) => {
      sockets.add(socket)
      socket.on("close", () => sockets.delete(socket))
    })
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      resume(Effect.succeed({ server, sockets, port: typeof address === "object" && address !== null ? address.port : 0 }))
    })
  }),
  ({ server, sockets }) => Effect.async<void>((resume) => {
    for (const s of sockets) s.destroy()
    server.close(() => resume(Effect.void))
  })
).pipe(Effect.map(({ port }) => port))

/** S3 on an endpoint, with static keys (so the SDK asks no credential chain). */
const s3 = (endpoint: string) => ({
  storage: { s3: { bucket: "wf", endpoint, force_path_style: true } },
  providers: { bedrock: { access_key_id: "AKIDEXAMPLE", secret_access_key: "EXAMPLEKEY" } }
}) as const

describe("GET /health on the running server", () => {
  it.scopedLive("healthy: every dependency answers, each with its latency", () =>
    Effect.gen(function*() {
      const { status, body } = yield* healthOf()
      expect(status).toBe(200)
      expect(body.status).toBe("healthy")
      expect(body.checks.map((c) => [c.name, c.ok, c.required])).toEqual([
        ["database", true, true],
        ["object store", true, true],
        ["cache", true, false],
        ["provider mock", true, true]
      ])
      for (const c of body.checks) expect(c.latency_ms).toBeGreaterThanOrEqual(0)
      expect(body.checks.find((c) => c.name === "object store")?.detail).toBe("local directory: listing answered")
      // The per-service reports are still there.
      expect(Object.keys(body.services)).toEqual(["corporate_llm", "ai_processing", "storage", "workflow_optimizer", "session_manager"])
    }), { timeout: 30_000 })

  it.scopedLive("degraded (200): the Redis cache and the MLflow fallback do not answer; each says why", () =>
    Effect.gen(function*() {
      const { status, body } = yield* healthOf({
        storage: { cache: "redis", redis_url: "redis://127.0.0.1:1" },
        providers: { mlflow: { gateway_url: "http://127.0.0.1:1" } },
        corporate_llm: { default_provider: "mock", fallback_provider: "mlflow" }
      })
      expect(status).toBe(200)
      expect(body.status).toBe("degraded")
      const cache = body.checks.find((c) => c.name === "cache")
      expect(cache).toMatchObject({ ok: false, required: false })
      expect(cache?.detail).toMatch(/redis:\/\/127\.0\.0\.1:1/)
      const mlflow = body.checks.find((c) => c.name === "provider mlflow")
      expect(mlflow).toMatchObject({ ok: false, required: false })
      expect(mlflow?.detail).toMatch(/^fallback: MLflow AI Gateway at http:\/\/127\.0\.0\.1:1: unreachable/)
      expect(body.checks.filter((c) => c.required).every((c) => c.ok)).toBe(true)
    }), { timeout: 30_000 })

  it.scopedLive("unhealthy (503): the S3 endpoint refuses connections", () =>
    Effect.gen(function*() {
      const { status, body } = yield* healthOf(s3("http://127.0.0.1:1"))
      expect(status).toBe(503)
      expect(body.status).toBe("unhealthy")
      const objects = body.checks.find((c) => c.name === "object store")
      expect(objects).toMatchObject({ ok: false, required: true })
      expect(objects?.detail).toMatch(/^S3 s3:\/\/wf\/ at http:\/\/127\.0\.0\.1:1: .*ECONNREFUSED/)
    }), { timeout: 30_000 })

  it.scopedLive("unhealthy (503): an S3 endpoint that never answers fails its check at the timeout; the others answer meanwhile", () =>
    Effect.gen(function*() {
      const port = yield* silentServer
      const started = Date.now()
      const { status, body } = yield* healthOf(s3(`http://127.0.0.1:${port}`))
      const took = Date.now() - started
      expect(status).toBe(503)
      const objects = body.checks.find((c) => c.name === "object store")
      expect(objects).toMatchObject({ ok: false, required: true, detail: `no answer within ${Duration.toMillis(Checks.DEFAULT_TIMEOUT)} ms` })
      expect(objects?.latency_ms).toBeGreaterThanOrEqual(Duration.toMillis(Checks.DEFAULT_TIMEOUT) - 5)
      expect(body.checks.find((c) => c.name === "database")?.ok).toBe(true)
      // Concurrent, not one after another; and bounded by the timeout.
      expect(took).toBeLessThan(Duration.toMillis(Checks.DEFAULT_TIMEOUT) + 5_000)
    }), { timeout: 30_000 })
})

/**
 * A client that goes away mid-stream: the server cancels the upstream stream, audits the request
 * as `cancelled` with what was delivered, and settles its reservation (through the real socket).
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { expect, layer } from "@effect/vitest"
import { Duration, Effect, Layer, Schedule } from "effect"
import { AuditLog, BudgetLedger } from "@tidyllm/corporate-llm"
import * as Testing from "../src/Testing.js"

const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "tidyllm-cancel-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

// A slow stream (one chunk every 300 ms) and one database reservation per request, so an open
// reservation would show.
const ServerLive = Layer.unwrapScoped(Effect.map(tempDir, (dir) =>
  Testing.layer(Testing.config(dir, {
    providers: { mock: { latency_ms: 0, stream_chunk_delay_ms: 300 } },
    corporate_llm: { budget_slice_fraction: 0 }
  }))))

layer(ServerLive, { excludeTestServices: true, timeout: "60 seconds" })("a client gone mid-stream", (it) => {
  it.effect("cancels the upstream stream: audited as cancelled, reservation settled", () =>
    Effect.gen(function*() {
      const url = yield* Testing.ServerUrl
      const audit = yield* AuditLog.AuditLog
      const ledger = yield* BudgetLedger.BudgetLedger
      const controller = new AbortController()
      const firstBytes = yield* Effect.promise(async () => {
        const res = await fetch(`${url}/v1/chat/completions`, {
          method: "POST",
          signal: controller.signal,
          headers: { "content-type": "application/json", "x-tidyllm-reason": "disconnect test", "x-request-id": "gone-1" },
          body: JSON.stringify({ model: "claude-3-haiku", stream: true, messages: [{ role: "user", content: "Tell me a long story about risk" }] })
        })
        const reader = res.body!.getReader() // a streamed 200 always has a body
        const first = await reader.read()
        controller.abort()
        return { status: res.status, text: new TextDecoder().decode(first.value as Uint8Array | undefined) }
      })
      expect(firstBytes.status).toBe(200)
      expect(firstBytes.text).toContain("data: ")
      // The row is written when the server notices the closed socket: poll for it, bounded.
      const rows = yield* audit.list({ limit: 5, request_id: "gone-1" }).pipe(
        Effect.flatMap((r) => (r.length > 0 ? Effect.succeed(r) : Effect.fail("not yet" as const))),
        Effect.retry(Schedule.spaced(Duration.millis(100)).pipe(Schedule.intersect(Schedule.recurs(50)))),
        Effect.orDie
      )
      expect(rows.map((r) => r.status)).toEqual(["cancelled"])
      // The stream would have taken seconds; it was cut well before its end.
      expect(rows[0]!.output_tokens).toBeLessThan(16)
      expect(yield* Effect.orDie(ledger.openReservations)).toBe(0)
    }))
})

/**
 * A wire-level stub of an MLflow AI Gateway on loopback: `GET /health` and
 * `POST /gateway/{endpoint}/invocations` for chat endpoints (OpenAI's shapes, SSE chunks ending
 * in `data: [DONE]`) and embedding endpoints (told apart by the body: `input` vs `messages`),
 * with MLflow's error bodies. It follows the shared {@link Scenario} contract on invocations;
 * `/health` always answers `{"status":"OK"}`.
 */
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import { echoedCredentials, type EchoScenario, fixture, type Scenario, type StubHandle } from "./Scenario.js"

/** What the stub may do beyond the shared contract. */
export interface MlflowStubOptions {
  /** Whether streamed answers end with a usage chunk (default `true`). */
  readonly streamUsage?: boolean | undefined
  /** Pause before each streamed chunk after the first, in milliseconds. */
  readonly chunkDelayMs?: number | undefined
  /** End a `success` stream cleanly without `data: [DONE]`. */
  readonly omitDone?: boolean | undefined
  /** After the first chunk, send this as an SSE `data:` event and end the stream. */
  readonly midStreamError?: unknown
  /** In `bad_request`, answer as the gateway's request validation does: FastAPI's 422 with a `detail` list. */
  readonly badRequestAs422?: boolean | undefined
  /** Split every SSE write into pieces of this many bytes (exercises the client's reassembly). */
  readonly writeBytes?: number | undefined
}

const completionId = "chatcmpl-stub-1"
const created = 1_700_000_000

const usage = {
  prompt_tokens: fixture.usage.input_tokens,
  completion_tokens: fixture.usage.output_tokens,
  total_tokens: fixture.usage.input_tokens + fixture.usage.output_tokens
}

const chatResponse = (endpoint: string, isTool: boolean) => ({
  id: completionId,
  object: "chat.completion",
  created,
  model: endpoint,
  choices: [{
    index: 0,
    message: isTool
      ? {
        role: "assistant",
        content: null,
        tool_calls: [{ id: fixture.tool.id, type: "function", function: { name: fixture.tool.name, arguments: fixture.tool.arguments } }]
      }
      : { role: "assistant", content: fixture.text },
    finish_reason: isTool ? "tool_calls" : "stop"
  }],
  usage
})

const chunk = (endpoint: string, delta: unknown, finishReason: string | null = null, extra: object = {}) => ({
  id: completionId,
  object: "chat.completion.chunk",
  created,
  model: endpoint,
  choices: [{ index: 0, delta, finish_reason: finishReason }],
  ...extra
})

/** The data lines of a streamed answer, `[DONE]` excluded. */
const streamChunks = (endpoint: string, isTool: boolean, withUsage: boolean): ReadonlyArray<unknown> => {
  const body: Array<unknown> = isTool
    ? (() => {
      const args = fixture.tool.arguments
      const cut = Math.floor(args.length / 2)
      return [
        chunk(endpoint, {
          role: "assistant",
          content: null,
          tool_calls: [{ index: 0, id: fixture.tool.id, type: "function", function: { name: fixture.tool.name, arguments: "" } }]
        }),
        chunk(endpoint, { tool_calls: [{ index: 0, function: { arguments: args.slice(0, cut) } }] }),
        chunk(endpoint, { tool_calls: [{ index: 0, function: { arguments: args.slice(cut) } }] }),
        chunk(endpoint, {}, "tool_calls")
      ]
    })()
    : [
      ...fixture.textChunks.map((content, i) => chunk(endpoint, i === 0 ? { role: "assistant", content } : { content })),
      chunk(endpoint, {}, "stop")
    ]
  // Usage last, in a chunk of its own with no choices (OpenAI's `include_usage` shape).
  return withUsage ? [...body, { id: completionId, object: "chat.completion.chunk", created, model: endpoint, choices: [], usage }] : body
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** Starts the stub on 127.0.0.1 with an ephemeral port. */
export const startMlflowStub = async (options: MlflowStubOptions = {}): Promise<StubHandle> => {
  let scenario: Scenario | EchoScenario = "success"
  let throttled = false
  let closing = false
  let aborted = 0
  const bodies: Array<unknown> = []
  const headers: Array<Readonly<Record<string, string | ReadonlyArray<string> | undefined>>> = []

  const server = Http.createServer((req, res) => {
    const chunks: Array<Buffer> = []
    req.on("data", (c: Buffer) => chunks.push(c))
    req.on("end", () => {
      const raw = Buffer.concat(chunks).toString("utf8")
      let body: unknown
      try {
        body = raw.length === 0 ? undefined : JSON.parse(raw)
      } catch {
        body = undefined
      }
      bodies.push(body)
      headers.push({ ...req.headers })
      let cutByStub = false
      res.on("close", () => {
        if (!res.writableFinished && !cutByStub && !closing) aborted++
      })
      const json = (status: number, payload: unknown) => {
        res.writeHead(status, { "content-type": "application/json" })
        res.end(JSON.stringify(payload))
      }
      const path = req.url?.split("?")[0] ?? ""
      if (req.method === "GET" && path === "/health") {
        json(200, { status: scenario === "echo_credentials" ? `OK for ${echoedCredentials(req.headers)}` : "OK" })
        return
      }
      const route = /^\/gateway\/([^/]+)\/invocations$/.exec(path)
      if (req.method !== "POST" || route?.[1] === undefined) {
        json(404, { detail: "Not Found" })
        return
      }
      const endpoint = decodeURIComponent(route[1])
      const request = (typeof body === "object" && body !== null ? body : {}) as { input?: unknown; messages?: unknown; stream?: unknown }
      const isEmbeddings = request.input !== undefined
      if (!isEmbeddings && !Array.isArray(request.messages)) {
        json(422, { detail: [{ loc: ["body", "messages"], msg: "field required", type: "value_error.missing" }] })
        return
      }
      const streaming = !isEmbeddings && request.stream === true
      const current = scenario
      switch (current) {
        case "throttle_once":
          if (!throttled) {
            throttled = true
            // The gateway's per-endpoint limiter answers as FastAPI does.
            json(429, { detail: "Rate limit exceeded: 10 per 1 minute" })
            return
          }
          break
        case "server_error":
          json(500, { error_code: "INTERNAL_ERROR", message: "Upstream provider failed" })
          return
        case "bad_request":
          if (options.badRequestAs422 === true) {
            json(422, { detail: [{ loc: ["body", "max_tokens"], msg: "ensure this value is greater than 0", type: "value_error" }] })
            return
          }
          json(400, { error_code: "INVALID_PARAMETER_VALUE", message: "Invalid value for max_tokens" })
          return
        case "hang":
          return
        case "echo_credentials":
          json(401, { error_code: "UNAUTHENTICATED", message: `Invalid credentials (${echoedCredentials(req.headers)})` })
          return
        case "reset_mid_stream":
          if (!streaming) {
            cutByStub = true
            req.socket.destroy()
            return
          }
          break
        default:
          break
      }
      if (isEmbeddings) {
        const inputs = Array.isArray(request.input) ? request.input : [request.input]
        json(200, {
          object: "list",
          data: inputs.map((_, index) => ({ object: "embedding", embedding: fixture.embedding, index })),
          model: endpoint,
          usage: { prompt_tokens: fixture.embeddingTokens, total_tokens: fixture.embeddingTokens }
        })
        return
      }
      const isTool = current === "tool_call"
      if (!streaming) {
        json(200, chatResponse(endpoint, isTool))
        return
      }
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" })
      const write = async (text: string) => {
        const size = options.writeBytes ?? 0
        if (size <= 0) {
          res.write(text)
          return
        }
        const bytes = Buffer.from(text, "utf8")
        for (let i = 0; i < bytes.length; i += size) {
          res.write(bytes.subarray(i, i + size))
          await sleep(1)
        }
      }
      void (async () => {
        const data = streamChunks(endpoint, isTool, options.streamUsage ?? true)
        for (const [i, piece] of data.entries()) {
          if (i > 0 && (options.chunkDelayMs ?? 0) > 0) await sleep(options.chunkDelayMs ?? 0)
          if (res.destroyed) return
          await write(`data: ${JSON.stringify(piece)}\n\n`)
          if (current === "reset_mid_stream" && i + 1 === fixture.cutAfterChunks) {
            cutByStub = true
            await sleep(20)
            req.socket.destroy()
            return
          }
          if (options.midStreamError !== undefined && i === 0) {
            await write(`data: ${JSON.stringify(options.midStreamError)}\n\n`)
            res.end()
            return
          }
        }
        if (options.omitDone !== true) await write("data: [DONE]\n\n")
        res.end()
      })()
    })
  })

  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const { port } = server.address() as AddressInfo

  return {
    url: `http://127.0.0.1:${port}`,
    setScenario: (next) => {
      scenario = next
      throttled = false
    },
    requests: () => [...bodies],
    headers: () => [...headers],
    aborted: () => aborted,
    close: () =>
      new Promise<void>((resolve) => {
        closing = true
        server.close(() => resolve())
        server.closeAllConnections()
      })
  }
}

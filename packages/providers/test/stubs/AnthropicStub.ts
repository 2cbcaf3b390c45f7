/**
 * A wire-level stub of Anthropic's Messages API (`POST /v1/messages`) on loopback: JSON
 * messages, or SSE streams with Anthropic's named events, and Anthropic's error bodies. It
 * follows the shared {@link Scenario} contract.
 */
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import { echoedCredentials, type EchoScenario, fixture, type Scenario, type StubHandle } from "./Scenario.js"

/** What the stub may do beyond the shared contract. */
export interface AnthropicStubOptions {
  /** In `tool_call` answers, a text block before the `tool_use` block (Claude often thinks aloud first). */
  readonly toolPreamble?: string | undefined
  /** Pause before each streamed event after `message_start`, in milliseconds. */
  readonly eventDelayMs?: number | undefined
  /** Sent as an `event: error` instead of the rest of the stream, after the first text chunk. */
  readonly midStreamError?: { readonly type: string; readonly message: string } | undefined
  /** End a `success` stream (cleanly, chunked terminator and all) before `message_stop`. */
  readonly truncateBeforeStop?: boolean | undefined
}

const messageId = "msg_stub_01"

const errorBody = (type: string, message: string) => ({ type: "error", error: { type, message } })

const usageOf = (input: number, output: number) => ({
  input_tokens: input,
  output_tokens: output,
  cache_creation_input_tokens: 0,
  cache_read_input_tokens: 0,
  service_tier: "standard"
})

/** The content blocks of an answer (JSON form). */
const contentOf = (scenarioIsTool: boolean, options: AnthropicStubOptions) =>
  scenarioIsTool
    ? [
      ...(options.toolPreamble === undefined ? [] : [{ type: "text", text: options.toolPreamble }]),
      { type: "tool_use", id: fixture.tool.id, name: fixture.tool.name, input: JSON.parse(fixture.tool.arguments) as unknown }
    ]
    : [{ type: "text", text: fixture.text }]

const message = (model: string, isTool: boolean, options: AnthropicStubOptions) => ({
  id: messageId,
  type: "message",
  role: "assistant",
  model,
  content: contentOf(isTool, options),
  stop_reason: isTool ? "tool_use" : "end_turn",
  stop_sequence: null,
  usage: usageOf(fixture.usage.input_tokens, fixture.usage.output_tokens)
})

type SseEvent = readonly [type: string, data: unknown]

/** The events of a streamed answer, in Anthropic's order. */
const streamEvents = (model: string, isTool: boolean, options: AnthropicStubOptions): ReadonlyArray<SseEvent> => {
  const start: SseEvent = ["message_start", {
    type: "message_start",
    message: { ...message(model, isTool, options), content: [], stop_reason: null, usage: usageOf(fixture.usage.input_tokens, 1) }
  }]
  const blocks: Array<SseEvent> = []
  let index = 0
  const textBlock = (chunks: ReadonlyArray<string>) => {
    blocks.push(["content_block_start", { type: "content_block_start", index, content_block: { type: "text", text: "" } }])
    for (const [i, text] of chunks.entries()) {
      if (i === 1) blocks.push(["ping", { type: "ping" }])
      blocks.push(["content_block_delta", { type: "content_block_delta", index, delta: { type: "text_delta", text } }])
    }
    blocks.push(["content_block_stop", { type: "content_block_stop", index }])
    index++
  }
  if (isTool) {
    if (options.toolPreamble !== undefined) textBlock([options.toolPreamble])
    blocks.push(["content_block_start", {
      type: "content_block_start",
      index,
      content_block: { type: "tool_use", id: fixture.tool.id, name: fixture.tool.name, input: {} }
    }])
    // Anthropic sends the arguments in arbitrary fragments (the first one often empty).
    const args = fixture.tool.arguments
    const cut = Math.floor(args.length / 2)
    for (const partial_json of ["", args.slice(0, cut), args.slice(cut)]) {
      blocks.push(["content_block_delta", { type: "content_block_delta", index, delta: { type: "input_json_delta", partial_json } }])
    }
    blocks.push(["content_block_stop", { type: "content_block_stop", index }])
  } else {
    textBlock(fixture.textChunks)
  }
  return [
    start,
    ...blocks,
    ["message_delta", {
      type: "message_delta",
      delta: { stop_reason: isTool ? "tool_use" : "end_turn", stop_sequence: null },
      usage: { output_tokens: fixture.usage.output_tokens }
    }],
    ["message_stop", { type: "message_stop" }]
  ]
}

const sse = ([type, data]: SseEvent) => `event: ${type}\ndata: ${JSON.stringify(data)}\n\n`

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** Starts the stub on 127.0.0.1 with an ephemeral port. */
export const startAnthropicStub = async (options: AnthropicStubOptions = {}): Promise<StubHandle> => {
  let scenario: Scenario | EchoScenario = "success"
  let throttled = false
  let closing = false
  let aborted = 0
  const bodies: Array<unknown> = []
  const headers: Array<Readonly<Record<string, string | ReadonlyArray<string> | undefined>>> = []

  const server = Http.createServer((req, res) => {
    const chunks: Array<Buffer> = []
    req.on("data", (chunk: Buffer) => chunks.push(chunk))
    req.on("end", () => {
      let body: unknown
      try {
        body = JSON.parse(Buffer.concat(chunks).toString("utf8"))
      } catch {
        body = undefined
      }
      bodies.push(body)
      headers.push({ ...req.headers })
      // Set when the stub itself cuts the socket, so `aborted` counts only the client's doing.
      let cutByStub = false
      res.on("close", () => {
        if (!res.writableFinished && !cutByStub && !closing) aborted++
      })
      const json = (status: number, payload: unknown) => {
        res.writeHead(status, { "content-type": "application/json", "request-id": "req_stub_01" })
        res.end(JSON.stringify(payload))
      }
      if (req.method !== "POST" || req.url?.split("?")[0] !== "/v1/messages") {
        json(404, errorBody("not_found_error", `Not found: ${req.method} ${req.url}`))
        return
      }
      const request = (typeof body === "object" && body !== null ? body : {}) as { model?: unknown; stream?: unknown }
      const model = typeof request.model === "string" ? request.model : "claude-stub"
      const streaming = request.stream === true
      const current = scenario
      switch (current) {
        case "throttle_once":
          if (!throttled) {
            throttled = true
            json(429, errorBody("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"))
            return
          }
          break
        case "server_error":
          json(500, errorBody("api_error", "Internal server error"))
          return
        case "bad_request":
          json(400, errorBody("invalid_request_error", "messages: roles must alternate between \"user\" and \"assistant\""))
          return
        case "hang":
          return
        case "echo_credentials":
          json(401, errorBody("authentication_error", `invalid x-api-key (${echoedCredentials(req.headers)})`))
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
      const isTool = current === "tool_call"
      if (!streaming) {
        json(200, message(model, isTool, options))
        return
      }
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", "request-id": "req_stub_01" })
      void (async () => {
        let textChunks = 0
        for (const event of streamEvents(model, isTool, options)) {
          if (res.destroyed) return
          const [type] = event
          if (type === "message_stop" && options.truncateBeforeStop === true) {
            res.end()
            return
          }
          if (type !== "message_start" && (options.eventDelayMs ?? 0) > 0) await sleep(options.eventDelayMs ?? 0)
          if (res.destroyed) return
          res.write(sse(event))
          if (type === "content_block_delta") textChunks++
          if (current === "reset_mid_stream" && textChunks === fixture.cutAfterChunks) {
            cutByStub = true
            // Let the written events leave before the cut, as a proxy dying mid-answer would.
            await sleep(20)
            req.socket.destroy()
            return
          }
          if (options.midStreamError !== undefined && textChunks === 1) {
            res.end(sse(["error", errorBody(options.midStreamError.type, options.midStreamError.message)]))
            return
          }
        }
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

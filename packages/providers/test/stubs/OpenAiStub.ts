/**
 * A wire-level OpenAI API stub on loopback: `POST /v1/chat/completions` (JSON, or SSE when the
 * request streams) and `POST /v1/embeddings`, in OpenAI's exact wire format, behaving as the
 * {@link Scenario} contract says. Serves the OpenAI adapter, the OpenAI-compatible adapter and
 * the server's provider × scenario matrix; it needs nothing but `node:http`.
 */
import * as Http from "node:http"
import type { AddressInfo, Socket } from "node:net"
import { echoedCredentials, type EchoScenario, fixture, type Scenario, type StubHandle } from "./Scenario.js"

const created = 1_700_000_000

/** OpenAI's error body. */
const errorBody = (message: string, type: string, param: string | null, code: string | null) =>
  JSON.stringify({ error: { message, type, param, code } })

const usageOf = () => ({
  prompt_tokens: fixture.usage.input_tokens,
  completion_tokens: fixture.usage.output_tokens,
  total_tokens: fixture.usage.input_tokens + fixture.usage.output_tokens,
  prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
  completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 }
})

/** The tool call's arguments in the pieces a model streams them in. */
const argumentPieces = (args: string): ReadonlyArray<string> => {
  const cut = Math.ceil(args.length / 2)
  return [args.slice(0, cut), args.slice(cut)]
}

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null && !Array.isArray(u)

/** Float32 little-endian, base64: what OpenAI sends for `encoding_format: "base64"`. */
const base64Floats = (values: ReadonlyArray<number>): string => {
  const buffer = Buffer.alloc(values.length * 4)
  values.forEach((v, i) => buffer.writeFloatLE(v, i * 4))
  return buffer.toString("base64")
}

/** Starts the stub on 127.0.0.1 (a free port); `url` is its `…/v1` base URL. */
export const startOpenAiStub = async (): Promise<StubHandle> => {
  let scenario: Scenario | EchoScenario = "success"
  let throttled = 0
  let aborted = 0
  let closing = false
  let sequence = 0
  const bodies: Array<unknown> = []
  const headers: Array<Readonly<Record<string, string | ReadonlyArray<string> | undefined>>> = []
  const sockets = new Set<Socket>()

  const handle = (req: Http.IncomingMessage, res: Http.ServerResponse, raw: string) => {
    const id = ++sequence
    let body: unknown
    try {
      body = JSON.parse(raw)
    } catch {
      body = raw
    }
    bodies.push(body)
    headers.push({ ...req.headers })

    // Sockets the stub destroys on purpose are not the client's aborts.
    let destroyedByStub = false
    const destroy = () => {
      destroyedByStub = true
      req.socket.destroy()
    }
    res.on("close", () => {
      if (!res.writableFinished && !destroyedByStub && !closing) aborted++
    })

    const json = (status: number, payload: string) => {
      res.writeHead(status, {
        "content-type": "application/json",
        "x-request-id": `req_stub_${id}`,
        "openai-processing-ms": "1",
        "content-length": Buffer.byteLength(payload)
      })
      res.end(payload)
    }

    const path = (req.url ?? "").split("?")[0]
    const route = req.method === "POST" && path === "/v1/chat/completions"
      ? "chat"
      : req.method === "POST" && path === "/v1/embeddings"
      ? "embeddings"
      : undefined
    if (route === undefined) {
      return json(404, errorBody(`Invalid URL (${req.method ?? "?"} ${path ?? ""})`, "invalid_request_error", null, null))
    }
    if (!isRecord(body)) {
      return json(400, errorBody("We could not parse the JSON body of your request.", "invalid_request_error", null, null))
    }
    const model = typeof body.model === "string" ? body.model : undefined
    if (model === undefined) {
      return json(400, errorBody("you must provide a model parameter", "invalid_request_error", null, null))
    }

    switch (scenario) {
      case "throttle_once":
        if (throttled++ === 0) {
          return json(
            429,
            errorBody(
              `Rate limit reached for ${model} on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 20s.`,
              "requests",
              "requests",
              "rate_limit_exceeded"
            )
          )
        }
        break
      case "server_error":
        return json(
          500,
          errorBody("The server had an error while processing your request. Sorry about that!", "server_error", null, null)
        )
      case "bad_request":
        return json(
          400,
          errorBody(
            "Invalid 'messages[0].content': string too long. Expected a string with maximum length 10485760.",
            "invalid_request_error",
            "messages[0].content",
            "string_above_max_length"
          )
        )
      case "hang":
        return
      case "echo_credentials":
        // Real OpenAI echoes a masked wrong key; this one echoes the whole header.
        return json(
          401,
          errorBody(`Incorrect API key provided (${echoedCredentials(req.headers)}).`, "invalid_request_error", null, "invalid_api_key")
        )
      case "reset_mid_stream":
        if (route === "embeddings" || body.stream !== true) return destroy()
        break
      default:
        break
    }

    if (route === "embeddings") {
      const input = typeof body.input === "string" ? [body.input] : Array.isArray(body.input) ? body.input : []
      const dimensions = typeof body.dimensions === "number" ? body.dimensions : undefined
      const vector = dimensions === undefined
        ? [...fixture.embedding]
        : Array.from({ length: dimensions }, (_, i) => fixture.embedding[i % fixture.embedding.length] ?? 0)
      return json(200, JSON.stringify({
        object: "list",
        data: input.map((_, index) => ({
          object: "embedding",
          index,
          embedding: body.encoding_format === "base64" ? base64Floats(vector) : vector
        })),
        model,
        usage: { prompt_tokens: fixture.embeddingTokens, total_tokens: fixture.embeddingTokens }
      }))
    }

    const toolCall = scenario === "tool_call"
    const completionId = `chatcmpl-stub${id}`
    if (body.stream !== true) {
      return json(200, JSON.stringify({
        id: completionId,
        object: "chat.completion",
        created,
        model,
        choices: [{
          index: 0,
          message: toolCall
            ? {
              role: "assistant",
              content: null,
              refusal: null,
              annotations: [],
              tool_calls: [{
                id: fixture.tool.id,
                type: "function",
                function: { name: fixture.tool.name, arguments: fixture.tool.arguments }
              }]
            }
            : { role: "assistant", content: fixture.text, refusal: null, annotations: [] },
          logprobs: null,
          finish_reason: toolCall ? "tool_calls" : "stop"
        }],
        usage: usageOf(),
        service_tier: "default",
        system_fingerprint: "fp_stub"
      }))
    }

    // Server-sent events, as OpenAI frames them.
    const includeUsage = isRecord(body.stream_options) && body.stream_options.include_usage === true
    res.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache",
      "x-request-id": `req_stub_${id}`,
      "openai-processing-ms": "1"
    })
    const chunk = (
      delta: Record<string, unknown>,
      finishReason: string | null = null
    ) => ({
      id: completionId,
      object: "chat.completion.chunk",
      created,
      model,
      service_tier: "default",
      system_fingerprint: "fp_stub",
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
      ...(includeUsage ? { usage: null } : {})
    })
    const frames: Array<unknown> = []
    if (toolCall) {
      const [first = "", ...rest] = argumentPieces(fixture.tool.arguments)
      frames.push(chunk({
        role: "assistant",
        content: null,
        tool_calls: [{ index: 0, id: fixture.tool.id, type: "function", function: { name: fixture.tool.name, arguments: "" } }],
        refusal: null
      }))
      for (const piece of [first, ...rest]) frames.push(chunk({ tool_calls: [{ index: 0, function: { arguments: piece } }] }))
      frames.push(chunk({}, "tool_calls"))
    } else {
      frames.push(chunk({ role: "assistant", content: "", refusal: null }))
      for (const text of fixture.textChunks) frames.push(chunk({ content: text }))
      frames.push(chunk({}, "stop"))
    }
    if (includeUsage) {
      frames.push({
        id: completionId,
        object: "chat.completion.chunk",
        created,
        model,
        service_tier: "default",
        system_fingerprint: "fp_stub",
        choices: [],
        usage: usageOf()
      })
    }
    const data = (frame: unknown) => `data: ${JSON.stringify(frame)}\n\n`

    if (scenario === "reset_mid_stream") {
      // The role chunk, then the first text chunks; the socket goes once they are on the wire.
      const sent = frames.slice(0, 1 + fixture.cutAfterChunks).map(data).join("")
      res.write(sent, () => destroy())
      return
    }
    res.end(frames.map(data).join("") + "data: [DONE]\n\n")
  }

  const server = Http.createServer((req, res) => {
    const parts: Array<Buffer> = []
    req.on("data", (part: Buffer) => parts.push(part))
    req.on("end", () => handle(req, res, Buffer.concat(parts).toString("utf8")))
  })
  server.on("connection", (socket) => {
    sockets.add(socket)
    socket.on("close", () => sockets.delete(socket))
  })
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => resolve())
  })
  const { port } = server.address() as AddressInfo

  return {
    url: `http://127.0.0.1:${port}/v1`,
    setScenario: (next) => {
      scenario = next
      throttled = 0
    },
    requests: () => [...bodies],
    headers: () => [...headers],
    aborted: () => aborted,
    close: () =>
      new Promise<void>((resolve) => {
        closing = true
        server.close(() => resolve())
        server.closeAllConnections()
        for (const socket of sockets) socket.destroy()
      })
  }
}

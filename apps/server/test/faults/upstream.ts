/**
 * A fault-injecting OpenAI-compatible upstream on loopback (raw `node:http`): `POST
 * /v1/chat/completions`, JSON or SSE, with a mode the test flips while load runs:
 *
 * - `ok`: answers (the text names the stub, so a test can tell which backend served);
 * - `status`: HTTP 429 (with `retry-after`), 500 or 503 in OpenAI's error shape, to every request
 *   or to a deterministic share of them (the rest answer `ok`);
 * - `slow`: answers only after `delayMs` (longer than the gateway's per-attempt timeout);
 * - `reset`: destroys the socket before answering (`before`) or after the head and half the body
 *   (`mid-body`; for a stream: the head and nothing else);
 * - `cut`: a stream gets the role chunk and one text chunk, then the socket is destroyed (a
 *   non-streamed request gets half its JSON body, then the same).
 *
 * Every request is logged with the tag the test put in the prompt (`[req:<id>]`) and what the stub
 * did with it, so the test can work out what each client request should have seen.
 */
import * as Http from "node:http"
import type { AddressInfo, Socket } from "node:net"

export type Mode =
  | { readonly kind: "ok" }
  | { readonly kind: "status"; readonly status: 429 | 500 | 503; readonly share?: number; readonly retryAfterSeconds?: number }
  | { readonly kind: "slow"; readonly delayMs: number }
  | { readonly kind: "reset"; readonly when: "before" | "mid-body" }
  | { readonly kind: "cut" }

/** What the stub did with one request. */
export type Outcome = "ok" | "429" | "500" | "503" | "slow" | "reset" | "cut"

export interface Served {
  readonly seq: number
  /** The `[req:<id>]` tag of the last user message, when there is one. */
  readonly tag: string | undefined
  readonly outcome: Outcome
  readonly stream: boolean
}

export interface Upstream {
  /** The `…/v1` base URL. */
  readonly url: string
  readonly name: string
  readonly setMode: (mode: Mode) => void
  readonly mode: () => Mode
  readonly served: () => ReadonlyArray<Served>
  /** Requests whose socket the gateway closed before the answer was complete (timeouts, cancels). */
  readonly abortedByClient: () => number
  readonly close: () => Promise<void>
}

/** Usage every answer reports. */
export const USAGE = { prompt_tokens: 12, completion_tokens: 5 } as const
const TEXT_CHUNKS = ["Hello", " from", " the", " stub"] as const

const TAG = /\[req:([^\]]+)\]/

const tagOf = (body: unknown): string | undefined => {
  if (typeof body !== "object" || body === null || !("messages" in body) || !Array.isArray(body.messages)) return undefined
  for (const m of [...(body.messages as Array<unknown>)].reverse()) {
    if (typeof m === "object" && m !== null && "content" in m && typeof m.content === "string") {
      const found = TAG.exec(m.content)
      if (found !== null) return found[1]
    }
  }
  return undefined
}

/** A deterministic, evenly spread "is request n in the share": the golden-ratio sequence. */
const inShare = (n: number, share: number) => ((n * 0.6180339887498949) % 1) < share

export const startUpstream = async (name: string): Promise<Upstream> => {
  let mode: Mode = { kind: "ok" }
  let seq = 0
  let statusSeq = 0
  let aborted = 0
  const served: Array<Served> = []
  const sockets = new Set<Socket>()
  const timers = new Set<NodeJS.Timeout>()

  const handle = (req: Http.IncomingMessage, res: Http.ServerResponse, raw: string) => {
    const n = ++seq
    let body: Record<string, unknown> = {}
    try {
      body = JSON.parse(raw) as Record<string, unknown>
    } catch {
      // answered as a 400 below
    }
    const stream = body.stream === true
    const tag = tagOf(body)
    const current = mode
    let byStub = false
    const destroy = () => {
      byStub = true
      req.socket.destroy()
    }
    res.on("close", () => {
      if (!res.writableFinished && !byStub) aborted++
    })
    const log = (outcome: Outcome) => served.push({ seq: n, tag, outcome, stream })

    const json = (status: number, payload: unknown, headers: Record<string, string> = {}) => {
      const text = JSON.stringify(payload)
      res.writeHead(status, { "content-type": "application/json", "content-length": String(Buffer.byteLength(text)), ...headers })
      res.end(text)
    }
    if (req.method !== "POST" || (req.url ?? "").split("?")[0] !== "/v1/chat/completions" || typeof body.model !== "string") {
      return json(400, { error: { message: "bad request to the fault stub", type: "invalid_request_error", param: null, code: null } })
    }
    const model = body.model
    const id = `chatcmpl-${name}-${n}`
    const text = `${TEXT_CHUNKS.join("")} ${name}`
    const usage = { ...USAGE, total_tokens: USAGE.prompt_tokens + USAGE.completion_tokens }
    const completion = {
      id, object: "chat.completion", created: 1_700_000_000, model,
      choices: [{ index: 0, message: { role: "assistant", content: text, refusal: null }, logprobs: null, finish_reason: "stop" }],
      usage
    }
    const chunk = (delta: Record<string, unknown>, finish: string | null = null) =>
      `data: ${JSON.stringify({ id, object: "chat.completion.chunk", created: 1_700_000_000, model, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] })}\n\n`
    const sseHead = () => res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache" })
    const answer = () => {
      if (!stream) return json(200, completion)
      sseHead()
      const frames = [
        chunk({ role: "assistant", content: "" }),
        ...TEXT_CHUNKS.map((t) => chunk({ content: t })),
        chunk({ content: ` ${name}` }),
        chunk({}, "stop"),
        `data: ${JSON.stringify({ id, object: "chat.completion.chunk", created: 1_700_000_000, model, choices: [], usage })}\n\n`,
        "data: [DONE]\n\n"
      ]
      res.end(frames.join(""))
    }

    switch (current.kind) {
      case "ok":
        log("ok")
        return answer()
      case "status": {
        if (current.share !== undefined && !inShare(++statusSeq, current.share)) {
          log("ok")
          return answer()
        }
        log(String(current.status) as Outcome)
        const error = current.status === 429
          ? { message: `Rate limit reached for ${model}. Please try again in 1s.`, type: "requests", param: null, code: "rate_limit_exceeded" }
          : { message: "The server had an error while processing your request.", type: "server_error", param: null, code: null }
        return json(current.status, { error }, current.status === 429 ? { "retry-after": String(current.retryAfterSeconds ?? 1) } : {})
      }
      case "slow": {
        log("slow")
        const timer = setTimeout(() => {
          timers.delete(timer)
          if (!res.destroyed) answer()
        }, current.delayMs)
        timers.add(timer)
        return
      }
      case "reset":
        log("reset")
        if (current.when === "before") return destroy()
        if (stream) {
          sseHead()
          res.flushHeaders()
          return void setImmediate(destroy)
        }
        {
          const whole = JSON.stringify(completion)
          res.writeHead(200, { "content-type": "application/json", "content-length": String(Buffer.byteLength(whole)) })
          return void res.write(whole.slice(0, Math.floor(whole.length / 2)), () => destroy())
        }
      case "cut":
        log("cut")
        if (!stream) {
          const whole = JSON.stringify(completion)
          res.writeHead(200, { "content-type": "application/json", "content-length": String(Buffer.byteLength(whole)) })
          return void res.write(whole.slice(0, Math.floor(whole.length / 2)), () => destroy())
        }
        sseHead()
        // Two chunks (the role, then the first text), then the connection is gone.
        return void res.write(chunk({ role: "assistant", content: "" }) + chunk({ content: TEXT_CHUNKS[0] }), () => destroy())
    }
  }

  const server = Http.createServer((req, res) => {
    const parts: Array<Buffer> = []
    req.on("data", (p: Buffer) => parts.push(p))
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
    name,
    setMode: (next) => {
      mode = next
      statusSeq = 0
    },
    mode: () => mode,
    served: () => [...served],
    abortedByClient: () => aborted,
    close: () =>
      new Promise<void>((resolve) => {
        for (const t of timers) clearTimeout(t)
        timers.clear()
        server.close(() => resolve())
        server.closeAllConnections()
        for (const s of sockets) s.destroy()
      })
  }
}

/**
 * A wire-level Bedrock Runtime stub: cleartext HTTP/2 on loopback (the SDK speaks HTTP/2 by
 * default), answering from a scripted queue the way Bedrock does (Converse, ConverseStream,
 * InvokeModel), and recording what it got.
 */
import { EventStreamCodec } from "@smithy/eventstream-codec"
import { fromUtf8, toUtf8 } from "@smithy/util-utf8"
import { Effect, type Scope } from "effect"
import * as Http2 from "node:http2"
import type { AddressInfo } from "node:net"

/** How the server side of one exchange ended. */
export interface Closure {
  /** The stub had written its whole reply. */
  readonly replyComplete: boolean
  /** HTTP/2 RST_STREAM code (0 = closed normally, 8 = cancelled by the client). */
  readonly rstCode: number
}

/** One request as the stub received it. */
export interface RecordedRequest {
  readonly method: string
  readonly path: string
  readonly headers: Http2.IncomingHttpHeaders
  readonly body: unknown
  /** Resolves when the exchange's stream closes, however it closes. */
  readonly closed: Promise<Closure>
}

/** One event-stream frame of a ConverseStream reply, sent after `delayMs`. */
export type Frame =
  | { readonly _tag: "Event"; readonly type: string; readonly payload: unknown; readonly delayMs?: number }
  | { readonly _tag: "Exception"; readonly type: string; readonly message: string; readonly delayMs?: number }
  /** Not a frame: resets the HTTP/2 stream (RST_STREAM INTERNAL_ERROR) once the frames before it are out. */
  | { readonly _tag: "Reset"; readonly delayMs?: number }

/** A 200 JSON reply, sent once `after` (if any) has settled, then `delayMs` later. */
export interface JsonReply {
  readonly _tag: "Json"
  readonly body: unknown
  readonly delayMs?: number
  readonly after?: Promise<unknown>
}

/** One scripted reply. */
export type Reply =
  | JsonReply
  | { readonly _tag: "Error"; readonly status: number; readonly type: string; readonly message: string }
  | { readonly _tag: "EventStream"; readonly frames: ReadonlyArray<Frame> }
  /** A reply made from the request, for concurrent requests whose arrival order is not known. */
  | { readonly _tag: "Respond"; readonly respond: (request: RecordedRequest) => Reply }

/** The running stub. */
export interface BedrockStub {
  /** `http://127.0.0.1:PORT`, for the client's `endpoint`. */
  readonly url: string
  /** Requests in arrival order. */
  readonly requests: ReadonlyArray<RecordedRequest>
  /** Appends replies to the queue; requests take them in order. */
  readonly reply: (...replies: ReadonlyArray<Reply>) => void
  /** Resolves with the n-th request (1-based) once it has arrived. */
  readonly request: (n: number) => Promise<RecordedRequest>
  /** HTTP/2 connections (sessions) the stub has accepted so far. */
  readonly connections: () => number
  /** Closes every open connection (a GOAWAY, then the socket), as a server dropping idle connections does. */
  readonly dropConnections: () => void
}

/** A Converse success with one text block per piece. */
export const converse = (
  pieces: ReadonlyArray<string>,
  usage: { readonly inputTokens: number; readonly outputTokens: number },
  stopReason = "end_turn"
): JsonReply => ({
  _tag: "Json",
  body: {
    output: { message: { role: "assistant", content: pieces.map((text) => ({ text })) } },
    stopReason,
    usage: { ...usage, totalTokens: usage.inputTokens + usage.outputTokens },
    metrics: { latencyMs: 42 }
  }
})

/** An error reply: Bedrock's type in `x-amzn-errortype`, `{"message"}` as the body. */
export const error = (status: number, type: string, message = `${type} from the stub`): Reply => ({
  _tag: "Error",
  status,
  type,
  message
})

/** A ConverseStream reply. */
export const eventStream = (...frames: ReadonlyArray<Frame>): Reply => ({ _tag: "EventStream", frames })

/** An event frame. */
export const event = (type: string, payload: unknown, delayMs?: number): Frame =>
  delayMs === undefined ? { _tag: "Event", type, payload } : { _tag: "Event", type, payload, delayMs }

/** An exception frame, as Bedrock sends mid-stream failures. */
export const exception = (type: string, message: string): Frame => ({ _tag: "Exception", type, message })

/** Resets the HTTP/2 stream instead of sending the rest: the answer breaks off. */
export const reset: Frame = { _tag: "Reset" }

/** Answers each request with what `respond` makes of it. */
export const respond = (f: (request: RecordedRequest) => Reply): Reply => ({ _tag: "Respond", respond: f })

/** A Converse answer that calls tools (stop reason `tool_use`), after an optional text block. */
export const converseToolUse = (
  calls: ReadonlyArray<{ readonly toolUseId: string; readonly name: string; readonly input: unknown }>,
  usage: { readonly inputTokens: number; readonly outputTokens: number },
  text?: string
): JsonReply => ({
  _tag: "Json",
  body: {
    output: {
      message: {
        role: "assistant",
        content: [...(text === undefined ? [] : [{ text }]), ...calls.map((toolUse) => ({ toolUse }))]
      }
    },
    stopReason: "tool_use",
    usage: { ...usage, totalTokens: usage.inputTokens + usage.outputTokens },
    metrics: { latencyMs: 42 }
  }
})

/**
 * The frames of one tool call at content block `block`: its start (id and name), its input JSON
 * in the given fragments, its stop.
 */
export const toolUseFrames = (
  block: number,
  toolUse: { readonly toolUseId: string; readonly name: string },
  inputFragments: ReadonlyArray<string>
): ReadonlyArray<Frame> => [
  event("contentBlockStart", { contentBlockIndex: block, start: { toolUse } }),
  ...inputFragments.map((input) => event("contentBlockDelta", { contentBlockIndex: block, delta: { toolUse: { input } } })),
  event("contentBlockStop", { contentBlockIndex: block })
]

/** A Titan text embedding answer (InvokeModel), sent after `delayMs`. */
export const titanEmbedding = (embedding: ReadonlyArray<number>, inputTextTokenCount: number, delayMs?: number): JsonReply => ({
  _tag: "Json",
  body: { embedding, inputTextTokenCount },
  ...(delayMs === undefined ? {} : { delayMs })
})

/** The frames of a plain text answer: start, one delta per piece, stop, metadata. */
export const textFrames = (
  pieces: ReadonlyArray<string>,
  usage: { readonly inputTokens: number; readonly outputTokens: number },
  stopReason = "end_turn"
): ReadonlyArray<Frame> => [
  event("messageStart", { role: "assistant" }),
  ...pieces.map((text) => event("contentBlockDelta", { contentBlockIndex: 0, delta: { text } })),
  event("contentBlockStop", { contentBlockIndex: 0 }),
  event("messageStop", { stopReason }),
  event("metadata", { usage: { ...usage, totalTokens: usage.inputTokens + usage.outputTokens }, metrics: { latencyMs: 42 } })
]

const codec = new EventStreamCodec(toUtf8, fromUtf8)

/** One event or exception frame on the wire (AWS event-stream encoding). */
export const encodeFrame = (frame: Exclude<Frame, { readonly _tag: "Reset" }>): Uint8Array => {
  const str = (value: string) => ({ type: "string" as const, value })
  return frame._tag === "Event"
    ? codec.encode({
      headers: {
        ":message-type": str("event"),
        ":event-type": str(frame.type),
        ":content-type": str("application/json")
      },
      body: fromUtf8(JSON.stringify(frame.payload))
    })
    : codec.encode({
      headers: {
        ":message-type": str("exception"),
        ":exception-type": str(frame.type),
        ":content-type": str("application/json")
      },
      body: fromUtf8(JSON.stringify({ message: frame.message }))
    })
}

const parseBody = (raw: string): unknown => {
  try {
    return JSON.parse(raw)
  } catch {
    return raw
  }
}

/** Starts the stub on 127.0.0.1 (a free port); it closes, dropping open sessions, with the scope. */
export const make: Effect.Effect<BedrockStub, never, Scope.Scope> = Effect.gen(function*() {
  const queue: Array<Reply> = []
  const requests: Array<RecordedRequest> = []
  const waiters: Array<{ readonly n: number; readonly resolve: (r: RecordedRequest) => void }> = []
  const sessions = new Set<Http2.ServerHttp2Session>()
  let accepted = 0
  const timers = new Set<NodeJS.Timeout>()

  const later = (ms: number, f: () => void) => {
    const timer = setTimeout(() => {
      timers.delete(timer)
      f()
    }, ms)
    timers.add(timer)
  }

  const answer = (stream: Http2.ServerHttp2Stream, request: RecordedRequest, reply: Reply, done: () => void): void => {
    const open = () => !stream.destroyed && !stream.closed
    switch (reply._tag) {
      case "Respond":
        return answer(stream, request, reply.respond(request), done)
      case "Json": {
        const send = () => {
          if (!open()) return
          stream.respond({ ":status": 200, "content-type": "application/json" })
          stream.end(JSON.stringify(reply.body), done)
        }
        const delayed = () => (reply.delayMs === undefined ? send() : later(reply.delayMs, send))
        if (reply.after === undefined) delayed()
        else reply.after.then(delayed, delayed)
        return
      }
      case "Error": {
        stream.respond({ ":status": reply.status, "content-type": "application/json", "x-amzn-errortype": reply.type })
        stream.end(JSON.stringify({ message: reply.message }), done)
        return
      }
      case "EventStream": {
        stream.respond({ ":status": 200, "content-type": "application/vnd.amazon.eventstream" })
        const next = (i: number) => {
          if (!open()) return
          const frame = reply.frames[i]
          if (frame === undefined) {
            stream.end(done)
            return
          }
          const write = () => {
            if (!open()) return
            // The frames before a reset went out with their write callbacks: the reset cannot overtake them.
            if (frame._tag === "Reset") stream.close(Http2.constants.NGHTTP2_INTERNAL_ERROR)
            else stream.write(encodeFrame(frame), () => next(i + 1))
          }
          if (frame.delayMs === undefined) write()
          else later(frame.delayMs, write)
        }
        next(0)
        return
      }
    }
  }

  const server = Http2.createServer()
  server.on("session", (session) => {
    sessions.add(session)
    accepted++
    session.on("close", () => sessions.delete(session))
  })
  server.on("stream", (stream, headers) => {
    const chunks: Array<Buffer> = []
    let replyComplete = false
    const closed = new Promise<Closure>((resolve) => {
      stream.on("close", () => resolve({ replyComplete, rstCode: stream.rstCode ?? 0 }))
    })
    // A reset stream emits `error` too; the `close` above is what the tests look at.
    stream.on("error", () => {})
    stream.on("data", (chunk: Buffer) => chunks.push(chunk))
    stream.on("end", () => {
      const recorded: RecordedRequest = {
        method: String(headers[":method"]),
        path: String(headers[":path"]),
        headers,
        body: parseBody(Buffer.concat(chunks).toString("utf8")),
        closed
      }
      requests.push(recorded)
      for (const w of waiters.filter((w) => w.n === requests.length)) w.resolve(recorded)
      const reply = queue.shift() ?? error(500, "InternalServerException", "stub: no reply scripted")
      answer(stream, recorded, reply, () => {
        replyComplete = true
      })
    })
  })

  const port = yield* Effect.acquireRelease(
    Effect.async<number>((resume) => {
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed((server.address() as AddressInfo).port)))
    }),
    () =>
      Effect.async<void>((resume) => {
        for (const timer of timers) clearTimeout(timer)
        for (const session of sessions) session.destroy()
        server.close(() => resume(Effect.void))
      })
  )

  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    reply: (...replies) => {
      queue.push(...replies)
    },
    request: (n) => {
      const seen = requests[n - 1]
      return seen !== undefined ? Promise.resolve(seen) : new Promise((resolve) => waiters.push({ n, resolve }))
    },
    connections: () => accepted,
    dropConnections: () => {
      for (const session of sessions) session.close()
    }
  }
})

/**
 * The Bedrock Runtime stub of the shared fault matrix (see `Scenario.ts`): cleartext HTTP/2 on
 * 127.0.0.1, as the SDK speaks by default, answering Converse, ConverseStream and InvokeModel
 * (Titan embeddings) in Bedrock's wire format. Give `url` to the client as its `endpoint`.
 */
import * as Http2 from "node:http2"
import type { AddressInfo } from "node:net"
import { encodeFrame } from "../BedrockStub.js"
import { echoedCredentials, type EchoScenario, fixture, type Scenario, type StubHandle } from "./Scenario.js"

type Operation = "converse" | "converse-stream" | "invoke"

const operationOf = (path: string): Operation | undefined => {
  const match = /^\/model\/[^/]+\/(converse|converse-stream|invoke)$/.exec(path.split("?")[0] ?? "")
  return match?.[1] as Operation | undefined
}

const usage = {
  inputTokens: fixture.usage.input_tokens,
  outputTokens: fixture.usage.output_tokens,
  totalTokens: fixture.usage.input_tokens + fixture.usage.output_tokens
}

const event = (type: string, payload: unknown) => encodeFrame({ _tag: "Event", type, payload })

const textDelta = (text: string) => event("contentBlockDelta", { contentBlockIndex: 0, delta: { text } })

/** The tool call's input JSON in two fragments, as models stream it. */
const toolInputFragments = [
  fixture.tool.arguments.slice(0, Math.floor(fixture.tool.arguments.length / 2)),
  fixture.tool.arguments.slice(Math.floor(fixture.tool.arguments.length / 2))
]

const streamFrames = (toolCall: boolean): ReadonlyArray<Uint8Array> => [
  event("messageStart", { role: "assistant" }),
  ...(toolCall
    ? [
      event("contentBlockStart", {
        contentBlockIndex: 0,
        start: { toolUse: { toolUseId: fixture.tool.id, name: fixture.tool.name } }
      }),
      ...toolInputFragments.map((input) => event("contentBlockDelta", { contentBlockIndex: 0, delta: { toolUse: { input } } }))
    ]
    : fixture.textChunks.map(textDelta)),
  event("contentBlockStop", { contentBlockIndex: 0 }),
  event("messageStop", { stopReason: toolCall ? "tool_use" : "end_turn" }),
  event("metadata", { usage, metrics: { latencyMs: 42 } })
]

const converseBody = (toolCall: boolean) => ({
  output: {
    message: {
      role: "assistant",
      content: toolCall
        ? [{
          toolUse: {
            toolUseId: fixture.tool.id,
            name: fixture.tool.name,
            input: JSON.parse(fixture.tool.arguments) as unknown
          }
        }]
        : [{ text: fixture.text }]
    }
  },
  stopReason: toolCall ? "tool_use" : "end_turn",
  usage,
  metrics: { latencyMs: 42 }
})

const parseBody = (raw: string): unknown => {
  try {
    return JSON.parse(raw)
  } catch {
    return raw
  }
}

/** Starts the stub on a free loopback port, answering as `success` until told otherwise. */
export const startBedrockStub = (): Promise<StubHandle> =>
  new Promise((resolve, reject) => {
    let scenario: Scenario | EchoScenario = "success"
    let throttled = false
    let aborted = 0
    let closing = false
    const bodies: Array<unknown> = []
    const headerLog: Array<Http2.IncomingHttpHeaders> = []
    const sessions = new Set<Http2.ServerHttp2Session>()

    const server = Http2.createServer()
    server.on("session", (session) => {
      sessions.add(session)
      session.on("close", () => sessions.delete(session))
      // A destroyed or reset session reports errors the stub caused on purpose.
      session.on("error", () => {})
    })

    server.on("stream", (stream, headers) => {
      // Set when the stub is done with the exchange: its whole answer is handed to the stream
      // (its `close` may come before `end`'s callback), or it broke the exchange off on purpose.
      let settled = false
      const settle = () => {
        settled = true
      }
      const open = () => !stream.destroyed && !stream.closed
      stream.on("error", () => {})
      stream.on("close", () => {
        if (!settled && !closing) aborted += 1
      })

      const json = (status: number, body: unknown, errorType?: string) => {
        stream.respond({
          ":status": status,
          "content-type": "application/json",
          ...(errorType === undefined ? {} : { "x-amzn-errortype": errorType })
        })
        settle()
        stream.end(JSON.stringify(body))
      }
      const failure = (status: number, type: string) => json(status, { message: `${type} from the Bedrock stub` }, type)

      // What the socket does on "reset": the whole connection drops, as when a proxy dies.
      const dropConnection = () => {
        settle()
        stream.session?.destroy()
      }

      const succeed = (operation: Operation, toolCall: boolean) => {
        if (operation === "invoke") {
          json(200, { embedding: fixture.embedding, inputTextTokenCount: fixture.embeddingTokens })
        } else if (operation === "converse") {
          json(200, converseBody(toolCall))
        } else {
          stream.respond({ ":status": 200, "content-type": "application/vnd.amazon.eventstream" })
          for (const frame of streamFrames(toolCall)) stream.write(frame)
          settle()
          stream.end()
        }
      }

      const cut = () => {
        stream.respond({ ":status": 200, "content-type": "application/vnd.amazon.eventstream" })
        const frames = [event("messageStart", { role: "assistant" }), ...fixture.textChunks.slice(0, fixture.cutAfterChunks).map(textDelta)]
        frames.forEach((frame, i) => {
          // The last write's callback means every frame is on the socket: only then drop it.
          stream.write(frame, i === frames.length - 1 ? () => setImmediate(dropConnection) : undefined)
        })
      }

      const chunks: Array<Buffer> = []
      stream.on("data", (chunk: Buffer) => chunks.push(chunk))
      stream.on("end", () => {
        bodies.push(parseBody(Buffer.concat(chunks).toString("utf8")))
        headerLog.push(headers)
        if (!open()) return
        const operation = operationOf(String(headers[":path"]))
        if (operation === undefined) {
          failure(404, "UnknownOperationException")
          return
        }
        switch (scenario) {
          case "success":
            return succeed(operation, false)
          case "tool_call":
            return succeed(operation, operation !== "invoke")
          case "throttle_once":
            if (!throttled) {
              throttled = true
              return failure(429, "ThrottlingException")
            }
            return succeed(operation, false)
          case "server_error":
            return failure(500, "InternalServerException")
          case "bad_request":
            return failure(400, "ValidationException")
          case "hang":
            // Read, never answered: the exchange ends when the client gives up or the stub closes.
            return
          case "echo_credentials":
            // SigV4 never sends the secret key; the session token and the signed header it does send.
            return json(
              403,
              { message: `The security token included in the request is invalid (${echoedCredentials(headers)})` },
              "UnrecognizedClientException"
            )
          case "reset_mid_stream":
            return operation === "converse-stream" ? cut() : dropConnection()
        }
      })
    })

    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo
      resolve({
        url: `http://127.0.0.1:${port}`,
        setScenario: (next) => {
          scenario = next
          throttled = false
        },
        requests: () => [...bodies],
        headers: () => headerLog.map((h) => ({ ...h })),
        aborted: () => aborted,
        close: () =>
          new Promise<void>((done) => {
            closing = true
            for (const session of sessions) session.destroy()
            server.close(() => done())
          })
      })
    })
  })

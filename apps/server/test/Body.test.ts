/**
 * Reading a JSON body off Node's request over a real socket: a body that came whole with the head,
 * one that trickles in, chunked or not; the size limit holds without a content-length too.
 */
import * as http from "node:http"
import * as net from "node:net"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Exit } from "effect"
import { readJsonFrom } from "../src/http/Body.js"

const LIMIT = 1024

/**
 * A server that answers what `readJsonFrom` made of each request body: the value, or the error's
 * tag, and whether it read the body from its events (`flowing`) or took it whole from Node's
 * buffer. It starts reading as the request comes (`immediate`: in the middle of Node's parse, as
 * `Effect.runPromise` starts a fiber) or once Node has parsed what came with the head (as the
 * server's lane does).
 */
const withServer = <A>(use: (port: number) => Promise<A>, immediate = true) =>
  Effect.promise(async () => {
    const server = http.createServer((request, response) => {
      const fiber = Effect.runFork(Effect.either(readJsonFrom(request, LIMIT)), { immediate })
      fiber.addObserver((exit) => {
        const result = Exit.getOrElse(exit, () => Either.left({ _tag: "defect" }))
        response.setHeader("content-type", "application/json")
        const read = request.readableFlowing === null ? "buffered" : "events"
        response.end(JSON.stringify(Either.isRight(result) ? { value: result.right, read } : { error: result.left._tag, read }))
      })
    })
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    try {
      return await use((server.address() as net.AddressInfo).port)
    } finally {
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    }
  })

/** Sends `parts` over one connection (each a write, `gapMs` apart) and gives the answer's JSON body. */
const send = (port: number, parts: ReadonlyArray<string>, gapMs = 0) =>
  new Promise<{ value?: unknown; error?: string }>((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1")
    let answer = ""
    socket.on("data", (d) => (answer += d.toString("utf8")))
    socket.on("end", () => resolve(JSON.parse(answer.slice(answer.indexOf("\r\n\r\n") + 4)) as never))
    socket.on("error", reject)
    // Each part after the first waits `gapMs` more than the one before it.
    socket.on("connect", () => {
      parts.forEach((part, i) => (i === 0 ? socket.write(part) : setTimeout(() => socket.write(part), gapMs * i)))
    })
  })

const head = (length: number | "chunked") =>
  `POST / HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\n${length === "chunked" ? "transfer-encoding: chunked" : `content-length: ${length}`}\r\n\r\n`
const chunked = (body: string) => `${Buffer.byteLength(body).toString(16)}\r\n${body}\r\n0\r\n\r\n`

describe("readJsonFrom", () => {
  it.effect("a body that came whole with the head, and one that trickles in: the same value", () =>
    withServer(async (port) => {
      const value = { model: "m", messages: [{ role: "user", content: "héllo" }] }
      const body = JSON.stringify(value)
      const whole = await send(port, [head(Buffer.byteLength(body)) + body])
      expect(whole).toEqual({ value, read: "events" })
      const trickled = await send(port, [head(Buffer.byteLength(body)) + body.slice(0, 10), body.slice(10)], 30)
      expect(trickled).toEqual({ value, read: "events" })
      const chunks = await send(port, [head("chunked") + chunked(body)])
      expect(chunks.value).toEqual(value)
    }))

  it.effect("read once Node has parsed what came with the head: a whole body from the buffer, a trickling one from its events", () =>
    withServer(async (port) => {
      const value = { model: "m", messages: [{ role: "user", content: "héllo" }] }
      const body = JSON.stringify(value)
      expect(await send(port, [head(Buffer.byteLength(body)) + body])).toEqual({ value, read: "buffered" })
      // Chunked: its end is not known before Node has parsed it, whichever way it is read.
      expect((await send(port, [head("chunked") + chunked(body)])).value).toEqual(value)
      // Part of it, then the rest: not taken from the buffer before it is all there.
      expect(await send(port, [head(Buffer.byteLength(body)) + body.slice(0, 10), body.slice(10)], 30)).toEqual({ value, read: "events" })
      // Whole, but over the limit (no content-length to refuse it by): 413 all the same.
      const big = JSON.stringify({ text: "x".repeat(LIMIT * 2) })
      expect(await send(port, [head("chunked") + chunked(big)])).toMatchObject({ error: "RequestTooLarge" })
      // Empty and not JSON: the same refusals as ever.
      expect(await send(port, [head(0)])).toMatchObject({ error: "InvalidRequest" })
      expect(await send(port, [head(3) + "{x]"])).toMatchObject({ error: "InvalidRequest" })
    }, false))

  it.effect("over the limit without a content-length to refuse it by: RequestTooLarge, whole or trickling", () =>
    withServer(async (port) => {
      const big = JSON.stringify({ text: "x".repeat(LIMIT * 2) })
      const whole = await send(port, [head("chunked") + chunked(big)])
      expect(whole).toMatchObject({ error: "RequestTooLarge" })
      const trickled = await send(port, [head("chunked") + chunked(big.slice(0, 100)).replace(/0\r\n\r\n$/, ""), chunked(big.slice(100))], 30)
      expect(trickled).toMatchObject({ error: "RequestTooLarge" })
    }))
})

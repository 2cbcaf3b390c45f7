/**
 * Reading a JSON body off Node's request over a real socket: a body that came whole with the head,
 * one that trickles in, chunked or not; the size limit holds without a content-length too.
 */
import * as http from "node:http"
import * as net from "node:net"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either } from "effect"
import { readJsonFrom } from "../src/http/Body.js"

const LIMIT = 1024

/** A server that answers what `readJsonFrom` made of each request body: the value, or the error's tag. */
const withServer = <A>(use: (port: number) => Promise<A>) =>
  Effect.promise(async () => {
    const server = http.createServer((request, response) => {
      void Effect.runPromise(Effect.either(readJsonFrom(request, LIMIT))).then((result) => {
        response.setHeader("content-type", "application/json")
        response.end(JSON.stringify(Either.isRight(result) ? { value: result.right } : { error: result.left._tag }))
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
      expect(whole).toEqual({ value })
      const trickled = await send(port, [head(Buffer.byteLength(body)) + body.slice(0, 10), body.slice(10)], 30)
      expect(trickled).toEqual({ value })
      const chunks = await send(port, [head("chunked") + chunked(body)])
      expect(chunks.value).toEqual(value)
    }))

  it.effect("over the limit without a content-length to refuse it by: RequestTooLarge, whole or trickling", () =>
    withServer(async (port) => {
      const big = JSON.stringify({ text: "x".repeat(LIMIT * 2) })
      const whole = await send(port, [head("chunked") + chunked(big)])
      expect(whole).toEqual({ error: "RequestTooLarge" })
      const trickled = await send(port, [head("chunked") + chunked(big.slice(0, 100)).replace(/0\r\n\r\n$/, ""), chunked(big.slice(100))], 30)
      expect(trickled).toEqual({ error: "RequestTooLarge" })
    }))
})

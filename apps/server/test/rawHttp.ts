/**
 * A minimal HTTP/1.1 client over a TCP socket, for tests that send what `fetch` refuses to:
 * control characters and raw bytes in headers and request lines, bodies that are not UTF-8,
 * lying content lengths. One request per connection (`connection: close`).
 */
import * as net from "node:net"

/** A request as bytes on the wire. */
export interface RawRequest {
  readonly method: string
  /** The request target, e.g. `/v1/llm?x=1`; a `Buffer` goes out as it is. */
  readonly target: string | Buffer
  readonly headers?: ReadonlyArray<readonly [string, string | Buffer]> | undefined
  /** Sent with a `content-length` unless the headers give one (or `transfer-encoding`). */
  readonly body?: string | Buffer | undefined
}

/** A response as read back. */
export interface RawResponse {
  readonly status: number
  /** Lower-cased names; a repeated header keeps its last value. */
  readonly headers: Readonly<Record<string, string>>
  readonly text: string
  /** The body parsed, when the content type is JSON. */
  readonly json: unknown
}

const dechunk = (body: Buffer): Buffer => {
  const parts: Array<Buffer> = []
  let at = 0
  while (at < body.length) {
    const eol = body.indexOf("\r\n", at)
    if (eol < 0) break
    const size = Number.parseInt(body.subarray(at, eol).toString("latin1"), 16)
    if (!Number.isFinite(size) || size === 0) break
    parts.push(body.subarray(eol + 2, eol + 2 + size))
    at = eol + 2 + size + 2
  }
  return Buffer.concat(parts)
}

const parse = (raw: Buffer): RawResponse => {
  const end = raw.indexOf("\r\n\r\n")
  if (end < 0) throw new Error(`no complete response head in ${JSON.stringify(raw.subarray(0, 200).toString("latin1"))}`)
  const [statusLine = "", ...lines] = raw.subarray(0, end).toString("latin1").split("\r\n")
  const status = Number(statusLine.split(" ")[1])
  const headers: Record<string, string> = {}
  for (const line of lines) {
    const colon = line.indexOf(":")
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim()
  }
  let body = raw.subarray(end + 4)
  if ((headers["transfer-encoding"] ?? "").includes("chunked")) body = dechunk(body)
  const text = body.toString("utf8")
  const isJson = (headers["content-type"] ?? "").includes("json")
  return { status, headers, text, json: isJson && text !== "" ? JSON.parse(text) as unknown : undefined }
}

/** Sends `request` to the server at `baseUrl` and reads the whole response (the server closes the connection). */
export const send = (baseUrl: string, request: RawRequest, timeoutMs = 15_000): Promise<RawResponse> =>
  new Promise((resolve, reject) => {
    const url = new URL(baseUrl)
    const headers = request.headers ?? []
    const body = request.body === undefined ? undefined : Buffer.isBuffer(request.body) ? request.body : Buffer.from(request.body, "utf8")
    const framed = headers.some(([name]) => /^(content-length|transfer-encoding)$/i.test(name))
    const head: Array<Buffer> = [
      Buffer.from(`${request.method} `, "latin1"),
      Buffer.isBuffer(request.target) ? request.target : Buffer.from(request.target, "utf8"),
      Buffer.from(` HTTP/1.1\r\nhost: ${url.host}\r\nconnection: close\r\n`, "latin1")
    ]
    for (const [name, value] of headers) head.push(Buffer.from(`${name}: `, "latin1"), Buffer.isBuffer(value) ? value : Buffer.from(value, "utf8"), Buffer.from("\r\n"))
    if (body !== undefined && !framed) head.push(Buffer.from(`content-length: ${body.length}\r\n`, "latin1"))
    head.push(Buffer.from("\r\n"))
    const chunks: Array<Buffer> = []
    const socket = net.connect(Number(url.port), url.hostname)
    socket.setTimeout(timeoutMs, () => socket.destroy(new Error(`no response within ${timeoutMs} ms`)))
    socket.on("data", (chunk: Buffer) => chunks.push(chunk))
    socket.on("error", (e) => {
      // The server may answer (413, 400) and close before it read the whole body: keep the answer.
      if (chunks.length > 0) return
      reject(e)
    })
    socket.on("close", () => {
      try {
        resolve(parse(Buffer.concat(chunks)))
      } catch (e) {
        reject(e instanceof Error ? e : new Error(String(e)))
      }
    })
    socket.write(Buffer.concat(body === undefined ? head : [...head, body]))
  })

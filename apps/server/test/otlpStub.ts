/**
 * An OTLP/HTTP trace receiver on loopback, as a collector or MLflow's `/v1/traces` takes traces:
 * `POST` of a protobuf `ExportTraceServiceRequest`. It decodes every export with its own minimal
 * protobuf reader (written from the OTLP `.proto` field numbers, not the exporter's encoder) and
 * records the spans and the request headers.
 */
import { createServer, type IncomingHttpHeaders } from "node:http"
import type { AddressInfo } from "node:net"

/** One decoded span, with the resource and scope it was exported under. */
export interface ReceivedSpan {
  readonly traceId: string
  readonly spanId: string
  /** Empty for a root span. */
  readonly parentSpanId: string
  readonly name: string
  /** OTLP `SpanKind`: 1 internal, 2 server, 3 client. */
  readonly kind: number
  readonly startNanos: bigint
  readonly endNanos: bigint
  readonly attributes: Readonly<Record<string, unknown>>
  /** OTLP `StatusCode`: 0 unset, 1 ok, 2 error. */
  readonly status: { readonly code: number; readonly message: string }
  readonly resource: Readonly<Record<string, unknown>>
  readonly scope: string
}

/** One export request as received. */
export interface ReceivedExport {
  readonly method: string
  readonly path: string
  readonly headers: IncomingHttpHeaders
  readonly spans: ReadonlyArray<ReceivedSpan>
}

export interface OtlpStub {
  /** `http://127.0.0.1:<port>/v1/traces`. */
  readonly url: string
  readonly exports: Array<ReceivedExport>
  /** Every span of every export, in arrival order. */
  readonly spans: () => ReadonlyArray<ReceivedSpan>
  readonly close: () => Promise<void>
}

// --- protobuf wire format ------------------------------------------------------------------------

interface Field {
  readonly no: number
  readonly wire: number
  /** Wire type 0. */
  readonly varint: bigint
  /** Wire types 1 (8 bytes), 2 (length-delimited) and 5 (4 bytes). */
  readonly bytes: Uint8Array
}

const none = new Uint8Array(0)

/** The fields of one message, in order (repeated fields appear once per element). */
const fieldsOf = (buf: Uint8Array): Array<Field> => {
  const fields: Array<Field> = []
  let pos = 0
  const varint = (): bigint => {
    let result = 0n
    let shift = 0n
    for (;;) {
      const b = buf[pos++]
      if (b === undefined) throw new Error("truncated varint")
      result |= BigInt(b & 0x7f) << shift
      if ((b & 0x80) === 0) return result
      shift += 7n
    }
  }
  const take = (n: number): Uint8Array => {
    if (pos + n > buf.length) throw new Error("truncated field")
    const bytes = buf.subarray(pos, pos + n)
    pos += n
    return bytes
  }
  while (pos < buf.length) {
    const tag = Number(varint())
    const no = tag >>> 3
    const wire = tag & 7
    switch (wire) {
      case 0: fields.push({ no, wire, varint: varint(), bytes: none }); break
      case 1: fields.push({ no, wire, varint: 0n, bytes: take(8) }); break
      case 2: fields.push({ no, wire, varint: 0n, bytes: take(Number(varint())) }); break
      case 5: fields.push({ no, wire, varint: 0n, bytes: take(4) }); break
      default: throw new Error(`unsupported wire type ${wire}`)
    }
  }
  return fields
}

const text = new TextDecoder("utf-8", { fatal: true })
const view = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength)
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex")

/** `opentelemetry.proto.common.v1.AnyValue`. */
const anyValue = (buf: Uint8Array): unknown => {
  for (const f of fieldsOf(buf)) {
    switch (f.no) {
      case 1: return text.decode(f.bytes)
      case 2: return f.varint !== 0n
      case 3: return Number(BigInt.asIntN(64, f.varint))
      case 4: return view(f.bytes).getFloat64(0, true)
      case 5: return fieldsOf(f.bytes).filter((v) => v.no === 1).map((v) => anyValue(v.bytes))
      case 6: return keyValues(fieldsOf(f.bytes), 1)
      case 7: return hex(f.bytes)
    }
  }
  return undefined
}

/** Repeated `KeyValue` (field `no` of the enclosing message) as a record. */
const keyValues = (fields: ReadonlyArray<Field>, no: number): Record<string, unknown> => {
  const out: Record<string, unknown> = {}
  for (const f of fields) {
    if (f.no !== no) continue
    let key = ""
    let value: unknown = undefined
    for (const kv of fieldsOf(f.bytes)) {
      if (kv.no === 1) key = text.decode(kv.bytes)
      if (kv.no === 2) value = anyValue(kv.bytes)
    }
    out[key] = value
  }
  return out
}

const children = (fields: ReadonlyArray<Field>, no: number) => fields.filter((f) => f.no === no).map((f) => fieldsOf(f.bytes))
const bytesOf = (fields: ReadonlyArray<Field>, no: number) => fields.find((f) => f.no === no)?.bytes ?? none

/** `ExportTraceServiceRequest` → its spans (ResourceSpans 1 → Resource 1, ScopeSpans 2 → scope 1, Span 2). */
export const decodeExport = (body: Uint8Array): Array<ReceivedSpan> => {
  const spans: Array<ReceivedSpan> = []
  for (const resourceSpans of children(fieldsOf(body), 1)) {
    const resource = keyValues(fieldsOf(bytesOf(resourceSpans, 1)), 1)
    for (const scopeSpans of children(resourceSpans, 2)) {
      const scope = text.decode(bytesOf(fieldsOf(bytesOf(scopeSpans, 1)), 1))
      for (const span of children(scopeSpans, 2)) {
        const status = fieldsOf(bytesOf(span, 15))
        const fixed64 = (no: number) => {
          const b = bytesOf(span, no)
          return b.length === 8 ? view(b).getBigUint64(0, true) : 0n
        }
        spans.push({
          traceId: hex(bytesOf(span, 1)),
          spanId: hex(bytesOf(span, 2)),
          parentSpanId: hex(bytesOf(span, 4)),
          name: text.decode(bytesOf(span, 5)),
          kind: Number(span.find((f) => f.no === 6)?.varint ?? 0n),
          startNanos: fixed64(7),
          endNanos: fixed64(8),
          attributes: keyValues(span, 9),
          status: { code: Number(status.find((f) => f.no === 3)?.varint ?? 0n), message: text.decode(bytesOf(status, 2)) },
          resource,
          scope
        })
      }
    }
  }
  return spans
}

// --- the receiver --------------------------------------------------------------------------------

/** Starts the receiver on 127.0.0.1 (a free port); it answers every export with an empty success. */
export const startOtlpStub = (): Promise<OtlpStub> =>
  new Promise((resolve, reject) => {
    const exports: Array<ReceivedExport> = []
    const server = createServer((req, res) => {
      const chunks: Array<Buffer> = []
      req.on("data", (c: Buffer) => chunks.push(c))
      req.on("end", () => {
        try {
          const body = new Uint8Array(Buffer.concat(chunks))
          exports.push({ method: req.method ?? "", path: req.url ?? "", headers: req.headers, spans: decodeExport(body) })
          // An empty `ExportTraceServiceResponse`: everything accepted.
          res.writeHead(200, { "content-type": "application/x-protobuf" }).end()
        } catch (e) {
          res.writeHead(400, { "content-type": "text/plain" }).end(String(e))
        }
      })
    })
    server.on("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo
      resolve({
        url: `http://127.0.0.1:${port}/v1/traces`,
        exports,
        spans: () => exports.flatMap((e) => e.spans),
        close: () =>
          new Promise<void>((done) => {
            server.closeAllConnections()
            server.close(() => done())
          })
      })
    })
  })

/** A loopback port nothing listens on (bound, then closed). */
export const closedPort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer()
    server.on("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo
      server.close(() => resolve(port))
    })
  })

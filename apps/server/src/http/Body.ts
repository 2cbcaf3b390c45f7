/**
 * Reading and validating request bodies, with errors that name the offending field.
 *
 * A body is refused before any handler sees it when it is too large (413), not UTF-8, not JSON,
 * or shaped to hurt the server (nested too deep, arrays too long, too many values), or when it
 * holds strings the store cannot keep as given (NUL, unpaired surrogates) or numbers that
 * overflowed to infinity (400, naming the path).
 */
import type { IncomingMessage } from "node:http"
import type * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as NodeHttpServerRequest from "@effect/platform-node/NodeHttpServerRequest"
import { Effect, Either, Schema } from "effect"
import { Errors } from "@tidyllm/core"
import { collect, formatPath } from "../internal/issues.js"
import { RequestTooLarge } from "./Errors.js"
import { checkHeaders } from "./RequestContext.js"

/** Limits on the shape of a JSON body. */
export interface JsonLimits {
  /** Deepest nesting of arrays and objects (the body itself is level 1). */
  readonly maxDepth: number
  /** Most elements in any one array. */
  readonly maxArrayLength: number
  /** Most JSON values in the whole body (every object, array, string, number, boolean, null). */
  readonly maxValues: number
}

/** The limits every body is held to: far above any real request, far below what hurts. */
export const jsonLimits: JsonLimits = { maxDepth: 64, maxArrayLength: 10_000, maxValues: 100_000 }

/**
 * The longest name or id (`model`, `provider`, `user`, …). They are stored in indexed audit
 * columns, and Postgres refuses an index entry over 2,704 bytes: 256 characters stay below that
 * even at four bytes each.
 */
export const MAX_NAME_LENGTH = 256

const tooLarge = (limit: number) =>
  new RequestTooLarge({ message: `the request body is larger than the server accepts (server.max_body_bytes = ${limit} bytes)`, limit_bytes: limit })

const noBytes = new Uint8Array(0)

/**
 * The body's bytes, at most `limit`. Past the limit the rest is drained and dropped, as Node does
 * with a body nobody reads, so the 413 reaches the client. (The platform's own reader destroys
 * the request there instead, which resets the connection before the 413 can be sent.)
 *
 * A body that came whole with the head (Node holds all of it: the message is `complete`, or its
 * buffer holds the `content-length` it declared), and that nobody reads yet, is taken from the
 * stream's buffer at once: no wait for its events, which for most requests would only be Node's
 * `end` (~12 Effect operations and a resumption of the fiber). `declared` is its `content-length`
 * (NaN without one).
 */
const readBytes = (source: IncomingMessage, limit: number, declared: number): Effect.Effect<Uint8Array, RequestTooLarge | Errors.InvalidRequest> =>
  Effect.suspend(() => {
    if (source.readableFlowing !== null || source.readableEnded || !(source.complete || source.readableLength === declared)) {
      return readArriving(source, limit)
    }
    if (source.readableLength > limit) {
      source.resume()
      return Effect.fail(tooLarge(limit))
    }
    const bytes = source.read() as Buffer | null
    return Effect.succeed(bytes ?? noBytes)
  })

/** {@link readBytes} of a body still arriving, from the stream's events. */
const readArriving = (source: IncomingMessage, limit: number): Effect.Effect<Uint8Array, RequestTooLarge | Errors.InvalidRequest> =>
  Effect.async((resume) => {
    const chunks: Array<Buffer> = []
    let size = 0
    const done = () => {
      source.off("data", onData)
      source.off("end", onEnd)
      source.off("error", onError)
    }
    const onData = (chunk: Buffer) => {
      size += chunk.length
      if (size <= limit) return void chunks.push(chunk)
      done()
      source.resume()
      resume(Effect.fail(tooLarge(limit)))
    }
    const onEnd = () => {
      done()
      resume(Effect.succeed(Buffer.concat(chunks, size)))
    }
    const onError = (e: Error) => {
      done()
      resume(Effect.fail(new Errors.InvalidRequest({ message: `cannot read the request body: ${e.message}` })))
    }
    if (source.readableEnded) return resume(Effect.die(new Error("the request body was read before readJson")))
    source.on("data", onData)
    source.once("end", onEnd)
    source.once("error", onError)
    return Effect.sync(done)
  })

/** The offset of the first byte that does not belong to a well-formed UTF-8 sequence, or -1. */
export const invalidUtf8Offset = (bytes: Uint8Array): number => {
  const n = bytes.length
  let i = 0
  while (i < n) {
    const b = bytes[i] ?? 0
    if (b < 0x80) {
      i++
      continue
    }
    // Lead byte: how many continuation bytes follow, and the range of the first one (which
    // excludes overlong forms, surrogates and code points above U+10FFFF).
    let need: number
    let lo = 0x80
    let hi = 0xbf
    if (b >= 0xc2 && b <= 0xdf) need = 1
    else if (b >= 0xe0 && b <= 0xef) {
      need = 2
      if (b === 0xe0) lo = 0xa0
      if (b === 0xed) hi = 0x9f
    } else if (b >= 0xf0 && b <= 0xf4) {
      need = 3
      if (b === 0xf0) lo = 0x90
      if (b === 0xf4) hi = 0x8f
    } else return i
    if (i + need >= n) return i
    const first = bytes[i + 1] ?? 0
    if (first < lo || first > hi) return i
    for (let k = 2; k <= need; k++) {
      const c = bytes[i + k] ?? 0
      if (c < 0x80 || c > 0xbf) return i
    }
    i += need + 1
  }
  return -1
}

const utf8 = new TextDecoder("utf-8", { fatal: true })

/** The bytes as text; a byte that is not UTF-8 is a 400 giving its offset. */
export const decodeUtf8 = (bytes: Uint8Array): Either.Either<string, Errors.InvalidRequest> => {
  try {
    return Either.right(utf8.decode(bytes))
  } catch {
    return Either.left(new Errors.InvalidRequest({ message: `the request body is not valid UTF-8 (byte offset ${Math.max(0, invalidUtf8Offset(bytes))})` }))
  }
}

/** Where a value sits: its parent's place and its key, so a path is built only for an error. */
interface Place {
  readonly parent: Place | undefined
  readonly key: PropertyKey
}

const pathOf = (place: Place | undefined): Array<PropertyKey> => {
  const out: Array<PropertyKey> = []
  for (let p = place; p !== undefined; p = p.parent) out.push(p.key)
  return out.reverse()
}

/** A long path (deep nesting) keeps its start and end. */
const shortPath = (path: ReadonlyArray<PropertyKey>): string => {
  const s = formatPath(path)
  return s.length > 160 ? `${s.slice(0, 100)}...${s.slice(-50)}` : s
}

/**
 * How much of the C0 range a string field may hold. Free text (message content, prompts,
 * workflow definitions, metadata) may hold any character but NUL; a `reason` is recorded in the
 * audit row and the logs, so only tab and line breaks; names and ids none at all, and at most
 * {@link MAX_NAME_LENGTH} characters.
 */
type Charset = "text" | "reason" | "name"

const fieldCharset: ReadonlyMap<string, Charset> = new Map([
  ["reason", "reason"],
  ["metadata.reason", "reason"],
  ["model", "name"],
  ["provider", "name"],
  ["backend", "name"],
  ["user", "name"],
  ["user_id", "name"],
  ["workflow_id", "name"],
  ["review_model", "name"]
])

const codePoint = (c: number) => `U+${c.toString(16).toUpperCase().padStart(4, "0")}`

/** The first character `s` may not hold under `charset`, as a phrase; undefined when it is fine. */
const badCharacter = (s: string, charset: Charset): string | undefined => {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c === 0) return `a NUL character (U+0000) at index ${i}, which cannot be stored`
    if (c >= 0xd800 && c <= 0xdfff) {
      const next = s.charCodeAt(i + 1)
      if (c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
        i++
        continue
      }
      return `an unpaired UTF-16 surrogate (${codePoint(c)}) at index ${i}, which is not Unicode text`
    }
    if (charset !== "text" && (c < 0x20 || c === 0x7f)) {
      if (charset === "reason" && (c === 0x09 || c === 0x0a || c === 0x0d)) continue
      return `a control character (${codePoint(c)}) at index ${i}${charset === "reason" ? " (a reason may hold tabs and line breaks, no other control characters)" : ""}`
    }
  }
  return undefined
}

const invalidAt = (place: Place | undefined, message: string) => {
  const path = pathOf(place)
  return new Errors.InvalidRequest({ message, ...(path.length === 0 ? {} : { field: formatPath(path) }) })
}

/**
 * Checks a parsed body against `limits` and the string and number rules, without recursion (a
 * hostile body cannot blow the stack): the first problem found, naming its path, or undefined.
 */
export const checkJson = (body: unknown, limits: JsonLimits = jsonLimits): Errors.InvalidRequest | undefined => {
  const stack: Array<{ readonly value: unknown; readonly place: Place | undefined; readonly depth: number }> = [{ value: body, place: undefined, depth: 1 }]
  let values = 0
  for (let item = stack.pop(); item !== undefined; item = stack.pop()) {
    const { depth, place, value } = item
    if (++values > limits.maxValues) {
      return invalidAt(place, `the request body has more than ${limits.maxValues} JSON values (the limit was reached at ${shortPath(pathOf(place))})`)
    }
    if (typeof value === "string") {
      // Only top-level fields and `metadata.*` have a charset of their own.
      const charset = depth <= 3 && place !== undefined ? fieldCharset.get(formatPath(pathOf(place))) ?? "text" : "text"
      const bad = badCharacter(value, charset)
      if (bad !== undefined) return invalidAt(place, `${shortPath(pathOf(place))}: the string contains ${bad}`)
      if (charset === "name" && value.length > MAX_NAME_LENGTH) {
        return invalidAt(place, `${shortPath(pathOf(place))}: the string is ${value.length} characters long; a name or id may have at most ${MAX_NAME_LENGTH}`)
      }
    } else if (typeof value === "number") {
      // JSON has no Infinity: a literal too large for a double (1e400) parses to one.
      if (!Number.isFinite(value)) return invalidAt(place, `${shortPath(pathOf(place))}: the number is out of range (it overflows a 64-bit float)`)
    } else if (typeof value === "object" && value !== null) {
      if (depth > limits.maxDepth) {
        return invalidAt(place, `the request body is nested deeper than ${limits.maxDepth} levels (at ${shortPath(pathOf(place))})`)
      }
      if (Array.isArray(value)) {
        if (value.length > limits.maxArrayLength) {
          return invalidAt(place, `${shortPath(pathOf(place))} has ${value.length} elements; an array may have at most ${limits.maxArrayLength}`)
        }
        for (let i = value.length - 1; i >= 0; i--) stack.push({ value: value[i] as unknown, place: { parent: place, key: i }, depth: depth + 1 })
      } else {
        const entries = Object.entries(value)
        for (const [key, child] of entries.reverse()) {
          const keyPlace: Place = { parent: place, key }
          const bad = badCharacter(key, "text")
          if (bad !== undefined) return invalidAt(keyPlace, `the key ${shortPath(pathOf(keyPlace))} contains ${bad}`)
          stack.push({ value: child, place: keyPlace, depth: depth + 1 })
        }
      }
    }
  }
  return undefined
}

/**
 * The request's input, parsed: first the identity headers (see `RequestContext.checkHeaders`),
 * then the body as JSON — refusing more than `limit` bytes (413), bytes that are not UTF-8,
 * text that is not JSON, and JSON that fails {@link checkJson} (400).
 */
export const readJson = (
  request: HttpServerRequest.HttpServerRequest,
  limit: number
): Effect.Effect<unknown, RequestTooLarge | Errors.InvalidRequest> => readJsonFrom(NodeHttpServerRequest.toIncomingMessage(request), limit)

/** {@link readJson} of a request as Node gives it (the server's fast lane reads it so). */
export const readJsonFrom = (request: IncomingMessage, limit: number): Effect.Effect<unknown, RequestTooLarge | Errors.InvalidRequest> => {
  const declared = Number(request.headers["content-length"])
  if (Number.isFinite(declared) && declared > limit) return Effect.fail(tooLarge(limit))
  return checkHeaders(request).pipe(
    Effect.zipRight(readBytes(request, limit, declared)),
    Effect.flatMap(decodeUtf8),
    Effect.flatMap((text) => {
      if (text.trim() === "") return Effect.fail(new Errors.InvalidRequest({ message: "the request body is empty: send a JSON object" }))
      let json: unknown
      try {
        json = JSON.parse(text)
      } catch (e) {
        return Effect.fail(new Errors.InvalidRequest({ message: `the request body is not valid JSON: ${e instanceof Error ? e.message : String(e)}` }))
      }
      const problem = checkJson(json)
      return problem === undefined ? Effect.succeed(json) : Effect.fail(problem)
    })
  )
}

/**
 * A decoder for `schema` whose failures are `InvalidRequest`s naming every bad field
 * (`messages[0].content: expected a string, got 5`); `field` is the first one's path.
 */
export const decoder = <A, I>(schema: Schema.Schema<A, I>, options?: { readonly exact?: boolean | undefined }) => {
  const decode = Schema.decodeUnknownEither(schema, { errors: "all", onExcessProperty: options?.exact === true ? "error" : "ignore" })
  return (body: unknown): Either.Either<A, Errors.InvalidRequest> =>
    Either.mapLeft(decode(body), (error) => {
      const issues = collect(error.issue)
      const first = issues[0]
      const lines = issues.map((i) => `${formatPath(i.path)}: ${i.message}`)
      return new Errors.InvalidRequest({
        message: `invalid request body: ${lines.join("; ")}`,
        ...(first === undefined || first.path.length === 0 ? {} : { field: formatPath(first.path) })
      })
    })
}

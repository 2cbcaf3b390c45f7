/** Reading and validating request bodies, with errors that name the offending field. */
import { HttpIncomingMessage, type HttpServerRequest } from "@effect/platform"
import { Effect, Either, Option, Schema } from "effect"
import { Errors } from "@tidyllm/core"
import { collect, formatPath } from "../internal/issues.js"
import { RequestTooLarge } from "./Errors.js"

const tooLarge = (limit: number) =>
  new RequestTooLarge({ message: `the request body is larger than the server accepts (server.max_body_bytes = ${limit} bytes)`, limit_bytes: limit })

const isMaxBytesError = (u: unknown): boolean => {
  let current: unknown = u
  for (let depth = 0; depth < 4 && typeof current === "object" && current !== null; depth++) {
    if (current instanceof Error && current.message === "maxBytes exceeded") return true
    current = "cause" in current ? current.cause : undefined
  }
  return false
}

/** The body parsed as JSON, refusing more than `limit` bytes (413) and malformed JSON (400). */
export const readJson = (
  request: HttpServerRequest.HttpServerRequest,
  limit: number
): Effect.Effect<unknown, RequestTooLarge | Errors.InvalidRequest> => {
  const declared = Number(request.headers["content-length"])
  if (Number.isFinite(declared) && declared > limit) return Effect.fail(tooLarge(limit))
  return request.text.pipe(
    HttpIncomingMessage.withMaxBodySize(Option.some(limit)),
    Effect.mapError((e) =>
      isMaxBytesError(e) ? tooLarge(limit) : new Errors.InvalidRequest({ message: `cannot read the request body: ${e.message}` })
    ),
    Effect.flatMap((text) => {
      if (text.trim() === "") return Effect.fail(new Errors.InvalidRequest({ message: "the request body is empty: send a JSON object" }))
      try {
        return Effect.succeed(JSON.parse(text) as unknown)
      } catch (e) {
        return Effect.fail(new Errors.InvalidRequest({ message: `the request body is not valid JSON: ${e instanceof Error ? e.message : String(e)}` }))
      }
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

/**
 * Errors as the API renders them: `{"error": {"type", "message", "request_id", …}}` with the HTTP
 * status the error carries — the shape OpenAI clients parse (`type`, `message`, `param`, `code`).
 */
import { STATUS_CODES } from "node:http"
import type { Duplex } from "node:stream"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { Schema } from "effect"
import { Errors, Ids } from "@tidyllm/core"
import type { WorkflowOptimizerGateway } from "@tidyllm/workflow-optimizer"
import type { Unauthorized } from "../auth/Auth.js"

/** The request body is larger than `server.max_body_bytes`. */
export class RequestTooLarge extends Schema.TaggedError<RequestTooLarge>()("RequestTooLarge", {
  message: Schema.String,
  limit_bytes: Schema.Number
}) {
  get type() { return "request_too_large" as const }
  get status() { return 413 }
}

/** No route matches the method and path. */
export class NotFound extends Schema.TaggedError<NotFound>()("NotFound", {
  message: Schema.String
}) {
  get type() { return "not_found" as const }
  get status() { return 404 }
}

/** A bug: something failed that should not have. The details go to the log, not to the client. */
export class InternalError extends Schema.TaggedError<InternalError>()("InternalError", {
  message: Schema.String
}) {
  get type() { return "internal_error" as const }
  get status() { return 500 }
}

/** Every error a handler renders. */
export type ApiFailure = Errors.GatewayError | Unauthorized | RequestTooLarge | NotFound | InternalError | WorkflowOptimizerGateway.WorkflowError

/** `error.type` of the errors that carry no `type` of their own (the session manager's). */
const typeByTag: Readonly<Record<string, string>> = {
  InvalidWorkflowKey: "invalid_request_error",
  InvalidWorkflowData: "invalid_request_error",
  WorkflowNotFound: "not_found",
  VersionNotFound: "not_found",
  VersionConflict: "conflict",
  CorruptWorkflowObject: "internal_error"
}

/** The stable `error.type` of an error. */
export const typeOf = (e: ApiFailure): string => ("type" in e && typeof e.type === "string" ? e.type : typeByTag[e._tag] ?? "internal_error")

/** The error body, for the OpenAPI document. */
export const ErrorBody = Schema.Struct({
  error: Schema.Struct({
    type: Schema.String,
    message: Schema.String,
    request_id: Schema.String,
    /** The offending field (OpenAI's name for it), when one can be named. */
    param: Schema.NullOr(Schema.String),
    code: Schema.NullOr(Schema.String)
  }, { key: Schema.String, value: Schema.Unknown })
}).annotations({ identifier: "Error", description: "An error: a stable `error.type`, a message and the request id, plus fields specific to the type (`attempts`, `field`, `scope`, …)." })

/** The JSON body of an error: its own fields (`field`, `attempts`, `scope`, …) beside type, message and request id. */
export const errorBody = (e: ApiFailure, requestId: string): { readonly error: Readonly<Record<string, unknown>> } => {
  const { _tag, message, ...extra } = e as ApiFailure & Record<string, unknown>
  const param = e._tag === "InvalidRequest" ? e.field ?? null : null
  const code = e._tag === "PolicyRejected" || e._tag === "Forbidden" ? e.rule : e._tag === "ProviderError" ? e.kind : e._tag === "Unauthorized" ? e.reason : null
  return { error: { type: typeOf(e), message, request_id: requestId, param, code, ...extra } }
}

const noHeaders: Readonly<Record<string, string>> = {}

/**
 * The headers an error's response carries besides its body: when to come back from a rate limit,
 * ours or every upstream's (OpenAI clients honour Retry-After), the scheme to authenticate with
 * after a 401.
 */
export const errorHeaders = (e: ApiFailure): Readonly<Record<string, string>> =>
  e._tag === "RateLimited"
    ? { "retry-after": String(e.retry_after_seconds) }
    : e._tag === "AllBackendsFailed" && e.retry_after_seconds !== undefined
    ? { "retry-after": String(e.retry_after_seconds) }
    : e._tag === "Unauthorized"
    ? { "www-authenticate": `Bearer realm="tidyllm", error="invalid_token"` }
    : noHeaders

/** The HTTP response of an error. */
export const errorResponse = (e: ApiFailure, requestId: string): HttpServerResponse.HttpServerResponse =>
  HttpServerResponse.unsafeJson(errorBody(e, requestId), { status: e.status, headers: errorHeaders(e) })

/** Status, `error.type` and message of the errors Node's HTTP parser raises before a request reaches the app. */
const clientErrorOf = (code: string | undefined): readonly [number, string, string] => {
  switch (code) {
    case "HPE_HEADER_OVERFLOW":
      return [431, "request_too_large", "the request headers are larger than the server accepts"]
    case "ERR_HTTP_REQUEST_TIMEOUT":
      return [408, "request_timeout", "the request was not received in time"]
    case "HPE_INVALID_HEADER_TOKEN":
    case "HPE_LF_EXPECTED":
    case "HPE_CR_EXPECTED":
    case "HPE_UNEXPECTED_CONTENT_LENGTH":
    case "HPE_INVALID_TRANSFER_ENCODING":
      return [400, "invalid_request_error", "a request header is not valid HTTP: header names are tokens, and values may not hold control characters (CR, LF, NUL, …)"]
    case "HPE_INVALID_METHOD":
    case "HPE_INVALID_URL":
    case "HPE_INVALID_VERSION":
      return [400, "invalid_request_error", "the request line is not valid HTTP: a method, a target of printable ASCII (percent-encode the rest), and HTTP/1.x"]
    default:
      return [400, "invalid_request_error", "the request is not valid HTTP"]
  }
}

/**
 * The `clientError` listener of the Node server: a request its parser refuses (a control
 * character in a header, a malformed request line, headers too large) is answered with the JSON
 * error envelope and a fresh request id instead of Node's bare `400 Bad Request`, then the
 * connection is closed. Nothing of the request is echoed. No audit row is written: no request
 * was read.
 */
export const onClientError = (error: Error & { readonly code?: string | undefined }, socket: Duplex): void => {
  // As Node does: answer only when nothing of a response has gone out on this connection.
  const inFlight = (socket as Duplex & { readonly _httpMessage?: { readonly headersSent?: boolean } | null })._httpMessage
  if (error.code === "ECONNRESET" || !socket.writable || inFlight?.headersSent === true) {
    socket.destroy()
    return
  }
  const [status, type, message] = clientErrorOf(error.code)
  const requestId = Ids.randomUuid()
  const body = JSON.stringify({ error: { type, message, request_id: requestId, param: null, code: error.code ?? null } })
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? "Bad Request"}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
      `x-request-id: ${requestId}\r\nconnection: close\r\n\r\n${body}`
  )
}

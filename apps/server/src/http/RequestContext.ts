/** Per-request context the handlers share: the request id, the caller, the out-of-band reason. */
import { Effect, FiberRef } from "effect"
import { Errors, Ids } from "@tidyllm/core"
import type { Caller, LlmRequest } from "@tidyllm/core"
import type { Principal } from "../auth/Auth.js"
import { WorkflowOptimizerGateway } from "@tidyllm/workflow-optimizer"

/**
 * What the request helpers read of a request: its headers, by lower-case name. The platform's
 * request and Node's `IncomingMessage` both have them (Node gives an array only for `set-cookie`,
 * which is never read here).
 */
export interface HasHeaders {
  readonly headers: { readonly [name: string]: string | ReadonlyArray<string> | undefined }
}

/** A header's value when the request sent it once, as text. */
export const headerValue = (request: HasHeaders, name: string): string | undefined => {
  const value = request.headers[name]
  return typeof value === "string" ? value : undefined
}

/** The id of the request being served (set by the API middleware from `x-request-id` or a new UUID). */
export const currentRequestId: FiberRef.FiberRef<string> = FiberRef.unsafeMake("")

const acceptable = /^[A-Za-z0-9._:@/+=-]{1,128}$/

/** The client's `x-request-id` when it is a sensible token, else a new UUID (so it is safe to echo in a header). */
export const requestIdFrom = (header: string | undefined): string =>
  header !== undefined && acceptable.test(header) ? header : Ids.randomUuid()

/** The headers that name the caller and the reason; they end up in audit rows and log lines. */
export const identityHeaders: ReadonlyArray<string> = ["x-tidyllm-user", "x-tidyllm-team", "x-tidyllm-role", "x-tidyllm-reason"]

/** The longest value an identity header may have. */
export const MAX_IDENTITY_HEADER = 256

/**
 * What is wrong with an identity header's value, or undefined. Node's parser already refuses CR,
 * LF and NUL; what reaches here may still hold other control characters (tab) or bytes above
 * 0x7F, which Node reads as Latin-1 — a UTF-8 name would be stored garbled, so only printable
 * ASCII is taken.
 */
const headerProblem = (name: string, value: string): string | undefined => {
  if (value.length > MAX_IDENTITY_HEADER) {
    return `header ${name} is ${value.length} characters long; at most ${MAX_IDENTITY_HEADER}${name === "x-tidyllm-reason" ? " (send a longer reason in the body's 'reason')" : ""}`
  }
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i)
    if (c < 0x20 || c === 0x7f) return `header ${name} contains a control character (U+${c.toString(16).toUpperCase().padStart(4, "0")}) at index ${i}`
    if (c > 0x7e) {
      return `header ${name} contains a byte outside printable ASCII (0x${c.toString(16).toUpperCase()}) at index ${i}; header values are ASCII${name === "x-tidyllm-reason" ? " (send a non-ASCII reason in the body's 'reason')" : ""}`
    }
  }
  return undefined
}

/** A 400 naming the first identity header whose value is not acceptable (control characters, non-ASCII, longer than 256). */
export const checkHeaders = (request: HasHeaders): Effect.Effect<void, Errors.InvalidRequest> => {
  for (const name of identityHeaders) {
    const value = headerValue(request, name)?.trim()
    const problem = value === undefined ? undefined : headerProblem(name, value)
    if (problem !== undefined) return Effect.fail(new Errors.InvalidRequest({ message: problem, field: name }))
  }
  return Effect.void
}

/** An identity header's value; an unacceptable one is left out, so it never reaches an audit row or a log (see {@link checkHeaders}). */
const header = (request: HasHeaders, name: string): string | undefined => {
  const value = headerValue(request, name)?.trim()
  return value === undefined || value === "" || headerProblem(name, value) !== undefined ? undefined : value
}

/** The authenticated caller of the request being served (set by the API middleware; unset on public routes). */
export const currentPrincipal: FiberRef.FiberRef<Principal | undefined> = FiberRef.unsafeMake<Principal | undefined>(undefined)

const roles: ReadonlySet<string> = new Set<Caller.Role>(["user", "approver", "compliance", "admin"])

/**
 * The principal of a request in open mode (no API keys; loopback only): the caller as the headers
 * name it (`x-tidyllm-user`, `x-tidyllm-team`) and the role of `x-tidyllm-role` (default `user`),
 * all taken as given. In keys mode the key decides team and role, and only `x-tidyllm-user` (the
 * end user the call is made for) is read from the headers.
 */
export const openPrincipal = (request: HasHeaders): Principal => {
  const user_id = header(request, "x-tidyllm-user")
  const team = header(request, "x-tidyllm-team")
  const role = header(request, "x-tidyllm-role")
  return {
    caller: { ...(user_id === undefined ? {} : { user_id }), ...(team === undefined ? {} : { team }) },
    role: role !== undefined && roles.has(role) ? role as Caller.Role : WorkflowOptimizerGateway.DEFAULT_ROLE,
    open: true
  }
}

/** The end user named by `x-tidyllm-user`, if acceptable. */
export const userHeader = (request: HasHeaders): string | undefined => header(request, "x-tidyllm-user")

/** The principal of the request being served (open mode or a public route: from its headers). */
export const principalOf = (request: HasHeaders): Effect.Effect<Principal> =>
  Effect.map(FiberRef.get(currentPrincipal), (p) => p ?? openPrincipal(request))

/** The gateway call context of this request. */
export const callContext = (request: HasHeaders, requestId: string): Effect.Effect<LlmRequest.CallContext> =>
  Effect.map(principalOf(request), (p) => contextOf(request, requestId, p))

/** The gateway call context of a request whose principal is known. */
export const contextOf = (request: HasHeaders, requestId: string, principal: Principal): LlmRequest.CallContext => ({
  request_id: requestId,
  caller: principal.caller,
  reason: header(request, "x-tidyllm-reason")
})

/**
 * The gateway #3 call context: the call context plus the caller's role, which flow-agreement
 * decisions check. Fails with {@link checkHeaders}' 400 when an identity header is not
 * acceptable: an approval must not silently become anonymous.
 */
export const workflowContext = (
  request: HasHeaders,
  requestId: string
): Effect.Effect<WorkflowOptimizerGateway.CallContext, Errors.InvalidRequest> =>
  Effect.zipRight(
    checkHeaders(request),
    Effect.map(principalOf(request), (p) => ({ request_id: requestId, caller: p.caller, reason: header(request, "x-tidyllm-reason"), role: p.role }))
  )

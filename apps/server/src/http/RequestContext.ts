/** Per-request context the handlers share: the request id, the caller, the out-of-band reason. */
import type { HttpServerRequest } from "@effect/platform"
import { FiberRef } from "effect"
import { Ids } from "@tidyllm/core"
import type { Caller, LlmRequest } from "@tidyllm/core"
import { WorkflowOptimizerGateway } from "@tidyllm/workflow-optimizer"

/** The id of the request being served (set by the API middleware from `x-request-id` or a new UUID). */
export const currentRequestId: FiberRef.FiberRef<string> = FiberRef.unsafeMake("")

const acceptable = /^[A-Za-z0-9._:@/+=-]{1,128}$/

/** The client's `x-request-id` when it is a sensible token, else a new UUID. */
export const requestIdFrom = (header: string | undefined): string =>
  header !== undefined && acceptable.test(header) ? header : Ids.randomUuid()

const header = (request: HttpServerRequest.HttpServerRequest, name: string): string | undefined => {
  const value = request.headers[name]?.trim()
  return value === undefined || value === "" ? undefined : value
}

/**
 * The caller as the headers name it (`x-tidyllm-user`, `x-tidyllm-team`). Until API keys arrive
 * these are trusted as given; the audit row records them.
 */
export const callerOf = (request: HttpServerRequest.HttpServerRequest): Caller.Caller => {
  const user_id = header(request, "x-tidyllm-user")
  const team = header(request, "x-tidyllm-team")
  return { ...(user_id === undefined ? {} : { user_id }), ...(team === undefined ? {} : { team }) }
}

/** The gateway call context of this request. */
export const callContext = (request: HttpServerRequest.HttpServerRequest, requestId: string): LlmRequest.CallContext => ({
  request_id: requestId,
  caller: callerOf(request),
  reason: header(request, "x-tidyllm-reason")
})

/**
 * The gateway #3 call context: the call context plus the caller's role (`x-tidyllm-role`,
 * default `user`), which flow-agreement decisions check. Trusted as given until API keys carry roles.
 */
export const workflowContext = (request: HttpServerRequest.HttpServerRequest, requestId: string): WorkflowOptimizerGateway.CallContext => ({
  ...callContext(request, requestId),
  role: header(request, "x-tidyllm-role") ?? WorkflowOptimizerGateway.DEFAULT_ROLE
})

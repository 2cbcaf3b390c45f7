/** Requests refused before they reach a gateway (unreadable body, bad fields) still get their audit row. */
import { Effect } from "effect"
import type { LlmRequest } from "@tidyllm/core"
import type { CorporateLlmGateway } from "@tidyllm/corporate-llm"
import { type ApiFailure, errorBody } from "./Errors.js"

/**
 * Fails with `error` after auditing it as a rejected request; when the audit store is down the
 * answer is its 503 instead (no request without its record).
 */
export const audited = (gw1: CorporateLlmGateway.Service, context: LlmRequest.CallContext, raw: unknown) =>
  (error: ApiFailure): Effect.Effect<never, ApiFailure> =>
    gw1.recordRejection(raw, context, { type: String(errorBody(error, context.request_id).error["type"]), message: error.message }).pipe(Effect.zipRight(Effect.fail(error)))

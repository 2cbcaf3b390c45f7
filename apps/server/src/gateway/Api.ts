/** The native gateway contract: `POST /v1/llm` (gateway #1) and `POST /v1/ai` (gateway #2). */
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as OpenApi from "@effect/platform/OpenApi"
import { LlmRequest } from "@tidyllm/core"
import { ErrorBody } from "../http/Errors.js"

/** The gateway group. */
export class GatewayApi extends HttpApiGroup.make("gateway")
  .add(
    HttpApiEndpoint.post("llm", "/v1/llm")
      .setPayload(LlmRequest.LLMRequest)
      .addSuccess(LlmRequest.LLMResponse)
      .addError(ErrorBody, { status: 400 })
      .addError(ErrorBody, { status: 402 })
      .addError(ErrorBody, { status: 413 })
      .addError(ErrorBody, { status: 429 })
      .addError(ErrorBody, { status: 502 })
      .addError(ErrorBody, { status: 503 })
      .annotate(OpenApi.Summary, "One request through gateway #1 (policy, budget, audit), no cache or retries")
  )
  .add(
    HttpApiEndpoint.post("ai", "/v1/ai")
      .setPayload(LlmRequest.AIRequest)
      .addSuccess(LlmRequest.LLMResponse)
      .addError(ErrorBody, { status: 400 })
      .addError(ErrorBody, { status: 402 })
      .addError(ErrorBody, { status: 413 })
      .addError(ErrorBody, { status: 429 })
      .addError(ErrorBody, { status: 502 })
      .addError(ErrorBody, { status: 503 })
      .annotate(OpenApi.Summary, "One request through gateway #2 (backend choice, cache, retries, failover) on top of #1")
  )
  .annotate(OpenApi.Title, "Gateways") {}

/** Handlers of the native gateway API: `POST /v1/llm` (#1) and `POST /v1/ai` (#2). */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import type * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import { Effect, FiberRef } from "effect"
import { AiProcessingGateway } from "@tidyllm/ai-processing"
import { LlmRequest } from "@tidyllm/core"
import { CorporateLlmGateway } from "@tidyllm/corporate-llm"
import { Api } from "../Api.js"
import { AppConfig } from "../Layers.js"
import { decoder, readJson } from "../http/Body.js"
import { audited } from "../http/Rejection.js"
import { errorResponse, type ApiFailure } from "../http/Errors.js"
import { callContext, currentRequestId } from "../http/RequestContext.js"

// The native API is strict: an unknown field is more likely a typo (`resaon`) than something to ignore.
const decodeLlm = decoder(LlmRequest.LLMRequest, { exact: true })
const decodeAi = decoder(LlmRequest.AIRequest, { exact: true })

/** The gateway handlers. */
export const GatewayHttp = HttpApiBuilder.group(Api, "gateway", (handlers) =>
  Effect.gen(function*() {
    const gw1 = yield* CorporateLlmGateway.CorporateLlmGateway
    const gw2 = yield* AiProcessingGateway.AiProcessingGateway
    const maxBody = (yield* AppConfig).server.max_body_bytes

    const serve = <A>(
      httpRequest: HttpServerRequest.HttpServerRequest,
      decode: (u: unknown) => Effect.Effect<A, ApiFailure>,
      run: (request: A, context: LlmRequest.CallContext) => Effect.Effect<LlmRequest.LLMResponse, ApiFailure>
    ) =>
      Effect.gen(function*() {
        const requestId = yield* FiberRef.get(currentRequestId)
        const context = yield* callContext(httpRequest, requestId)
        return yield* readJson(httpRequest, maxBody).pipe(
          Effect.catchAll(audited(gw1, context, undefined)),
          Effect.flatMap((json) => Effect.catchAll(decode(json), audited(gw1, context, json))),
          Effect.flatMap((request) => run(request, context)),
          Effect.map((response) => HttpServerResponse.unsafeJson(response)),
          Effect.catchAll((e) => Effect.succeed(errorResponse(e, requestId)))
        )
      })

    return handlers
      .handleRaw("llm", ({ request }) =>
        serve(request, decodeLlm, (r, context) => Effect.map(gw1.process(r, context), (a) => a.response)))
      .handleRaw("ai", ({ request }) =>
        serve(request, decodeAi, (r, context) => gw2.process(r, context)))
  })
)

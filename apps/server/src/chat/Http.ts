/** Handlers of `POST /v1/chat/completions`, plain and streamed. */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import type * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import { Chunk, Effect, FiberRef, Option, Stream } from "effect"
import { AiProcessingGateway } from "@tidyllm/ai-processing"
import { CorporateLlmGateway } from "@tidyllm/corporate-llm"
import { Ids, ModelCatalog, type LlmRequest } from "@tidyllm/core"
import { Api } from "../Api.js"
import { AppConfig } from "../Layers.js"
import { readJson, decoder } from "../http/Body.js"
import { audited } from "../http/Rejection.js"
import { errorResponse, type ApiFailure } from "../http/Errors.js"
import { callContext, currentRequestId } from "../http/RequestContext.js"
import { ChatCompletionRequest } from "./Api.js"
import * as Convert from "./Convert.js"
import * as Sse from "./Sse.js"

const decodeRequest = decoder(ChatCompletionRequest)

/** The chat handlers. */
export const ChatHttp = HttpApiBuilder.group(Api, "chat", (handlers) =>
  Effect.gen(function*() {
    const gateway = yield* AiProcessingGateway.AiProcessingGateway
    const gw1 = yield* CorporateLlmGateway.CorporateLlmGateway
    const catalog = yield* ModelCatalog.ModelCatalog
    const config = yield* AppConfig
    const maxBody = config.server.max_body_bytes

    /** The answer as one JSON document. */
    const complete = (request: LlmRequest.AIRequest, context: LlmRequest.CallContext) =>
      Effect.map(gateway.process(request, context), (response) =>
        HttpServerResponse.unsafeJson(Convert.toChatCompletion(response, Math.floor(Date.now() / 1000)))
      )

    /**
     * The answer as server-sent events. The first event is awaited before the response starts, so
     * a request refused by policy, budget or every backend still gets its HTTP status; an error
     * after that is sent as an `error` event (and no `[DONE]`).
     */
    const stream = (request: LlmRequest.AIRequest, context: LlmRequest.CallContext, includeUsage: boolean) =>
      Effect.gen(function*() {
        const pull = yield* Stream.toPull(gateway.processStream(request, context))
        const first = yield* pull.pipe(
          Effect.catchAll(Option.match({ onNone: () => Effect.succeed(Chunk.empty<AiProcessingGateway.StreamEvent>()), onSome: Effect.fail }))
        )
        const header: Convert.ChunkHeader = {
          id: Convert.completionId(Ids.randomUuid()),
          created: Math.floor(Date.now() / 1000),
          model: Option.match(catalog.resolve(request.model ?? ""), { onNone: () => request.model ?? "", onSome: (m) => m.id }),
          includeUsage
        }
        const events = Stream.concat(Stream.fromChunk(first), Stream.repeatEffectChunkOption(pull))
        const body = Sse.encode(events, header, context.request_id)
        return HttpServerResponse.stream(body, { contentType: "text/event-stream", headers: Sse.headers })
      })

    const handle = (httpRequest: HttpServerRequest.HttpServerRequest) =>
      Effect.gen(function*() {
        const requestId = yield* FiberRef.get(currentRequestId)
        return yield* Effect.gen(function*() {
          const context = yield* callContext(httpRequest, requestId)
          const json = yield* readJson(httpRequest, maxBody).pipe(Effect.catchAll(audited(gw1, context, undefined)))
          const body = yield* decodeRequest(json).pipe(Effect.catchAll(audited(gw1, context, json)))
          const request = yield* Convert.toAiRequest(body).pipe(Effect.catchAll(audited(gw1, context, json)))
          return body.stream === true
            ? yield* stream(request, context, body.stream_options?.include_usage === true)
            : yield* complete(request, context)
        }).pipe(Effect.catchAll((e: ApiFailure) => Effect.succeed(errorResponse(e, requestId))))
      })

    return handlers.handleRaw("completions", ({ request }) => handle(request))
  })
)

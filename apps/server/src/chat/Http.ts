/** Handlers of `POST /v1/chat/completions`, plain and streamed. */
import type { IncomingMessage } from "node:http"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as NodeHttpServerRequest from "@effect/platform-node/NodeHttpServerRequest"
import { Chunk, Effect, Either, FiberRef, Option } from "effect"
import type { Scope } from "effect"
import { AiProcessingGateway } from "@tidyllm/ai-processing"
import { CorporateLlmGateway } from "@tidyllm/corporate-llm"
import { Ids, ModelCatalog, type LlmRequest } from "@tidyllm/core"
import { Api } from "../Api.js"
import { AppConfig } from "../Layers.js"
import { readJsonFrom, decoder } from "../http/Body.js"
import { audited } from "../http/Rejection.js"
import { errorResponse, type ApiFailure } from "../http/Errors.js"
import { callContext, currentRequestId } from "../http/RequestContext.js"
import { ChatCompletionRequest } from "./Api.js"
import * as Convert from "./Convert.js"
import * as Sse from "./Sse.js"

const decodeRequest = decoder(ChatCompletionRequest)

/**
 * The answer to a chat completion: one JSON document, or server-sent events. A stream is opened
 * by `open`, in the scope it is given, which must stay open until its events are sent; it fails
 * (with the HTTP status of the error) if the request is refused before its first event.
 */
export type Answer =
  | { readonly _tag: "Json"; readonly body: unknown }
  | { readonly _tag: "Stream"; readonly open: Effect.Effect<Sse.Events, ApiFailure, Scope.Scope> }

/**
 * Serves one chat completion: reads the body of `request`, checks it, and runs it through gateway
 * #2 (a stream: once it is opened). Needs no scope: only a stream does, and only the caller knows
 * how long it must live (a scope per request costs ~40 Effect operations, docs/performance.md).
 */
export type Serve = (request: IncomingMessage, context: LlmRequest.CallContext) => Effect.Effect<Answer, ApiFailure>

/**
 * The chat completion as both the `HttpApi` handler and the server's fast lane serve it. A request
 * refused before it reaches a gateway (unreadable body, bad fields) gets its audit row here.
 */
export const makeServe = Effect.gen(function*() {
  const gateway = yield* AiProcessingGateway.AiProcessingGateway
  const gw1 = yield* CorporateLlmGateway.CorporateLlmGateway
  const catalog = yield* ModelCatalog.ModelCatalog
  const maxBody = (yield* AppConfig).server.max_body_bytes

  /** The answer as one JSON document. */
  const complete = (request: LlmRequest.AIRequest, context: LlmRequest.CallContext) =>
    Effect.map(gateway.process(request, context), (response): Answer => ({
      _tag: "Json",
      body: Convert.toChatCompletion(response, Math.floor(Date.now() / 1000))
    }))

  /**
   * The answer as server-sent events. The first event is awaited before the response starts, so
   * a request refused by policy, budget or every backend still gets its HTTP status; an error
   * after that is sent as an `error` event (and no `[DONE]`).
   */
  const stream = (request: LlmRequest.AIRequest, context: LlmRequest.CallContext, includeUsage: boolean): Effect.Effect<Sse.Events, ApiFailure, Scope.Scope> =>
    Effect.flatMap(gateway.openStream(request, context), (pull) =>
      Effect.map(
        Effect.catchAll(pull, Option.match({ onNone: () => Effect.succeed(Chunk.empty<AiProcessingGateway.StreamEvent>()), onSome: Effect.fail })),
        (first): Sse.Events => {
          const header: Convert.ChunkHeader = {
            id: Convert.completionId(Ids.randomUuid()),
            created: Math.floor(Date.now() / 1000),
            model: Option.match(catalog.resolve(request.model ?? ""), { onNone: () => request.model ?? "", onSome: (m) => m.id }),
            includeUsage
          }
          return { header, first, pull, requestId: context.request_id }
        }
      ))

  // Plain steps rather than a generator: this runs for every request (docs/performance.md).
  const serve: Serve = (httpRequest, context) =>
    Effect.flatMap(Effect.catchAll(readJsonFrom(httpRequest, maxBody), audited(gw1, context, undefined)), (json) => {
      // Decoding and conversion are plain checks: a refused body is audited, else the request goes on.
      const body = decodeRequest(json)
      if (Either.isLeft(body)) return audited(gw1, context, json)(body.left)
      const request = Convert.toAiRequest(body.right)
      if (Either.isLeft(request)) return audited(gw1, context, json)(request.left)
      return body.right.stream === true
        ? Effect.succeed<Answer>({ _tag: "Stream", open: stream(request.right, context, body.right.stream_options?.include_usage === true) })
        : complete(request.right, context)
    })
  return serve
})

/** The chat handlers. */
export const ChatHttp = HttpApiBuilder.group(Api, "chat", (handlers) =>
  Effect.gen(function*() {
    const serve = yield* makeServe
    return handlers.handleRaw("completions", ({ request }) =>
      Effect.flatMap(FiberRef.get(currentRequestId), (requestId) =>
        callContext(request, requestId).pipe(
          Effect.flatMap((context) => serve(NodeHttpServerRequest.toIncomingMessage(request), context)),
          // A stream lives in the request's scope (the platform's, open until the response is sent).
          Effect.flatMap((answer) =>
            answer._tag === "Json"
              ? Effect.succeed(HttpServerResponse.unsafeJson(answer.body))
              : Effect.map(answer.open, (events) => HttpServerResponse.stream(Sse.toStream(events), { contentType: "text/event-stream", headers: Sse.headers }))
          ),
          Effect.catchAll((e: ApiFailure) => Effect.succeed(errorResponse(e, requestId)))
        )))
  })
)

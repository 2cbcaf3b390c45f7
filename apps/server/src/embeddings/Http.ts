/** Handler of `POST /v1/embeddings`. */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import type * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import { Effect, Either, FiberRef } from "effect"
import { Errors, type LlmRequest } from "@tidyllm/core"
import { CorporateLlmGateway } from "@tidyllm/corporate-llm"
import { AiProcessingGateway } from "@tidyllm/ai-processing"
import { Api } from "../Api.js"
import { AppConfig } from "../Layers.js"
import { decoder, readJson } from "../http/Body.js"
import { audited } from "../http/Rejection.js"
import { errorResponse } from "../http/Errors.js"
import { callContext, currentRequestId } from "../http/RequestContext.js"
import { EmbeddingsRequest, type EmbeddingsResponse } from "./Api.js"

const decode = decoder(EmbeddingsRequest)

const invalid = (message: string, field: string) => Either.left(new Errors.InvalidRequest({ message, field }))

/** The gateway request for an OpenAI embeddings request. */
export const toEmbeddingRequest = (body: EmbeddingsRequest): Either.Either<LlmRequest.EmbeddingRequest, Errors.InvalidRequest> => {
  let input: string | ReadonlyArray<string>
  if (typeof body.input === "string") {
    if (body.input === "") return invalid("'input' is empty: give a non-empty string or array of strings", "input")
    input = body.input
  } else {
    if (body.input.length === 0) return invalid("'input' is an empty array", "input")
    if (body.input.length > 2048) return invalid(`'input' has ${body.input.length} items; at most 2048 per request`, "input")
    const texts: Array<string> = []
    for (const [i, item] of body.input.entries()) {
      if (typeof item !== "string") {
        return invalid(`input[${i}]: token arrays are not supported, send text (the gateway counts and audits text)`, `input[${i}]`)
      }
      if (item === "") return invalid(`input[${i}] is empty`, `input[${i}]`)
      texts.push(item)
    }
    input = texts
  }
  return Either.right({
    input,
    model: body.model,
    ...(body.provider === undefined ? {} : { provider: body.provider }),
    ...(body.dimensions == null ? {} : { dimensions: body.dimensions }),
    ...(body.reason === undefined ? {} : { reason: body.reason }),
    ...(body.user === undefined ? {} : { user_id: body.user })
  })
}

/** A vector as OpenAI's `base64` encoding: the float32 values, little-endian. */
export const toBase64 = (vector: ReadonlyArray<number>): string => {
  const buffer = Buffer.alloc(vector.length * 4)
  vector.forEach((x, i) => buffer.writeFloatLE(x, i * 4))
  return buffer.toString("base64")
}

/** The embeddings handler. */
export const EmbeddingsHttp = HttpApiBuilder.group(Api, "embeddings", (handlers) =>
  Effect.gen(function*() {
    const gw1 = yield* CorporateLlmGateway.CorporateLlmGateway
    const gw2 = yield* AiProcessingGateway.AiProcessingGateway
    const config = yield* AppConfig

    const handle = (httpRequest: HttpServerRequest.HttpServerRequest) =>
      Effect.gen(function*() {
        const requestId = yield* FiberRef.get(currentRequestId)
        const context = yield* callContext(httpRequest, requestId)
        return yield* Effect.gen(function*() {
          const json = yield* readJson(httpRequest, config.server.max_body_bytes).pipe(Effect.catchAll(audited(gw1, context, undefined)))
          const body = yield* decode(json).pipe(Effect.catchAll(audited(gw1, context, json)))
          const request = yield* toEmbeddingRequest(body).pipe(Effect.catchAll(audited(gw1, context, json)))
          // Through gateway #2: retries, the per-attempt timeout and failover, like chat.
          const answer = yield* gw2.embed(request, context)
          const base64 = body.encoding_format === "base64"
          const response: EmbeddingsResponse = {
            object: "list",
            data: answer.vectors.map((v, index) => ({ object: "embedding", index, embedding: base64 ? toBase64(v) : v })),
            model: answer.metadata.model,
            usage: { prompt_tokens: answer.usage.input_tokens, total_tokens: answer.usage.input_tokens },
            tidyllm: { ...answer.metadata, backend_used: answer.backend_used, attempts: answer.attempts }
          }
          return HttpServerResponse.unsafeJson(response)
        }).pipe(Effect.catchAll((e) => Effect.succeed(errorResponse(e, requestId))))
      })

    return handlers.handleRaw("create", ({ request }) => handle(request))
  })
)

/** Server-sent events as OpenAI streams them: `data: <json>\n\n`, closed by `data: [DONE]`. */
import { Stream } from "effect"
import type { Errors } from "@tidyllm/core"
import type { AiProcessingGateway } from "@tidyllm/ai-processing"
import { errorBody } from "../http/Errors.js"
import * as Convert from "./Convert.js"

const encoder = new TextEncoder()

/** One event carrying `value` as JSON. */
export const event = (value: unknown): Uint8Array => encoder.encode(`data: ${JSON.stringify(value)}\n\n`)

/** The end-of-stream marker. */
export const done: Uint8Array = encoder.encode("data: [DONE]\n\n")

/** Headers of an event stream: no caching, no proxy buffering. */
export const headers: Readonly<Record<string, string>> = {
  "cache-control": "no-cache",
  "x-accel-buffering": "no"
}

/**
 * The event stream of one answer: the role chunk, a chunk per piece of text, the closing chunks
 * (finish reason, metadata, usage), `[DONE]`. A failure midway ends the stream with an `error`
 * event and no `[DONE]`, so a client cannot mistake a cut answer for a whole one.
 */
export const encode = (
  events: Stream.Stream<AiProcessingGateway.StreamEvent, Errors.GatewayError>,
  header: Convert.ChunkHeader,
  requestId: string
): Stream.Stream<Uint8Array> =>
  Stream.make(event(Convert.roleChunk(header))).pipe(
    Stream.concat(events.pipe(
      Stream.mapConcat((e): ReadonlyArray<Uint8Array> =>
        e._tag === "Delta"
          ? (e.text === "" ? [] : [event(Convert.deltaChunk(header, e.text))])
          : e._tag === "ToolCallDelta"
          ? [event(Convert.toolCallChunk(header, e))]
          : Convert.finalChunks(header, e.response).map(event)
      )
    )),
    Stream.concat(Stream.make(done)),
    Stream.catchAll((e) => Stream.make(event(errorBody(e, requestId))))
  )

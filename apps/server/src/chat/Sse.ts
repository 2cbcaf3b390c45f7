/** Server-sent events as OpenAI streams them: `data: <json>\n\n`, closed by `data: [DONE]`. */
import { Chunk, Effect, Option, Stream } from "effect"
import type { Errors, Pulls } from "@tidyllm/core"
import type { AiProcessingGateway } from "@tidyllm/ai-processing"
import { errorBody } from "../http/Errors.js"
import * as Convert from "./Convert.js"

const encoder = new TextEncoder()

/** The text of one event carrying `value` as JSON. */
const line = (value: unknown): string => `data: ${JSON.stringify(value)}\n\n`

/** One event carrying `value` as JSON. */
export const event = (value: unknown): Uint8Array => encoder.encode(line(value))

/** The end-of-stream marker. */
export const done: Uint8Array = encoder.encode("data: [DONE]\n\n")

/** Headers of an event stream: no caching, no proxy buffering. */
export const headers: Readonly<Record<string, string>> = {
  "cache-control": "no-cache",
  "x-accel-buffering": "no"
}

/** An answer's events as gateway #2 opened them: its first chunk in hand, the rest to pull. */
export interface Events {
  readonly header: Convert.ChunkHeader
  readonly first: Chunk.Chunk<AiProcessingGateway.StreamEvent>
  readonly pull: Pulls.Pull<AiProcessingGateway.StreamEvent, Errors.GatewayError>
  readonly requestId: string
}

/** The text of a chunk of events, all of them in one piece (one write to the socket). */
const textOf = (header: Convert.ChunkHeader, events: Iterable<AiProcessingGateway.StreamEvent>): string => {
  let text = ""
  for (const e of events) {
    if (e._tag === "Delta") {
      if (e.text !== "") text += line(Convert.deltaChunk(header, e.text))
    } else if (e._tag === "ToolCallDelta") {
      text += line(Convert.toolCallChunk(header, e))
    } else {
      for (const c of Convert.finalChunks(header, e.response)) text += line(c)
    }
  }
  return text
}

/**
 * The bytes of one answer, a piece per pull: the role chunk with the first events, a piece per
 * chunk of events, then `[DONE]`. A failure midway ends the stream with an `error` event and no
 * `[DONE]`, so a client cannot mistake a cut answer for a whole one. Fails with `None` at the end.
 */
export const bytes = (events: Events): Pulls.Pull<Uint8Array, never> => {
  let state: "opening" | "streaming" | "over" = "opening"
  const piece = (text: string) => Chunk.of(encoder.encode(text))
  return Effect.suspend(() => {
    switch (state) {
      case "opening":
        state = "streaming"
        return Effect.succeed(piece(line(Convert.roleChunk(events.header)) + textOf(events.header, events.first)))
      case "streaming":
        return Effect.matchEffect(events.pull, {
          onSuccess: (chunk) => Effect.succeed(Chunk.isEmpty(chunk) ? Chunk.empty() : piece(textOf(events.header, chunk))),
          onFailure: (e) => {
            state = "over"
            return Effect.succeed(Option.isNone(e) ? Chunk.of(done) : Chunk.of(event(errorBody(e.value, events.requestId))))
          }
        })
      case "over":
        return Effect.fail(Option.none())
    }
  })
}

/** The bytes of one answer as a `Stream` (one stage), for the `HttpApi` response. */
export const toStream = (events: Events): Stream.Stream<Uint8Array> => Stream.repeatEffectChunkOption(bytes(events))

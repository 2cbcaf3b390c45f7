/**
 * Server-sent events off a response body, for the adapters that stream over an undici `Pool`
 * (`internal/jsonPost.ts`): the body's chunks go through `eventsource-parser`, and each read
 * gives the events that chunk completed.
 */
import { createParser, type EventSourceMessage } from "eventsource-parser"

/** Reads events off `body`; `next` resolves with the events of the next chunk(s), `undefined` once the body has ended. */
export interface EventReader {
  readonly next: () => Promise<ReadonlyArray<EventSourceMessage> | undefined>
}

export const eventReader = (body: AsyncIterable<Uint8Array | string>): EventReader => {
  const iterator = body[Symbol.asyncIterator]()
  const decoder = new TextDecoder()
  let events: Array<EventSourceMessage> = []
  let ended = false
  const parser = createParser({ onEvent: (event) => void events.push(event) })
  const take = () => {
    const out = events
    events = []
    return out
  }
  return {
    next: async () => {
      while (!ended) {
        const chunk = await iterator.next()
        if (chunk.done === true) {
          ended = true
          // A last event without its blank line still counts, as the `openai` client counts it.
          parser.feed(decoder.decode())
          parser.reset({ consume: true })
        } else {
          parser.feed(typeof chunk.value === "string" ? chunk.value : decoder.decode(chunk.value, { stream: true }))
        }
        if (events.length > 0) return take()
      }
      return undefined
    }
  }
}

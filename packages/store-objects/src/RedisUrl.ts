/**
 * What every Redis client of the gateway shares, without loading the Redis client: what a Redis
 * URL is called in logs and health reports, the reconnect delay, the log of reachability, the close.
 */
import { Duration, Effect, Ref, Runtime } from "effect"
import type { Redis } from "ioredis"

/** The URL without its credentials, fit for a log line. */
export const describeUrl = (url: string): string => {
  try {
    const u = new URL(url)
    return `${u.protocol}//${u.host}${u.pathname === "/" ? "" : u.pathname}`
  } catch {
    return "(unparsable Redis URL)"
  }
}

/** Reconnect delay after the `times`-th failed attempt: 100 ms doubling up to 5 s. */
export const reconnectDelay = (times: number): number => Math.min(100 * 2 ** Math.min(times - 1, 6), 5000)

/**
 * Logs a Redis client's reachability once per change, not once per failed reconnect: `down` for
 * the client's `error` events (`what unreachable: …`), `up` for its `ready` events; `isDown` is
 * whether the last change was to unreachable.
 */
export const reachability = (what: string) =>
  Effect.gen(function*() {
    const runtime = yield* Effect.runtime<never>()
    const down = yield* Ref.make(false)
    return {
      isDown: Ref.get(down),
      down: (e: Error) =>
        Runtime.runFork(runtime)(Effect.flatMap(Ref.getAndSet(down, true), (was) => (was ? Effect.void : Effect.logWarning(`${what} unreachable: ${e.message}`)))),
      up: () => Runtime.runFork(runtime)(Effect.flatMap(Ref.getAndSet(down, false), (was) => (was ? Effect.logInfo(`${what} reachable again`) : Effect.void)))
    }
  })

/**
 * A client made by `make`, its reachability logged once per change (as `what`), closed with the
 * scope: what every Redis client of the gateway does around its own options.
 */
export const scopedClient = <C extends Redis>(what: string, make: () => C) =>
  Effect.gen(function*() {
    const reachable = yield* reachability(what)
    const client = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const c = make()
        c.on("error", reachable.down)
        c.on("ready", reachable.up)
        return c
      }),
      close
    )
    return { client, reachable }
  })

/** Closes a client: `QUIT` within a second if it is connected (one never connected has nothing to say goodbye to, and `QUIT` would connect first), then the socket. */
export const close = (client: Redis): Effect.Effect<void> =>
  (client.status === "ready" ? Effect.tryPromise(() => client.quit()).pipe(Effect.timeout(Duration.seconds(1)), Effect.ignore) : Effect.void).pipe(
    Effect.ensuring(Effect.sync(() => client.disconnect()))
  )

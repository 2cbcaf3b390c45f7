/**
 * The one contract every provider's wire-level stub follows, so the same fault matrix runs
 * against each provider through its real client library. A stub is an HTTP server on
 * 127.0.0.1 that answers in its provider's exact wire format.
 */

/** What the stub does with the next requests. */
export type Scenario =
  /** Answers `fixture.text` with `fixture.usage` (streamed when the request asks for a stream). */
  | "success"
  /** Answers with one call of `fixture.tool` (finish reason `tool_calls` / `tool_use`), usage as `fixture.usage`. */
  | "tool_call"
  /** Answers HTTP 429 (the provider's throttling error body) to the first request, then as `success`. */
  | "throttle_once"
  /** Answers HTTP 500 (the provider's server-error body) to every request. */
  | "server_error"
  /** Answers HTTP 400 (the provider's validation-error body) to every request. */
  | "bad_request"
  /** Reads the request and never answers (until the client gives up or the stub closes). */
  | "hang"
  /**
   * Stream: sends the first `fixture.cutAfterChunks` text chunks of the answer, then destroys the
   * socket. Not a stream: destroys the socket before any response byte.
   */
  | "reset_mid_stream"

/**
 * Beyond the matrix (so not in {@link scenarios}): answers HTTP 401 in the provider's error shape,
 * its message echoing every credential header the request carried (`authorization`, `x-api-key`,
 * `x-amz-security-token`), as a buggy or hostile upstream might.
 */
export type EchoScenario = "echo_credentials"

/** The credential headers of a request, as an echoing upstream writes them into its message. */
export const echoedCredentials = (headers: Readonly<Record<string, string | ReadonlyArray<string> | undefined>>): string =>
  ["authorization", "x-api-key", "x-amz-security-token"]
    .flatMap((name) => {
      const value = headers[name]
      return value === undefined ? [] : [`${name}: ${Array.isArray(value) ? value.join(", ") : String(value)}`]
    })
    .join("; ")

export const scenarios: ReadonlyArray<Scenario> = [
  "success", "tool_call", "throttle_once", "server_error", "bad_request", "hang", "reset_mid_stream"
]

/** What every stub answers with. */
export const fixture = {
  /** Streamed as the chunks of `textChunks`, in order. */
  text: "Hello from the stub.",
  textChunks: ["Hello", " from", " the", " stub."],
  cutAfterChunks: 2,
  usage: { input_tokens: 11, output_tokens: 7 },
  tool: { id: "call_stub_1", name: "get_weather", arguments: "{\"city\":\"Paris\"}" },
  embedding: [0.25, -0.5, 0.125],
  embeddingTokens: 5
} as const

/** A running stub. */
export interface StubHandle {
  /** Base URL to give the client (what its `baseURL` / endpoint option wants). */
  readonly url: string
  /** Sets what the stub does from the next request on (resets `throttle_once`'s counter). */
  readonly setScenario: (scenario: Scenario | EchoScenario) => void
  /** Request bodies received so far (parsed JSON), oldest first. */
  readonly requests: () => ReadonlyArray<unknown>
  /** Request headers received so far, oldest first (lower-case names). */
  readonly headers: () => ReadonlyArray<Readonly<Record<string, string | ReadonlyArray<string> | undefined>>>
  /** Number of requests whose socket closed before the stub finished answering (the client aborted). */
  readonly aborted: () => number
  /** Stops the server and destroys every open socket. */
  readonly close: () => Promise<void>
}

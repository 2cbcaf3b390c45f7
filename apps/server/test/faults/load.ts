/**
 * A bounded load driver for the fault tests: `n` requests, at most `concurrency` in flight, each
 * with its own `x-request-id`, answered or given up after a client timeout; hooks run as request
 * `i` is about to be sent, which is how a test switches a fault on and off mid-run.
 */

/** What a client saw for one request. */
export interface Result {
  readonly index: number
  readonly id: string
  /** HTTP status; 0 when no answer came (connection failed or client timeout). */
  readonly status: number
  /** The answer's `Retry-After` header, when it had one. */
  readonly retryAfter?: string | undefined
  readonly latencyMs: number
  /** The JSON body (non-stream answers and every error answer). */
  readonly json?: unknown
  /** `error.type` of an error answer. */
  readonly errorType?: string | undefined
  /** A streamed answer: the text, whether `[DONE]` came, and the `error` event if one came. */
  readonly stream?: { readonly text: string; readonly done: boolean; readonly error: Record<string, unknown> | undefined } | undefined
  /** The answer's text (non-stream) or streamed text. */
  readonly text?: string | undefined
  /** The gateway metadata of a successful answer (`tidyllm` on chat, `metadata` on `/v1/ai`). */
  readonly meta?: { readonly cache_hit?: boolean; readonly backend_used?: string; readonly attempts?: number } | undefined
  /** What went wrong on the client side, if anything (no answer, unparsable body). */
  readonly clientError?: string | undefined
}

export interface RequestSpec {
  readonly path: string
  readonly body: unknown
  readonly headers?: Record<string, string>
  readonly stream?: boolean
}

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null && !Array.isArray(u)

/** Parses an SSE body as the chat route sends it. */
const parseSse = (raw: string) => {
  let text = ""
  let done = false
  let error: Record<string, unknown> | undefined
  let meta: Result["meta"]
  for (const block of raw.split("\n\n")) {
    const line = block.split("\n").find((l) => l.startsWith("data: "))
    if (line === undefined) continue
    const data = line.slice("data: ".length)
    if (data === "[DONE]") {
      done = true
      continue
    }
    const event: unknown = JSON.parse(data)
    if (!isRecord(event)) continue
    if (isRecord(event.error)) error = event.error
    if (isRecord(event.tidyllm)) meta = event.tidyllm
    const choices = Array.isArray(event.choices) ? event.choices : []
    for (const c of choices) {
      if (isRecord(c) && isRecord(c.delta) && typeof c.delta.content === "string") text += c.delta.content
    }
  }
  return { text, done, error, meta }
}

/** Sends one request and reads the whole answer (bounded by `timeoutMs`). */
export const send = async (base: string, index: number, id: string, spec: RequestSpec, timeoutMs: number): Promise<Result> => {
  const started = performance.now()
  const elapsed = () => Math.round(performance.now() - started)
  try {
    const response = await fetch(`${base}${spec.path}`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-request-id": id, ...spec.headers },
      body: JSON.stringify(spec.body),
      signal: AbortSignal.timeout(timeoutMs)
    })
    const raw = await response.text()
    const type = response.headers.get("content-type") ?? ""
    if (type.startsWith("text/event-stream")) {
      const s = parseSse(raw)
      return { index, id, status: response.status, latencyMs: elapsed(), stream: { text: s.text, done: s.done, error: s.error }, text: s.text, meta: s.meta }
    }
    let json: unknown
    try {
      json = JSON.parse(raw)
    } catch {
      return { index, id, status: response.status, latencyMs: elapsed(), clientError: `not JSON: ${raw.slice(0, 200)}` }
    }
    const error = isRecord(json) && isRecord(json.error) ? json.error : undefined
    const content = isRecord(json) && Array.isArray(json.choices) && isRecord(json.choices[0]) && isRecord(json.choices[0].message)
      ? json.choices[0].message.content
      : isRecord(json) && isRecord(json.data) ? json.data.response : undefined
    const text = typeof content === "string" ? content : undefined
    const meta = isRecord(json) ? (isRecord(json.tidyllm) ? json.tidyllm : isRecord(json.metadata) ? json.metadata : undefined) : undefined
    return {
      index, id, status: response.status, latencyMs: elapsed(), json,
      retryAfter: response.headers.get("retry-after") ?? undefined,
      errorType: error !== undefined && typeof error.type === "string" ? error.type : undefined,
      text, meta: meta as Result["meta"]
    }
  } catch (e) {
    return { index, id, status: 0, latencyMs: elapsed(), clientError: e instanceof Error ? `${e.name}: ${e.message}` : String(e) }
  }
}

export interface LoadOptions {
  readonly base: string
  readonly n: number
  readonly concurrency: number
  /** The request id of request `i`. */
  readonly idOf: (i: number) => string
  readonly specOf: (i: number, id: string) => RequestSpec
  /** Run just before request `i` is sent (e.g. flip the upstream's fault mode); no request is sent until it is done (requests in flight go on). */
  readonly before?: ReadonlyMap<number, () => void | Promise<void>>
  readonly timeoutMs?: number
}

/** Runs the load; resolves when every request has its result (each bounded by the client timeout). */
export const runLoad = async (options: LoadOptions): Promise<ReadonlyArray<Result>> => {
  const results: Array<Result> = []
  let next = 0
  // A hook holds back every worker, not only its own: what is sent after it sees its effect.
  let gate: Promise<void> = Promise.resolve()
  const worker = async () => {
    while (next < options.n) {
      const i = next++
      const hook = options.before?.get(i)
      if (hook !== undefined) gate = gate.then(hook)
      await gate
      const id = options.idOf(i)
      results.push(await send(options.base, i, id, options.specOf(i, id), options.timeoutMs ?? 15_000))
    }
  }
  await Promise.all(Array.from({ length: Math.min(options.concurrency, options.n) }, worker))
  return results.sort((a, b) => a.index - b.index)
}

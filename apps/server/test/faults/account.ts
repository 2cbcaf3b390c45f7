/**
 * The books of one fault scenario: what each request should have seen, worked out from what the
 * upstream stubs did with its attempts, against what the client saw and what the audit log holds.
 *
 * Gateway #2 writes one audit row per attempt (a retried request has one `error` row per failed
 * attempt, then its final row). "Nothing lost" here means, for every request sent:
 * - it got an answer: 2xx, or a JSON error with `error.type` and the documented status;
 * - it has audit rows, one per upstream attempt (attempt numbers 1..n), each with the status the
 *   attempt's fate calls for, and no 2xx without its `success` / `cache_hit` / `stream_error` row;
 * and no audit row of the scenario belongs to a request that was not sent.
 */
import type { Outcome, Served } from "./upstream.js"
import type { Result } from "./load.js"

/** The audit row fields the books look at. */
export interface Row {
  readonly request_id: string
  readonly status: string
  readonly attempt: number
  readonly cost: number
  readonly provider: string
  readonly error_type: string | null
  readonly output_tokens: number
}

/** The provider error kind gateway #2 lists for a failed attempt of each fault. */
export const kindOf: Readonly<Record<Exclude<Outcome, "ok">, string>> = {
  "429": "throttled",
  "500": "server",
  "503": "server",
  slow: "timeout",
  reset: "connection",
  cut: "connection"
}

export interface Attempt extends Served {
  readonly backend: string
}

export interface Books {
  readonly requests: number
  readonly byStatus: Readonly<Record<string, number>>
  readonly auditRows: number
  readonly strayRows: number
  /** Requests without an answer, without audit rows, or answered 2xx without their row. */
  readonly lost: ReadonlyArray<string>
  /** Requests whose answer or rows differ from what their attempts call for. */
  readonly wrong: ReadonlyArray<string>
  readonly upstreamAttempts: number
  /** Attempts the stub answered but the gateway had given up on (its per-attempt timeout fired first). */
  readonly late: ReadonlyArray<string>
  readonly auditedCost: number
}

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null && !Array.isArray(u)

/**
 * @param attemptsByBackend what each upstream did, in the order the gateway tries the backends
 * @param options.streamCutIsFinal streamed requests cut after content end with an `error` event
 */
export const account = (
  results: ReadonlyArray<Result>,
  attemptsByBackend: ReadonlyArray<{ readonly backend: string; readonly served: ReadonlyArray<Served> }>,
  rows: ReadonlyArray<Row>
): Books => {
  const sent = new Set(results.map((r) => r.id))
  const rowsOf = new Map<string, Array<Row>>()
  for (const row of rows) {
    const list = rowsOf.get(row.request_id) ?? []
    list.push(row)
    rowsOf.set(row.request_id, list)
  }
  const attemptsOf = new Map<string, Array<Attempt>>()
  for (const { backend, served } of attemptsByBackend) {
    for (const s of [...served].sort((a, b) => a.seq - b.seq)) {
      if (s.tag === undefined) continue
      const list = attemptsOf.get(s.tag) ?? []
      list.push({ ...s, backend })
      attemptsOf.set(s.tag, list)
    }
  }
  const byStatus: Record<string, number> = {}
  const lost: Array<string> = []
  const wrong: Array<string> = []
  let upstreamAttempts = 0
  const late: Array<string> = []
  for (const r of results) {
    const key = r.status === 0 ? "no answer" : String(r.status)
    byStatus[key] = (byStatus[key] ?? 0) + 1
    const mine = [...(rowsOf.get(r.id) ?? [])].sort((a, b) => a.attempt - b.attempt)
    const attempts = attemptsOf.get(r.id) ?? []
    upstreamAttempts += attempts.length
    const say = (list: Array<string>, what: string) => list.push(`${r.id}: ${what} (status ${r.status}, attempts ${attempts.map((a) => `${a.backend}:${a.outcome}`).join(",") || "none"}, rows ${mine.map((m) => `${m.attempt}:${m.status}${m.error_type === null ? "" : `/${m.error_type}`}`).join(",") || "none"})`)

    // An answer a client can act on.
    if (r.status === 0 || r.clientError !== undefined) {
      say(lost, `no usable answer: ${r.clientError ?? ""}`)
      continue
    }
    if (r.status >= 400 && r.errorType === undefined) say(lost, "an error answer without a JSON error.type")
    if (mine.length === 0) {
      say(lost, "no audit row")
      continue
    }
    const final = mine.at(-1)
    if (r.status >= 200 && r.status < 300 && !["success", "cache_hit", "stream_error"].includes(final?.status ?? "")) {
      say(lost, "answered 2xx without its success row")
    }

    // A cache hit: no upstream call, one `cache_hit` row.
    if (r.meta?.cache_hit === true) {
      if (attempts.length !== 0 || mine.length !== 1 || final?.status !== "cache_hit") say(wrong, "a cache hit should have one cache_hit row and no upstream call")
      continue
    }
    // The gateway's view of each attempt, from its rows (numbered 1..n).
    mine.forEach((row, i) => {
      if (row.attempt !== i + 1) say(wrong, `row ${i} has attempt ${row.attempt}`)
      // Only the last row may say the request got an answer: nothing is tried after one.
      if (i < mine.length - 1 && row.status !== "error") say(wrong, `row ${i + 1} of ${mine.length} is ${row.status}`)
    })
    const fateOf = (row: Row): string =>
      row.status === "success" ? "ok" : row.status === "stream_error" ? "cut" : row.error_type?.startsWith("upstream_error:") === true ? row.error_type.slice("upstream_error:".length) : `?${row.status}/${row.error_type ?? ""}`
    const kindOfAttempt = (a: Attempt) => (a.outcome === "ok" ? "ok" : a.outcome === "cut" && a.stream ? "cut" : kindOf[a.outcome])
    // Rows against what the stub did, in order. A row that says `timeout` where the stub was not
    // slow is an attempt the gateway gave up on before it saw the answer (on a loaded machine the
    // stub, in this same process, may answer late, or get the request after the retry's): it
    // matches the stub's record of it, if any, wherever that is. Every other row must match the
    // stub's next record of its backend with the same outcome; a record skipped on the way must
    // be one of those abandoned attempts.
    let j = 0
    let skipped = 0
    let timeouts = 0
    for (const row of mine) {
      const fate = fateOf(row)
      if (fate === "timeout") {
        if (attempts[j]?.outcome === "slow" && attempts[j]?.backend === row.provider) {
          j++
        } else {
          timeouts++
          late.push(`${r.id}#${row.attempt}:${attempts[j]?.outcome ?? "none"}`)
        }
        continue
      }
      let k = j
      while (k < attempts.length && !(kindOfAttempt(attempts[k] as Attempt) === fate && attempts[k]?.backend === row.provider)) k++
      if (k >= attempts.length) {
        say(wrong, `attempt ${row.attempt} audited ${row.status} (${fate}) on ${row.provider}: no such upstream attempt`)
        break
      }
      skipped += k - j
      j = k + 1
    }
    if (skipped + (attempts.length - j) > timeouts) say(wrong, `${mine.length} audit row(s) for ${attempts.length} upstream attempt(s)`)
    if (mine.length < attempts.length) say(wrong, `${mine.length} audit row(s) for ${attempts.length} upstream attempt(s)`)

    // What the client saw follows from the last row; the error lists every attempt's kind.
    const lastRow = mine.at(-1) as Row
    const last = fateOf(lastRow)
    if (last === "ok") {
      if (r.status !== 200) say(wrong, "the last attempt was answered, the client should get 200")
      else if (!(r.text ?? "").endsWith(`stub ${lastRow.provider}`)) say(wrong, `answer text ${JSON.stringify(r.text)} is not ${lastRow.provider}'s`)
      if (r.stream !== undefined && (!r.stream.done || r.stream.error !== undefined)) say(wrong, "a whole stream should end with [DONE] and no error event")
      if (r.meta?.attempts !== undefined && r.meta.attempts !== mine.length) say(wrong, `metadata says ${r.meta.attempts} attempts`)
      if (r.meta?.backend_used !== undefined && r.meta.backend_used !== lastRow.provider) say(wrong, `metadata says backend ${r.meta.backend_used}`)
    } else if (last === "cut") {
      // Content reached the client: no retry, an `error` event and no `[DONE]`.
      if (r.status !== 200 || r.stream === undefined) say(wrong, "a cut stream should have started (200, event stream)")
      else {
        if (r.stream.done) say(wrong, "a cut stream must not end with [DONE]")
        if (r.stream.error === undefined || typeof r.stream.error.type !== "string") say(wrong, "a cut stream must end with an error event with a type")
        if (r.stream.text !== "Hello") say(wrong, `a cut stream delivered ${JSON.stringify(r.stream.text)}`)
      }
      if (lastRow.output_tokens === 0) say(wrong, "a cut stream's row should count the delivered tokens")
    } else {
      // Every attempt failed: all_backends_failed listing each attempt with its kind; 504 when
      // every attempt timed out, 429 when every attempt was throttled, else 502.
      const status = mine.every((row) => fateOf(row) === "timeout") ? 504 : mine.every((row) => fateOf(row) === "throttled") ? 429 : 502
      if (r.status !== status || r.errorType !== "all_backends_failed") say(wrong, `want ${status} all_backends_failed, got ${r.status} ${r.errorType ?? ""}`)
      const listed = isRecord(r.json) && isRecord(r.json.error) && Array.isArray(r.json.error.attempts) ? r.json.error.attempts : []
      const kinds = listed.map((x) => (isRecord(x) ? x.kind : undefined))
      const want = mine.map(fateOf)
      if (JSON.stringify(kinds) !== JSON.stringify(want)) say(wrong, `error.attempts kinds ${JSON.stringify(kinds)}, want ${JSON.stringify(want)}`)
    }
  }
  const strayRows = rows.filter((row) => !sent.has(row.request_id)).length
  return {
    requests: results.length,
    byStatus,
    auditRows: rows.length,
    strayRows,
    lost,
    wrong,
    upstreamAttempts,
    late,
    auditedCost: rows.reduce((n, row) => n + row.cost, 0)
  }
}

/** Handler of `GET /v1/audit`: a JSON page, or a CSV export streamed page by page. */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import type * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import { Chunk, Effect, FiberRef, Stream } from "effect"
import { Errors } from "@tidyllm/core"
import { AuditLog } from "@tidyllm/corporate-llm"
import { Api } from "../Api.js"
import { errorResponse } from "../http/Errors.js"
import { currentRequestId, principalOf } from "../http/RequestContext.js"
import { csvHeader, csvLine, toRow } from "./Export.js"
import * as Params from "./Params.js"

/** Audit rows are not for shared caches. */
const noStore = { "cache-control": "no-store" }

/** The audit handler. */
export const AuditHttp = HttpApiBuilder.group(Api, "audit", (handlers) =>
  Effect.gen(function*() {
    const log = yield* AuditLog.AuditLog

    /**
     * The export. Its first page is read before the response starts, so a bad cursor or a store
     * that is down still gets its 400 or 503; a failure after that cuts the response (a client
     * sees a broken transfer, never a short file that looks complete).
     */
    const csv = (p: Params.Parsed) =>
      Effect.gen(function*() {
        const first = yield* log.query({ ...p.filter, limit: Math.min(AuditLog.MAX_PAGE, p.limit), cursor: p.cursor })
        const left = p.limit - first.rows.length
        const rest = first.next_cursor === null || left <= 0
          ? Stream.empty
          : AuditLog.stream(log, p.filter, { maxRows: left, cursor: first.next_cursor })
        const lines = Stream.concat(Stream.fromIterable(first.rows), rest).pipe(
          // One write per page rather than per row.
          Stream.mapChunks((rows) => (Chunk.isEmpty(rows) ? Chunk.empty<string>() : Chunk.of(Chunk.join(Chunk.map(rows, csvLine), "")))),
          Stream.tapErrorCause((cause) => Effect.logError("audit CSV export failed after it started; the response is cut", cause))
        )
        return HttpServerResponse.stream(Stream.encodeText(Stream.concat(Stream.make(csvHeader), lines)), {
          contentType: "text/csv; charset=utf-8",
          headers: {
            ...noStore,
            "content-disposition": "attachment; filename=\"tidyllm-audit.csv\"",
            "x-tidyllm-export-max-rows": String(Params.EXPORT_MAX_ROWS)
          }
        })
      })

    const handle = (request: HttpServerRequest.HttpServerRequest) =>
      Effect.flatMap(FiberRef.get(currentRequestId), (requestId) =>
        Effect.gen(function*() {
          const asked = yield* Params.parse(new URL(request.url, "http://localhost").searchParams)
          // A key bound to a team reads that team's rows only.
          const p = yield* principalOf(request)
          const own = p.open ? undefined : p.caller.team
          if (own !== undefined && asked.filter.team !== undefined && asked.filter.team !== own) {
            return yield* new Errors.Forbidden({ rule: "team", message: `this key may read the audit rows of team '${own}' only` })
          }
          const parsed: Params.Parsed = own === undefined ? asked : { ...asked, filter: { ...asked.filter, team: own } }
          if (parsed.format === "csv") return yield* csv(parsed)
          const page = yield* log.query({ ...parsed.filter, limit: parsed.limit, cursor: parsed.cursor })
          return HttpServerResponse.unsafeJson({ data: page.rows.map(toRow), next_cursor: page.next_cursor }, { headers: noStore })
        }).pipe(
          Effect.withSpan("AuditHttp.query"),
          Effect.catchAll((e) => Effect.succeed(errorResponse(e, requestId)))
        ))

    return handlers.handleRaw("query", ({ request }) => handle(request))
  })
)

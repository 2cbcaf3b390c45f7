/**
 * HTTP-level metrics, recorded by the API middleware: requests by route template, method and
 * status; request duration; and the gateway's overhead (a request's time less the time its
 * provider calls took).
 *
 * The `route` label is the template of the endpoint a request matched (`/v1/workflows/:id`, never
 * the id), taken from the `HttpApi` definition; a path no endpoint matches is `other`, an unknown
 * method `OTHER`. Series are made once per route (and per status as it first occurs) and updated
 * with `unsafeUpdate`: recording costs a map lookup and a few additions per request.
 */
import * as HttpApi from "@effect/platform/HttpApi"
import type * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import { Metric, MetricBoundaries, MetricLabel } from "effect"
import type * as CorporateLlmMetrics from "@tidyllm/corporate-llm/Metrics"

/** Request duration buckets in seconds. */
const durationBoundaries = MetricBoundaries.fromIterable([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120])
/** Overhead buckets in seconds: the gateway aims at well under a millisecond of CPU per request. */
const overheadBoundaries = MetricBoundaries.fromIterable([0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1])

/** Requests answered, by route template, method and status. */
export const requests = Metric.counter("tidyllm_http_requests_total", {
  description: "HTTP requests answered, by route template, method and status (counted as the response head is sent).",
  incremental: true
})
/** Time to the response head, by route template and method. */
export const duration = Metric.histogram(
  "tidyllm_http_request_duration_seconds",
  durationBoundaries,
  "Time from a request's arrival to its response head, by route template and method (a stream: to its first event)."
)
/** Time a request spent outside its provider calls, for requests that called a provider. */
export const overhead = Metric.histogram(
  "tidyllm_gateway_overhead_seconds",
  overheadBoundaries,
  "Time a request spent in the gateway rather than in provider calls (response head time less upstream time; a stream: to its first event), by route template, for requests that called a provider."
)

const noLabels: ReadonlyArray<MetricLabel.MetricLabel> = []

/** The series of one route template and method. */
export interface Route {
  readonly template: string
  readonly method: string
  readonly duration: Metric.Metric.Histogram<number>
  readonly overhead: Metric.Metric.Histogram<number>
  readonly byStatus: Map<number, Metric.Metric.Counter<number>>
}

const makeRoute = (template: string, method: string): Route => {
  const r = MetricLabel.make("route", template)
  const m = MetricLabel.make("method", method)
  return {
    template,
    method,
    duration: Metric.taggedWithLabels(duration, [r, m]),
    overhead: Metric.taggedWithLabels(overhead, [r]),
    byStatus: new Map()
  }
}

/** The template `other`: a path no endpoint matches. */
export const OTHER = "other"

const knownMethods: ReadonlySet<string> = new Set(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])

interface Dynamic {
  readonly segments: ReadonlyArray<string>
  readonly route: Route
}

interface ByMethod {
  readonly exact: Map<string, Route>
  readonly dynamic: Array<Dynamic>
  readonly other: Route
}

/** Finds the route of a request and records it. */
export interface Routes {
  /** The route template of `method` and `url` (path and query), or `other`. */
  readonly match: (method: string, url: string) => Route
  /**
   * Records a finished request: its status, duration, and (when it called a provider) its
   * overhead. `upstream` is the request's upstream timer.
   */
  readonly record: (route: Route, status: number, seconds: number, upstream: CorporateLlmMetrics.UpstreamTimer) => void
  /** Every template, for tests and documentation. */
  readonly templates: ReadonlyArray<string>
}

/** The routes of `api`'s endpoints plus `extra` (method, path) pairs served outside it (e.g. `/docs`). */
export const make = <Id extends string, Groups extends HttpApiGroup.HttpApiGroup.Any, E, R>(
  api: HttpApi.HttpApi<Id, Groups, E, R>,
  extra: ReadonlyArray<readonly [string, string]> = []
): Routes => {
  const methods = new Map<string, ByMethod>()
  const forMethod = (method: string): ByMethod => {
    let m = methods.get(method)
    if (m === undefined) {
      m = { exact: new Map(), dynamic: [], other: makeRoute(OTHER, method) }
      methods.set(method, m)
    }
    return m
  }
  const templates: Array<string> = []
  const add = (method: string, path: string) => {
    const m = forMethod(method.toUpperCase())
    const route = makeRoute(path, method.toUpperCase())
    templates.push(`${route.method} ${path}`)
    const segments = path.split("/")
    if (segments.some((s) => s.startsWith(":") || s === "*")) m.dynamic.push({ segments, route })
    else m.exact.set(path, route)
  }
  HttpApi.reflect(api, {
    onGroup: () => {},
    onEndpoint: ({ endpoint }) => add(endpoint.method, endpoint.path)
  })
  for (const [method, path] of extra) add(method, path)
  for (const method of knownMethods) forMethod(method)
  const unknownMethod = makeRoute(OTHER, "OTHER")

  const match = (method: string, url: string): Route => {
    const m = methods.get(method)
    if (m === undefined) return unknownMethod
    const q = url.indexOf("?")
    const path = q === -1 ? url : url.slice(0, q)
    const exact = m.exact.get(path)
    if (exact !== undefined) return exact
    if (m.dynamic.length === 0) return m.other
    const parts = path.split("/")
    for (const d of m.dynamic) {
      if (d.segments.length !== parts.length) continue
      let ok = true
      for (let i = 0; i < parts.length && ok; i++) {
        const s = d.segments[i] ?? ""
        ok = s === parts[i] || (s.startsWith(":") && parts[i] !== "")
      }
      if (ok) return d.route
    }
    return m.other
  }

  const counterFor = (route: Route, status: number) => {
    let c = route.byStatus.get(status)
    if (c === undefined) {
      // Statuses are what this server answers: a small set, and never outside 100-599.
      const label = Number.isInteger(status) && status >= 100 && status <= 599 ? String(status) : OTHER
      c = Metric.taggedWithLabels(requests, [MetricLabel.make("route", route.template), MetricLabel.make("method", route.method), MetricLabel.make("status", label)])
      route.byStatus.set(status, c)
    }
    return c
  }

  const record = (route: Route, status: number, seconds: number, upstream: CorporateLlmMetrics.UpstreamTimer) => {
    counterFor(route, status).unsafeUpdate(1, noLabels)
    route.duration.unsafeUpdate(seconds, noLabels)
    if (upstream.calls > 0) route.overhead.unsafeUpdate(Math.max(0, seconds - upstream.seconds), noLabels)
  }

  return { match, record, templates }
}

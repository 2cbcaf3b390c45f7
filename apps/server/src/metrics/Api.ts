/** `GET /metrics`: every metric in the Prometheus text format. */
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as OpenApi from "@effect/platform/OpenApi"
import { contentType } from "./Prometheus.js"

/** The metrics group. */
export class MetricsApi extends HttpApiGroup.make("metrics")
  .add(
    HttpApiEndpoint.get("scrape", "/metrics")
      .addSuccess(HttpApiSchema.Text({ contentType }))
      .annotate(OpenApi.Summary, "Prometheus metrics")
      .annotate(OpenApi.Description, "Every metric of the gateways and the server in the Prometheus text exposition format 0.0.4: requests, latency, tokens, cost, cache, retries, failovers, circuit breakers, budgets, audit queue, process.")
  )
  .annotate(OpenApi.Title, "Metrics") {}

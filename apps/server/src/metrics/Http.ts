/**
 * The handler of `GET /metrics`. A scrape first refreshes the gauges that are read rather than
 * recorded — budget per scope (from the ledger), circuit breakers (gateway #2), audit write queue
 * (the Postgres audit log) — then renders Effect's whole metric registry and the process metrics.
 * A refresher that fails or takes over 2 s leaves its gauges as they were and reports
 * `tidyllm_metrics_collector_up{collector} 0`, so a scrape never hangs on the database.
 */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { Duration, Effect, Metric, MetricLabel } from "effect"
import { AiProcessingGateway } from "@tidyllm/ai-processing"
import * as AiProcessingMetrics from "@tidyllm/ai-processing/Metrics"
import { BudgetLedger, CorporateLlmGateway } from "@tidyllm/corporate-llm"
import * as CorporateLlmMetrics from "@tidyllm/corporate-llm/Metrics"
import { PgAuditLog } from "@tidyllm/store-pg"
import { Api } from "../Api.js"
import * as Pool from "./Pool.js"
import * as Process from "./Process.js"
import * as Prometheus from "./Prometheus.js"

/** Whether each scrape-time refresher worked on the last scrape. */
export const collectorUp = Metric.gauge("tidyllm_metrics_collector_up", {
  description: "1 when the named scrape-time collector (budget, circuit_breakers, audit_queue, db_pool) refreshed its gauges on the last scrape, else 0."
})

const refreshTimeout = Duration.seconds(2)

/** The metrics handler. */
export const MetricsHttp = HttpApiBuilder.group(Api, "metrics", (handlers) =>
  Effect.gen(function*() {
    const gw1 = yield* CorporateLlmGateway.CorporateLlmGateway
    const gw2 = yield* AiProcessingGateway.AiProcessingGateway
    const ledger = yield* BudgetLedger.BudgetLedger
    const processFamilies = yield* Process.make

    // The global budgets and each configured team's: a bounded set of `scope` labels (keys' own
    // budgets are not exported: there may be any number of keys; `GET /v1/budget` shows them).
    const budgetScopes = gw1.overseenScopes()
    const collectors: ReadonlyArray<readonly [string, Effect.Effect<void, unknown>]> = [
      ["budget", Effect.flatMap(ledger.status(budgetScopes), CorporateLlmMetrics.setBudget)],
      ["circuit_breakers", Effect.flatMap(gw2.breakers, AiProcessingMetrics.setBreakers)],
      ["audit_queue", PgAuditLog.refreshQueueMetrics],
      ["db_pool", Pool.refresh]
    ]
    const refresh = Effect.forEach(collectors, ([name, run]) =>
      run.pipe(
        Effect.timeoutFail({ duration: refreshTimeout, onTimeout: () => new Error(`no answer within ${Duration.toMillis(refreshTimeout)} ms`) }),
        Effect.as(1),
        Effect.catchAllCause((cause) => Effect.logWarning(`metrics: the ${name} collector failed`, cause).pipe(Effect.as(0))),
        Effect.flatMap((up) => Metric.set(Metric.taggedWithLabels(collectorUp, [MetricLabel.make("collector", name)]), up))
      ), { concurrency: "unbounded", discard: true })

    const reported = new Set<string>()
    const scrape = Effect.gen(function*() {
      yield* refresh
      const { dropped, families } = Prometheus.fromSnapshot(Metric.unsafeSnapshot())
      for (const name of dropped) {
        if (reported.has(name)) continue
        reported.add(name)
        yield* Effect.logWarning(`metrics: '${name}' clashes with another metric of the same name and is not exported`)
      }
      return Prometheus.render([...families, ...(yield* processFamilies)])
    })

    return handlers.handleRaw("scrape", () =>
      Effect.map(scrape, (text) => HttpServerResponse.text(text, { contentType: Prometheus.contentType })))
  })
)

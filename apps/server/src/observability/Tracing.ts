/**
 * Traces, exported as OTLP over HTTP (protobuf) to `observability.otlp_endpoint`: any
 * OpenTelemetry collector (Jaeger, Tempo, the Collector) or MLflow ≥ 3.6 (`…/v1/traces`, the
 * experiment named by `x-mlflow-experiment-id`). One trace per request: the HTTP server span at
 * the root, the gateways' spans, one span per backend attempt and per provider call beneath, with
 * the GenAI conventions' attributes and the gateway's cost, reason and audit id.
 *
 * Off by default: without an endpoint this is `Layer.empty` and Effect's own in-process tracer
 * stays (nothing is exported). The OpenTelemetry SDK (`Otlp.ts`) is loaded only when an endpoint
 * is set: it adds ~15 MiB to a process that does not export.
 */
import { Effect, Layer, Redacted } from "effect"
import type { Config } from "@tidyllm/core"

/** `service.version` of the exported spans (the server package's version). */
export const serviceVersion = "0.1.0"

/** Options of {@link layer}. */
export interface Options {
  /** `service.version` (default {@link serviceVersion}). */
  readonly serviceVersion?: string | undefined
  /** How long shutdown waits for the last export (default 5 s). */
  readonly shutdownTimeoutMs?: number | undefined
}

/** Whether the configuration exports traces (`observability.otlp_endpoint` is set). */
export const enabled = (config: Config.GatewayConfig): boolean => config.observability.otlp_endpoint !== undefined

/** The headers of each export: `otlp_headers`, and `x-mlflow-experiment-id` when an experiment is named. */
export const exportHeaders = (settings: Config.ObservabilitySettings): Record<string, string> => {
  const headers: Record<string, string> = {}
  for (const [name, value] of Object.entries(settings.otlp_headers ?? {})) headers[name] = Redacted.value(value)
  if (settings.mlflow_experiment_id !== undefined) headers["x-mlflow-experiment-id"] = settings.mlflow_experiment_id
  return headers
}

/**
 * The tracer of the configuration: `Layer.empty` without `observability.otlp_endpoint`; else the
 * OpenTelemetry SDK of `Otlp.ts` (loaded now). Provide it beneath the server, so that every fiber
 * the server starts sees it; releasing it flushes the spans not yet exported.
 */
export const layer = (config: Config.GatewayConfig, options: Options = {}): Layer.Layer<never> =>
  config.observability.otlp_endpoint === undefined
    ? Layer.empty
    : Layer.unwrapEffect(Effect.map(Effect.promise(() => import("./Otlp.js")), (otlp) => otlp.layer(config, options)))

/**
 * The OpenTelemetry side of `Tracing.ts`: the SDK with a batching processor over the OTLP/HTTP
 * protobuf exporter. Imported by `Tracing.layer` only when `observability.otlp_endpoint` is set.
 */
import * as Headers from "@effect/platform/Headers"
import * as NodeSdk from "@effect/opentelemetry/NodeSdk"
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-proto"
import { SpanKind } from "@opentelemetry/api"
import { BatchSpanProcessor, ParentBasedSampler, SamplingDecision, TraceIdRatioBasedSampler, type Sampler } from "@opentelemetry/sdk-trace-base"
import { Effect, Layer } from "effect"
import type { Config } from "@tidyllm/core"
import { exportHeaders, serviceVersion, type Options } from "./Tracing.js"

/**
 * The sampler of new traces: a request's HTTP server span starts one, kept with probability
 * `ratio` (by trace id); any other root (the server's background work: audit batch commits, the
 * budget reaper, rate-limit purges) is not traced, so that a trace sink such as MLflow holds one
 * trace per request and nothing else.
 */
export const requestSampler = (ratio: number): Sampler => {
  const byRatio = new TraceIdRatioBasedSampler(ratio)
  return {
    shouldSample: (context, traceId, _name, kind) =>
      kind === SpanKind.SERVER ? byRatio.shouldSample(context, traceId) : { decision: SamplingDecision.NOT_RECORD },
    toString: () => `RequestSampler{${byRatio.toString()}}`
  }
}

/**
 * Request headers that carry credentials in the clients of an OpenAI-style gateway, beside the
 * ones `@effect/platform` already redacts (`authorization`, `cookie`, `set-cookie`, `x-api-key`):
 * the HTTP server span records every request header, and the trace leaves the process.
 */
const credentialHeaders: ReadonlyArray<string> = ["proxy-authorization", "api-key", "x-goog-api-key", "x-auth-token", "x-amz-security-token"]

const redactCredentialHeaders = Layer.fiberRefLocallyScopedWith(Headers.currentRedactedNames, (names) => [...names, ...credentialHeaders])

/**
 * The tracer of the configuration: `Layer.empty` without `observability.otlp_endpoint`; else the
 * OpenTelemetry SDK with a batching processor over the OTLP/HTTP protobuf exporter, the resource
 * `service.name` (`observability.service_name`, or `OTEL_SERVICE_NAME`) and `service.version`,
 * and a parent-based sampler: a span with a parent follows it (an incoming `traceparent`
 * included), a new trace starts only at an HTTP server span ({@link requestSampler}), so the
 * server must run with its HTTP span on (`Server.Options.tracing`). Provide it beneath the
 * server, so that every fiber the server starts sees it; releasing it flushes the spans not yet
 * exported.
 */
export const layer = (config: Config.GatewayConfig, options: Options = {}): Layer.Layer<never> => {
  const settings = config.observability
  const url = settings.otlp_endpoint
  if (url === undefined) return Layer.empty
  const sdk = NodeSdk.layer(() => ({
    resource: { serviceName: settings.service_name, serviceVersion: options.serviceVersion ?? serviceVersion },
    spanProcessor: new BatchSpanProcessor(new OTLPTraceExporter({ url, headers: exportHeaders(settings) })),
    tracerConfig: { sampler: new ParentBasedSampler({ root: requestSampler(settings.trace_sample_ratio) }) },
    shutdownTimeout: options.shutdownTimeoutMs ?? 5000
  }))
  return Layer.mergeAll(Layer.discard(sdk), redactCredentialHeaders).pipe(
    Layer.tap(() => Effect.logInfo(`tracing: OTLP/HTTP to ${redactedUrl(url)}, sampling ${settings.trace_sample_ratio}${settings.mlflow_experiment_id === undefined ? "" : `, MLflow experiment ${settings.mlflow_experiment_id}`}`))
  )
}

/** The endpoint without its userinfo, for the log. */
const redactedUrl = (url: string): string => {
  try {
    const u = new URL(url)
    u.username = ""
    u.password = ""
    return u.toString()
  } catch {
    return "(unparseable URL)"
  }
}

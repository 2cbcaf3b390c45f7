export * as AiProcessingGateway from "./AiProcessingGateway.js"
export * as ResponseCache from "./ResponseCache.js"
export * as Metrics from "./Metrics.js"

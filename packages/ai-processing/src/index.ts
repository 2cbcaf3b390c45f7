export * as AiProcessingGateway from "./AiProcessingGateway.js"
export * as ResponseCache from "./ResponseCache.js"

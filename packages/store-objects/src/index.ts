export * as FileResponseCache from "./FileResponseCache.js"
/** The in-memory cache is the port's own test layer; re-exported so apps pick every cache here. */
export { ResponseCache } from "@tidyllm/ai-processing"

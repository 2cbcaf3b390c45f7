export * as FileResponseCache from "./FileResponseCache.js"
/** The in-memory cache is the port's own test layer; re-exported so apps pick every cache here. */
export { ResponseCache } from "@tidyllm/ai-processing"
export * as LocalObjectStore from "./LocalObjectStore.js"
export * as RedisResponseCache from "./RedisResponseCache.js"
export * as S3ObjectStore from "./S3ObjectStore.js"

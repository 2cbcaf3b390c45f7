export * as ObjectStore from "./ObjectStore.js"

export * as ObjectStore from "./ObjectStore.js"
export * as UnifiedSessionManager from "./UnifiedSessionManager.js"
export * as WorkflowAudit from "./WorkflowAudit.js"

export * as WorkflowOptimizerGateway from "./WorkflowOptimizerGateway.js"

// Gateway #3 (WorkflowOptimizerGateway) arrives with issue #3.
export {}

/** `PgWorkflowAudit` on the Postgres server at `DATABASE_URL` (a fresh database per test). */
import { postgres } from "./harness.js"
import { workflowAuditSuite } from "./workflowAudit.test.js"

workflowAuditSuite("Postgres", postgres(2))

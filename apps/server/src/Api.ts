/** The whole HTTP contract of the server (served as OpenAPI at `/docs`). */
import * as HttpApi from "@effect/platform/HttpApi"
import * as OpenApi from "@effect/platform/OpenApi"
import { AgreementsApi } from "./agreements/Api.js"
import { AuditApi } from "./audit/Api.js"
import { BudgetApi } from "./budget/Api.js"
import { ChatApi } from "./chat/Api.js"
import { EmbeddingsApi } from "./embeddings/Api.js"
import { GatewayApi } from "./gateway/Api.js"
import { HealthApi } from "./health/Api.js"
import { KeysApi } from "./keys/Api.js"
import { MetricsApi } from "./metrics/Api.js"
import { ModelsApi } from "./models/Api.js"
import { WorkflowsApi } from "./workflows/Api.js"

/** The API's title (OpenAPI `info.title`, and the `/docs` page's). */
export const title = "TidyLLM Gateway"

/** The TidyLLM Gateway API. */
export class Api extends HttpApi.make("tidyllm")
  .add(ChatApi)
  .add(EmbeddingsApi)
  .add(GatewayApi)
  .add(ModelsApi)
  .add(WorkflowsApi)
  .add(AgreementsApi)
  .add(AuditApi)
  .add(BudgetApi)
  .add(KeysApi)
  .add(HealthApi)
  .add(MetricsApi)
  .annotate(OpenApi.Title, title)
  .annotate(OpenApi.Description, "A corporate LLM gateway: OpenAI-compatible chat completions plus the native gateway API. Authentication: `Authorization: Bearer <API key>`; the key carries the team and the role (user, approver, compliance, admin), and `x-tidyllm-user` may name the end user. A server running open on 127.0.0.1 (no keys) takes `x-tidyllm-user`, `x-tidyllm-team` and `x-tidyllm-role` as given. Every model call needs a reason.") {}

/**
 * Which role may call which endpoint: one table, keyed by method and route template. An endpoint
 * missing here is refused to everyone (a test checks that every endpoint of the API is listed).
 *
 * - `user` calls models and runs its team's workflows;
 * - `approver` also decides flow agreements;
 * - `compliance` reads audit rows, budgets, workflows and agreements, and decides agreements
 *   (a high-risk one needs a compliance approval), but calls no model;
 * - `admin` does everything, key management included.
 */
import type { Caller } from "@tidyllm/core"

/** Roles allowed, or `public` (no key needed: probes, scrapes, the API docs). */
export type Rule = "public" | ReadonlyArray<Caller.Role>

const everyone: ReadonlyArray<Caller.Role> = ["user", "approver", "compliance", "admin"]
const callers: ReadonlyArray<Caller.Role> = ["user", "approver", "admin"]
const deciders: ReadonlyArray<Caller.Role> = ["approver", "compliance", "admin"]
const auditors: ReadonlyArray<Caller.Role> = ["compliance", "admin"]
const admins: ReadonlyArray<Caller.Role> = ["admin"]

/** The rule of each endpoint, by `METHOD /template`. */
export const rules: Readonly<Record<string, Rule>> = {
  "POST /v1/chat/completions": callers,
  "POST /v1/embeddings": callers,
  "POST /v1/llm": callers,
  "POST /v1/ai": callers,
  "GET /v1/models": everyone,
  "POST /v1/workflows/validate": callers,
  "POST /v1/workflows/analyze": callers,
  "POST /v1/workflows/optimize": callers,
  "PUT /v1/workflows/:id": callers,
  "GET /v1/workflows/:id": everyone,
  "GET /v1/workflows": everyone,
  "GET /v1/agreements": everyone,
  "GET /v1/agreements/:id": everyone,
  "POST /v1/agreements/:id/approve": deciders,
  "POST /v1/agreements/:id/reject": deciders,
  "GET /v1/audit": auditors,
  "GET /v1/budget": everyone,
  "POST /v1/keys": admins,
  "GET /v1/keys": admins,
  "GET /v1/keys/:id": admins,
  "DELETE /v1/keys/:id": admins,
  "GET /health": "public",
  "GET /health/live": "public",
  "GET /health/ready": "public",
  "GET /metrics": "public",
  "GET /docs": "public",
  "GET /docs/openapi.json": "public",
  "GET /docs/swagger-ui-bundle.js": "public",
  "GET /docs/swagger-ui.css": "public"
}

/** The rule of a route (`other` and unlisted routes: authenticated, no role check — they answer 404). */
export const ruleOf = (method: string, template: string): Rule | undefined => rules[`${method} ${template}`]

/** Whether `role` may call a route with `rule`. */
export const allows = (rule: Rule | undefined, role: Caller.Role): boolean =>
  rule === undefined ? true : rule === "public" ? true : rule.includes(role)

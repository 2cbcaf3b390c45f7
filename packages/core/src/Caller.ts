/** Who is calling: the identity an audit row and a budget scope are keyed on. */
import { Schema } from "effect"

/**
 * What a caller may do: `user` calls models and runs its own workflows, `approver` also decides
 * flow agreements, `compliance` reads audit, budgets and agreements, `admin` does everything
 * including key management.
 */
export const Role = Schema.Literal("user", "approver", "compliance", "admin")
export type Role = typeof Role.Type

/** A team's name: it goes into budget scopes, storage keys and log lines, so a conservative alphabet. */
export const TeamName = Schema.String.pipe(Schema.pattern(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, {
  message: () => "a team name is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
}))

/** Limits carried by the caller's API key (each unset one does not apply). */
export const KeyLimits = Schema.Struct({
  /** The key's own daily budget, beside the team's and the global one. */
  budget_daily_usd: Schema.optional(Schema.Number.pipe(Schema.finite(), Schema.nonNegative())),
  /** The key's own monthly budget (calendar month, UTC). */
  budget_monthly_usd: Schema.optional(Schema.Number.pipe(Schema.finite(), Schema.nonNegative())),
  /** Model calls per minute. */
  requests_per_minute: Schema.optional(Schema.Int.pipe(Schema.positive())),
  /** Tokens (input estimate at admission, output as used) per minute. */
  tokens_per_minute: Schema.optional(Schema.Int.pipe(Schema.positive()))
})
export type KeyLimits = typeof KeyLimits.Type

/** The caller of one request, as the server (or library user) establishes it. */
export const Caller = Schema.Struct({
  /** End user or service the request is made for. */
  user_id: Schema.optional(Schema.String),
  /** Team the caller belongs to (budget and audit scope). */
  team: Schema.optional(Schema.String),
  /** API key id, when the request was authenticated with one. */
  key_id: Schema.optional(Schema.String),
  /** The limits of the caller's key (budgets, rates), when it has any. */
  limits: Schema.optional(KeyLimits)
})
export type Caller = typeof Caller.Type

/** The caller of requests made from code with no identity attached. */
export const anonymous: Caller = {}

/** A short printable form of the caller, for the audit row's `caller` column. */
export const describe = (c: Caller): string =>
  [c.key_id && `key:${c.key_id}`, c.team && `team:${c.team}`, c.user_id && `user:${c.user_id}`].filter(Boolean).join(" ") || "anonymous"

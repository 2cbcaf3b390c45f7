/** Who is calling: the identity an audit row and a budget scope are keyed on. */
import { Schema } from "effect"

/** The caller of one request, as the server (or library user) establishes it. */
export const Caller = Schema.Struct({
  /** End user or service the request is made for. */
  user_id: Schema.optional(Schema.String),
  /** Team the caller belongs to (budget and audit scope). */
  team: Schema.optional(Schema.String),
  /** API key id, when the request was authenticated with one. */
  key_id: Schema.optional(Schema.String)
})
export type Caller = typeof Caller.Type

/** The caller of requests made from code with no identity attached. */
export const anonymous: Caller = {}

/** A short printable form of the caller, for the audit row's `caller` column. */
export const describe = (c: Caller): string =>
  [c.key_id && `key:${c.key_id}`, c.team && `team:${c.team}`, c.user_id && `user:${c.user_id}`].filter(Boolean).join(" ") || "anonymous"

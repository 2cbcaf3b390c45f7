/**
 * Handlers of the key API. An admin key with a team manages only its team's keys and cannot make
 * keys above itself (no team-less keys); a team-less admin manages every key.
 */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { Clock, Effect, Option } from "effect"
import { Errors } from "@tidyllm/core"
import { ApiKeys } from "@tidyllm/corporate-llm"
import { Api } from "../Api.js"
import { Auth } from "../auth/Auth.js"
import type { Principal } from "../auth/Auth.js"
import { decoder, readJson } from "../http/Body.js"
import { NotFound } from "../http/Errors.js"
import { principalOf } from "../http/RequestContext.js"
import { AppConfig } from "../Layers.js"
import { respond } from "../workflows/Http.js"
import { CreateKeyBody, type KeyView, limitsOf } from "./Api.js"

const decodeCreate = decoder(CreateKeyBody, { exact: true })

/** A key as the API shows it. */
export const view = (key: ApiKeys.ApiKey, now: Date): typeof KeyView.Type => ({
  id: key.id,
  name: key.name ?? null,
  team: key.team ?? null,
  role: key.role,
  status: Option.getOrElse(ApiKeys.unusable(key, now), () => "active" as const),
  created_at: key.created_at.toISOString(),
  created_by: key.created_by,
  expires_at: key.expires_at?.toISOString() ?? null,
  revoked_at: key.revoked_at?.toISOString() ?? null,
  limits: key.limits
})

const notFound = (id: string) => new NotFound({ message: ApiKeys.isKeyId(id) ? `no API key '${id}'` : "no such API key (a key id is 16 hex digits)" })

/** The expiry of a creation request: a date-time with a zone in the future, or days from now. */
export const expiryOf = (body: typeof CreateKeyBody.Type, now: number): Effect.Effect<Date | undefined, Errors.InvalidRequest> => {
  if (body.expires_at !== undefined && body.expires_in_days !== undefined) {
    return Effect.fail(new Errors.InvalidRequest({ message: "give expires_at or expires_in_days, not both", field: "expires_at" }))
  }
  if (body.expires_in_days !== undefined) return Effect.succeed(new Date(now + body.expires_in_days * 86_400_000))
  if (body.expires_at === undefined) return Effect.succeed(undefined)
  const ms = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$/.test(body.expires_at) ? Date.parse(body.expires_at) : Number.NaN
  if (Number.isNaN(ms)) return Effect.fail(new Errors.InvalidRequest({ message: `expires_at must be an ISO 8601 date-time with a zone (2026-12-31T00:00:00Z), not '${body.expires_at}'`, field: "expires_at" }))
  if (ms <= now) return Effect.fail(new Errors.InvalidRequest({ message: `expires_at ${body.expires_at} is in the past`, field: "expires_at" }))
  return Effect.succeed(new Date(ms))
}

/** Who created a key, as the row records it. */
const creatorOf = (p: Principal): string => (p.caller.key_id === undefined ? "open-mode" : `key:${p.caller.key_id}`)

/** A team-bound admin may touch only its own team's keys. */
const inReach = (p: Principal, key: ApiKeys.ApiKey): boolean => p.caller.team === undefined || key.team === p.caller.team

/** The key handlers. */
export const KeysHttp = HttpApiBuilder.group(Api, "keys", (handlers) =>
  Effect.gen(function*() {
    const keys = yield* ApiKeys.ApiKeys
    const auth = yield* Auth
    const maxBody = (yield* AppConfig).server.max_body_bytes
    const now = Effect.map(Clock.currentTimeMillis, (ms) => new Date(ms))

    return handlers
      .handleRaw("create", ({ request }) =>
        respond(() =>
          Effect.gen(function*() {
            const body = yield* Effect.flatMap(readJson(request, maxBody), decodeCreate)
            const p = yield* principalOf(request)
            const at = yield* now
            if (p.caller.team !== undefined && body.team !== p.caller.team) {
              return yield* new Errors.Forbidden({ rule: "key_team", message: `an admin key of team '${p.caller.team}' creates keys of that team only (team: '${p.caller.team}')` })
            }
            const expires_at = yield* expiryOf(body, at.getTime())
            const generated = ApiKeys.generate()
            const key = yield* keys.create({
              id: generated.id,
              hash: generated.hash,
              name: body.name,
              team: body.team,
              role: body.role,
              created_by: creatorOf(p),
              expires_at,
              limits: limitsOf(body)
            })
            yield* auth.keysExist
            yield* Effect.logInfo(`API key ${key.id} created (role ${key.role}${key.team === undefined ? "" : `, team ${key.team}`}) by ${creatorOf(p)}`)
            return { key: view(key, at), secret: generated.secret }
          }), 201))
      .handleRaw("list", ({ request, urlParams }) =>
        respond(() =>
          Effect.gen(function*() {
            const p = yield* principalOf(request)
            if (p.caller.team !== undefined && urlParams.team !== undefined && urlParams.team !== p.caller.team) {
              return yield* new Errors.Forbidden({ rule: "key_team", message: `an admin key of team '${p.caller.team}' lists keys of that team only` })
            }
            const flag = urlParams.include_revoked
            if (flag !== undefined && !["true", "false", "1", "0"].includes(flag)) {
              return yield* new Errors.InvalidRequest({ message: `include_revoked must be true or false, not '${flag.slice(0, 40)}'`, field: "include_revoked" })
            }
            const include_revoked = flag === "true" || flag === "1"
            const list = yield* keys.list({ team: p.caller.team ?? urlParams.team, include_revoked })
            const at = yield* now
            return { keys: list.map((k) => view(k, at)) }
          })))
      .handleRaw("get", ({ path, request }) =>
        respond(() =>
          Effect.gen(function*() {
            const p = yield* principalOf(request)
            if (!ApiKeys.isKeyId(path.id)) return yield* notFound(path.id)
            const key = yield* keys.get(path.id)
            if (Option.isNone(key) || !inReach(p, key.value)) return yield* notFound(path.id)
            return view(key.value, yield* now)
          })))
      .handleRaw("revoke", ({ path, request }) =>
        respond(() =>
          Effect.gen(function*() {
            const p = yield* principalOf(request)
            if (!ApiKeys.isKeyId(path.id)) return yield* notFound(path.id)
            const existing = yield* keys.get(path.id)
            if (Option.isNone(existing) || !inReach(p, existing.value)) return yield* notFound(path.id)
            const at = yield* now
            const revoked = yield* keys.revoke(path.id, at)
            if (Option.isNone(revoked)) return yield* notFound(path.id)
            yield* auth.forget(path.id)
            yield* Effect.logInfo(`API key ${path.id} revoked by ${creatorOf(p)}`)
            return view(revoked.value, at)
          })))
  })
)

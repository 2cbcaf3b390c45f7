/**
 * The port of API keys: who may call the gateway, in which team and role, with which limits.
 * A key's secret is shown once, at creation; the store keeps only its SHA-256 (the secret has
 * 256 random bits, so a fast hash is as safe as a slow one and costs ~1 µs per request).
 *
 * A secret reads `tlk_<id>_<43 base64url characters>`: the id is public (it is in audit rows and
 * logs), the rest is the secret part.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto"
import { Context, Effect, Layer, Option, Ref, Schema } from "effect"
import { Caller, Errors } from "@tidyllm/core"

/** One key as the store holds it (never the secret). */
export const ApiKey = Schema.Struct({
  id: Schema.String,
  /** A label for people (`ci-pipeline`, `alice laptop`). */
  name: Schema.optional(Schema.String),
  /** The team the key acts for; unset: no team (an admin or compliance key over every team). */
  team: Schema.optional(Schema.String),
  role: Caller.Role,
  created_at: Schema.DateFromSelf,
  /** Who created it: `key:<id>` of the admin, or `cli` / `config`. */
  created_by: Schema.String,
  expires_at: Schema.optional(Schema.DateFromSelf),
  revoked_at: Schema.optional(Schema.DateFromSelf),
  limits: Caller.KeyLimits
})
export type ApiKey = typeof ApiKey.Type

/** What to store for a new key. */
export interface NewKey {
  readonly id: string
  readonly hash: string
  readonly name?: string | undefined
  readonly team?: string | undefined
  readonly role: Caller.Role
  readonly created_by: string
  readonly expires_at?: Date | undefined
  readonly limits: Caller.KeyLimits
}

/** The key store. */
export interface Service {
  /** Stores a new key; fails with `InvalidRequest` when its id or hash is already taken. */
  readonly create: (key: NewKey) => Effect.Effect<ApiKey, Errors.InvalidRequest | Errors.StoreUnavailable>
  /** The key with this secret hash, revoked or expired ones included (the caller decides). */
  readonly findByHash: (hash: string) => Effect.Effect<Option.Option<ApiKey>, Errors.StoreUnavailable>
  readonly get: (id: string) => Effect.Effect<Option.Option<ApiKey>, Errors.StoreUnavailable>
  /** Keys by creation time, newest first; revoked ones only when asked. */
  readonly list: (filter: { readonly team?: string | undefined; readonly include_revoked?: boolean | undefined }) => Effect.Effect<ReadonlyArray<ApiKey>, Errors.StoreUnavailable>
  /** Revokes a key at `at` (a key already revoked keeps its first time); none when no such key. */
  readonly revoke: (id: string, at: Date) => Effect.Effect<Option.Option<ApiKey>, Errors.StoreUnavailable>
  /** How many keys are neither revoked nor expired at `now`. */
  readonly countActive: (now: Date) => Effect.Effect<number, Errors.StoreUnavailable>
}

/** The API key store in use. */
export class ApiKeys extends Context.Tag("@tidyllm/corporate-llm/ApiKeys")<ApiKeys, Service>() {}

/** The prefix of every key secret. */
export const SECRET_PREFIX = "tlk_"
const secretPattern = /^tlk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/

/** SHA-256 of a secret, hex: what the store keeps. */
export const hashSecret = (secret: string): string => createHash("sha256").update(secret).digest("hex")

/** A new key id and secret (256 random bits); the id is also the secret's readable part. */
export const generate = (): { readonly id: string; readonly secret: string; readonly hash: string } => {
  const id = randomBytes(8).toString("hex")
  const secret = `${SECRET_PREFIX}${id}_${randomBytes(32).toString("base64url")}`
  return { id, secret, hash: hashSecret(secret) }
}

/** The id inside a well-formed secret, or none (a malformed bearer token is refused before any lookup). */
export const idOfSecret = (secret: string): Option.Option<string> => {
  const m = secretPattern.exec(secret)
  return m === null ? Option.none() : Option.some(m[1]!)
}

/** Whether `id` has the shape of a key id (16 hex digits): anything else names no key and is not looked up. */
export const isKeyId = (id: string): boolean => /^[0-9a-f]{16}$/.test(id)

/** Whether two hex hashes are equal, in constant time. */
export const sameHash = (a: string, b: string): boolean =>
  a.length === b.length && timingSafeEqual(Buffer.from(a), Buffer.from(b))

/** Why a stored key cannot be used at `now`, or none. */
export const unusable = (key: ApiKey, now: Date): Option.Option<"revoked" | "expired"> =>
  key.revoked_at !== undefined && key.revoked_at.getTime() <= now.getTime()
    ? Option.some("revoked")
    : key.expires_at !== undefined && key.expires_at.getTime() <= now.getTime()
    ? Option.some("expired")
    : Option.none()

/** The caller a key authenticates (the end user, when given, comes from the request). */
export const callerOf = (key: ApiKey, user_id?: string): Caller.Caller => ({
  key_id: key.id,
  ...(key.team === undefined ? {} : { team: key.team }),
  ...(user_id === undefined ? {} : { user_id }),
  ...(Object.keys(key.limits).length === 0 ? {} : { limits: key.limits })
})

interface Stored { readonly key: ApiKey; readonly hash: string }

/** An in-memory key store, for unit tests and the contract suite. */
export const makeMemory = Effect.gen(function*() {
  const state = yield* Ref.make<ReadonlyMap<string, Stored>>(new Map())
  const active = (k: ApiKey, now: Date) => Option.isNone(unusable(k, now))
  const service: Service = {
    create: (input) =>
      Ref.modify(state, (m): [Effect.Effect<ApiKey, Errors.InvalidRequest>, ReadonlyMap<string, Stored>] => {
        if (m.has(input.id) || [...m.values()].some((s) => s.hash === input.hash)) {
          return [Effect.fail(new Errors.InvalidRequest({ message: `an API key with id ${input.id} or the same secret already exists`, field: "id" })), m]
        }
        const key: ApiKey = {
          id: input.id,
          ...(input.name === undefined ? {} : { name: input.name }),
          ...(input.team === undefined ? {} : { team: input.team }),
          role: input.role,
          created_at: new Date(),
          created_by: input.created_by,
          ...(input.expires_at === undefined ? {} : { expires_at: input.expires_at }),
          limits: input.limits
        }
        return [Effect.succeed(key), new Map(m).set(input.id, { key, hash: input.hash })]
      }).pipe(Effect.flatten),
    findByHash: (hash) => Effect.map(Ref.get(state), (m) => Option.fromNullable([...m.values()].find((s) => s.hash === hash)?.key)),
    get: (id) => Effect.map(Ref.get(state), (m) => Option.fromNullable(m.get(id)?.key)),
    list: (filter) =>
      Effect.map(Ref.get(state), (m) =>
        [...m.values()]
          .map((s) => s.key)
          .filter((k) => (filter.team === undefined || k.team === filter.team) && (filter.include_revoked === true || k.revoked_at === undefined))
          .sort((a, b) => b.created_at.getTime() - a.created_at.getTime())),
    revoke: (id, at) =>
      Ref.modify(state, (m): [Option.Option<ApiKey>, ReadonlyMap<string, Stored>] => {
        const s = m.get(id)
        if (s === undefined) return [Option.none(), m]
        const key: ApiKey = s.key.revoked_at === undefined ? { ...s.key, revoked_at: at } : s.key
        return [Option.some(key), new Map(m).set(id, { ...s, key })]
      }),
    countActive: (now) => Effect.map(Ref.get(state), (m) => [...m.values()].filter((s) => active(s.key, now)).length)
  }
  return service
})

/** An in-memory key store, for unit tests. */
export const layerMemory = Layer.effect(ApiKeys, makeMemory)

/**
 * Who is calling: the `Authorization: Bearer <key>` of a request, checked against the key store
 * (or the bootstrap admin key of the configuration), or — in open mode, allowed only on a
 * loopback address — the `x-tidyllm-*` identity headers taken as given.
 */
import { Clock, Context, Effect, Layer, Option, Redacted, Ref, Schema } from "effect"
import type { Caller, Config } from "@tidyllm/core"
import { Errors } from "@tidyllm/core"
import { ApiKeys } from "@tidyllm/corporate-llm"
import { ConfigError } from "../config/Load.js"
import { type HasHeaders, headerValue } from "../http/RequestContext.js"

/** The request carries no usable API key (HTTP 401). */
export class Unauthorized extends Schema.TaggedError<Unauthorized>()("Unauthorized", {
  message: Schema.String,
  /** Why: `missing`, `malformed`, `unknown`, `revoked`, `expired`. */
  reason: Schema.Literal("missing", "malformed", "unknown", "revoked", "expired")
}) {
  get type() { return "authentication_error" as const }
  get status() { return 401 }
}

/** The authenticated caller of a request. */
export interface Principal {
  readonly caller: Caller.Caller
  readonly role: Caller.Role
  /** `true` in open mode: the identity came from headers, and every role check passes. */
  readonly open: boolean
}

/** How often open mode looks for keys made elsewhere. */
const OPEN_RECHECK_MS = 5_000

/** The id the bootstrap admin key (from `server.admin_key` / `TIDYLLM_ADMIN_KEY`) has in audit rows. */
export const BOOTSTRAP_KEY_ID = "bootstrap-admin"

/** The authentication service. */
export interface Service {
  /** `keys` or `open`; open mode ends the moment this replica creates a key, or within 5 s of one made elsewhere. */
  readonly mode: Effect.Effect<"keys" | "open">
  /** The principal of a request in keys mode (open mode: see {@link openPrincipal}). */
  readonly authenticate: (request: HasHeaders, user_id: string | undefined) => Effect.Effect<Principal, Unauthorized | Errors.StoreUnavailable>
  /** Forgets a cached key (after a revocation here; other replicas notice within `key_cache_seconds`). */
  readonly forget: (id: string) => Effect.Effect<void>
  /** Leaves open mode (a key now exists). */
  readonly keysExist: Effect.Effect<void>
}

/** Authentication, as the middleware uses it. */
export class Auth extends Context.Tag("@tidyllm/server/Auth")<Auth, Service>() {}

/** Whether `host` is a loopback address (127.0.0.0/8, ::1, localhost). */
export const isLoopback = (host: string): boolean =>
  host === "localhost" || host === "::1" || host === "[::1]" || /^127(\.\d{1,3}){3}$/.test(host)

/** The bearer token of a request, if it sent an `Authorization: Bearer …` header. */
const bearerOf = (request: HasHeaders): Option.Option<string> => {
  const header = headerValue(request, "authorization")
  if (header === undefined) return Option.none()
  const m = /^Bearer[ ]+(\S+)\s*$/i.exec(header)
  return m === null ? Option.some("") : Option.some(m[1]!)
}

const malformed = () =>
  new Unauthorized({ reason: "malformed", message: "the Authorization header must be 'Bearer <key>' with a TidyLLM key (tlk_…)" })

/**
 * The mode the server runs in, decided at start-up: `open` only on a loopback address; `keys`
 * when asked, or (`auto`) when a bootstrap key is configured or the store holds an active key.
 */
export const decideMode = (server: Config.ServerSettings, activeKeys: number): Effect.Effect<"keys" | "open", ConfigError> => {
  const loopback = isLoopback(server.host)
  const hasKeys = server.admin_key !== undefined || activeKeys > 0
  switch (server.auth) {
    case "open":
      return loopback
        ? Effect.succeed("open")
        : Effect.fail(ConfigError.of("invalid configuration:", [`server.auth is 'open' but server.host is ${server.host}: open mode (no API keys) is allowed only on a loopback address (127.0.0.1, ::1)`]))
    case "keys":
      return hasKeys
        ? Effect.succeed("keys")
        : Effect.fail(ConfigError.of("invalid configuration:", ["server.auth is 'keys' but there is no API key: set TIDYLLM_ADMIN_KEY (at least 32 characters) or create one with `tidyllm keys create --role admin`"]))
    case "auto":
      if (hasKeys) return Effect.succeed("keys")
      return loopback
        ? Effect.succeed("open")
        : Effect.fail(ConfigError.of("refusing to start without API keys:", [
          `server.host is ${server.host}, which is not a loopback address, and no API key exists.`,
          "Set TIDYLLM_ADMIN_KEY (server.admin_key, at least 32 characters) for a bootstrap admin key, or create a key with `tidyllm keys create --role admin`,",
          "or bind to 127.0.0.1 to run open."
        ]))
  }
}

/** The authentication service for `config`, over the key store. */
export const make = (server: Config.ServerSettings, options: { readonly openRecheckMs?: number | undefined } = {}) =>
  Effect.gen(function*() {
    const keys = yield* ApiKeys.ApiKeys
    const now = yield* Clock.currentTimeMillis
    // A store not yet migrated (`--no-migrate`, readiness waits for `tidyllm migrate`) counts as
    // holding no key: with a bootstrap key the server still runs in keys mode.
    const active = yield* keys.countActive(new Date(now)).pipe(
      Effect.catchAll((e) => Effect.as(Effect.logWarning(`cannot read the API keys yet (${e.message}); counting none`), 0))
    )
    const mode = yield* Ref.make(yield* decideMode(server, active))
    const bootstrapHash = server.admin_key === undefined ? undefined : ApiKeys.hashSecret(Redacted.value(server.admin_key))
    const ttl = server.key_cache_seconds * 1000
    // hash → key and until when it is trusted. Bounded: the oldest entries go first.
    const cache = new Map<string, { readonly key: ApiKeys.ApiKey; readonly until: number }>()
    const CACHE_MAX = 10_000

    /** The key of `hash` from the store, remembered for the cache's time (the cache is read by the caller). */
    const lookup = (hash: string, at: number) =>
      Effect.map(keys.findByHash(hash), (found) => {
        if (Option.isSome(found) && ttl > 0) {
          if (cache.size >= CACHE_MAX) cache.delete(cache.keys().next().value!)
          cache.set(hash, { key: found.value, until: at + ttl })
        }
        return found
      })

    /** Who holds the key `found` at `at`, or why no one may use it. */
    const principalOf = (found: Option.Option<ApiKeys.ApiKey>, user_id: string | undefined, at: number): Effect.Effect<Principal, Unauthorized> => {
      if (Option.isNone(found)) return Effect.fail(new Unauthorized({ reason: "unknown", message: "the API key is not valid" }))
      const key = found.value
      const why = ApiKeys.unusable(key, new Date(at))
      if (Option.isSome(why)) {
        return Effect.fail(new Unauthorized({
          reason: why.value,
          message: why.value === "revoked"
            ? `API key ${key.id} was revoked`
            : `API key ${key.id} expired at ${key.expires_at?.toISOString() ?? "?"}`
        }))
      }
      return Effect.succeed({ caller: ApiKeys.callerOf(key, user_id), role: key.role, open: false } satisfies Principal)
    }

    // Plain steps rather than a generator: this runs for every request (docs/performance.md).
    const authenticate = (request: HasHeaders, user_id: string | undefined): Effect.Effect<Principal, Unauthorized | Errors.StoreUnavailable> =>
      Effect.clockWith((clock) => {
        const bearer = bearerOf(request)
        if (Option.isNone(bearer)) {
          return Effect.fail(new Unauthorized({ reason: "missing", message: "an API key is required: send 'Authorization: Bearer <key>'" }))
        }
        const secret = bearer.value
        const at = clock.unsafeCurrentTimeMillis()
        // One hash of the secret, for the bootstrap key's comparison and the lookup.
        const hash = ApiKeys.hashSecret(secret)
        if (bootstrapHash !== undefined && ApiKeys.sameHash(hash, bootstrapHash)) {
          return Effect.succeed({ caller: { key_id: BOOTSTRAP_KEY_ID, ...(user_id === undefined ? {} : { user_id }) }, role: "admin", open: false } satisfies Principal)
        }
        if (Option.isNone(ApiKeys.idOfSecret(secret))) return Effect.fail(malformed())
        const hit = cache.get(hash)
        if (hit !== undefined && hit.until > at) return principalOf(Option.some(hit.key), user_id, at)
        return Effect.flatMap(lookup(hash, at), (found) => principalOf(found, user_id, at))
      })

    // In open mode the store is asked again every few seconds: a key made meanwhile (by the CLI, or
    // another process) ends open mode without a restart.
    let lastCheck = now
    const recheck = Effect.gen(function*() {
      const at = yield* Clock.currentTimeMillis
      if (at - lastCheck < (options.openRecheckMs ?? OPEN_RECHECK_MS)) return
      lastCheck = at
      const count = yield* keys.countActive(new Date(at)).pipe(Effect.orElseSucceed(() => 0))
      if (count > 0) {
        yield* Ref.set(mode, "keys")
        yield* Effect.logWarning("an API key exists now: open mode has ended, every request needs a key")
      }
    })
    return Auth.of({
      mode: Effect.flatMap(Ref.get(mode), (m) => (m === "keys" ? Effect.succeed(m) : Effect.zipRight(recheck, Ref.get(mode)))),
      authenticate,
      forget: (id) =>
        Effect.sync(() => {
          for (const [hash, entry] of cache) if (entry.key.id === id) cache.delete(hash)
        }),
      keysExist: Ref.getAndSet(mode, "keys").pipe(
        Effect.flatMap((was) => (was === "open" ? Effect.logWarning("an API key was created: open mode has ended, every request now needs a key") : Effect.void))
      )
    })
  })

/** Authentication for the server's settings; fails at start-up when the mode is not allowed. */
export const layer = (server: Config.ServerSettings): Layer.Layer<Auth, ConfigError, ApiKeys.ApiKeys> => Layer.effect(Auth, make(server))

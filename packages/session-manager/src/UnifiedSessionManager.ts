/**
 * The unified session manager: S3-first persistence of workflows and artefacts over the
 * `ObjectStore` port, with every operation written to the `WorkflowAudit` port.
 *
 * Plain objects live under `prefix + identifier` (default prefix `workflows/`). A workflow's
 * definitions are also kept as numbered versions, `{prefix}{id}/v{n}.json`, created once and never
 * overwritten (create-only through `ObjectStore.putIfAbsent`), with `{prefix}{id}/current.json`
 * naming the version in force. Pointer updates of one workflow are serialised within this process;
 * two replicas moving the pointer of the same workflow at once end with the last writer's choice.
 *
 * Every operation — reads included, failures included — writes one audit row (outcome, error tag,
 * byte count, SHA-256 of what was written) before it answers; when the audit row cannot be
 * written, the operation fails with `StoreUnavailable`: no answer without its record.
 */
import { createHash } from "node:crypto"
import { Cause, Clock, Context, Effect, Exit, Layer, Option, ParseResult, Schema } from "effect"
import { Errors, Ids, ThrottledLog } from "@tidyllm/core"
import * as ObjectStore from "./ObjectStore.js"
import * as WorkflowAudit from "./WorkflowAudit.js"

/** The default key prefix of workflows. */
export const DEFAULT_PREFIX = "workflows/"

/** Who does an operation and why; written to every audit row. */
export interface AuditContext {
  /** Printable identity (see `Caller.describe`), `system` for the gateway itself. */
  readonly actor: string
  readonly reason?: string | undefined
  /** The request the operation belongs to, recorded in the row's detail. */
  readonly request_id?: string | undefined
}

// ---------------------------------------------------------------------------------------------
// Errors

/** An identifier, workflow id or prefix that cannot name an object. */
export class InvalidWorkflowKey extends Schema.TaggedError<InvalidWorkflowKey>()("InvalidWorkflowKey", {
  message: Schema.String,
  key: Schema.String
}) {
  get status() { return 400 }
}

/** Data that cannot be stored as JSON (a cycle, a BigInt, `undefined`). */
export class InvalidWorkflowData extends Schema.TaggedError<InvalidWorkflowData>()("InvalidWorkflowData", {
  message: Schema.String
}) {
  get status() { return 400 }
}

/** No object under the key, or a versioned workflow with no current version. */
export class WorkflowNotFound extends Schema.TaggedError<WorkflowNotFound>()("WorkflowNotFound", {
  message: Schema.String,
  key: Schema.String
}) {
  get status() { return 404 }
}

/** The version asked for does not exist. */
export class VersionNotFound extends Schema.TaggedError<VersionNotFound>()("VersionNotFound", {
  message: Schema.String,
  workflow_id: Schema.String,
  version: Schema.Int
}) {
  get status() { return 404 }
}

/** No free version number could be allocated (other writers kept taking them). */
export class VersionConflict extends Schema.TaggedError<VersionConflict>()("VersionConflict", {
  message: Schema.String,
  workflow_id: Schema.String
}) {
  get status() { return 409 }
}

/** A stored object is not the JSON it should be (written by something else, or damaged). */
export class CorruptWorkflowObject extends Schema.TaggedError<CorruptWorkflowObject>()("CorruptWorkflowObject", {
  message: Schema.String,
  key: Schema.String
}) {
  get status() { return 500 }
}

/** Every error a session-manager operation can end with. */
export type SessionError =
  | InvalidWorkflowKey
  | InvalidWorkflowData
  | WorkflowNotFound
  | VersionNotFound
  | VersionConflict
  | CorruptWorkflowObject
  | Errors.StoreUnavailable

/** Schema of {@link SessionError}, for API contracts. */
export const SessionError = Schema.Union(
  InvalidWorkflowKey, InvalidWorkflowData, WorkflowNotFound, VersionNotFound, VersionConflict, CorruptWorkflowObject, Errors.StoreUnavailable
)

// ---------------------------------------------------------------------------------------------
// Results

/** A version just stored. */
export interface StoredVersion {
  readonly workflow_id: string
  readonly version: number
  readonly key: string
  /** Whether it was made the current version. */
  readonly current: boolean
}

/** A stored version and its data. */
export interface WorkflowVersion {
  readonly workflow_id: string
  readonly version: number
  readonly key: string
  /** Whether it is the current version. */
  readonly current: boolean
  readonly data: unknown
}

/** The versions of one workflow. */
export interface VersionList {
  readonly workflow_id: string
  /** Ascending. */
  readonly versions: ReadonlyArray<number>
  readonly current: number | null
}

/** The contents of `current.json`. */
export const CurrentPointer = Schema.Struct({
  version: Schema.Int.pipe(Schema.greaterThanOrEqualTo(1)),
  updated_at: Schema.String,
  updated_by: Schema.String
})
export type CurrentPointer = typeof CurrentPointer.Type

/** What `/health` reports as `session_manager`. */
export interface Health {
  readonly healthy: boolean
  /** The prefix listed to check the store. */
  readonly prefix: string
  readonly detail?: string
}

/** Options of `putVersion`. */
export interface PutVersionOptions {
  /** Make the new version current (default `true`; `false` for a proposal awaiting approval). */
  readonly makeCurrent?: boolean | undefined
}

// ---------------------------------------------------------------------------------------------
// Service

/** The session manager service. */
export interface Service {
  /** Stores `data` as JSON under `prefix + identifier` (overwriting); returns the key. */
  readonly storeWorkflow: (
    context: AuditContext, data: unknown, identifier: string, prefix?: string
  ) => Effect.Effect<string, InvalidWorkflowKey | InvalidWorkflowData | Errors.StoreUnavailable>
  /** The JSON under `prefix + identifier`. */
  readonly getWorkflow: (
    context: AuditContext, identifier: string, prefix?: string
  ) => Effect.Effect<unknown, InvalidWorkflowKey | WorkflowNotFound | CorruptWorkflowObject | Errors.StoreUnavailable>
  /** Keys under `prefix`, in lexical order (version files and pointers included). */
  readonly listWorkflows: (
    context: AuditContext, prefix?: string
  ) => Effect.Effect<ReadonlyArray<string>, InvalidWorkflowKey | Errors.StoreUnavailable>
  /** Stores `data` as the next version of workflow `id` (create-only), current unless told otherwise. */
  readonly putVersion: (
    context: AuditContext, id: string, data: unknown, options?: PutVersionOptions
  ) => Effect.Effect<StoredVersion, InvalidWorkflowKey | InvalidWorkflowData | VersionConflict | Errors.StoreUnavailable>
  /** Version `version` of workflow `id`, or its current version when `version` is absent. */
  readonly getVersion: (
    context: AuditContext, id: string, version?: number
  ) => Effect.Effect<WorkflowVersion, InvalidWorkflowKey | WorkflowNotFound | VersionNotFound | CorruptWorkflowObject | Errors.StoreUnavailable>
  /** Makes an existing version current; returns the new pointer. */
  readonly setCurrent: (
    context: AuditContext, id: string, version: number
  ) => Effect.Effect<CurrentPointer, InvalidWorkflowKey | VersionNotFound | Errors.StoreUnavailable>
  /** The versions of workflow `id` and which one is current (no versions: an empty list). */
  readonly listVersions: (
    context: AuditContext, id: string
  ) => Effect.Effect<VersionList, InvalidWorkflowKey | CorruptWorkflowObject | Errors.StoreUnavailable>
  /** Ids of the workflows that have versions, sorted. */
  readonly listVersionedWorkflows: (
    context: AuditContext
  ) => Effect.Effect<ReadonlyArray<string>, Errors.StoreUnavailable>
  /** Whether the store answers a listing of the versions prefix. Never fails. */
  readonly health: Effect.Effect<Health>
  /** The prefix versioned workflows live under. */
  readonly versionsPrefix: string
}

/** The session manager in use. */
export class UnifiedSessionManager extends Context.Tag("@tidyllm/session-manager/UnifiedSessionManager")<UnifiedSessionManager, Service>() {}

/** Options of the session manager. */
export interface Options {
  /** Where versioned workflows live (default `workflows/`). */
  readonly versionsPrefix?: string | undefined
  /** Numbers tried past the highest one seen before `putVersion` gives up (default 16). */
  readonly maxAllocationAttempts?: number | undefined
}

/** The audit `operation` of each method. */
export const Operation = {
  storeWorkflow: "store_workflow",
  getWorkflow: "get_workflow",
  listWorkflows: "list_workflows",
  putVersion: "put_version",
  getVersion: "get_version",
  setCurrent: "set_current",
  listVersions: "list_versions",
  listVersionedWorkflows: "list_versioned_workflows"
} as const

/** A workflow id: one key segment of letters, digits, `.`, `_`, `-`, not starting with `.`. */
export const WORKFLOW_ID = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/

const VERSION_FILE = /^v([1-9][0-9]{0,8})\.json$/
const CURRENT_FILE = "current.json"

const STORE = "object store"

/** What failed, in words fit for a client: the cause's error code or name (`ECONNREFUSED`, `NoSuchBucket`). */
const reasonOf = (error: ObjectStore.ObjectStoreError): string => {
  const cause: unknown = error.cause
  const field = (name: string) =>
    typeof cause === "object" && cause !== null && name in cause && typeof (cause as Record<string, unknown>)[name] === "string"
      ? (cause as Record<string, string>)[name]
      : undefined
  const code = field("code") ?? field("Code") ?? field("name")
  return code !== undefined && /^[A-Za-z][A-Za-z0-9_.-]{0,63}$/.test(code) && code !== "Error" ? code : "the store did not answer"
}

/** An outage fails every request: its details (the store's address, bucket, key) are logged once per 10 s. */
const warn = ThrottledLog.make(10_000)

/** Fails with `StoreUnavailable` naming the store and what failed, never its address or bucket; logs the detail. */
const unavailable = (error: ObjectStore.ObjectStoreError): Effect.Effect<never, Errors.StoreUnavailable> =>
  Effect.zipRight(
    warn(STORE, `${STORE} failed on ${error.key}: ${error.message}`),
    Effect.fail(new Errors.StoreUnavailable({ message: `${STORE} is unavailable (${reasonOf(error)}); the details are in the server log`, store: STORE }))
  )

const Json = Schema.parseJson(Schema.Unknown, { space: 2 })
const PointerJson = Schema.parseJson(CurrentPointer, { space: 2 })
const utf8 = new TextEncoder()

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex")

const encodeData = (data: unknown): Effect.Effect<Uint8Array, InvalidWorkflowData> =>
  Schema.encode(Json)(data).pipe(
    Effect.flatMap((text) =>
      // JSON.stringify answers `undefined` (not a string) for undefined and functions.
      typeof text === "string" ? Effect.succeed(utf8.encode(text)) : Effect.fail(new InvalidWorkflowData({ message: "the data is not a JSON value" }))
    ),
    Effect.catchTag("ParseError", (e) => Effect.fail(new InvalidWorkflowData({ message: `the data cannot be stored as JSON: ${e.message}` })))
  )

const decodeText = (key: string, bytes: Uint8Array): Effect.Effect<string, CorruptWorkflowObject> =>
  Effect.try({
    try: () => new TextDecoder("utf-8", { fatal: true }).decode(bytes),
    catch: () => new CorruptWorkflowObject({ message: `${key} is not UTF-8 text`, key })
  })

const decodeWith = <A>(schema: Schema.Schema<A, string>) => (key: string, bytes: Uint8Array): Effect.Effect<A, CorruptWorkflowObject> =>
  decodeText(key, bytes).pipe(
    Effect.flatMap(Schema.decode(schema)),
    Effect.catchTag("ParseError", (e) =>
      Effect.fail(new CorruptWorkflowObject({ message: `${key} is not valid: ${ParseResult.TreeFormatter.formatErrorSync(e)}`, key })))
  )
const decodeData = decodeWith(Json)
const decodePointer = decodeWith(PointerJson)

/** `prefix + identifier`, checked to be a valid object key. */
const keyOf = (identifier: string, prefix: string): Effect.Effect<string, InvalidWorkflowKey> => {
  const key = prefix + identifier
  if (identifier.length === 0) return Effect.fail(new InvalidWorkflowKey({ message: "the identifier is empty", key }))
  return Option.match(ObjectStore.validateKey(key), {
    onNone: () => Effect.succeed(key),
    onSome: (problem) => Effect.fail(new InvalidWorkflowKey({ message: `invalid workflow key: ${problem}`, key }))
  })
}

const checkPrefix = (prefix: string): Effect.Effect<string, InvalidWorkflowKey> =>
  ObjectStore.checkPrefix(prefix).pipe(
    Effect.mapError((e) => new InvalidWorkflowKey({ message: e.message, key: prefix }))
  )

const checkId = (id: string): Effect.Effect<string, InvalidWorkflowKey> =>
  WORKFLOW_ID.test(id) ? Effect.succeed(id) : Effect.fail(new InvalidWorkflowKey({
    message: "a workflow id is 1-128 letters, digits, '.', '_' or '-', not starting with '.'",
    key: id
  }))

const checkVersion = (id: string, version: number): Effect.Effect<number, VersionNotFound> =>
  Number.isSafeInteger(version) && version >= 1
    ? Effect.succeed(version)
    : Effect.fail(new VersionNotFound({ message: `workflow ${id} has no version ${version}`, workflow_id: id, version: Number.isSafeInteger(version) ? version : 0 }))

/** What an audit row says about how the operation ended. */
const outcomeOf = <A, E>(exit: Exit.Exit<A, E>, onSuccess: (a: A) => WorkflowAudit.Detail): WorkflowAudit.Detail =>
  Exit.match(exit, {
    onSuccess: (a) => ({ outcome: "success", ...onSuccess(a) }),
    onFailure: (cause) => {
      if (Cause.isInterruptedOnly(cause)) return { outcome: "interrupted" }
      const failure = Cause.failureOption(cause)
      if (Option.isNone(failure)) return { outcome: "defect" }
      const error: unknown = failure.value
      const tag = typeof error === "object" && error !== null && "_tag" in error && typeof error._tag === "string" ? error._tag : "unknown"
      return { outcome: "failure", error: tag }
    }
  })

/** The session manager over the `ObjectStore` and `WorkflowAudit` in context. */
export const make = (options: Options = {}): Effect.Effect<Service, never, ObjectStore.ObjectStore | WorkflowAudit.WorkflowAudit> =>
  Effect.gen(function*() {
    const store = yield* ObjectStore.ObjectStore
    const audit = yield* WorkflowAudit.WorkflowAudit
    const versionsPrefix = options.versionsPrefix ?? DEFAULT_PREFIX
    // A bad prefix is a programming error of the composition, not of a request.
    yield* Effect.orDie(checkPrefix(versionsPrefix))
    const maxAttempts = Math.max(1, options.maxAllocationAttempts ?? 16)
    // Serialises allocation and pointer moves of one workflow within this process.
    const locks = yield* ObjectStore.makeKeyLocks()

    /**
     * Runs `self`, then records its audit row whatever the outcome (interruption included, so a
     * write that happened is never left unrecorded). A failed audit write fails a successful
     * operation; a failed operation keeps its own error.
     */
    const audited = <A, E>(
      context: AuditContext,
      operation: string,
      key: string,
      detail: WorkflowAudit.Detail,
      onSuccess: (a: NoInfer<A>) => WorkflowAudit.Detail,
      self: Effect.Effect<A, E>
    ): Effect.Effect<A, E | Errors.StoreUnavailable> =>
      Effect.uninterruptibleMask((restore) =>
        Effect.gen(function*() {
          const exit = yield* Effect.exit(restore(self))
          const now = yield* Clock.currentTimeMillis
          const entry: WorkflowAudit.WorkflowAuditEntry = {
            id: Ids.randomUuid(),
            created_at: new Date(now),
            operation,
            key,
            actor: context.actor,
            reason: context.reason ?? null,
            detail: {
              ...(context.request_id === undefined ? {} : { request_id: context.request_id }),
              ...detail,
              ...outcomeOf(exit, onSuccess)
            }
          }
          const recorded = yield* Effect.exit(audit.record(entry))
          if (Exit.isFailure(recorded)) {
            if (Exit.isSuccess(exit)) return yield* Effect.failCause(recorded.cause)
            yield* Effect.logError(`workflow audit row for a failed ${operation} of ${key} not written`, recorded.cause)
          }
          return yield* exit
        })
      )

    const get = (key: string) => store.get(key).pipe(Effect.catchTag("ObjectStoreError", unavailable))
    const put = (key: string, body: Uint8Array) =>
      store.put(key, body, "application/json").pipe(Effect.catchTag("ObjectStoreError", unavailable))
    const list = (prefix: string): Effect.Effect<ReadonlyArray<string>, Errors.StoreUnavailable> => store.list(prefix).pipe(Effect.catchTag("ObjectStoreError", unavailable))

    const workflowPrefix = (id: string) => `${versionsPrefix}${id}/`
    const versionKey = (id: string, version: number) => `${workflowPrefix(id)}v${version}.json`
    const pointerKey = (id: string) => `${workflowPrefix(id)}${CURRENT_FILE}`

    const readPointer = (id: string): Effect.Effect<Option.Option<CurrentPointer>, CorruptWorkflowObject | Errors.StoreUnavailable> =>
      get(pointerKey(id)).pipe(
        Effect.flatMap((bytes) => decodePointer(pointerKey(id), bytes)),
        Effect.map(Option.some),
        Effect.catchTag("ObjectNotFound", () => Effect.succeedNone)
      )

    const versionsOf = (id: string): Effect.Effect<ReadonlyArray<number>, Errors.StoreUnavailable> =>
      Effect.map(list(workflowPrefix(id)), (keys) =>
        keys.flatMap((k) => {
          const m = VERSION_FILE.exec(k.slice(workflowPrefix(id).length))
          return m?.[1] === undefined ? [] : [Number(m[1])]
        }).sort((a, b) => a - b))

    const writePointer = (context: AuditContext, id: string, version: number) =>
      Effect.gen(function*() {
        const pointer: CurrentPointer = {
          version,
          updated_at: new Date(yield* Clock.currentTimeMillis).toISOString(),
          updated_by: context.actor
        }
        // Our own value always encodes.
        const text = yield* Effect.orDie(Schema.encode(PointerJson)(pointer))
        yield* put(pointerKey(id), utf8.encode(text))
        return pointer
      })

    const storeWorkflow = Effect.fn("UnifiedSessionManager.storeWorkflow")(function*(
      context: AuditContext, data: unknown, identifier: string, prefix: string = DEFAULT_PREFIX
    ) {
      return yield* audited(context, Operation.storeWorkflow, prefix + identifier, { prefix }, (r) => ({ bytes: r.bytes, sha256: r.sha256 }),
        Effect.gen(function*() {
          const key = yield* keyOf(identifier, prefix)
          const body = yield* encodeData(data)
          yield* put(key, body)
          return { key, bytes: body.length, sha256: sha256(body) }
        })).pipe(Effect.map((r) => r.key))
    })

    const getWorkflow = Effect.fn("UnifiedSessionManager.getWorkflow")(function*(
      context: AuditContext, identifier: string, prefix: string = DEFAULT_PREFIX
    ) {
      return yield* audited(context, Operation.getWorkflow, prefix + identifier, { prefix }, (r) => ({ bytes: r.bytes }),
        Effect.gen(function*() {
          const key = yield* keyOf(identifier, prefix)
          const bytes = yield* get(key).pipe(
            Effect.catchTag("ObjectNotFound", () => Effect.fail(new WorkflowNotFound({ message: `no workflow under ${key}`, key })))
          )
          return { data: yield* decodeData(key, bytes), bytes: bytes.length }
        })).pipe(Effect.map((r) => r.data))
    })

    const listWorkflows = Effect.fn("UnifiedSessionManager.listWorkflows")(function*(
      context: AuditContext, prefix: string = DEFAULT_PREFIX
    ) {
      const listing = Effect.flatMap(checkPrefix(prefix), list)
      return yield* audited(context, Operation.listWorkflows, prefix, { prefix }, (keys) => ({ count: keys.length }), listing)
    })

    const putVersion = Effect.fn("UnifiedSessionManager.putVersion")(function*(
      context: AuditContext, id: string, data: unknown, putOptions: PutVersionOptions = {}
    ) {
      const makeCurrent = putOptions.makeCurrent ?? true
      return yield* audited(context, Operation.putVersion, workflowPrefix(id), { workflow_id: id, make_current: makeCurrent },
        (r) => ({ version: r.stored.version, bytes: r.bytes, sha256: r.sha256, current: r.stored.current }),
        Effect.gen(function*() {
          yield* checkId(id)
          const body = yield* encodeData(data)
          return yield* locks.withLock(id)(Effect.gen(function*() {
            const existing = yield* versionsOf(id)
            const first = (existing[existing.length - 1] ?? 0) + 1
            let version = Option.none<number>()
            for (let n = first; n < first + maxAttempts && Option.isNone(version); n++) {
              const created = yield* store.putIfAbsent(versionKey(id, n), body, "application/json").pipe(
                Effect.as(true),
                Effect.catchTags({ ObjectExists: () => Effect.succeed(false), ObjectStoreError: unavailable })
              )
              if (created) version = Option.some(n)
            }
            if (Option.isNone(version)) {
              return yield* new VersionConflict({ message: `no free version number for workflow ${id} after ${maxAttempts} attempts`, workflow_id: id })
            }
            if (makeCurrent) yield* writePointer(context, id, version.value)
            const stored: StoredVersion = { workflow_id: id, version: version.value, key: versionKey(id, version.value), current: makeCurrent }
            return { stored, bytes: body.length, sha256: sha256(body) }
          }))
        })).pipe(Effect.map((r) => r.stored))
    })

    const getVersion = Effect.fn("UnifiedSessionManager.getVersion")(function*(
      context: AuditContext, id: string, version?: number
    ) {
      return yield* audited(context, Operation.getVersion, workflowPrefix(id), { workflow_id: id, requested: version ?? "current" },
        (r) => ({ version: r.version, bytes: r.bytes }),
        Effect.gen(function*() {
          yield* checkId(id)
          const pointer = yield* readPointer(id)
          const current = Option.map(pointer, (p) => p.version)
          const n = version === undefined
            ? yield* Option.match(current, {
              onNone: () => Effect.fail(new WorkflowNotFound({ message: `workflow ${id} has no current version`, key: pointerKey(id) })),
              onSome: Effect.succeed
            })
            : yield* checkVersion(id, version)
          const key = versionKey(id, n)
          const bytes = yield* get(key).pipe(
            Effect.catchTag("ObjectNotFound", () => Effect.fail(new VersionNotFound({ message: `workflow ${id} has no version ${n}`, workflow_id: id, version: n })))
          )
          const data = yield* decodeData(key, bytes)
          const result: WorkflowVersion = { workflow_id: id, version: n, key, current: Option.contains(current, n), data }
          return { ...result, bytes: bytes.length }
        })).pipe(Effect.map(({ bytes: _bytes, ...result }): WorkflowVersion => result))
    })

    const setCurrent = Effect.fn("UnifiedSessionManager.setCurrent")(function*(
      context: AuditContext, id: string, version: number
    ) {
      return yield* audited(context, Operation.setCurrent, workflowPrefix(id), { workflow_id: id, version },
        (r) => ({ previous: r.previous }),
        Effect.gen(function*() {
          yield* checkId(id)
          yield* checkVersion(id, version)
          return yield* locks.withLock(id)(Effect.gen(function*() {
            // The version must exist before anything points at it.
            yield* get(versionKey(id, version)).pipe(
              Effect.catchTag("ObjectNotFound", () => Effect.fail(new VersionNotFound({ message: `workflow ${id} has no version ${version}`, workflow_id: id, version })))
            )
            // A damaged pointer is about to be replaced: it only loses its place in the audit row.
            const previous = yield* readPointer(id).pipe(Effect.catchTag("CorruptWorkflowObject", () => Effect.succeedNone))
            const pointer = yield* writePointer(context, id, version)
            return { pointer, previous: Option.match(previous, { onNone: () => null, onSome: (p) => p.version }) }
          }))
        })).pipe(Effect.map((r) => r.pointer))
    })

    const listVersions = Effect.fn("UnifiedSessionManager.listVersions")(function*(context: AuditContext, id: string) {
      return yield* audited(context, Operation.listVersions, workflowPrefix(id), { workflow_id: id },
        (r) => ({ count: r.versions.length, current: r.current }),
        Effect.gen(function*() {
          yield* checkId(id)
          const versions = yield* versionsOf(id)
          const pointer = yield* readPointer(id)
          const result: VersionList = { workflow_id: id, versions, current: Option.match(pointer, { onNone: () => null, onSome: (p) => p.version }) }
          return result
        }))
    })

    const listVersionedWorkflows = Effect.fn("UnifiedSessionManager.listVersionedWorkflows")(function*(context: AuditContext) {
      const listing = Effect.map(list(versionsPrefix), (keys) => {
        const ids = new Set<string>()
        for (const key of keys) {
          const [id, file, ...rest] = key.slice(versionsPrefix.length).split("/")
          if (id !== undefined && file !== undefined && rest.length === 0 && WORKFLOW_ID.test(id) && VERSION_FILE.test(file)) ids.add(id)
        }
        return [...ids].sort()
      })
      return yield* audited(context, Operation.listVersionedWorkflows, versionsPrefix, { prefix: versionsPrefix }, (ids) => ({ count: ids.length }), listing)
    })

    const health: Effect.Effect<Health> = store.list(versionsPrefix, { limit: 1 }).pipe(
      Effect.timeoutFail({ duration: "5 seconds", onTimeout: () => new ObjectStore.ObjectStoreError({ message: "timed out", key: versionsPrefix }) }),
      Effect.match({
        onSuccess: (): Health => ({ healthy: true, prefix: versionsPrefix }),
        onFailure: (e): Health => ({ healthy: false, prefix: versionsPrefix, detail: e.message })
      }),
      Effect.withSpan("UnifiedSessionManager.health")
    )

    return UnifiedSessionManager.of({
      storeWorkflow,
      getWorkflow,
      listWorkflows,
      putVersion,
      getVersion,
      setCurrent,
      listVersions,
      listVersionedWorkflows,
      health,
      versionsPrefix
    })
  })

/** The session manager, on the `ObjectStore` and `WorkflowAudit` it requires. */
export const layer = (options: Options = {}): Layer.Layer<UnifiedSessionManager, never, ObjectStore.ObjectStore | WorkflowAudit.WorkflowAudit> =>
  Layer.effect(UnifiedSessionManager, make(options))

/**
 * The session manager on in-memory stores, for unit tests; the stores are in the output too, so a
 * test can read the audit rows and the objects.
 */
export const layerMemory = (options: Options = {}): Layer.Layer<UnifiedSessionManager | ObjectStore.ObjectStore | WorkflowAudit.WorkflowAudit> =>
  layer(options).pipe(Layer.provideMerge(Layer.merge(ObjectStore.layerMemory, WorkflowAudit.layerMemory)))

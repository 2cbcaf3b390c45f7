/**
 * `ObjectStore` on S3 (or an S3-compatible server) through `@aws-sdk/client-s3`.
 *
 * Keys live under an optional key prefix in one bucket. The client is built when the layer is
 * and destroyed when its scope closes; a request whose fiber is interrupted is aborted.
 *
 * `putIfAbsent` checks (`HeadObject`), then writes with `If-None-Match: *`, under a per-key lock.
 * The lock makes it exact within one process whatever the server; across several replicas it is
 * exact only where the server honours `If-None-Match` on `PutObject` (AWS S3 since 2024, MinIO) —
 * s3rver, for one, ignores it, and two replicas racing on one key could then both "create" it.
 */
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client
} from "@aws-sdk/client-s3"
import type { S3ClientConfig } from "@aws-sdk/client-s3"
import { Effect, Layer, Option, Redacted } from "effect"
import type { Scope } from "effect"
import { ObjectStore } from "@tidyllm/session-manager"

/** Static credentials; without them the AWS SDK's default chain (environment, profile, role) applies. */
export interface Credentials {
  readonly accessKeyId: string
  readonly secretAccessKey: Redacted.Redacted<string>
  readonly sessionToken?: Redacted.Redacted<string> | undefined
}

/** Where the objects live and how to reach them. */
export interface Settings {
  readonly bucket: string
  /** Key prefix inside the bucket (`tidyllm/` → objects under `tidyllm/…`); a `/` is added when missing. */
  readonly prefix?: string | undefined
  readonly region?: string | undefined
  /** An S3-compatible endpoint (MinIO, s3rver, LocalStack); AWS's own when absent. */
  readonly endpoint?: string | undefined
  /** Path-style addressing (`endpoint/bucket/key`), which most S3-compatible servers need. */
  readonly forcePathStyle?: boolean | undefined
  readonly credentials?: Credentials | undefined
  /**
   * `WHEN_REQUIRED` leaves out the CRC checksums the SDK adds by default, for S3-compatible
   * servers that reject them. Default: the SDK's (`WHEN_SUPPORTED`).
   */
  readonly checksums?: "WHEN_SUPPORTED" | "WHEN_REQUIRED" | undefined
  /**
   * Listing API: `v2` (default, `ListObjectsV2` with continuation tokens) or `v1` (`ListObjects`
   * with markers), for servers whose V2 paging is broken — s3rver's continuation tokens use DES,
   * which the OpenSSL 3 of Node ≥ 17 refuses, so any listing past one page fails there.
   */
  readonly listApi?: "v1" | "v2" | undefined
  /** Attempts per request, the SDK's retry of throttling and 5xx included (default 3). */
  readonly maxAttempts?: number | undefined
}

/** The key prefix as used: empty, or ending in `/`. */
export const normalizePrefix = (prefix: string | undefined): string =>
  prefix === undefined || prefix === "" ? "" : prefix.endsWith("/") ? prefix : `${prefix}/`

/** The HTTP status and error name of an SDK failure, when it is one. */
const describeFailure = (cause: unknown): { readonly name: string; readonly status: number | undefined } => {
  if (typeof cause !== "object" || cause === null) return { name: String(cause), status: undefined }
  const name = "name" in cause && typeof cause.name === "string" ? cause.name : "Error"
  const metadata: unknown = "$metadata" in cause ? cause.$metadata : undefined
  const status = typeof metadata === "object" && metadata !== null && "httpStatusCode" in metadata && typeof metadata.httpStatusCode === "number"
    ? metadata.httpStatusCode
    : undefined
  return { name, status }
}

/** `GetObject`/`DeleteObject` of a missing key (a missing bucket is `NoSuchBucket`, another 404: not this). */
const isNoSuchKey = (cause: unknown) => describeFailure(cause).name === "NoSuchKey"

/** `HeadObject` of a missing key: a bodiless 404, which the SDK names `NotFound`. */
const isHeadNotFound = (cause: unknown) => {
  const { name } = describeFailure(cause)
  return name === "NotFound" || name === "NoSuchKey"
}

/** 412: the key exists; 409: a concurrent conditional write to it is in flight, and it will exist. */
const isExists = (cause: unknown) => {
  const { name, status } = describeFailure(cause)
  return name === "PreconditionFailed" || name === "ConditionalRequestConflict" || status === 412 || status === 409
}

/** An S3 object store on `settings`; the client lives as long as the scope. */
export const make = (settings: Settings): Effect.Effect<ObjectStore.Service, never, Scope.Scope> =>
  Effect.gen(function*() {
    const bucket = settings.bucket
    const root = normalizePrefix(settings.prefix)
    const config: S3ClientConfig = {
      ...(settings.region === undefined ? { region: "us-east-1" } : { region: settings.region }),
      ...(settings.endpoint === undefined ? {} : { endpoint: settings.endpoint }),
      ...(settings.forcePathStyle === undefined ? {} : { forcePathStyle: settings.forcePathStyle }),
      ...(settings.checksums === undefined ? {} : { requestChecksumCalculation: settings.checksums, responseChecksumValidation: settings.checksums }),
      maxAttempts: settings.maxAttempts ?? 3,
      ...(settings.credentials === undefined ? {} : {
        credentials: {
          accessKeyId: settings.credentials.accessKeyId,
          secretAccessKey: Redacted.value(settings.credentials.secretAccessKey),
          ...(settings.credentials.sessionToken === undefined ? {} : { sessionToken: Redacted.value(settings.credentials.sessionToken) })
        }
      })
    }
    const client = yield* Effect.acquireRelease(
      Effect.sync(() => new S3Client(config)),
      (c) => Effect.sync(() => c.destroy())
    )
    const locks = yield* ObjectStore.makeKeyLocks()

    const failure = (key: string, what: string) => (cause: unknown) => {
      const { name, status } = describeFailure(cause)
      const detail = cause instanceof Error ? cause.message : String(cause)
      return new ObjectStore.ObjectStoreError({
        message: `S3 ${what} of s3://${bucket}/${root}${key} failed: ${name}${status === undefined ? "" : ` (HTTP ${status})`}: ${detail}`,
        key,
        cause
      })
    }

    /** Sends one command; interruption aborts the HTTP request. */
    const send = <A>(key: string, what: string, run: (signal: AbortSignal) => Promise<A>) =>
      Effect.tryPromise({ try: run, catch: (cause) => cause }).pipe(
        Effect.withSpan(`S3ObjectStore.${what}`, { attributes: { "tidyllm.object.key": key, "tidyllm.object.bucket": bucket } })
      )

    const putObject = (key: string, body: Uint8Array, contentType: string | undefined, createOnly: boolean) =>
      send(key, createOnly ? "putIfAbsent" : "put", (abortSignal) =>
        client.send(new PutObjectCommand({
          Bucket: bucket,
          Key: root + key,
          Body: body,
          ContentType: contentType ?? "application/octet-stream",
          ...(createOnly ? { IfNoneMatch: "*" } : {})
        }), { abortSignal }))

    const put: ObjectStore.Service["put"] = (key, body, contentType) =>
      Effect.zipRight(ObjectStore.checkKey(key), putObject(key, body, contentType, false).pipe(Effect.asVoid, Effect.mapError(failure(key, "put"))))

    const exists = (key: string) =>
      send(key, "head", (abortSignal) => client.send(new HeadObjectCommand({ Bucket: bucket, Key: root + key }), { abortSignal })).pipe(
        Effect.as(true),
        Effect.catchIf(isHeadNotFound, () => Effect.succeed(false)),
        Effect.mapError(failure(key, "head"))
      )

    const putIfAbsent: ObjectStore.Service["putIfAbsent"] = (key, body, contentType) =>
      Effect.zipRight(
        ObjectStore.checkKey(key),
        locks.withLock(key)(Effect.gen(function*() {
          if (yield* exists(key)) return yield* new ObjectStore.ObjectExists({ key })
          yield* putObject(key, body, contentType, true).pipe(
            Effect.catchIf(isExists, () => Effect.fail(new ObjectStore.ObjectExists({ key }))),
            Effect.mapError((e) => e instanceof ObjectStore.ObjectExists ? e : failure(key, "putIfAbsent")(e))
          )
        }))
      )

    const get: ObjectStore.Service["get"] = (key) =>
      Effect.zipRight(
        ObjectStore.checkKey(key),
        send(key, "get", async (abortSignal) => {
          const out = await client.send(new GetObjectCommand({ Bucket: bucket, Key: root + key }), { abortSignal })
          // An empty object may come without a body.
          return out.Body === undefined ? new Uint8Array() : await out.Body.transformToByteArray()
        }).pipe(
          Effect.catchIf(isNoSuchKey, () => Effect.fail(new ObjectStore.ObjectNotFound({ key }))),
          Effect.mapError((e) => e instanceof ObjectStore.ObjectNotFound ? e : failure(key, "get")(e))
        )
      )

    interface Page {
      readonly keys: ReadonlyArray<string>
      readonly next: Option.Option<string>
    }

    /** One page of keys (full, prefix included) after `after` (a continuation token for v2, a marker for v1). */
    const listPage = (prefix: string, maxKeys: number, after: Option.Option<string>): Effect.Effect<Page, unknown> =>
      settings.listApi === "v1"
        ? Effect.map(
          send(prefix, "list", (abortSignal) =>
            client.send(new ListObjectsCommand({
              Bucket: bucket,
              Prefix: root + prefix,
              MaxKeys: maxKeys,
              ...Option.match(after, { onNone: () => ({}), onSome: (m) => ({ Marker: m }) })
            }), { abortSignal })),
          (page): Page => {
            const keys = (page.Contents ?? []).flatMap((o) => o.Key === undefined ? [] : [o.Key])
            // Without a delimiter, V1 gives no NextMarker: the last key is the marker.
            return { keys, next: page.IsTruncated === true ? Option.fromNullable(page.NextMarker ?? keys[keys.length - 1]) : Option.none() }
          }
        )
        : Effect.map(
          send(prefix, "list", (abortSignal) =>
            client.send(new ListObjectsV2Command({
              Bucket: bucket,
              Prefix: root + prefix,
              MaxKeys: maxKeys,
              ...Option.match(after, { onNone: () => ({}), onSome: (t) => ({ ContinuationToken: t }) })
            }), { abortSignal })),
          (page): Page => ({
            keys: (page.Contents ?? []).flatMap((o) => o.Key === undefined ? [] : [o.Key]),
            next: page.IsTruncated === true ? Option.fromNullable(page.NextContinuationToken) : Option.none()
          })
        )

    const list: ObjectStore.Service["list"] = (prefix, options) =>
      Effect.zipRight(
        ObjectStore.checkPrefix(prefix),
        Effect.gen(function*() {
          const limit = options?.limit === undefined ? Number.POSITIVE_INFINITY : Math.max(0, Math.floor(options.limit))
          const keys: Array<string> = []
          let after = Option.none<string>()
          do {
            const page = yield* listPage(prefix, Math.min(1000, Math.max(1, limit - keys.length)), after).pipe(
              Effect.mapError(failure(prefix, "list"))
            )
            for (const key of page.keys) if (key.startsWith(root)) keys.push(key.slice(root.length))
            after = page.next
          } while (Option.isSome(after) && keys.length < limit)
          // S3 orders by UTF-8 bytes; sort again so every adapter answers in the same (UTF-16) order.
          return ObjectStore.applyLimit(keys.sort(), options)
        })
      )

    const remove: ObjectStore.Service["remove"] = (key) =>
      Effect.zipRight(
        ObjectStore.checkKey(key),
        send(key, "remove", (abortSignal) => client.send(new DeleteObjectCommand({ Bucket: bucket, Key: root + key }), { abortSignal })).pipe(
          Effect.asVoid,
          // Some S3-compatible servers answer 404 for a missing key where S3 answers 204.
          Effect.catchIf(isNoSuchKey, () => Effect.void),
          Effect.mapError(failure(key, "delete"))
        )
      )

    return ObjectStore.ObjectStore.of({ put, putIfAbsent, get, list, remove })
  })

/** The S3 object store as a layer. */
export const layer = (settings: Settings): Layer.Layer<ObjectStore.ObjectStore> =>
  Layer.scoped(ObjectStore.ObjectStore, make(settings))

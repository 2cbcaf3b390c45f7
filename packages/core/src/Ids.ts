/** Branded identifiers shared by every package. */
import { Schema } from "effect"

const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/** Id of one row of `llm_audit_log`. */
export const AuditId = Schema.String.pipe(Schema.pattern(uuid), Schema.brand("AuditId"))
export type AuditId = typeof AuditId.Type

/** Id of one client request (shared by the audit rows of its attempts). */
export const RequestId = Schema.String.pipe(Schema.minLength(1), Schema.maxLength(128), Schema.brand("RequestId"))
export type RequestId = typeof RequestId.Type

/** Id of one budget reservation. */
export const ReservationId = Schema.String.pipe(Schema.pattern(uuid), Schema.brand("ReservationId"))
export type ReservationId = typeof ReservationId.Type

/** Id of an API key. */
export const ApiKeyId = Schema.String.pipe(Schema.minLength(1), Schema.brand("ApiKeyId"))
export type ApiKeyId = typeof ApiKeyId.Type

/** Id of a flow agreement. */
export const AgreementId = Schema.String.pipe(Schema.pattern(uuid), Schema.brand("AgreementId"))
export type AgreementId = typeof AgreementId.Type

/** A random RFC 4122 v4 UUID (uses the platform's `crypto.randomUUID`, present in Node ≥ 19 and browsers). */
export const randomUuid = (): string => globalThis.crypto.randomUUID()

/**
 * JSON with object keys sorted at every depth, so values that differ only in key order (a tool's
 * JSON Schema written by two clients) serialise alike. Array order is kept: it means something.
 * Like `JSON.stringify`, `undefined` members are left out.
 */
export const canonicalJson = (value: unknown): string => JSON.stringify(sortKeys(value)) ?? "null"

const sortKeys = (value: unknown): unknown => {
  if (Array.isArray(value)) return value.map((v) => (v === undefined ? null : sortKeys(v)))
  if (typeof value !== "object" || value === null) return value
  // No prototype: a `__proto__` key (JSON.parse makes it an own property) stays an ordinary member.
  const out = Object.create(null) as Record<string, unknown>
  for (const key of Object.keys(value).sort()) {
    const v = (value as Record<string, unknown>)[key]
    if (v !== undefined) out[key] = sortKeys(v)
  }
  return out
}

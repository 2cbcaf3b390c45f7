/** Canonical JSON: object keys sorted, so equal values give equal strings. */
export const canonical = (value: unknown): string => {
  const seen: Array<string> = []
  const walk = (v: unknown): void => {
    if (v === null || typeof v !== "object") {
      seen.push(v === undefined ? "null" : JSON.stringify(v) ?? "null")
      return
    }
    if (Array.isArray(v)) {
      seen.push("[")
      v.forEach((x: unknown, i) => {
        if (i > 0) seen.push(",")
        walk(x)
      })
      seen.push("]")
      return
    }
    const record = v as Record<string, unknown>
    const keys = Object.keys(record).filter((k) => record[k] !== undefined).sort()
    seen.push("{")
    keys.forEach((k, i) => {
      if (i > 0) seen.push(",")
      seen.push(JSON.stringify(k), ":")
      walk(record[k])
    })
    seen.push("}")
  }
  walk(value)
  return seen.join("")
}

/** What a Redis URL is called in logs and health reports, without loading the Redis client. */

/** The URL without its credentials, fit for a log line. */
export const describeUrl = (url: string): string => {
  try {
    const u = new URL(url)
    return `${u.protocol}//${u.host}${u.pathname === "/" ? "" : u.pathname}`
  } catch {
    return "(unparsable Redis URL)"
  }
}

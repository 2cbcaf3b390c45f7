/**
 * Turns a Schema `ParseError` into one line per bad key, each naming the key's path
 * (`corporate_llm.budget_limit_daily_usd: expected a non-negative number, got "abc"`), for the
 * config loader and for request bodies alike.
 */
import { Option, type ParseResult, SchemaAST } from "effect"

/** One problem at one path. */
export interface PathIssue {
  /** Path segments (`["models", 0, "id"]`); empty for the root. */
  readonly path: ReadonlyArray<PropertyKey>
  /** What is wrong, without the path: `expected a string, got 5`, `unknown key`. */
  readonly message: string
}

// Control characters and unpaired surrogates: what a message must not carry verbatim (a log line, a text column).
// eslint-disable-next-line no-control-regex
const unprintable = /[\u0000-\u001f\u007f]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g
const MAX_SEGMENT = 64

/**
 * A client-given name as a message may show it: control characters and unpaired surrogates as
 * `\uXXXX` escapes, and at most 64 characters.
 */
export const printable = (name: string): string => {
  const short = name.length > MAX_SEGMENT ? `${name.slice(0, MAX_SEGMENT - 3)}...` : name
  return short.replace(unprintable, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`)
}

/** `corporate_llm.budget_limit_daily_usd`, `messages[0].content`, `(root)`; keys made {@link printable}. */
export const formatPath = (path: ReadonlyArray<PropertyKey>): string => {
  let out = ""
  for (const segment of path) {
    if (typeof segment === "number") out += `[${segment}]`
    else out += out === "" ? printable(String(segment)) : `.${printable(String(segment))}`
  }
  return out === "" ? "(root)" : out
}

const secretKey = /secret|password|passwd|session_token|auth_token|access_token|access_key|api_key|database_url|credential|admin_key|redis_url|token$/i

/** The given value as a message shows it; never the value of a secret-looking key. */
export const showActual = (actual: unknown, path: ReadonlyArray<PropertyKey>): string => {
  const last = path[path.length - 1]
  if (typeof last === "string" && secretKey.test(last)) return "a value (hidden: secret)"
  if (actual === undefined) return "nothing"
  if (actual === null) return "null"
  if (Array.isArray(actual)) return "a list"
  if (typeof actual === "object") return "an object"
  if (typeof actual === "string") return JSON.stringify(actual.length > 60 ? `${actual.slice(0, 57)}...` : actual)
  if (typeof actual === "number" || typeof actual === "boolean" || typeof actual === "bigint") return String(actual)
  return `a ${typeof actual}`
}

const isNullish = (ast: SchemaAST.AST): boolean =>
  ast._tag === "UndefinedKeyword" || ast._tag === "VoidKeyword" || (ast._tag === "Literal" && ast.literal === null)

/** A human description of what the schema node accepts. */
const describe = (ast: SchemaAST.AST): string => {
  const description = SchemaAST.getDescriptionAnnotation(ast)
  if (Option.isSome(description)) return description.value
  switch (ast._tag) {
    case "TypeLiteral": return ast.indexSignatures.length > 0 && ast.propertySignatures.length === 0 ? "a mapping" : "an object"
    case "TupleType": return "a list"
    case "Transformation": return describe(ast.to)
    case "Refinement": return describe(ast.from)
    // Literal unions read best as their members: `"full" | "redacted" | "hash"`.
    case "Union": return ast.types.filter((t) => t._tag !== "UndefinedKeyword").map(describe).join(" | ")
    case "Literal": return JSON.stringify(ast.literal)
    default: return String(ast)
  }
}

const toPath = (p: ParseResult.Path): ReadonlyArray<PropertyKey> => (Array.isArray(p) ? p : [p as PropertyKey])

/**
 * Flattens a parse issue into path-named problems. `recordKey` is the key schema of the record
 * whose entry this issue is about: a key it refuses is reported with what a key must be.
 */
export const collect = (issue: ParseResult.ParseIssue, path: ReadonlyArray<PropertyKey> = [], recordKey?: SchemaAST.AST): Array<PathIssue> => {
  const leaf = (ast: SchemaAST.AST, actual: unknown): Array<PathIssue> => [{ path, message: `expected ${describe(ast)}, got ${showActual(actual, path)}` }]
  switch (issue._tag) {
    case "Pointer":
      return collect(issue.issue, [...path, ...toPath(issue.path)], recordKey)
    case "Composite": {
      const issues: ReadonlyArray<ParseResult.ParseIssue> = "_tag" in issue.issues ? [issue.issues] : issue.issues
      if (issue.ast._tag === "Union") {
        // `X | null` (an optional field): report what is wrong with the value as an X.
        const members = issue.ast.types.filter((t) => !isNullish(t))
        const relevant = issues.filter((i) => !(i._tag === "Type" && isNullish(i.ast)))
        const only = relevant[0]
        if (members.length === 1 && relevant.length === 1 && only !== undefined && issue.actual !== null && issue.actual !== undefined) {
          return collect(only, path)
        }
        return leaf(issue.ast, issue.actual)
      }
      // A record (a map such as `corporate_llm.teams`): its entries' keys are checked by a key schema.
      const key = issue.ast._tag === "TypeLiteral" && issue.ast.propertySignatures.length === 0 ? issue.ast.indexSignatures[0]?.parameter : undefined
      return issues.flatMap((i) => collect(i, path, key))
    }
    case "Refinement": {
      if (issue.kind === "Predicate") return leaf(issue.ast, issue.actual)
      // The value failed the schema under the check. A value of the wrong type outright is described by the
      // whole check ("a non-negative number"); anything deeper (an element, a field) is reported where it is.
      let inner: ParseResult.ParseIssue = issue.issue
      while (inner._tag === "Refinement" && inner.kind === "From") inner = inner.issue
      if (inner._tag === "Refinement") return leaf(inner.ast, inner.actual)
      if (inner._tag === "Type") return leaf(issue.ast, issue.actual)
      return collect(inner, path)
    }
    case "Transformation":
      // Wrong input for the encoded side (e.g. a number where a string is expected) is reported inside.
      return collect(issue.issue, path)
    case "Type":
      return leaf(issue.ast, issue.actual)
    case "Missing":
      return [{ path, message: "is required" }]
    case "Unexpected":
      return [{ path, message: recordKey === undefined ? "unknown key" : `not an acceptable key: expected ${describe(recordKey)}` }]
    case "Forbidden":
      return [{ path, message: issue.message ?? "is not allowed here" }]
  }
}

/** The property names an object schema accepts at `path` (for "did you mean" hints). */
export const keysAt = (root: SchemaAST.AST, path: ReadonlyArray<PropertyKey>): ReadonlyArray<string> => {
  const objectOf = (ast: SchemaAST.AST): SchemaAST.TypeLiteral | undefined => {
    switch (ast._tag) {
      case "TypeLiteral": return ast
      case "Transformation": return objectOf(ast.from)
      case "Refinement": return objectOf(ast.from)
      case "Suspend": return objectOf(ast.f())
      case "Union": {
        for (const t of ast.types) {
          const o = objectOf(t)
          if (o !== undefined) return o
        }
        return undefined
      }
      default: return undefined
    }
  }
  const elementOf = (ast: SchemaAST.AST): SchemaAST.AST | undefined => {
    switch (ast._tag) {
      case "TupleType": return ast.rest[0]?.type
      case "Transformation": return elementOf(ast.from)
      case "Refinement": return elementOf(ast.from)
      case "Union": {
        for (const t of ast.types) {
          const e = elementOf(t)
          if (e !== undefined) return e
        }
        return undefined
      }
      default: return undefined
    }
  }
  let current: SchemaAST.AST | undefined = root
  for (const segment of path) {
    if (current === undefined) return []
    if (typeof segment === "number") {
      current = elementOf(current)
      continue
    }
    current = objectOf(current)?.propertySignatures.find((p) => p.name === segment)?.type
  }
  const o = current === undefined ? undefined : objectOf(current)
  return o === undefined ? [] : o.propertySignatures.flatMap((p) => (typeof p.name === "string" ? [p.name] : []))
}

const distance = (a: string, b: string): number => {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    let previous = row[0] ?? 0
    row[0] = i
    for (let j = 1; j <= b.length; j++) {
      const current = row[j] ?? 0
      row[j] = Math.min((row[j] ?? 0) + 1, (row[j - 1] ?? 0) + 1, previous + (a[i - 1] === b[j - 1] ? 0 : 1))
      previous = current
    }
  }
  return row[b.length] ?? 0
}

/** The closest of `candidates` to `name`, if it is close enough to be a likely typo. */
export const suggest = (name: string, candidates: ReadonlyArray<string>): string | undefined => {
  let best: { name: string; d: number } | undefined
  for (const c of candidates) {
    const d = c.startsWith(name) || name.startsWith(c) ? Math.min(distance(name, c), 2) : distance(name, c)
    if (best === undefined || d < best.d) best = { name: c, d }
  }
  return best !== undefined && best.d <= Math.max(2, Math.floor(name.length / 3)) ? best.name : undefined
}

/**
 * One line per problem, `path: message`, with a "did you mean" hint on unknown keys.
 * `label` adds where a path's value came from (e.g. an environment variable).
 */
export const formatAll = (
  error: ParseResult.ParseError,
  root: SchemaAST.AST,
  label: (path: ReadonlyArray<PropertyKey>) => string | undefined = () => undefined
): Array<string> =>
  collect(error.issue).map(({ message, path }) => {
    const source = label(path)
    let line = `${formatPath(path)}${source === undefined ? "" : ` (from ${source})`}: ${message}`
    const last = path[path.length - 1]
    if (message === "unknown key" && typeof last === "string") {
      const hint = suggest(last, keysAt(root, path.slice(0, -1)))
      if (hint !== undefined) line += ` (did you mean '${hint}'?)`
    }
    return line
  })

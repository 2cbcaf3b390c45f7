#!/usr/bin/env node
// Generates the configuration reference in README.md (between `<!-- config-reference:start -->`
// and `<!-- config-reference:end -->`) from the config schema itself, so it cannot drift:
//
//   node scripts/config-reference.mjs            # print the reference
//   node scripts/config-reference.mjs --write    # replace it in README.md (`pnpm docs:config`)
//   node scripts/config-reference.mjs --check    # exit 1 when README.md is out of date
//
// Keys, types, optionality and defaults come from `Config.GatewayConfig` (the built
// packages/core/dist/Config.js: run `pnpm build` first), the environment variables from
// `environmentOverrides` (apps/server/dist/config/Load.js). Effect Schema does not keep JSDoc, so
// a key's description is its `description` annotation when it has one of its own, else the
// `/** … */` comment above it in packages/core/src/Config.ts (or a file that one imports).
// `apps/server/test/ConfigReference.test.ts` runs the same generator on the sources, so a new key
// without `pnpm docs:config` fails the tests. The output depends on nothing but those inputs.
import { readFileSync, statSync, writeFileSync } from "node:fs"
import { dirname, join, relative } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"

export const root = join(dirname(fileURLToPath(import.meta.url)), "..")
export const START = "<!-- config-reference:start -->"
export const END = "<!-- config-reference:end -->"

// ---------------------------------------------------------------------------------------------
// JSDoc from the source text

/** `/** … *\/` → one line of text (`{@link x}` → `x`). */
const cleanDoc = (comment) =>
  comment
    .replace(/^\/\*\*/, "")
    .replace(/\*\/$/, "")
    .split("\n")
    .map((line) => line.replace(/^\s*\* ?/, ""))
    .join(" ")
    .replace(/\{@link\s+([^}\s]+)(?:\s+([^}]*))?\}/g, (_, target, label) => (label ?? target).trim())
    .replace(/\s+/g, " ")
    .trim()

/**
 * Reads a TypeScript file's `Schema.Struct({ … })` literals: for each, its name (the `const` it
 * is assigned to, or `<parent>.<field>` when written inline as a field's schema), its keys in
 * order and the JSDoc comment directly above each key; plus the JSDoc of each top-level `const`.
 * A small scanner, not a parser: it skips strings, template literals, regex literals and
 * comments, and tracks brackets, which is all the file's style needs.
 */
export const parseSource = (text, file = "") => {
  const structs = []
  const constDocs = new Map()
  const stack = [] // open brackets: { ch, callee?, struct? }
  let doc // the JSDoc comment waiting for the next token
  let prev = "" // the last significant character
  let declDoc // JSDoc of the top-level declaration being read
  let constName // name of the top-level `const` being read
  let expectConstName = false
  let callee // the identifier just before a `(`
  const n = text.length
  let i = 0
  const structFrame = () => {
    const top = stack[stack.length - 1]
    return top !== undefined && top.struct !== undefined ? top.struct : undefined
  }
  const nearestStruct = () => {
    for (let k = stack.length - 1; k >= 0; k--) if (stack[k].struct !== undefined) return stack[k].struct
    return undefined
  }
  while (i < n) {
    const c = text[i]
    const next = text[i + 1]
    if (c === " " || c === "\t" || c === "\n" || c === "\r") { i++; continue }
    if (c === "/" && next === "/") {
      while (i < n && text[i] !== "\n") i++
      continue
    }
    if (c === "/" && next === "*") {
      const end = text.indexOf("*/", i + 2)
      const stop = end < 0 ? n : end + 2
      const body = text.slice(i, stop)
      doc = body.startsWith("/**") && !body.startsWith("/**/") ? cleanDoc(body) : doc
      i = stop
      continue
    }
    const taken = doc
    doc = undefined
    if (c === "\"" || c === "'") {
      i++
      while (i < n && text[i] !== c) i += text[i] === "\\" ? 2 : 1
      i++
      prev = c
      continue
    }
    if (c === "`") {
      // Template literal; `${ … }` may nest braces and other templates.
      i++
      let depth = 0
      while (i < n) {
        const t = text[i]
        if (t === "\\") { i += 2; continue }
        if (depth === 0 && t === "`") { i++; break }
        if (t === "$" && text[i + 1] === "{") { depth++; i += 2; continue }
        if (depth > 0 && t === "}") depth--
        i++
      }
      prev = "`"
      continue
    }
    if (c === "/" && (prev === "" || "(,=:[!&|?{};+-*%<>~^".includes(prev))) {
      // A regex literal (a `/` where an expression starts).
      i++
      let inClass = false
      while (i < n && text[i] !== "\n") {
        const t = text[i]
        if (t === "\\") { i += 2; continue }
        if (t === "[") inClass = true
        else if (t === "]") inClass = false
        else if (t === "/" && !inClass) break
        i++
      }
      i++
      while (i < n && /[a-z]/.test(text[i])) i++
      prev = "/"
      continue
    }
    if (/[A-Za-z_$]/.test(c)) {
      let j = i
      while (j < n && /[\w$.]/.test(text[j])) j++
      const word = text.slice(i, j)
      let k = j
      while (k < n && /\s/.test(text[k])) k++
      const struct = structFrame()
      if (struct !== undefined && (prev === "{" || prev === ",") && /^[A-Za-z_$][\w$]*$/.test(word) && text[k] === ":") {
        struct.keys.push(word)
        if (taken !== undefined) struct.docs.set(word, taken)
        struct.current = word
      } else if (stack.length === 0) {
        if (word === "export" || word === "const" || word === "let") {
          if (taken !== undefined) declDoc = taken
          if (word !== "export") expectConstName = true
        } else if (expectConstName) {
          constName = word
          if (declDoc !== undefined) constDocs.set(word, declDoc)
          expectConstName = false
          declDoc = undefined
        } else {
          declDoc = undefined
        }
      }
      prev = word[word.length - 1]
      callee = text[k] === "(" ? word : undefined
      i = j
      continue
    }
    if (c === "(" || c === "[" || c === "{") {
      const frame = { ch: c }
      if (c === "(") frame.callee = callee
      if (c === "{") {
        const top = stack[stack.length - 1]
        if (top !== undefined && top.ch === "(" && prev === "(" && /(^|\.)Struct$/.test(top.callee ?? "")) {
          const parent = nearestStruct()
          const name = parent !== undefined && parent.current !== undefined ? `${parent.name}.${parent.current}` : constName ?? "?"
          frame.struct = { name, file, keys: [], docs: new Map(), doc: parent === undefined ? constDocs.get(name) : parent.docs.get(parent.current ?? "") }
          structs.push(frame.struct)
        }
      }
      stack.push(frame)
      callee = undefined
      prev = c
      i++
      continue
    }
    if (c === ")" || c === "]" || c === "}") {
      stack.pop()
      callee = undefined
      prev = c
      i++
      continue
    }
    if (c === ";" && stack.length === 0) { constName = undefined; declDoc = undefined; expectConstName = false }
    callee = undefined
    prev = c
    i++
  }
  return { structs, constDocs }
}

/** packages/core/src/Config.ts and the files of that package it imports, read from `base`. */
export const readSources = (base = root) => {
  const dir = join(base, "packages/core/src")
  const first = join(dir, "Config.ts")
  const text = readFileSync(first, "utf8")
  const files = [{ file: relative(base, first), text }]
  for (const m of text.matchAll(/from\s+"\.\/([\w/-]+)\.js"/g)) {
    const path = join(dir, `${m[1]}.ts`)
    files.push({ file: relative(base, path), text: readFileSync(path, "utf8") })
  }
  return files
}

// ---------------------------------------------------------------------------------------------
// The schema

const PropertySignatureTypeId = Symbol.for("effect/PropertySignature")
const DescriptionId = Symbol.for("effect/annotation/Description")
const IdentifierId = Symbol.for("effect/annotation/Identifier")
const JSONSchemaId = Symbol.for("effect/annotation/JSONSchema")
const SchemaIdId = Symbol.for("effect/annotation/SchemaId")
const TitleId = Symbol.for("effect/annotation/Title")
const TypeConstructorId = Symbol.for("effect/annotation/TypeConstructor")

const annotation = (node, id) => (node !== undefined && node.annotations !== undefined ? node.annotations[id] : undefined)

const isRedacted = (ast) =>
  ast._tag === "Transformation" && ast.to._tag === "Declaration" && annotation(ast.to, TypeConstructorId)?._tag === "effect/Redacted"

/**
 * A description the schema author wrote, not one of Effect's built-in ones ("a number", "a
 * positive number", …): those come with a title or a schema id, or sit on a keyword.
 */
const authoredDescription = (ast) => {
  if (ast === undefined) return undefined
  const d = annotation(ast, DescriptionId)
  if (typeof d !== "string") return undefined
  if (annotation(ast, TitleId) !== undefined || annotation(ast, SchemaIdId) !== undefined) return undefined
  if (ast._tag.endsWith("Keyword") || ast._tag === "Declaration" || isRedacted(ast)) return undefined
  return d
}

const code = (s) => `\`${s}\``

/** What a value of `ast` looks like in YAML (the encoded side, which is what the file holds). */
export const typeText = (ast) => {
  switch (ast._tag) {
    case "StringKeyword": return "string"
    case "NumberKeyword": return "number"
    case "BooleanKeyword": return "boolean"
    case "Literal": return code(String(ast.literal))
    case "Union":
      return ast.types.every((t) => t._tag === "Literal")
        ? ast.types.map((t) => code(String(t.literal))).join(" \\| ")
        : ast.types.map(typeText).join(" or ")
    case "TupleType":
      if (ast.elements.length === 0 && ast.rest.length === 1) return `list of ${plural(typeText(ast.rest[0].type))}`
      return "list"
    case "TypeLiteral":
      if (ast.propertySignatures.length === 0 && ast.indexSignatures.length === 1) {
        const sig = ast.indexSignatures[0]
        const key = typeText(sig.parameter)
        return `map of ${key.endsWith("string") ? "name" : key} → ${typeText(sig.type)}`
      }
      return "mapping"
    case "Refinement": {
      const js = {}
      let node = ast
      while (node._tag === "Refinement") {
        const j = annotation(node, JSONSchemaId)
        if (j !== undefined) for (const [k, v] of Object.entries(j)) if (!(k in js)) js[k] = v
        node = node.from
      }
      const base = typeText(node)
      if (base === "number") {
        const kind = js.type === "integer" ? "integer" : "number"
        if (js.minimum !== undefined && js.maximum !== undefined) return `${kind} ${js.minimum}–${js.maximum}`
        if (js.minimum !== undefined) return `${kind} ≥ ${js.minimum}`
        if (js.exclusiveMinimum !== undefined) return `${kind} > ${js.exclusiveMinimum}`
        if (js.maximum !== undefined) return `${kind} ≤ ${js.maximum}`
        return kind
      }
      if (base === "string") {
        if (js.minLength === 1) return "non-empty string"
        if (js.minLength !== undefined) return `string of ≥ ${js.minLength} characters`
        return "string"
      }
      return base
    }
    case "Transformation":
      if (isRedacted(ast)) return `${typeText(ast.from)}, **secret**`
      return typeText(ast.from)
    case "Suspend": return typeText(ast.f())
    case "Declaration": return annotation(ast, IdentifierId) ?? "value"
    default: return annotation(ast, IdentifierId) ?? ast._tag
  }
}

const plural = (t) => (t === "mapping" || t.endsWith("string") ? `${t}s` : t)

/** True when a secret (`Redacted`) is anywhere in `ast`. */
const hasSecret = (ast, depth = 0) => {
  if (depth > 20 || ast === undefined) return false
  if (isRedacted(ast)) return true
  switch (ast._tag) {
    case "Refinement": return hasSecret(ast.from, depth + 1)
    case "Transformation": return hasSecret(ast.from, depth + 1)
    case "Union": return ast.types.some((t) => hasSecret(t, depth + 1))
    case "TupleType": return ast.rest.some((r) => hasSecret(r.type, depth + 1))
    case "TypeLiteral": return ast.indexSignatures.some((s) => hasSecret(s.type, depth + 1))
    default: return false
  }
}

/**
 * The struct (a schema with `fields`) reachable from `schema` through lists, maps and
 * refinements, with the path suffix that leads to its keys (`[]` per list, `.<name>` per map).
 */
const structOf = (schema) => {
  let s = schema
  let suffix = ""
  for (let step = 0; step < 10 && s !== undefined && s !== null; step++) {
    const ast = s.ast
    if (ast === undefined) return undefined
    const isMap = ast._tag === "TypeLiteral" && ast.indexSignatures.length > 0
    // A `Schema.Record` has `fields` too (none): it is a map, not a struct.
    if (typeof s.fields === "object" && s.fields !== null && !isMap) return { struct: s, suffix }
    if (ast._tag === "Refinement" && s.from !== undefined) { s = s.from; continue }
    if (ast._tag === "TupleType" && s.value !== undefined) { suffix += "[]"; s = s.value; continue }
    if (ast._tag === "TypeLiteral" && ast.indexSignatures.length === 1 && s.value !== undefined) {
      suffix += ".<name>"
      s = s.value
      continue
    }
    return undefined
  }
  return undefined
}

const formatDefault = (v) => {
  if (v === undefined) return ""
  if (typeof v === "string") return v === "" ? code("\"\"") : code(v)
  if (typeof v === "number" || typeof v === "boolean") return code(String(v))
  if (Array.isArray(v)) return code(`[${v.map((x) => (typeof x === "string" ? x : JSON.stringify(x))).join(", ")}]`)
  if (typeof v === "object" && v !== null && Object.keys(v).length === 0) return code("{}")
  return code(JSON.stringify(v))
}

const cell = (s) => s.replace(/\r?\n/g, " ").replace(/\|/g, (m, offset, all) => (all[offset - 1] === "\\" ? m : "\\|"))

/**
 * The rows of the reference: one per key, in schema order, nested keys after their parent.
 * `docsFor(struct)` gives the JSDoc of a struct's keys, `docOfStruct(struct)` the struct's own.
 */
const rowsOf = (struct, path, docsFor, docOfStruct, out) => {
  const docs = docsFor(struct)
  for (const [key, prop] of Object.entries(struct.fields)) {
    const keyPath = `${path}${path === "" ? "" : "."}${key}`
    const isPs = prop !== null && typeof prop === "object" && PropertySignatureTypeId in prop
    const psAst = isPs ? prop.ast : undefined
    const inner = isPs ? prop.from : prop
    const innerAst = inner !== undefined ? inner.ast : psAst._tag === "PropertySignatureTransformation" ? psAst.from.type : psAst.type
    const optional = psAst === undefined ? false
      : psAst._tag === "PropertySignatureTransformation" ? psAst.from.isOptional : psAst.isOptional
    const dflt = psAst !== undefined && psAst._tag === "PropertySignatureTransformation" && typeof psAst.to.defaultValue === "function"
      ? { value: psAst.to.defaultValue() }
      : undefined
    const description = authoredDescription(psAst?._tag === "PropertySignatureTransformation" ? psAst.to : psAst)
      ?? authoredDescription(psAst?._tag === "PropertySignatureTransformation" ? psAst.from : undefined)
      ?? authoredDescription(innerAst)
      ?? docs.get(key)
    const nested = inner !== undefined ? structOf(inner) : undefined
    const structDoc = nested !== undefined ? docOfStruct(nested.struct) : undefined
    out.push({
      path: keyPath,
      type: typeText(innerAst),
      secret: hasSecret(innerAst),
      required: !optional,
      default: dflt,
      nested: nested !== undefined,
      description: description ?? structDoc ?? ""
    })
    if (nested !== undefined) rowsOf(nested.struct, `${keyPath}${nested.suffix}`, docsFor, docOfStruct, out)
  }
  return out
}

/**
 * The reference as Markdown, from the config module (`GatewayConfig` and the other exported
 * schemas), the environment overrides and the source files the JSDoc is read from.
 * Throws when an environment variable names a key the schema does not have.
 */
export const generate = ({ config, overrides, sources }) => {
  const parsed = sources.map(({ file, text }) => parseSource(text, file))
  const structs = parsed.flatMap((p) => p.structs)
  const constDocs = new Map(parsed.flatMap((p) => [...p.constDocs]))
  const exportName = new Map()
  for (const [name, value] of Object.entries(config)) {
    if (value !== null && typeof value === "object" || typeof value === "function") exportName.set(value, name)
  }
  const sourceNameOf = new Map() // struct schema → parsed struct
  const matchStruct = (struct, parentName, field) => {
    const keys = Object.keys(struct.fields).join(",")
    const candidates = structs.filter((s) => s.keys.join(",") === keys)
    const byExport = exportName.has(struct) ? candidates.find((s) => s.name === exportName.get(struct)) : undefined
    const byNesting = parentName !== undefined ? candidates.find((s) => s.name === `${parentName}.${field}`) : undefined
    return byExport ?? byNesting ?? (candidates.length === 1 ? candidates[0] : undefined)
  }
  // The parsed struct of each schema struct, found top-down so inline structs know their parent.
  const assign = (struct, parentName, field) => {
    if (sourceNameOf.has(struct)) return
    const found = matchStruct(struct, parentName, field)
    sourceNameOf.set(struct, found)
    for (const [key, prop] of Object.entries(struct.fields)) {
      const inner = prop !== null && typeof prop === "object" && PropertySignatureTypeId in prop ? prop.from : prop
      const nested = inner !== undefined ? structOf(inner) : undefined
      if (nested !== undefined) assign(nested.struct, found?.name, key)
    }
  }
  const G = config.GatewayConfig
  assign(G, undefined, undefined)
  const docsFor = (struct) => sourceNameOf.get(struct)?.docs ?? new Map()
  const docOfStruct = (struct) => {
    const found = sourceNameOf.get(struct)
    return found === undefined ? undefined : found.doc ?? constDocs.get(found.name)
  }

  const envByPath = new Map()
  for (const o of overrides) {
    const key = o.path.join(".")
    const list = envByPath.get(key) ?? []
    list.unshift(o.name) // later entries win: list the winner first
    envByPath.set(key, list)
  }

  const sections = []
  const topDocs = docsFor(G)
  for (const [section, prop] of Object.entries(G.fields)) {
    const inner = PropertySignatureTypeId in prop ? prop.from : prop
    const nested = inner !== undefined ? structOf(inner) : undefined
    const rows = nested !== undefined
      ? rowsOf(nested.struct, `${section}${nested.suffix}`, docsFor, docOfStruct, [])
      : rowsOf({ fields: { [section]: prop } }, "", () => topDocs, docOfStruct, [])
    const intro = topDocs.get(section) ?? (nested !== undefined ? docOfStruct(nested.struct) : undefined)
    sections.push({ section, list: nested !== undefined && nested.suffix.startsWith("[]"), intro, rows })
  }

  const known = new Set(sections.flatMap((s) => s.rows.map((r) => r.path)))
  const unknown = [...envByPath.keys()].filter((p) => !known.has(p))
  if (unknown.length > 0) {
    throw new Error(`environmentOverrides set keys the config schema does not have: ${unknown.map((p) => `${envByPath.get(p).join(", ")} → ${p}`).join("; ")}`)
  }

  const lines = [
    "<!-- Generated by `pnpm docs:config` from the config schema (packages/core/src/Config.ts) and the",
    "     environment variables of apps/server/src/config/Load.ts. Do not edit by hand: a test fails when it is stale. -->",
    ""
  ]
  const envRows = [...overrides].map((o) => o.name)
  const envSeen = new Set()
  lines.push(
    "Environment variables win over the file; where two set the same key, the one listed first beside the key wins.",
    "",
    "| environment variable | sets |",
    "|---|---|"
  )
  for (const name of [...envRows].sort()) {
    if (envSeen.has(name)) continue
    envSeen.add(name)
    const paths = overrides.filter((o) => o.name === name).map((o) => code(o.path.join(".")))
    lines.push(`| ${code(name)} | ${paths.join(", ")} |`)
  }
  lines.push("")
  for (const s of sections) {
    lines.push(`#### ${code(s.section)}${s.list ? " (a list)" : ""}`, "")
    if (s.intro !== undefined && s.intro !== "") lines.push(s.intro, "")
    lines.push("| key | type | default | environment | description |", "|---|---|---|---|---|")
    for (const r of s.rows) {
      const dflt = r.default !== undefined
        ? (r.nested && typeof r.default.value === "object" && r.default.value !== null && !Array.isArray(r.default.value) && Object.keys(r.default.value).length > 0
          ? "its keys' defaults"
          : formatDefault(r.default.value))
        : r.required ? "**required**" : "unset"
      const env = (envByPath.get(r.path) ?? []).map(code).join(", ")
      const type = r.secret && !r.type.includes("**secret**") ? `${r.type}, **secret**` : r.type
      lines.push(`| ${code(r.path)} | ${cell(type)} | ${cell(dflt)} | ${env} | ${cell(r.description)} |`)
    }
    lines.push("")
  }
  return lines.join("\n").trimEnd() + "\n"
}

// ---------------------------------------------------------------------------------------------
// README

/** The text between the markers (without them), or `undefined` when they are missing. */
export const extract = (readme) => {
  const a = readme.indexOf(START)
  const b = readme.indexOf(END)
  if (a < 0 || b < 0 || b < a) return undefined
  return readme.slice(a + START.length, b).replace(/^\n/, "")
}

/** `readme` with the text between the markers replaced by `reference`. */
export const replace = (readme, reference) => {
  const a = readme.indexOf(START)
  const b = readme.indexOf(END)
  if (a < 0 || b < 0 || b < a) throw new Error(`README.md has no ${START} … ${END} markers`)
  return `${readme.slice(0, a + START.length)}\n${reference}${readme.slice(b)}`
}

/** A short line diff (longest common subsequence), `-` for the README's lines, `+` for the generated ones. */
export const diff = (current, expected, max = 40) => {
  const a = current.split("\n")
  const b = expected.split("\n")
  const lcs = Array.from({ length: a.length + 1 }, () => new Array(b.length + 1).fill(0))
  for (let i = a.length - 1; i >= 0; i--) {
    for (let j = b.length - 1; j >= 0; j--) lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1])
  }
  const out = []
  let i = 0
  let j = 0
  while (i < a.length || j < b.length) {
    if (i < a.length && j < b.length && a[i] === b[j]) { i++; j++ }
    else if (j < b.length && (i === a.length || lcs[i][j + 1] >= lcs[i + 1][j])) out.push(`+ ${b[j++]}`)
    else out.push(`- ${a[i++]}`)
  }
  return out.length > max ? [...out.slice(0, max), `… ${out.length - max} more changed lines`] : out
}

// ---------------------------------------------------------------------------------------------
// Command line

/** Fails when the built modules are older than their sources (the reference would be stale). */
const assertBuilt = () => {
  const pairs = [
    ...readSources(root).map(({ file }) => [file, file.replace("/src/", "/dist/").replace(/\.ts$/, ".js")]),
    ["apps/server/src/config/Load.ts", "apps/server/dist/config/Load.js"]
  ]
  for (const [src, dist] of pairs) {
    let built
    try {
      built = statSync(join(root, dist)).mtimeMs
    } catch {
      throw new Error(`${dist} is missing: run \`pnpm build\` first`)
    }
    if (statSync(join(root, src)).mtimeMs > built) throw new Error(`${dist} is older than ${src}: run \`pnpm build\` first`)
  }
}

const main = async (args) => {
  assertBuilt()
  const config = await import(pathToFileURL(join(root, "packages/core/dist/Config.js")).href)
  const { environmentOverrides } = await import(pathToFileURL(join(root, "apps/server/dist/config/Load.js")).href)
  const reference = generate({ config, overrides: environmentOverrides, sources: readSources(root) })
  const readmeFile = join(root, "README.md")
  if (args.includes("--write")) {
    const readme = readFileSync(readmeFile, "utf8")
    const updated = replace(readme, reference)
    if (updated !== readme) writeFileSync(readmeFile, updated)
    console.log(updated === readme ? "README.md: config reference already up to date" : "README.md: config reference updated")
    return 0
  }
  if (args.includes("--check")) {
    const current = extract(readFileSync(readmeFile, "utf8"))
    if (current === undefined) {
      console.error(`README.md has no ${START} … ${END} markers`)
      return 1
    }
    if (current === reference) {
      console.log("README.md: config reference up to date")
      return 0
    }
    console.error("README.md: the config reference is out of date; run `pnpm docs:config` and commit README.md")
    for (const line of diff(current, reference)) console.error(line)
    return 1
  }
  process.stdout.write(reference)
  return 0
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e) => {
      console.error(`config-reference: ${e instanceof Error ? e.message : String(e)}`)
      process.exit(2)
    }
  )
}

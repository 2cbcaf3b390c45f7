/**
 * PII masking for `audit_level: redacted`: e-mail addresses, phone numbers, payment card numbers
 * (Luhn-checked), IBANs (mod-97-checked), US social security numbers and configured national-id
 * patterns. Each finding is replaced by `[KIND]`; the text around it is kept as it was.
 *
 * This runs on every audited request, so every built-in detector is one regex pass whose match
 * attempts start only at a token boundary and look at a bounded window, followed by a check in
 * code: the cost stays linear in the prompt's length whatever the prompt holds. Findings of all
 * detectors are gathered on the original text and merged before anything is replaced, so one
 * detector never sees another's placeholder, and where findings overlap the union is masked
 * (nothing a detector flagged survives), labelled by the detector that comes first in
 * {@link builtinKinds} order with configured patterns between `NATIONAL_ID` and `PHONE`: a card
 * number is never labelled a phone number.
 *
 * Offsets are UTF-16 code units, as everywhere in JavaScript. The built-in detectors are ASCII:
 * internationalised e-mail addresses and non-ASCII digits are not recognised.
 */
import { Data, Either, Schema } from "effect"

/** Labels of the built-in detectors, in precedence order; configured patterns rank before `PHONE`. */
export const builtinKinds = ["EMAIL", "IBAN", "CARD", "NATIONAL_ID", "PHONE"] as const

/** The label of a built-in detector. */
export type BuiltinKind = typeof builtinKinds[number]

/** One span of PII (UTF-16 offsets, `end` exclusive), masked as `[${kind}]`. */
export interface Finding {
  /** A {@link BuiltinKind} or a configured pattern's upper-cased name. */
  readonly kind: string
  readonly start: number
  readonly end: number
}

/** Finds and masks PII; pure and synchronous, safe to share. */
export interface Redactor {
  /** The text with every finding replaced by `[KIND]`; idempotent. */
  readonly redact: (text: string) => string
  /** The spans `redact` replaces, sorted and non-overlapping. */
  readonly findings: (text: string) => ReadonlyArray<Finding>
}

/** A configured pattern could not be used; names the pattern and says why. */
export class RedactionPatternError extends Data.TaggedError("RedactionPatternError")<{
  readonly name: string
  readonly pattern: string
  readonly reason: string
  readonly cause?: unknown
}> {
  override get message() {
    return `redaction pattern "${this.name}" (/${this.pattern}/): ${this.reason}`
  }
}

const patternName = /^[A-Za-z][A-Za-z0-9_]{0,63}$/
const patternFlags = /^[imsuv]*$/

/**
 * An extra detector, typically a national id (UK NINO, German Steuer-ID): `pattern` is a
 * JavaScript regex source (no slashes), `flags` a subset of `imsuv`; matches are masked as
 * `[NAME]` (the name upper-cased). The pattern runs on every prompt, so it should avoid nested
 * unbounded quantifiers such as `(\d+)+`.
 */
export const RedactionPattern = Schema.Struct({
  /** The pattern's name; a match is replaced by `[NAME]`. */
  name: Schema.String.pipe(Schema.pattern(patternName, {
    message: () => "a redaction pattern's name is a letter followed by letters, digits or `_` (at most 64)"
  })),
  /** A JavaScript regular expression. */
  pattern: Schema.String.pipe(Schema.minLength(1)),
  /** Regular-expression flags (a subset of `imsuv`; `g` is implied). */
  flags: Schema.optional(Schema.String.pipe(Schema.pattern(patternFlags, {
    message: () => "a redaction pattern's flags are a subset of i, m, s, u, v"
  })))
}).pipe(
  Schema.filter((p) => Either.match(compilePattern(p), { onLeft: (e) => e.message, onRight: () => true })),
  Schema.annotations({ identifier: "RedactionPattern" })
)

/** The config entry of one extra pattern. */
export type RedactionPattern = typeof RedactionPattern.Type

/** The list of extra patterns, valid exactly when {@link make} accepts it (names unique, none a built-in kind). */
export const RedactionPatterns = Schema.Array(RedactionPattern).pipe(
  Schema.filter((patterns) => Either.match(make({ extraPatterns: patterns }), { onLeft: (e) => e.message, onRight: () => true })),
  Schema.annotations({ identifier: "RedactionPatterns" })
)

// ---------------------------------------------------------------------------------------------
// Detectors

/** Reports accepted spans of one kind, in the order found. */
type Scan = (text: string, emit: (start: number, end: number) => void) => void

interface Detector {
  readonly kind: string
  readonly scan: Scan
}

/**
 * A built-in detector, given the regex source matching any placeholder of the redactor it is
 * part of. Detectors treat a placeholder next to a candidate as glued to it, as they treat the
 * word or number that stood there: so a second pass over redacted text finds nothing new.
 */
type Builtin = (placeholder: string) => Detector

/**
 * One pass of the global regex `re`; `accept` turns a candidate into the span to mask (possibly
 * shorter) or rejects it. A rejected candidate resumes the scan one character later, so a valid
 * span starting inside it is still found; candidates are bounded in length, so this stays linear.
 */
const scanWith = (re: RegExp, accept: (m: RegExpExecArray) => readonly [number, number] | undefined): Scan =>
  (text, emit) => {
    let from = 0
    while (from <= text.length) {
      re.lastIndex = from
      const m = re.exec(text)
      if (m === null) break
      if (m.index < from) {
        // A `u`/`v` regex steps back to the start of a surrogate pair `from` points into.
        from++
        continue
      }
      const span = accept(m)
      if (span !== undefined && span[1] > span[0]) {
        emit(span[0], span[1])
        from = Math.max(span[1], m.index + 1)
      } else {
        from = m.index + 1
      }
    }
    re.lastIndex = 0
  }

const isDigit = (c: string) => c >= "0" && c <= "9"

// E-mail: `local@domain.tld`. The local part starts only where a run of local-part characters
// starts (lookbehind), so a long run without `@` is walked once. A domain needs a dot and a
// letters-only TLD: `user@localhost` and `@scope/pkg` are not addresses.
const email: Builtin = (ph) => ({
  kind: "EMAIL",
  scan: scanWith(
    new RegExp(String.raw`(?<![A-Za-z0-9._%+-]|${ph})[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9-]{1,63}\.){1,10}[A-Za-z]{2,63}(?![A-Za-z0-9-]|${ph})`, "g"),
    (m) => {
      // Consecutive dots cannot appear in an address: what precedes them is punctuation (`wait...bob@x.de`).
      const at = m[0].indexOf("@")
      const dots = m[0].lastIndexOf("..", at)
      let start = dots < 0 ? 0 : dots + 2
      while (m[0][start] === ".") start++
      return start >= at ? undefined : [m.index + start, m.index + m[0].length]
    }
  )
})

// IBAN: country letters, check digits, 11–30 alphanumerics, either compact or in groups of four
// separated by single spaces. Only a mod-97 remainder of 1 makes it an IBAN; a grouped candidate
// that fails is retried without its trailing groups (`… 0130 00 EUR`).

/** Adds one IBAN character to a mod-97 remainder; letters count as two digits (A = 10 … Z = 35). */
const mod97Step = (rest: number, c: number): number =>
  c <= 57 ? (rest * 10 + c - 48) % 97 : (rest * 100 + (c >= 97 ? c - 87 : c - 55)) % 97

const iban: Builtin = (ph) => ({
  kind: "IBAN",
  scan: scanWith(new RegExp(
    String.raw`(?<![A-Za-z0-9]|${ph})[A-Za-z]{2}\d{2}(?:[A-Za-z0-9]{11,30}|(?:[ \u00a0][A-Za-z0-9]{4}){2,7}(?:[ \u00a0][A-Za-z0-9]{1,4})?)(?![A-Za-z0-9]|${ph})`,
    "g"
  ), (m) => {
    // One pass over the candidate: the remainder of the BBAN read so far is completed, at each
    // group end, with the country code and check digits (which the check moves to the back);
    // the longest prefix whose remainder is 1 wins.
    const s = m[0]
    let rest = 0
    let length = 4
    let end = -1
    for (let i = 4; i <= s.length; i++) {
      const c = i < s.length ? s.charCodeAt(i) : 32
      if (c === 32 || c === 0xa0) {
        if (length >= 15 && length <= 34) {
          let full = rest
          for (let j = 0; j < 4; j++) full = mod97Step(full, s.charCodeAt(j))
          if (full === 1) end = i
        }
      } else {
        rest = mod97Step(rest, c)
        length++
      }
    }
    return end < 0 ? undefined : [m.index, m.index + end]
  })
})

// Payment cards: 13–19 digits, compact or grouped 4-4-4-4(-3) / 4-6-5 / 4-6-4 with one kind of
// separator, not glued to a word, a decimal point or a `+` (a phone number). Only numbers
// starting 2–6 (the payment networks: Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay,
// Maestro) whose Luhn check passes are cards, so millisecond timestamps and ISBN-13s stay. A
// grouped candidate that fails is retried without its trailing groups (`4111 … 1111 2024`).

const luhn = (digits: string): boolean => {
  let sum = 0
  let double = false
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = digits.charCodeAt(i) - 48
    if (double) {
      d *= 2
      if (d > 9) d -= 9
    }
    sum += d
    double = !double
  }
  return sum % 10 === 0
}

const card: Builtin = (ph) => ({
  kind: "CARD",
  scan: scanWith(new RegExp(
    String.raw`(?<![\w.,+]|${ph})(?:\d{13,19}|\d{4}([ \u00a0-])\d{4}(?:\1\d{4}){1,3}(?:\1\d{1,3})?|\d{4}([ \u00a0-])\d{6}\2\d{4,5})(?!\w|[.,](?:\d|${ph})|${ph})`,
    "g"
  ), (m) => {
    const s = m[0]
    if (s[0]! < "2" || s[0]! > "6") return undefined
    let digits = ""
    let end = -1
    for (let i = 0; i <= s.length; i++) {
      const c = s[i]
      if (c !== undefined && isDigit(c)) digits += c
      else if (digits.length >= 13 && digits.length <= 19 && luhn(digits)) end = i
    }
    return end < 0 ? undefined : [m.index, m.index + end]
  })
})

// US SSN `AAA-GG-SSSS`, without the never-issued area 000, 666 and 900–999, group 00, serial 0000.
const ssn: Builtin = (ph) => ({
  kind: "NATIONAL_ID",
  scan: scanWith(
    new RegExp(String.raw`(?<![\w.,/+-]|${ph})(?!000|666|9)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?!\w|[-.,/](?:\d|${ph})|${ph})`, "g"),
    (m) => [m.index, m.index + m[0].length]
  )
})

// Phone numbers: a run of digits with single separators (space, dash, dot) and parenthesised
// groups, optionally `+CC` or `(+CC)` first. The run is taken whole (the lookahead-and-
// backreference idiom makes it atomic, so nothing backtracks into it) and bounded to 18 items
// (no phone number has more); a longer run is no candidate at all. A run may not start inside a
// word, a number or a digit group (`2024-01-15`'s `01`, an IBAN's tail) or right after `)`, and
// may not end glued to a word, a `/`, or a `,`/`:` followed by a digit (amounts, times). Which
// runs are phone numbers is decided by `isPhone`.
const phoneItem = String.raw`(?:\(\d{1,5}\)|\d)`
const phoneSep = String.raw`[ \u00a0.-]`

interface PhoneGroup {
  readonly digits: string
  /** The characters between the previous group and this one (`""` for the first). */
  readonly before: string
}

const phoneGroups = (run: string): Array<PhoneGroup> => {
  const groups: Array<PhoneGroup> = []
  let digits = ""
  let before = ""
  for (const c of run) {
    if (isDigit(c)) {
      digits += c
    } else if (c !== "+") {
      if (digits !== "") {
        groups.push({ digits, before })
        digits = ""
        before = ""
      }
      before += c
    }
  }
  if (digits !== "") groups.push({ digits, before })
  return groups
}

const inRange = (s: string, min: number, max: number) => {
  const n = Number(s)
  return n >= min && n <= max
}

/** `2024-01-15`, `2024.01.15`, `15.01.2024`, `01-15-2024` at the start, with or without more after it. */
const startsWithDate = (groups: ReadonlyArray<PhoneGroup>): boolean => {
  const [a, b, c] = groups
  if (a === undefined || b === undefined || c === undefined) return false
  if (b.before !== c.before || (b.before !== "-" && b.before !== ".")) return false
  const year = (g: PhoneGroup) => g.digits.length === 4 && inRange(g.digits, 1900, 2099)
  const month = (g: PhoneGroup) => g.digits.length <= 2 && inRange(g.digits, 1, 12)
  const day = (g: PhoneGroup) => g.digits.length <= 2 && inRange(g.digits, 1, 31)
  return (year(a) && month(b) && day(c)) || (year(c) && ((day(a) && month(b)) || (month(a) && day(b))))
}

/** A trunk prefix (`020`, `0151`, `07700`) or an international `00CC` prefix. */
const trunkPrefix = /^(?:0[1-9]\d{0,3}|00[1-9]\d{0,2})$/

const isPhone = (run: string): boolean => {
  let digits = 0
  for (let i = 0; i < run.length; i++) if (isDigit(run[i]!)) digits++
  if (digits < 8 || digits > 15) return false
  const groups = phoneGroups(run)
  // `+CC …`: written as a phone number, and country codes do not start with 0.
  if (run.startsWith("+") || run.startsWith("(+")) return groups[0]!.digits[0] !== "0"
  // A bare run of digits is as likely an order id, a timestamp or an amount in cents.
  if (groups.length < 2) return false
  if (startsWithDate(groups)) return false
  // `12345678.90` is an amount; four dotted groups of up to three digits an IPv4 address or a version.
  if (groups.slice(1).every((g) => g.before === ".")) {
    if (groups.length === 2) return false
    if (groups.length === 4 && groups.every((g) => g.digits.length <= 3)) return false
  }
  if (run.startsWith("(")) return true
  if (trunkPrefix.test(groups[0]!.digits)) return true
  // Without a trunk prefix only the North American shapes: 555-123-4567, 1 800 555 0199.
  const shape = groups.map((g) => g.digits.length).join("-")
  return shape === "3-3-4" || (shape === "1-3-3-4" && groups[0]!.digits === "1")
}

const phone: Builtin = (ph) => ({
  kind: "PHONE",
  scan: scanWith(
    new RegExp(
      String.raw`(?<![\w+.,/\\)-]|${ph})(?<!(?:\d|${ph})${phoneSep})` +
        String.raw`(?=((?:\(\+\d{1,3}\)${phoneSep}?|\+)?${phoneItem}(?:${phoneSep}?${phoneItem}){0,17}))\1` +
        String.raw`(?![\w/]|[,:](?:\d|${ph})|${phoneSep}?(?:${ph}|${phoneItem}))`,
      "g"
    ),
    (m) => (isPhone(m[0]) ? [m.index, m.index + m[0].length] : undefined)
  )
})

// ---------------------------------------------------------------------------------------------
// Configured patterns

// Strings a pattern is tried on to see whether it can match nothing; a pattern that matches the
// empty string only in some other context is caught at scan time (empty matches are skipped).
const emptyProbes = ["", " ", "a", "0", "aA0_-.,;:@+/\\()[]{}#\n\t\u00e4\u20ac\u{1f600} Hello World 12 34 AB123456C"]

const matchesEmpty = (re: RegExp): boolean => {
  try {
    for (const probe of emptyProbes) {
      re.lastIndex = 0
      let m: RegExpExecArray | null
      while ((m = re.exec(probe)) !== null) {
        if (m[0].length === 0) return true
      }
    }
    return false
  } finally {
    re.lastIndex = 0
  }
}

const compilePattern = (p: {
  readonly name: string
  readonly pattern: string
  readonly flags?: string | undefined
}): Either.Either<Detector, RedactionPatternError> => {
  const fail = (reason: string, cause?: unknown) =>
    Either.left(new RedactionPatternError({ name: p.name, pattern: p.pattern, reason, ...(cause === undefined ? {} : { cause }) }))
  if (!patternName.test(p.name)) return fail("the name must be a letter followed by letters, digits or `_` (at most 64)")
  const flags = p.flags ?? ""
  if (!patternFlags.test(flags)) return fail(`unsupported flags "${flags}": only i, m, s, u and v are allowed`)
  let re: RegExp
  try {
    re = new RegExp(p.pattern, `${flags}g`)
  } catch (cause) {
    return fail(`not a valid regular expression (${cause instanceof Error ? cause.message : String(cause)})`, cause)
  }
  if (matchesEmpty(re)) return fail("it can match the empty string; a pattern must always match at least one character")
  return Either.right({ kind: p.name.toUpperCase(), scan: scanWith(re, (m) => [m.index, m.index + m[0].length]) })
}

// ---------------------------------------------------------------------------------------------
// Merging and masking

interface Raw {
  readonly rank: number
  readonly start: number
  readonly end: number
}

const byStart = (a: Raw, b: Raw) => a.start - b.start || b.end - a.end

const placeholderSource = (kinds: ReadonlyArray<string>) => String.raw`\[(?:${kinds.join("|")})\]`

/** `placeholder`: the regex source matching the placeholder of any of `detectors`. */
const fromDetectors = (detectors: ReadonlyArray<Detector>, placeholder: string): Redactor => {
  // Placeholders already in the text are left alone, so masking twice changes nothing even when
  // a configured pattern could match a label.
  const placeholderRe = new RegExp(placeholder, "g")

  const findings = (text: string): ReadonlyArray<Finding> => {
    const raw: Array<Raw> = []
    detectors.forEach((d, rank) => d.scan(text, (start, end) => raw.push({ rank, start, end })))
    if (raw.length === 0) return []
    raw.sort(byStart)

    const kept: Array<Raw> = []
    const placeholders = Array.from(text.matchAll(placeholderRe), (m) => [m.index, m.index + m[0].length] as const)
    let p = 0
    for (const r of raw) {
      while (p < placeholders.length && placeholders[p]![1] <= r.start) p++
      let from = r.start
      for (let q = p; q < placeholders.length && placeholders[q]![0] < r.end; q++) {
        if (placeholders[q]![0] > from) kept.push({ rank: r.rank, start: from, end: placeholders[q]![0] })
        from = Math.max(from, placeholders[q]![1])
      }
      if (from < r.end) kept.push({ rank: r.rank, start: from, end: r.end })
    }
    kept.sort(byStart)

    const merged: Array<Finding> = []
    let current: Raw | undefined
    const flush = () => {
      if (current !== undefined) merged.push({ kind: detectors[current.rank]!.kind, start: current.start, end: current.end })
    }
    for (const k of kept) {
      if (current !== undefined && k.start < current.end) {
        current = { rank: Math.min(current.rank, k.rank), start: current.start, end: Math.max(current.end, k.end) }
      } else {
        flush()
        current = k
      }
    }
    flush()
    return merged
  }

  const redact = (text: string): string => {
    const found = findings(text)
    if (found.length === 0) return text
    let out = ""
    let at = 0
    for (const f of found) {
      out += `${text.slice(at, f.start)}[${f.kind}]`
      at = f.end
    }
    return out + text.slice(at)
  }

  return { redact, findings }
}

/** Built-in detectors ranked before the configured patterns, and after them. */
const builtinsBefore: ReadonlyArray<Builtin> = [email, iban, card, ssn]
const builtinsAfter: ReadonlyArray<Builtin> = [phone]

const assemble = (extra: ReadonlyArray<Detector>): Redactor => {
  const ph = placeholderSource([...builtinKinds, ...extra.map((d) => d.kind)])
  return fromDetectors([...builtinsBefore.map((b) => b(ph)), ...extra, ...builtinsAfter.map((b) => b(ph))], ph)
}

/**
 * A redactor with the built-in detectors and `extraPatterns` (ranked between `NATIONAL_ID` and
 * `PHONE`, in the order given). Fails on the first pattern that does not compile, can match the
 * empty string, or whose name is taken (by a built-in kind or an earlier pattern, ignoring case).
 */
export const make = (options?: {
  readonly extraPatterns?: ReadonlyArray<RedactionPattern> | undefined
}): Either.Either<Redactor, RedactionPatternError> => {
  const extra: Array<Detector> = []
  const taken = new Set<string>(builtinKinds)
  for (const p of options?.extraPatterns ?? []) {
    const detector = compilePattern(p)
    if (Either.isLeft(detector)) return Either.left(detector.left)
    if (taken.has(detector.right.kind)) {
      return Either.left(new RedactionPatternError({
        name: p.name,
        pattern: p.pattern,
        reason: `the label [${detector.right.kind}] is already used by ${
          (builtinKinds as ReadonlyArray<string>).includes(detector.right.kind) ? "a built-in detector" : "another pattern"
        }`
      }))
    }
    taken.add(detector.right.kind)
    extra.push(detector.right)
  }
  return Either.right(assemble(extra))
}

/** The redactor with the built-in detectors only. */
export const builtin: Redactor = assemble([])

/** Masks e-mail addresses, IBANs, card numbers, US SSNs and phone numbers with the built-in detectors. */
export const redact = (text: string): string => builtin.redact(text)

/** PII masking for `audit_level: redacted`. */

const luhn = (digits: string): boolean => {
  let sum = 0
  let double = false
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = digits.charCodeAt(i) - 48
    if (double) { d *= 2; if (d > 9) d -= 9 }
    sum += d
    double = !double
  }
  return sum % 10 === 0
}

const patterns: ReadonlyArray<readonly [RegExp, (m: string) => string | undefined]> = [
  [/[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}/g, () => "[EMAIL]"],
  [/\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b/g, () => "[IBAN]"],
  [/\b(?:\d[ -]?){12,18}\d\b/g, (m) => (luhn(m.replace(/[ -]/g, "")) ? "[CARD]" : undefined)],
  [/(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?)?\d{3,4}[ .-]\d{3,4}(?:[ .-]\d{2,4})?\b/g, () => "[PHONE]"]
]

/** Masks e-mail addresses, IBANs, Luhn-valid card numbers and phone numbers. */
export const redact = (text: string): string =>
  patterns.reduce((acc, [re, mask]) => acc.replace(re, (m) => mask(m) ?? m), text)

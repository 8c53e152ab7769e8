/**
 * The rules a typed parameter's value follows, and the sentences that refuse
 * one: the single source both for the API server's admission policy
 * (AdmissionPolicy.ts writes them into CEL) and for the TypeScript SDK's
 * CheckValidity (src/sdk/CapabilityService.ts). The Go SDK says the same
 * sentences byte for byte (go/sdk/parameters.go); go/sdk/testdata/validity.json
 * holds cases both SDKs check.
 *
 * A value is always a string in a Capability. An empty value counts as not
 * given (the plugin's default applies), so it is never checked. An integer
 * has at most 18 digits, so that CEL's int() can never overflow on it.
 * Patterns are RE2 (CEL's `matches`, Go's regexp); the TypeScript SDK tests
 * them with RegExp, which agrees on the common subset, and refuses at
 * definition a pattern outside it (re2Problem). Pure: no I/O and no
 * import, so a plugin loads it before its handshake at no cost (the generated
 * code's ParameterInfo becomes a ParameterRule with `ruleOf`, elsewhere).
 */

/** What a parameter's value must spell; "string" is any string, or one matching `pattern`. */
export type ParameterKind = "string" | "integer" | "boolean" | "enum"

/** A parameter's declared rule: the SDKs' declaration, or Describe's ParameterInfo. */
export interface ParameterRule {
  readonly type?: ParameterKind | undefined
  /** An enum's allowed values. */
  readonly values?: ReadonlyArray<string> | undefined
  /** A string's pattern; empty or absent, any string. */
  readonly pattern?: string | undefined
  /** An integer's inclusive bounds. */
  readonly minimum?: number | undefined
  readonly maximum?: number | undefined
}

/** The digits an integer value may have: CEL's int() takes up to 18 without overflowing int64. */
export const IntegerPattern = "^-?[0-9]{1,18}$"
const integer = new RegExp(IntegerPattern)

const list = (items: ReadonlyArray<string>) => items.join(", ")

/** What a parameter's value must be, for a person ("an integer from 1024 to 65535"); undefined when any string is. */
export const allowedValues = (p: ParameterRule): string | undefined => {
  switch (p.type) {
    case "integer":
      if (p.minimum !== undefined && p.maximum !== undefined) return `an integer from ${p.minimum} to ${p.maximum}`
      if (p.minimum !== undefined) return `an integer of at least ${p.minimum}`
      if (p.maximum !== undefined) return `an integer of at most ${p.maximum}`
      return "an integer"
    case "boolean":
      return "true or false"
    case "enum":
      return `one of ${list(p.values ?? [])}`
    default:
      return (p.pattern ?? "") === "" ? undefined : `a string matching ${p.pattern}`
  }
}

/** Whether a non-empty value is one the parameter allows. */
export const valueAllowed = (p: ParameterRule, value: string): boolean => {
  switch (p.type) {
    case "integer": {
      if (!integer.test(value)) return false
      const n = BigInt(value)
      return (p.minimum === undefined || n >= BigInt(p.minimum)) && (p.maximum === undefined || n <= BigInt(p.maximum))
    }
    case "boolean":
      return value === "true" || value === "false"
    case "enum":
      return (p.values ?? []).includes(value)
    default:
      return p.pattern === undefined || p.pattern === "" || new RegExp(p.pattern).test(value)
  }
}

/** A value the parameter does not allow. */
export const invalidValue = (name: string, plugin: string, allowed: string) => `parameter ${name} must be ${allowed} (plugin ${plugin})`

/** A parameter the plugin does not declare, when it refuses unknown ones. */
export const unknownParameter = (name: string, plugin: string, declared: ReadonlyArray<string>) =>
  `parameter ${name} is not declared by plugin ${plugin}; ${
    declared.length === 0 ? "it declares none" : `declared parameters: ${list(declared)}`
  }`

/** A secret parameter given as a literal value (said by the admission policy only: a plugin is sent resolved values). */
export const secretGivenLiterally = (name: string, plugin: string) =>
  `parameter ${name} of plugin ${plugin} is secret: give it with valueFrom (a Secret's key), not value`

/** Escapes of a letter that RE2 and JavaScript read alike (`\b` and `\B` only outside a class, `\x` with two hex digits). */
const SharedLetterEscapes = "dDwWsSfnrtvbBx"
/** The largest repeat count RE2 takes (`a{1001}` is refused). */
export const MaxRepeat = 1000

/**
 * What in a JavaScript pattern RE2 (the API server's CEL, Go's regexp)
 * refuses or reads otherwise, named for a person; undefined when the pattern
 * is in the subset both read alike. It does not check that the pattern is a
 * regular expression at all: `new RegExp` does. Refused: lookahead and
 * lookbehind, backreferences (`\1`, `\k<name>`), a repeat count over 1000,
 * the empty classes `[]` and `[^]`, and an escaped letter the two read apart
 * (`\u0041`, `\p{L}`, `\A`, `\z`, `\cJ`, `\x{41}`…).
 */
export const re2Problem = (pattern: string): string | undefined => {
  let inClass = false
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]
    if (c === "\\") {
      const next = pattern[i + 1] ?? ""
      i++
      if (/^[1-9]$/.test(next)) return `a backreference \\${next}`
      if (next === "k") return "a named backreference \\k<…>"
      if (next === "x" && !/^[0-9A-Fa-f]{2}$/.test(pattern.slice(i + 1, i + 3))) return "\\x without two hex digits"
      if ((next === "b" || next === "B") && inClass) return `\\${next} inside a class`
      if (/^[A-Za-z]$/.test(next) && !SharedLetterEscapes.includes(next)) return `the escape \\${next}`
      continue
    }
    if (inClass) {
      if (c === "]") inClass = false
      continue
    }
    if (c === "[") {
      inClass = true
      const first = pattern[i + 1] === "^" ? i + 2 : i + 1
      if (pattern[first] === "]") return "an empty class [] or [^]"
      i = first - 1
      continue
    }
    if (c === "(" && pattern[i + 1] === "?") {
      const kind = pattern.slice(i + 2, i + 4)
      if (kind.startsWith("=")) return "a lookahead (?=…)"
      if (kind.startsWith("!")) return "a negative lookahead (?!…)"
      if (kind === "<=") return "a lookbehind (?<=…)"
      if (kind === "<!") return "a negative lookbehind (?<!…)"
    }
    if (c === "{") {
      const repeat = /^\{(\d+)(?:,(\d*))?\}/.exec(pattern.slice(i))
      if (repeat !== null && (Number(repeat[1]) > MaxRepeat || Number(repeat[2] || 0) > MaxRepeat)) {
        return `a repeat count over ${MaxRepeat} (${repeat[0]})`
      }
    }
  }
  return undefined
}

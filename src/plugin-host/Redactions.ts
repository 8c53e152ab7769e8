/**
 * Redactions: the secret values the operator has resolved for plugins (a
 * Capability parameter's `valueFrom`), so that whatever a plugin writes back
 * into the operator's log has them blanked out. The reconciler registers the
 * values each Capability resolved (ParameterReferences) and drops them when
 * the Capability no longer references them; the plugin host reads them when
 * it relays a plugin's output. It lives here, below the reconciler, because
 * the plugin host may not import upward (docs/architecture.md).
 *
 * Bounded: at most MaxValues distinct values and MaxBytes of them. Past
 * either, it fails closed: every text it is asked about is withheld whole,
 * rather than a value slipping through.
 *
 * It does not resolve, watch or log anything.
 */
import { Context, Layer } from "effect"

/** What a value is replaced with. */
export const Redacted = "[redacted]"
/** A value shorter than this is not searched for: it would blank out ordinary words. */
export const RedactMinLength = 4
/** How many distinct values, and how many bytes of them, are held at most. */
export const MaxValues = 10_000
export const MaxBytes = 16 * 1024 * 1024
/** What a text becomes when more values are registered than the bounds allow. */
export const Withheld = "[withheld: more secret values than halkyon can search; see docs/security.md]"

/**
 * A function removing each of `values` (those of RedactMinLength or more)
 * from a text, longest first so that a value containing another is removed
 * whole.
 */
export const redactor = (values: Iterable<string>): (text: string) => string => {
  const secrets = [...new Set([...values].filter((v) => v.length >= RedactMinLength))].sort((a, b) => b.length - a.length)
  if (secrets.length === 0) return (text) => text
  return (text) => {
    let out = text
    for (const v of secrets) if (out.includes(v)) out = out.split(v).join(Redacted)
    return out
  }
}

/** Strings nested deeper than this in a plugin's log fields are replaced whole. */
const MaxFieldDepth = 8

/** `value` with `redact` applied to every string in it (a plugin's structured log fields). */
export const redactFields = (value: unknown, redact: (text: string) => string, depth = 0): unknown => {
  if (typeof value === "string") return redact(value)
  if (typeof value !== "object" || value === null) return value
  if (depth >= MaxFieldDepth) return Redacted
  if (Array.isArray(value)) return value.map((v) => redactFields(v, redact, depth + 1))
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [redact(k), redactFields(v, redact, depth + 1)]))
}

export interface RedactionsShape {
  /** The values `owner` (a Capability's key) resolved, in place of its earlier ones; none removes the owner. */
  readonly set: (owner: string, values: ReadonlyArray<string>) => void
  /** The text with every registered value replaced by Redacted. */
  readonly redact: (text: string) => string
  /** How many owners and distinct values are held. */
  readonly size: () => { readonly owners: number; readonly values: number }
}

export class Redactions extends Context.Service<Redactions, RedactionsShape>()("halkyon/plugin-host/Redactions") {
  static readonly layer = Layer.sync(Redactions, () => make())
}

export const make = (bounds: { readonly maxValues: number; readonly maxBytes: number } = { maxValues: MaxValues, maxBytes: MaxBytes }) => {
  const byOwner = new Map<string, ReadonlyArray<string>>()
  /** Each value and how many owners hold it. */
  const counts = new Map<string, number>()
  let bytes = 0
  let current: ((text: string) => string) | undefined

  const add = (value: string, delta: number) => {
    const n = (counts.get(value) ?? 0) + delta
    if (n > 0 && !counts.has(value)) bytes += value.length
    if (n <= 0 && counts.has(value)) bytes -= value.length
    if (n > 0) counts.set(value, n)
    else counts.delete(value)
  }

  const set = (owner: string, values: ReadonlyArray<string>) => {
    const next = [...new Set(values.filter((v) => v.length >= RedactMinLength))]
    const previous = byOwner.get(owner) ?? []
    if (previous.length === next.length && previous.every((v, i) => v === next[i])) return
    for (const v of previous) add(v, -1)
    for (const v of next) add(v, 1)
    if (next.length === 0) byOwner.delete(owner)
    else byOwner.set(owner, next)
    current = undefined
  }

  const redact = (text: string) => {
    if (counts.size === 0) return text
    if (counts.size > bounds.maxValues || bytes > bounds.maxBytes) return Withheld
    current ??= redactor(counts.keys())
    return current(text)
  }

  return Redactions.of({ set, redact, size: () => ({ owners: byOwner.size, values: counts.size }) })
}

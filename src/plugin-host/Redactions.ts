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
export const MaxValues = 100_000
export const MaxBytes = 16 * 1024 * 1024
/** What a text becomes when more values are registered than the bounds allow. */
export const Withheld = "[withheld: more secret values than halkyon can search; see docs/security.md]"

/** Up to this many values, a text is searched for each in turn; past it, scanned once (cost independent of their number). */
const ScanFrom = 16

/**
 * A function removing each of `values` (those of RedactMinLength or more)
 * from a text, a longer value before one it contains. Few values: searched
 * for in turn. Many: the text is scanned once, each position looked up in
 * an index of the values' starts (docs/performance.md has the figures).
 */
export const redactor = (values: Iterable<string>): (text: string) => string => {
  const secrets = [...new Set([...values].filter((v) => v.length >= RedactMinLength))].sort((a, b) => b.length - a.length)
  if (secrets.length === 0) return (text) => text
  if (secrets.length < ScanFrom) return (text) => searchEach(secrets, text)
  const byPrefix = byPrefixOf()
  for (const v of secrets) addByPrefix(byPrefix, v)
  return (text) => scan(byPrefix, text)
}

/** The text with each of `longestFirst` replaced, searched for in turn: faster than a scan for a few values. */
const searchEach = (longestFirst: ReadonlyArray<string>, text: string): string => {
  let out = text
  for (const v of longestFirst) if (out.includes(v)) out = out.split(v).join(Redacted)
  return out
}

/**
 * Values indexed by a hash of their start: those of 4 to 7 characters by
 * their first 4, of 8 to 15 by their first 8, longer ones by their first 16,
 * so that values sharing a short prefix (tokens all starting `ghp_`) still
 * spread. Longest first within each bucket. A number key costs no string per
 * position scanned; a collision only adds a candidate, checked whole.
 */
const Tiers = [16, 8, RedactMinLength] as const
type ByPrefix = ReadonlyArray<Map<number, Array<string>>>
const byPrefixOf = (): ByPrefix => Tiers.map(() => new Map<number, Array<string>>())

const hashOf = (text: string, at: number, length: number): number => {
  let h = 0
  for (let k = 0; k < length; k++) h = (Math.imul(h, 31) + text.charCodeAt(at + k)) | 0
  return h
}
const tierOf = (value: string) => Tiers.findIndex((t) => value.length >= t)

const addByPrefix = (byPrefix: ByPrefix, value: string) => {
  const tier = tierOf(value)
  const map = byPrefix[tier] as Map<number, Array<string>>
  const key = hashOf(value, 0, Tiers[tier] as number)
  const same = map.get(key)
  if (same === undefined) return void map.set(key, [value])
  const at = same.findIndex((v) => v.length < value.length)
  same.splice(at === -1 ? same.length : at, 0, value)
}

const removeByPrefix = (byPrefix: ByPrefix, value: string) => {
  const tier = tierOf(value)
  const map = byPrefix[tier] as Map<number, Array<string>>
  const key = hashOf(value, 0, Tiers[tier] as number)
  const rest = (map.get(key) ?? []).filter((v) => v !== value)
  if (rest.length === 0) map.delete(key)
  else map.set(key, rest)
}

/** The longest value starting at `at`, if any: longer tiers first, as their values are longer. */
const foundAt = (byPrefix: ByPrefix, text: string, at: number): string | undefined => {
  for (let t = 0; t < Tiers.length; t++) {
    const length = Tiers[t] as number
    const map = byPrefix[t] as Map<number, Array<string>>
    if (map.size === 0 || at + length > text.length) continue
    const found = map.get(hashOf(text, at, length))?.find((v) => text.startsWith(v, at))
    if (found !== undefined) return found
  }
  return undefined
}

/** The text scanned once; at each position the longest value found there is replaced. */
const scan = (byPrefix: ByPrefix, text: string): string => {
  let out = ""
  let copied = 0
  let i = 0
  while (i <= text.length - RedactMinLength) {
    const found = foundAt(byPrefix, text, i)
    if (found === undefined) {
      i++
      continue
    }
    out += text.slice(copied, i) + Redacted
    i += found.length
    copied = i
  }
  return copied === 0 ? text : out + text.slice(copied)
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
  /** Each value and how many owners hold it; the values by prefix, kept in step (a change costs its own values only). */
  const counts = new Map<string, number>()
  const byPrefix = byPrefixOf()
  let bytes = 0
  /** While there are few values: them, longest first, searched for in turn (faster than a scan). */
  let few: ReadonlyArray<string> | undefined

  const add = (value: string, delta: number) => {
    const n = (counts.get(value) ?? 0) + delta
    if (n > 0 && !counts.has(value)) {
      bytes += value.length
      addByPrefix(byPrefix, value)
    }
    if (n <= 0 && counts.has(value)) {
      bytes -= value.length
      removeByPrefix(byPrefix, value)
    }
    if (n > 0) counts.set(value, n)
    else counts.delete(value)
    few = undefined
  }

  const set = (owner: string, values: ReadonlyArray<string>) => {
    const next = [...new Set(values.filter((v) => v.length >= RedactMinLength))]
    const previous = byOwner.get(owner) ?? []
    if (previous.length === next.length && previous.every((v, i) => v === next[i])) return
    for (const v of previous) add(v, -1)
    for (const v of next) add(v, 1)
    if (next.length === 0) byOwner.delete(owner)
    else byOwner.set(owner, next)
  }

  const redact = (text: string) => {
    if (counts.size === 0) return text
    if (counts.size > bounds.maxValues || bytes > bounds.maxBytes) return Withheld
    if (counts.size >= ScanFrom) return scan(byPrefix, text)
    few ??= [...counts.keys()].sort((a, b) => b.length - a.length)
    return searchEach(few, text)
  }

  return Redactions.of({ set, redact, size: () => ({ owners: byOwner.size, values: counts.size }) })
}

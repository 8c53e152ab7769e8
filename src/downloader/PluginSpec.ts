/**
 * A plugin to install, named as `org/repo@tag`: the GitHub-style repository
 * that releases it and the release's tag, optionally pinned to its archive's
 * digest with `#sha256:<hex>`. Lists of them come from
 * HALKYON_PLUGINS, `halkyon run --plugins` and `halkyon plugins install`.
 */
import { Schema } from "effect"
import { InvalidPluginSpec } from "./Errors.ts"

const namePart = /^[A-Za-z0-9][A-Za-z0-9._-]*$/
// Git refuses these in tag names; a URL path segment must not hold them either.
const badTag = /[\s/\\?#%~^:*[\]]|\.\.|@\{|^-|^\.|\.$|\.lock$/

export class PluginSpec extends Schema.Class<PluginSpec>("PluginSpec")({
  org: Schema.String,
  repo: Schema.String,
  tag: Schema.String,
  /** The archive's SHA-256 (lower-case hex) the spec pins, if any. */
  digest: Schema.optional(Schema.String)
}) {
  /** `org/repo`: one installed release per repository. */
  get repository() {
    return `${this.org}/${this.repo}`
  }

  override toString() {
    return `${this.org}/${this.repo}@${this.tag}`
  }
}

/** Reads one entry; whitespace around it is ignored. */
export const parsePluginSpec = (entry: string): PluginSpec | InvalidPluginSpec => {
  const full = entry.trim()
  const hash = full.indexOf("#")
  const text = hash < 0 ? full : full.slice(0, hash)
  let digest: string | undefined
  if (hash >= 0) {
    const pin = /^sha256:([0-9a-fA-F]{64})$/.exec(full.slice(hash + 1))
    if (pin === null) return new InvalidPluginSpec({ entry: full, problem: "a pin is written #sha256:<64 hex digits>" })
    digest = (pin[1] ?? "").toLowerCase()
  }
  const at = text.lastIndexOf("@")
  if (at < 0) return new InvalidPluginSpec({ entry: text, problem: "no @tag" })
  const repository = text.slice(0, at)
  const tag = text.slice(at + 1)
  const parts = repository.split("/")
  if (parts.length !== 2) return new InvalidPluginSpec({ entry: text, problem: "the repository must be org/repo" })
  const [org = "", repo = ""] = parts
  for (const [what, value] of [["org", org], ["repo", repo]] as const) {
    if (!namePart.test(value) || value === "." || value === "..") {
      return new InvalidPluginSpec({ entry: text, problem: `${JSON.stringify(value)} is not a valid ${what} name` })
    }
  }
  if (tag === "" || badTag.test(tag)) return new InvalidPluginSpec({ entry: text, problem: `${JSON.stringify(tag)} is not a valid tag` })
  return new PluginSpec({ org, repo, tag, digest })
}

export interface SpecList {
  readonly specs: ReadonlyArray<PluginSpec>
  readonly invalid: ReadonlyArray<InvalidPluginSpec>
}

/**
 * Reads comma-separated lists (HALKYON_PLUGINS, --plugins, arguments):
 * empty entries are ignored, bad ones reported without dropping the others,
 * and a repository named twice keeps its last tag.
 */
export const parsePluginSpecs = (lists: ReadonlyArray<string>): SpecList => {
  const specs = new Map<string, PluginSpec>()
  const invalid: Array<InvalidPluginSpec> = []
  for (const entry of lists.flatMap((list) => list.split(","))) {
    if (entry.trim() === "") continue
    const parsed = parsePluginSpec(entry)
    if (parsed instanceof InvalidPluginSpec) invalid.push(parsed)
    else {
      specs.delete(parsed.repository)
      specs.set(parsed.repository, parsed)
    }
  }
  return { specs: [...specs.values()], invalid }
}

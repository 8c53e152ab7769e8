/**
 * What a plugin may call its category and types: DNS-1123 labels (lowercase
 * letters, digits and `-`, at most 63, starting and ending alphanumeric), as
 * they become parts of CapabilityInfo names and labels. Pure.
 */
import { graphProblem } from "../protocol/DependentGraph.ts"
import type { PluginDescription } from "../gen/halkyon/capability/v1/capability.ts"

const MaxLabel = 63

/** Whether `name` is a DNS-1123 label. */
export const isDnsLabel = (name: string): boolean => name.length <= MaxLabel && /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(name)

/** Why a plugin's description cannot be registered, or undefined. */
export const descriptionProblem = (description: PluginDescription): string | undefined => {
  const bad = (what: string, name: string) =>
    `its ${what} ${JSON.stringify(name.length > 80 ? `${name.slice(0, 80)}…` : name)} is not a valid name ` +
    `(lowercase letters, digits and "-", at most ${MaxLabel}, starting and ending with a letter or digit)`
  if (!isDnsLabel(description.category)) return `${bad("category", description.category)}. Its author must rename it`
  if (description.types.length === 0) return "it declares no type"
  for (const t of description.types) if (!isDnsLabel(t.type)) return `${bad("type", t.type)}. Its author must rename it`
  const graph = graphProblem(description.dependents)
  if (graph !== undefined) return `${graph}. Its author must fix the dependents' depends_on`
  return undefined
}

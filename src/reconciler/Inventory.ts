/**
 * Inventory: what the operator applied for a Capability (its status'
 * `inventory`), and what follows from it: which entries a reconcile no longer
 * builds (pruned), and in which waves entries are removed (the reverse of the
 * order they were applied in). Pure, so it is tested by table.
 *
 * Only inventory entries are ever removed, and only the very object recorded
 * (by uid): a look-alike with our labels that the operator did not apply
 * stays. The removal itself (delete, or orphan) is the Reconciler's.
 */
import { ApiVersion, type InventoryEntry } from "../api/Capability.ts"
import type { ObjectRef } from "../kube/KubeClient.ts"
import type { KubeObject } from "../kube/KubeObject.ts"
import { levels } from "../protocol/DependentGraph.ts"

/** The inventory's name for an object: what must match for an entry to be kept. */
const sameObject = (e: InventoryEntry, o: { readonly apiVersion: string; readonly kind: string; readonly name: string }) =>
  e.apiVersion === o.apiVersion && e.kind === o.kind && e.name === o.name

/**
 * The previous entries that the plugin no longer builds: an id left out, or
 * built as another object (renamed, or of another kind).
 */
export const staleEntries = (
  previous: ReadonlyArray<InventoryEntry>,
  built: ReadonlyArray<{ readonly id: string; readonly apiVersion: string; readonly kind: string; readonly name: string }>
): ReadonlyArray<InventoryEntry> => {
  const byId = new Map(built.map((b) => [b.id, b]))
  return previous.filter((e) => {
    const now = byId.get(e.id)
    return now === undefined || !sameObject(e, now)
  })
}

/**
 * The entries in the waves to remove them in: an entry goes before those it
 * depends on (as recorded when it was applied), so the last applied goes
 * first. Entries of one wave may be removed concurrently.
 */
export const removalWaves = (entries: ReadonlyArray<InventoryEntry>): ReadonlyArray<ReadonlyArray<InventoryEntry>> => {
  const present = new Set(entries.map((e) => e.id))
  // Dependencies on entries already gone do not order anything; the recorded
  // order stands in when none is recorded at all.
  const nodes = entries.map((e) => ({ id: e.id, dependsOn: (e.dependsOn ?? []).filter((d) => present.has(d) && d !== e.id) }))
  const level = safeLevels(nodes)
  const grouped = new Map<number, Array<InventoryEntry>>()
  for (const e of entries) {
    const l = level.get(e.id) ?? 0
    const wave = grouped.get(l)
    if (wave === undefined) grouped.set(l, [e])
    else wave.push(e)
  }
  return [...grouped.entries()].sort(([a], [b]) => b - a).map(([, wave]) => wave)
}

/** Levels, or, for a status edited into a cycle, the recorded order (the operator must still be able to remove). */
const safeLevels = (nodes: ReadonlyArray<{ readonly id: string; readonly dependsOn: ReadonlyArray<string> }>) => {
  const seen = new Set<string>()
  const visiting = new Set<string>()
  const byId = new Map(nodes.map((n) => [n.id, n]))
  const cyclic = (id: string): boolean => {
    if (seen.has(id)) return false
    if (visiting.has(id)) return true
    visiting.add(id)
    const found = (byId.get(id)?.dependsOn ?? []).some(cyclic)
    visiting.delete(id)
    seen.add(id)
    return found
  }
  if (nodes.some((n) => cyclic(n.id))) return new Map(nodes.map((n, i) => [n.id, i]))
  return levels(nodes)
}

/** The Capability itself, as a reference. */
export const capabilityRef = (raw: KubeObject): ObjectRef => ({
  apiVersion: ApiVersion,
  kind: "Capability",
  namespace: raw.metadata.namespace,
  name: raw.metadata.name
})

/** The object an entry records, in the Capability's namespace. */
export const inventoryRef = (e: InventoryEntry, namespace: string): ObjectRef => ({
  apiVersion: e.apiVersion,
  kind: e.kind,
  namespace,
  name: e.name
})

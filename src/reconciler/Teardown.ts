/**
 * Teardown: how the Reconciler removes what it applied. The operator's
 * finalizer on a Capability (added before its first dependent is written);
 * the removal of inventory entries in reverse-topological waves, each by its
 * uid, or released when its deletion policy is orphan, a wave gone before the
 * next starts (used to prune and to delete); and the deletion of a Capability
 * marked for it, which waits behind the ServiceBinding controller's InUse
 * finalizer, reports a dependent held by someone else's finalizer
 * (`Deleting`), and lets the Capability go once all are gone.
 *
 * Everything it needs is in the Capability's status (the inventory, the
 * plugin), so a new operator finishes what an old one started. It does not
 * decide what is stale (Inventory.ts) nor build anything (the Reconciler).
 */
import { Effect } from "effect"
import { type CapabilityStatus, DependentsFinalizer, InUseFinalizer, type InventoryEntry } from "../api/Capability.ts"
import type { ObjectCache } from "../controller/ObjectCache.ts"
import type { KubeApiError } from "../kube/Errors.ts"
import type { KubeApi } from "../kube/KubeClient.ts"
import { type KubeObject, objectKey } from "../kube/KubeObject.ts"
import { CapabilityLabel, FieldManager } from "./DependentRules.ts"
import { capabilityRef, inventoryRef, removalWaves } from "./Inventory.ts"
import type { PluginIdentity } from "./PluginIdentity.ts"
import type { Outcome } from "./Status.ts"

/** How soon to look again at a dependent being removed that is still there (someone else's finalizer). */
export const RemovalPollMs = 1_000

export interface TeardownDeps {
  readonly kube: KubeApi
  readonly cache: ObjectCache["Service"]
  readonly identity: PluginIdentity["Service"]
  /** Writes the Capability's status when it changed (the Reconciler's). */
  readonly report: (raw: KubeObject, previous: CapabilityStatus | undefined, outcome: Outcome) => Effect.Effect<void, KubeApiError>
  /** Puts a write's answer into the cache. */
  readonly remember: (o: KubeObject) => Effect.Effect<void>
}

export const makeTeardown = ({ kube, cache, identity, report, remember }: TeardownDeps) => {
  /** Adds the operator's finalizer to a Capability that has none, before the first write for it. */
  const ensureFinalizer = (raw: KubeObject) =>
    Effect.gen(function*() {
      const finalizers = raw.metadata.finalizers ?? []
      if (finalizers.includes(DependentsFinalizer)) return
      // Guarded by the resourceVersion read: a concurrent change (the binding controller's finalizer) fails it, retried.
      yield* kube.mergePatch(
        capabilityRef(raw),
        { metadata: { finalizers: [...finalizers, DependentsFinalizer], resourceVersion: raw.metadata.resourceVersion } },
        FieldManager
      ).pipe(Effect.tap(remember))
    })

  /**
   * Removes inventory entries in reverse-topological waves: deleted (by uid,
   * so only that very object), or released (deletion policy orphan: owner
   * reference and label removed). A wave must be gone before the next one
   * starts; one that is not (someone else's finalizer) stops the removal,
   * reported as stuck.
   */
  const removeEntries = (raw: KubeObject, entries: ReadonlyArray<InventoryEntry>, client: KubeApi) =>
    Effect.gen(function*() {
      const namespace = raw.metadata.namespace ?? ""
      const removed: Array<InventoryEntry> = []
      const stuck: Array<{ entry: InventoryEntry; finalizers: ReadonlyArray<string> }> = []
      for (const wave of removalWaves(entries)) {
        const states = yield* Effect.forEach(wave, (entry) => removeOne(raw, entry, namespace, client), { concurrency: "unbounded" })
        wave.forEach((entry, i) => {
          const state = states[i]
          if (state === undefined || state === "gone") removed.push(entry)
          else stuck.push({ entry, finalizers: state.finalizers })
        })
        if (stuck.length > 0) break
      }
      return { removed, stuck }
    })

  /** One entry: "gone" once it no longer exists as this Capability's, else what holds it. */
  const removeOne = (raw: KubeObject, entry: InventoryEntry, namespace: string, client: KubeApi) =>
    Effect.gen(function*() {
      const ref = inventoryRef(entry, namespace)
      const current = yield* client.get(ref).pipe(
        Effect.map((o): KubeObject | undefined => o),
        Effect.catchIf((e) => e.notFound, () => Effect.succeed(undefined))
      )
      // Another object of that name is not ours to remove.
      if (current === undefined || current.metadata.uid !== entry.uid) return "gone" as const
      if (entry.orphan === true) {
        const others = (current.metadata.ownerReferences ?? []).filter((o) => o.uid !== raw.metadata.uid)
        if (others.length === (current.metadata.ownerReferences ?? []).length && current.metadata.labels?.[CapabilityLabel] === undefined) {
          return "gone" as const
        }
        const released = yield* client.mergePatch(ref, {
          metadata: {
            uid: entry.uid,
            ownerReferences: others.length === 0 ? null : others,
            labels: { [CapabilityLabel]: null }
          }
        }, FieldManager)
        cache.remove(released)
        yield* Effect.logInfo(
          `capability ${objectKey(raw)}: kept ${entry.kind} ${objectKey(released)} (id ${entry.id}, deletion policy orphan)`
        )
        return "gone" as const
      }
      if (current.metadata.deletionTimestamp === undefined) {
        yield* client.delete(ref, { uid: entry.uid }).pipe(
          Effect.catchIf((e) => e.notFound || e.code === 409, () => Effect.void)
        )
        yield* Effect.logInfo(`capability ${objectKey(raw)}: deleted ${entry.kind} ${namespace}/${entry.name} (id ${entry.id})`)
      }
      const after = yield* client.get(ref).pipe(
        Effect.map((o): KubeObject | undefined => o),
        Effect.catchIf((e) => e.notFound, () => Effect.succeed(undefined))
      )
      if (after === undefined || after.metadata.uid !== entry.uid) {
        if (current !== undefined) cache.remove(current)
        return "gone" as const
      }
      return { finalizers: after.metadata.finalizers ?? [] }
    })

  /**
   * A Capability marked for deletion, with the operator's finalizer: its
   * dependents removed in reverse order (while bindings still use it, the
   * ServiceBinding controller holds it first), then the finalizer. A new
   * leader starts from the status' inventory: what was removed is skipped.
   */
  const finalize = (raw: KubeObject, key: string) =>
    Effect.gen(function*() {
      const finalizers = raw.metadata.finalizers ?? []
      if (!finalizers.includes(DependentsFinalizer)) return {}
      // Bound: the workloads still read the binding Secret; the ServiceBinding controller releases it first.
      if (finalizers.includes(InUseFinalizer)) return {}
      const previous = (raw as { status?: CapabilityStatus }).status
      const plugin = previous?.plugin
      const client = plugin === undefined ? kube : identity.clientFor(plugin)
      const inventory = previous?.inventory ?? []
      const removal = yield* removeEntries(raw, inventory, client)
      if (removal.stuck.length > 0) {
        const gone = new Set(removal.removed.map((e) => e.uid))
        const held = removal.stuck.map(({ entry, finalizers }) =>
          `${entry.kind} ${raw.metadata.namespace ?? ""}/${entry.name} (id ${entry.id}) waits for ${
            finalizers.length === 0 ? "the API server" : `finalizer ${finalizers.join(", ")}`
          }`
        )
        yield* report(raw, previous, {
          ready: "False",
          reason: "Deleting",
          message: `deleting the dependents in reverse order: ${held.join("; ")}`,
          dependents: removal.stuck.map(({ entry, finalizers }) => ({
            id: entry.id,
            kind: entry.kind,
            name: entry.name,
            ready: false,
            reason: "Deleting",
            message: finalizers.length === 0 ? "being deleted" : `held by finalizer ${finalizers.join(", ")}`
          })),
          inventory: inventory.filter((e) => !gone.has(e.uid)),
          plugin,
          version: previous?.version
        })
        return { requeueAfterMs: RemovalPollMs }
      }
      // Read again: the resourceVersion guards the finalizers against a concurrent change.
      const fresh = yield* kube.get(capabilityRef(raw)).pipe(
        Effect.map((o): KubeObject | undefined => o),
        Effect.catchIf((e) => e.notFound, () => Effect.succeed(undefined))
      )
      if (fresh === undefined) return {}
      const rest = (fresh.metadata.finalizers ?? []).filter((f) => f !== DependentsFinalizer)
      yield* kube.mergePatch(
        capabilityRef(fresh),
        { metadata: { finalizers: rest.length === 0 ? null : rest, resourceVersion: fresh.metadata.resourceVersion } },
        FieldManager
      ).pipe(Effect.catchIf((e) => e.notFound, () => Effect.void))
      yield* Effect.logInfo(`capability ${key}: its ${inventory.length} dependents are removed; released`)
      return {}
    })

  return { ensureFinalizer, removeEntries, finalize }
}

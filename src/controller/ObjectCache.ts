/**
 * ObjectCache: the latest version of every object the informers watch
 * (Capabilities, and the dependents labelled as ours), so that reconciles
 * read from memory instead of asking the API server each time, as
 * controller-runtime's cached client does. Writes the reconciler makes are
 * put in at once (write-through), so the next reconcile sees them even before
 * their watch event arrives. An older version never replaces a newer one.
 *
 * A miss proves absence only for a kind whose informer has listed it
 * (`synced`); for other kinds callers GET on a miss.
 */
import { Context, Layer } from "effect"
import type { ObjectRef } from "../kube/KubeClient.ts"
import type { KubeObject } from "../kube/KubeObject.ts"

const keyOf = (ref: ObjectRef) => `${ref.apiVersion}/${ref.kind}/${ref.namespace ?? ""}/${ref.name}`
const refOf = (object: KubeObject): ObjectRef => ({
  apiVersion: object.apiVersion,
  kind: object.kind,
  namespace: object.metadata.namespace,
  name: object.metadata.name
})

/** etcd revisions in practice; an unreadable one counts as newer. */
const newer = (candidate: KubeObject, current: KubeObject | undefined) => {
  if (current === undefined) return true
  const a = Number(candidate.metadata.resourceVersion)
  const b = Number(current.metadata.resourceVersion)
  return Number.isNaN(a) || Number.isNaN(b) || a >= b
}

/**
 * Drops an object's managedFields, in place: they are often most of its size,
 * and neither we nor plugins read them. The cache takes what it is given
 * (freshly parsed JSON that nobody else holds), so no copy is needed.
 */
const dropManagedFields = (object: KubeObject): KubeObject => {
  if ("managedFields" in object.metadata) delete (object.metadata as { managedFields?: unknown }).managedFields
  return object
}

export class ObjectCache extends Context.Service<ObjectCache, {
  readonly get: (ref: ObjectRef) => KubeObject | undefined
  /** Whether the cache already holds this very version (the echo of our own write, say). */
  readonly holds: (object: KubeObject) => boolean
  /**
   * Keeps `object` unless the cache holds a newer version. The cache takes
   * the object: its managedFields are dropped, in place.
   */
  readonly put: (object: KubeObject) => void
  readonly remove: (object: KubeObject) => void
  readonly size: () => number
  /** Marks a kind as listed: from now on the cache holds every object of it that is ours. */
  readonly markSynced: (apiVersion: string, kind: string) => void
  readonly synced: (apiVersion: string, kind: string) => boolean
}>()("halkyon/reconciler/ObjectCache") {
  static readonly layer = Layer.sync(ObjectCache, () => {
    const objects = new Map<string, KubeObject>()
    const syncedKinds = new Set<string>()
    return ObjectCache.of({
      markSynced: (apiVersion, kind) => void syncedKinds.add(`${apiVersion}/${kind}`),
      synced: (apiVersion, kind) => syncedKinds.has(`${apiVersion}/${kind}`),
      get: (ref) => objects.get(keyOf(ref)),
      holds: (object) => {
        const cached = objects.get(keyOf(refOf(object)))
        return cached !== undefined && cached.metadata.resourceVersion === object.metadata.resourceVersion
      },
      put: (object) => {
        const key = keyOf(refOf(object))
        dropManagedFields(object)
        if (newer(object, objects.get(key))) objects.set(key, object)
      },
      remove: (object) => {
        const key = keyOf(refOf(object))
        if (newer(object, objects.get(key))) objects.delete(key)
      },
      size: () => objects.size
    })
  })
}

/**
 * CapabilityController: wires the Capability watches to a work queue and the
 * queue to the generic workers (src/controller/Workers.ts).
 *
 * - Capabilities are watched; a new object, a new generation, a deletion, any
 *   change of one marked for deletion (a finalizer removed) or a relist
 *   enqueues the Capability's key.
 * - Dependents are watched, for every kind a registered plugin declares as
 *   watched, selecting objects labelled as ours, as that plugin's identity
 *   (PluginIdentity: one watch per plugin and kind when plugins act as their
 *   own ServiceAccounts, so the operator's role needs no read of any
 *   dependent kind); an event enqueues the owning Capability, so a
 *   dependent deleted or changed by hand is repaired.
 * - Secrets and ConfigMaps a Capability's parameters reference
 *   (`valueFrom`) are watched, metadata only, from the first reference to
 *   their kind on, as the identity that reads them (ParameterReferences); an
 *   event on a referenced one enqueues the Capabilities referencing it.
 * - When the registry changes, Capabilities waiting for a plugin are
 *   enqueued, and so are those a plugin serves that now runs as a new process
 *   (a replaced file: a new version may build other dependents, and what it
 *   no longer builds is pruned); new dependent kinds get a watch and
 *   CapabilityInfos are synced.
 * - Echoes of the operator's own writes enqueue nothing.
 *
 * The worker loop (concurrency, retries with backoff, shutdown) is not here.
 */
import { Deferred, Duration, Effect, FiberMap, Option, Schedule, Stream } from "effect"
import { ApiVersion } from "../api/Capability.ts"
import { KubeClient } from "../kube/KubeClient.ts"
import { type KubeObject, objectKey } from "../kube/KubeObject.ts"
import { ParameterReferences } from "./ParameterReferences.ts"
import { PluginIdentity } from "./PluginIdentity.ts"
import { PluginRegistry } from "../registry/PluginRegistry.ts"
import { makeAdmissionPolicySync } from "./AdmissionPolicySync.ts"
import { syncCapabilityInfos } from "./CapabilityInfoSync.ts"
import { inform } from "../controller/Informer.ts"
import { CapabilityLabel, FieldManager } from "./DependentRules.ts"
import { Reconciler } from "./Reconciler.ts"
import { ObjectCache } from "../controller/ObjectCache.ts"
import { type ReconcileOutcome, runWorkers } from "../controller/Workers.ts"
import { makeWorkQueue, type QueueSizes } from "../controller/WorkQueue.ts"

export interface ControllerOptions {
  /** Only this namespace; all namespaces when undefined. */
  readonly namespace: string | undefined
  readonly concurrency: number
  /** How long in-flight reconciles may take to finish once the controller is stopping. */
  readonly shutdownTimeoutMs: number
  /** Told of every reconcile, for metrics. */
  readonly onReconciled?: (result: ReconcileOutcome, seconds: number) => void
  /** Told of the work queue's sizes whenever they change, for metrics. */
  readonly onQueue?: (sizes: QueueSizes) => void
}

export interface RunningController {
  /** Completes when the first list is done. */
  readonly awaitSynced: Effect.Effect<void>
  /** Reconciles in progress are interrupted at once when the controller stops, not finished (leadership is lost). */
  readonly fence: Effect.Effect<void>
}

/** The Capability that controls a dependent, from its controller owner reference. */
const ownerKey = (object: KubeObject): string | undefined => {
  const owner = object.metadata.ownerReferences?.find((r) =>
    r.controller === true && r.kind === "Capability" && r.apiVersion === ApiVersion
  )
  if (owner !== undefined) return `${object.metadata.namespace ?? ""}/${owner.name}`
  const label = object.metadata.labels?.[CapabilityLabel]
  return label === undefined ? undefined : `${object.metadata.namespace ?? ""}/${label}`
}

/**
 * Whether the operator set every field of the object: its event is then the
 * echo of our own write (one that arrived before the write's answer was
 * cached, say). A hand edit, or a controller's status update, adds a manager.
 */
const writtenByUsAlone = (object: KubeObject): boolean => {
  const managers = object.metadata.managedFields
  return managers !== undefined && managers.length > 0 && managers.every((m) => m.manager === FieldManager)
}

export const startController = Effect.fn("CapabilityController.start")(function*(options: ControllerOptions) {
  const registry = yield* PluginRegistry
  const reconciler = yield* Reconciler
  const cache = yield* ObjectCache
  const services = yield* Effect.context<KubeClient | PluginRegistry>()
  const identity = yield* PluginIdentity
  const queue = yield* makeWorkQueue({ baseMs: 200, maxMs: 60_000 }, options.onQueue)
  const synced = yield* Deferred.make<void>()

  // Capabilities. Like controller-runtime's GenerationChangedPredicate, an
  // update that leaves the generation alone (our own status writes, labels)
  // is not a reason to reconcile; a new object, a new generation, a deletion
  // or a relist is (after an outage, a dependent deleted meanwhile shows only
  // as an absence, which a reconcile of its owner repairs).
  const generations = new Map<string, number | undefined>()
  yield* inform({
    apiVersion: ApiVersion,
    kind: "Capability",
    namespace: options.namespace,
    onObject: (object, deleted, listed) => {
      const key = objectKey(object)
      if (deleted) cache.remove(object)
      else cache.put(object)
      if (deleted) {
        generations.delete(key)
        return queue.add(key)
      }
      const seen = generations.has(key) ? generations.get(key) : -1
      generations.set(key, object.metadata.generation)
      // Being deleted: a finalizer removed (the ServiceBinding controller's) lets the operator's go on.
      if (object.metadata.deletionTimestamp !== undefined) return queue.add(key)
      return !listed && seen === object.metadata.generation ? Effect.void : queue.add(key)
    },
    onSynced: Deferred.succeed(synced, undefined).pipe(Effect.andThen(Effect.sync(() => cache.markSynced(ApiVersion, "Capability"))))
  }).pipe(Effect.forkScoped)

  // Dependents, one watch per kind that plugins declare as watched (per plugin and kind when plugins act as themselves).
  const dependentWatches = yield* FiberMap.make<string>()
  const watchDependents = Effect.gen(function*() {
    const kinds = new Map<string, { apiVersion: string; kind: string; plugin: string }>()
    for (const entry of yield* registry.entries) {
      // As the operator itself, one watch per kind serves every plugin.
      const as = identity.userOf(entry.plugin)
      for (const d of entry.description.dependents) {
        if (d.watched) kinds.set(`${as ?? ""}/${d.apiVersion}/${d.kind}`, { apiVersion: d.apiVersion, kind: d.kind, plugin: entry.plugin })
      }
    }
    for (const [id, { apiVersion, kind, plugin }] of kinds) {
      yield* FiberMap.run(
        dependentWatches,
        id,
        inform({
          apiVersion,
          kind,
          namespace: options.namespace,
          labelSelector: CapabilityLabel,
          onObject: (object, deleted) => {
            // The echo of a write the reconciler made needs no new reconcile.
            if (!deleted && cache.holds(object)) return Effect.void
            // Asked before the cache takes the object (and drops its managedFields).
            const ours = !deleted && writtenByUsAlone(object)
            if (deleted) cache.remove(object)
            else cache.put(object)
            if (ours) return Effect.void
            const key = ownerKey(object)
            return key === undefined ? Effect.void : queue.add(key)
          },
          onSynced: Effect.sync(() => cache.markSynced(apiVersion, kind))
        }).pipe(Effect.provideService(KubeClient, KubeClient.of(identity.clientFor(plugin))), Effect.provideContext(services)),
        { onlyIfMissing: true }
      )
    }
  })

  // Referenced Secrets and ConfigMaps: one metadata-only watch per kind, started when a Capability first references it.
  const references = yield* ParameterReferences
  const referenceWatches = yield* FiberMap.make<string>()
  yield* Stream.fromQueue(references.kindsInUse).pipe(
    Stream.runForEach((kind) =>
      FiberMap.run(
        referenceWatches,
        kind,
        inform({
          apiVersion: "v1",
          kind,
          namespace: options.namespace,
          metadataOnly: true,
          onObject: (object, deleted) => Effect.forEach(references.changed(object, deleted), (key) => queue.add(key), { discard: true }),
          onSynced: Effect.sync(() => references.markSynced(kind))
        }).pipe(Effect.provideService(KubeClient, KubeClient.of(references.client))),
        { onlyIfMissing: true }
      )
    ),
    Effect.forkScoped
  )

  const syncAdmissionPolicies = makeAdmissionPolicySync(options.namespace)
  // The connection each plugin was last seen with: a new one is a new process (a replaced file, or a restart).
  const connections = new Map<string, unknown>()
  const onRegistryChange = Effect.gen(function*() {
    yield* watchDependents
    for (const key of yield* reconciler.waitingForPlugin) yield* queue.add(key)
    const entries = yield* registry.entries
    const renewed = new Set(
      entries.filter((e) => connections.has(e.plugin) && connections.get(e.plugin) !== e.connection).map((e) => e.plugin)
    )
    connections.clear()
    for (const e of entries) connections.set(e.plugin, e.connection)
    if (renewed.size > 0) {
      // Every Capability the informer holds (the keys of `generations`), as the cache has it.
      for (const key of generations.keys()) {
        const [namespace = "", name = ""] = key.split("/")
        const held = cache.get({ apiVersion: ApiVersion, kind: "Capability", namespace, name })
        const spec = (held as { spec?: { category?: unknown; type?: unknown; version?: unknown } } | undefined)?.spec
        if (spec === undefined) continue
        const served = yield* registry.resolve(String(spec.category ?? ""), String(spec.type ?? ""), String(spec.version ?? "")).pipe(
          Effect.option
        )
        if (Option.isSome(served) && renewed.has(served.value.plugin)) yield* queue.add(key)
      }
    }
    yield* syncCapabilityInfos(options.namespace).pipe(
      Effect.tapError((e) => Effect.logWarning(`syncing CapabilityInfos failed: ${e.message}; retrying`)),
      Effect.retry({ schedule: Schedule.exponential(Duration.millis(250), 2), times: 8 }),
      Effect.catch(() => Effect.logError("CapabilityInfos could not be synced; they will be on the next plugin change"))
    )
    yield* syncAdmissionPolicies.pipe(
      Effect.tapError((e) => Effect.logWarning(`syncing admission policies failed: ${e.message}; retrying`)),
      Effect.retry({ schedule: Schedule.exponential(Duration.millis(250), 2), times: 8 }),
      Effect.catch(() => Effect.logError("admission policies could not be synced; they will be on the next plugin change"))
    )
  })
  // Subscribed before the first handling, so that no change in between is lost.
  yield* registry.changes.pipe(
    // A burst of registrations (start-up, a folder of plugins) is handled once.
    Stream.debounce(Duration.millis(100)),
    Stream.runForEach(() => onRegistryChange),
    Effect.forkScoped
  )
  yield* Effect.yieldNow
  yield* onRegistryChange

  const workers = yield* runWorkers({
    kind: "capability",
    queue,
    concurrency: options.concurrency,
    shutdownTimeoutMs: options.shutdownTimeoutMs,
    reconcile: reconciler.reconcile,
    onReconciled: options.onReconciled
  })

  const running: RunningController = {
    awaitSynced: Deferred.await(synced),
    fence: workers.fence
  }
  return running
})

/**
 * Controller: wires watches to the work queue and the queue to workers.
 *
 * - Capabilities are watched; every event enqueues the Capability's key.
 * - Dependents are watched, for every kind a registered plugin declares as
 *   watched, selecting objects labelled as ours; an event enqueues the
 *   owning Capability, so a dependent deleted or changed by hand is repaired.
 * - When the registry changes, Capabilities waiting for a plugin are
 *   enqueued, new dependent kinds get a watch and CapabilityInfos are synced.
 * - `concurrency` workers take keys; one key is never processed twice at
 *   once. A reconcile in progress finishes before the controller stops, or
 *   is abandoned once `shutdownTimeoutMs` has passed (the next leader, or the
 *   next start, reconciles it again).
 */
import { Deferred, Duration, Effect, Fiber, FiberMap, Schedule, Stream } from "effect"
import { ApiVersion } from "../api/Capability.ts"
import { KubeClient, type KubeObject, objectKey } from "../kube/KubeClient.ts"
import { PluginRegistry } from "../registry/PluginRegistry.ts"
import { syncCapabilityInfos } from "./CapabilityInfoSync.ts"
import { inform } from "../controller/Informer.ts"
import { CapabilityLabel, FieldManager, Reconciler } from "./Reconciler.ts"
import { ObjectCache } from "../controller/ObjectCache.ts"
import { makeWorkQueue } from "../controller/WorkQueue.ts"

export interface ControllerOptions {
  /** Only this namespace; all namespaces when undefined. */
  readonly namespace: string | undefined
  readonly concurrency: number
  /** How long in-flight reconciles may take to finish once the controller is stopping. */
  readonly shutdownTimeoutMs: number
  /** Told of every reconcile, for metrics. */
  readonly onReconciled?: (result: "success" | "error" | "requeue", seconds: number) => void
  readonly onQueueDepth?: (depth: number) => void
}

export interface RunningController {
  /** Completes when the first list is done. */
  readonly awaitSynced: Effect.Effect<void>
}

/** The Capability that controls a dependent, from its controller owner reference. */
const ownerKey = (object: KubeObject): string | undefined => {
  const owner = object.metadata.ownerReferences?.find((r) => r.controller === true && r.kind === "Capability" && r.apiVersion === ApiVersion)
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

/**
 * Runs a reconcile to its end, unless the worker is interrupted (the
 * operator is stopping): then it gets `boundMs` more before it is
 * interrupted too.
 */
const finishWithin = <A>(
  reconcile: Effect.Effect<A>,
  key: string,
  boundMs: number,
  restore: <X, E, R>(effect: Effect.Effect<X, E, R>) => Effect.Effect<X, E, R>
) =>
  Effect.gen(function*() {
    const fiber = yield* Effect.forkChild(Effect.interruptible(reconcile))
    return yield* restore(Fiber.join(fiber)).pipe(
      Effect.onInterrupt(() =>
        Fiber.await(fiber).pipe(
          Effect.timeoutOrElse({
            duration: Duration.millis(boundMs),
            orElse: () =>
              Effect.logWarning(`reconcile of capability ${key} did not finish within ${boundMs} ms of shutdown: abandoned, it is reconciled again at the next start`).pipe(
                Effect.annotateLogs({ capability: key }),
                Effect.andThen(Fiber.interrupt(fiber))
              )
          })
        )
      )
    )
  })

export const startController = Effect.fn("Controller.start")(function*(options: ControllerOptions) {
  const registry = yield* PluginRegistry
  const reconciler = yield* Reconciler
  const cache = yield* ObjectCache
  const services = yield* Effect.context<KubeClient | PluginRegistry>()
  const queue = yield* makeWorkQueue({ baseMs: 200, maxMs: 60_000 })
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
      return !listed && seen === object.metadata.generation ? Effect.void : queue.add(key)
    },
    onSynced: Deferred.succeed(synced, undefined).pipe(Effect.andThen(Effect.sync(() => cache.markSynced(ApiVersion, "Capability"))))
  }).pipe(Effect.forkScoped)

  // Dependents, one watch per kind that plugins declare as watched.
  const dependentWatches = yield* FiberMap.make<string>()
  const watchDependents = Effect.gen(function*() {
    const kinds = new Map<string, { apiVersion: string; kind: string }>()
    for (const entry of yield* registry.entries) {
      for (const d of entry.description.dependents) if (d.watched) kinds.set(`${d.apiVersion}/${d.kind}`, { apiVersion: d.apiVersion, kind: d.kind })
    }
    for (const [id, { apiVersion, kind }] of kinds) {
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
        }).pipe(Effect.provideContext(services)),
        { onlyIfMissing: true }
      )
    }
  })

  const onRegistryChange = Effect.gen(function*() {
    yield* watchDependents
    for (const key of yield* reconciler.waitingForPlugin) yield* queue.add(key)
    yield* syncCapabilityInfos(options.namespace).pipe(
      Effect.tapError((e) => Effect.logWarning(`syncing CapabilityInfos failed: ${e.message}; retrying`)),
      Effect.retry({ schedule: Schedule.exponential(Duration.millis(250), 2), times: 8 }),
      Effect.catch(() => Effect.logError("CapabilityInfos could not be synced; they will be on the next plugin change"))
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

  const worker = Effect.uninterruptibleMask((restore) =>
    Effect.gen(function*() {
      const key = yield* restore(queue.take)
      const started = performance.now()
      const exit = yield* finishWithin(reconciler.reconcile(key).pipe(Effect.exit), key, options.shutdownTimeoutMs, restore)
      const seconds = (performance.now() - started) / 1000
      if (exit._tag === "Success") {
        yield* queue.forget(key)
        const after = exit.value.requeueAfterMs
        if (after !== undefined) yield* queue.addAfter(key, after)
        options.onReconciled?.(after === undefined ? "success" : "requeue", seconds)
      } else {
        const delay = yield* queue.addRateLimited(key)
        const reason = exit.cause.reasons[0]
        const message = reason?._tag === "Fail" ? reason.error.message : String(exit.cause)
        yield* Effect.logWarning(`reconciling capability ${key} failed: ${message}; retrying in ${delay} ms`).pipe(
          Effect.annotateLogs({ capability: key })
        )
        options.onReconciled?.("error", seconds)
      }
      yield* queue.done(key)
      options.onQueueDepth?.(yield* queue.depth)
    })
  )
  for (let i = 0; i < options.concurrency; i++) yield* Effect.forever(worker).pipe(Effect.forkScoped)

  const running: RunningController = {
    awaitSynced: Deferred.await(synced)
  }
  return running
})

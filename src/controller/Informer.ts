/**
 * Keeps a handler told about every object of one kind: list, then watch from
 * the list's resource version, watch again when the server ends a watch, and
 * list again when the version has expired (410) or the server went away.
 * Each list replays every object, so nothing changed during an outage is
 * missed (handlers are level-based: they only enqueue keys).
 */
import { Duration, Effect, Schedule, Stream } from "effect"
import { KubeClient, type ListOptions } from "../kube/KubeClient.ts"
import { type KubeObject, objectKey } from "../kube/KubeObject.ts"
import { type KubeApiError } from "../kube/Errors.ts"

export interface InformerOptions extends ListOptions {
  readonly apiVersion: string
  readonly kind: string
  /** Called for each listed object (`listed`) and each change. */
  readonly onObject: (object: KubeObject, deleted: boolean, listed: boolean) => Effect.Effect<void>
  /** Called after every successful list: the cache is in sync. */
  readonly onSynced?: Effect.Effect<void>
}

/** Retries failed lists with backoff: 250 ms doubling to 10 s. */
const relistBackoff = Schedule.min([Schedule.exponential(Duration.millis(250), 2), Schedule.spaced(Duration.seconds(10))])

export const inform = Effect.fn("Informer.run")(function*(options: InformerOptions) {
  const kube = yield* KubeClient
  const what = `${options.kind}${options.namespace === undefined ? "" : ` in ${options.namespace}`}`
  // What the last list and the watches since have shown, so that a relist can
  // tell what was deleted while the watch was down.
  const known = new Map<string, KubeObject>()
  // Enough of an object to report its deletion: who it is, and who owns it.
  const skeleton = (o: KubeObject): KubeObject => ({
    apiVersion: o.apiVersion,
    kind: o.kind,
    metadata: {
      name: o.metadata.name,
      ...(o.metadata.namespace === undefined ? {} : { namespace: o.metadata.namespace }),
      ...(o.metadata.resourceVersion === undefined ? {} : { resourceVersion: o.metadata.resourceVersion }),
      ...(o.metadata.labels === undefined ? {} : { labels: o.metadata.labels }),
      ...(o.metadata.ownerReferences === undefined ? {} : { ownerReferences: o.metadata.ownerReferences })
    }
  })
  for (;;) {
    const listed = yield* kube.list(options.apiVersion, options.kind, options).pipe(
      Effect.tapError((e) => Effect.logWarning(`listing ${what} failed: ${e.message}; retrying`)),
      Effect.retry(relistBackoff)
    )
    const listedKeys = new Set(listed.items.map(objectKey))
    for (const [key, gone] of known) {
      if (!listedKeys.has(key)) {
        known.delete(key)
        yield* options.onObject(gone, true, true)
      }
    }
    for (const item of listed.items) {
      known.set(objectKey(item), skeleton(item))
      yield* options.onObject(item, false, true)
    }
    if (options.onSynced !== undefined) yield* options.onSynced
    let resourceVersion = listed.resourceVersion
    // Watch until the version expires or the connection breaks, then relist.
    const broken = yield* Effect.gen(function*() {
      for (;;) {
        const ended = yield* kube.watch(options.apiVersion, options.kind, { ...options, resourceVersion }).pipe(
          Stream.runForEach((event) => {
            if (event.type === "BOOKMARK") {
              resourceVersion = event.resourceVersion
              return Effect.void
            }
            resourceVersion = event.object.metadata.resourceVersion ?? resourceVersion
            if (event.type === "DELETED") known.delete(objectKey(event.object))
            else known.set(objectKey(event.object), skeleton(event.object))
            return options.onObject(event.object, event.type === "DELETED", false)
          }),
          Effect.as(undefined),
          Effect.catch((e: KubeApiError) => Effect.succeed(e))
        )
        if (ended !== undefined) return ended
      }
    })
    if (broken.code === 410) yield* Effect.logDebug(`watch of ${what} expired: relisting`)
    else {
      yield* Effect.logWarning(`watch of ${what} broke: ${broken.message}; relisting`)
      yield* Effect.sleep(Duration.seconds(1))
    }
  }
})

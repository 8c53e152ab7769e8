/**
 * What the operator does about the ServiceBinding controller's in-use
 * finalizer when that controller is off (`halkyon run
 * --service-binding=false`): a Capability that carries it from a run with
 * the controller on would otherwise never finish deleting, since only that
 * controller removes it (and the Reconciler waits for it, Teardown.ts). So
 * the finalizer is removed from each Capability being deleted, and logged.
 *
 * It does not touch a Capability that is not being deleted (the controller,
 * turned on again, keeps the finalizer it finds), nor any ServiceBinding.
 */
import { Duration, Effect, Schedule } from "effect"
import { ApiVersion as CapabilityApiVersion, InUseFinalizer } from "../api/Capability.ts"
import { inform } from "../controller/Informer.ts"
import { ControllerFieldManager } from "./BindingController.ts"
import { KubeClient } from "../kube/KubeClient.ts"
import { type KubeObject, objectKey } from "../kube/KubeObject.ts"

/** Retries a failed removal (the server away): 200 ms doubling, five times; a conflict waits for the next event instead. */
const retry = Schedule.exponential(Duration.millis(200), 2)

export const releaseInUse = Effect.fn("InUseRelease.run")(function*(options: { readonly namespace: string | undefined }) {
  const kube = yield* KubeClient
  const release = (capability: KubeObject) => {
    const finalizers = capability.metadata.finalizers ?? []
    const rest = finalizers.filter((f) => f !== InUseFinalizer)
    return kube.mergePatch(
      { apiVersion: CapabilityApiVersion, kind: "Capability", namespace: capability.metadata.namespace, name: capability.metadata.name },
      // Guarded by the resourceVersion read: a concurrent change fails it, and its own event brings this back.
      { metadata: { finalizers: rest.length === 0 ? null : rest, resourceVersion: capability.metadata.resourceVersion } },
      ControllerFieldManager
    ).pipe(
      Effect.andThen(Effect.logInfo(
        `capability ${objectKey(capability)}: removed finalizer ${InUseFinalizer}, so that its deletion goes on: the ServiceBinding ` +
          `controller that put it there is off (--service-binding=false); bindings that still use it are not waited for`
      )),
      Effect.catchIf((e) => e.notFound || e.code === 409, () => Effect.void),
      Effect.retry({ schedule: retry, times: 5 }),
      Effect.catch((e) =>
        Effect.logWarning(
          `capability ${objectKey(capability)}: could not remove finalizer ${InUseFinalizer}: ${e.message}; ` +
            `it is tried again at its next change, or remove it with kubectl patch`
        )
      )
    )
  }
  return yield* inform({
    apiVersion: CapabilityApiVersion,
    kind: "Capability",
    namespace: options.namespace,
    // Only metadata is read: no spec or status in memory for this.
    metadataOnly: true,
    onObject: (object, deleted) =>
      !deleted && object.metadata.deletionTimestamp !== undefined && (object.metadata.finalizers ?? []).includes(InUseFinalizer)
        ? release(object)
        : Effect.void
  })
})

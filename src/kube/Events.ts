/**
 * Records Kubernetes Events about a Capability (core/v1 Events, as
 * `kubectl describe` shows them). Failing to record an Event is logged, never
 * a reconcile failure.
 */
import { Effect } from "effect"
import { KubeClient } from "./KubeClient.ts"
import type { KubeObject } from "./KubeObject.ts"
import { kubeTime } from "./Time.ts"

export type EventType = "Normal" | "Warning"

export const recordEvent = Effect.fn("Events.record")(function*(
  about: KubeObject,
  type: EventType,
  reason: string,
  message: string
) {
  const kube = yield* KubeClient
  const now = kubeTime(new Date())
  const suffix = crypto.randomUUID().slice(0, 8)
  yield* kube
    .create({
      apiVersion: "v1",
      kind: "Event",
      metadata: { name: `${about.metadata.name}.${suffix}`, namespace: about.metadata.namespace ?? "default" },
      involvedObject: {
        apiVersion: about.apiVersion,
        kind: about.kind,
        name: about.metadata.name,
        namespace: about.metadata.namespace,
        uid: about.metadata.uid,
        resourceVersion: about.metadata.resourceVersion
      },
      type,
      reason,
      message: message.length > 1000 ? `${message.slice(0, 1000)}…` : message,
      source: { component: "halkyon" },
      reportingComponent: "halkyon",
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1
    })
    .pipe(
      Effect.catch((e) =>
        Effect.logWarning(`could not record event ${reason} for ${about.metadata.namespace}/${about.metadata.name}: ${e.message}`)
      )
    )
})

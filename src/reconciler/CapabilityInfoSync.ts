/**
 * Keeps one CapabilityInfo per registered (category, type) in step with the
 * plugin registry: applied when a plugin registers, deleted when none serves
 * it any more (stale ones from earlier runs included). Only objects labelled
 * as ours are ever deleted.
 */
import { Effect } from "effect"
import { ApiVersion, type CapabilityInfoSpec, capabilityInfoName } from "../api/Capability.ts"
import { KubeClient } from "../kube/KubeClient.ts"
import type { KubeObject } from "../kube/KubeObject.ts"
import { PluginRegistry } from "../registry/PluginRegistry.ts"
import { FieldManager } from "./Reconciler.ts"

const ManagedBy = "app.kubernetes.io/managed-by"

/** The CapabilityInfos the registry implies, by name; the first plugin by name wins a shared type. */
export const desiredInfos = Effect.gen(function*() {
  const registry = yield* PluginRegistry
  const desired = new Map<string, KubeObject & { spec: CapabilityInfoSpec }>()
  for (const entry of yield* registry.entries) {
    const d = entry.description
    for (const t of d.types) {
      const name = capabilityInfoName(d.category, t.type)
      if (desired.has(name)) continue
      desired.set(name, {
        apiVersion: ApiVersion,
        kind: "CapabilityInfo",
        metadata: { name, labels: { [ManagedBy]: "halkyon" } },
        spec: {
          category: d.category,
          type: t.type,
          versions: t.versions,
          defaultVersion: t.defaultVersion,
          plugin: entry.plugin,
          parameters: d.parameters.map((p) => ({
            name: p.name,
            ...(p.description === "" ? {} : { description: p.description }),
            required: p.required,
            secret: p.secret,
            ...(p.defaultValue === "" ? {} : { default: p.defaultValue })
          }))
        }
      })
    }
  }
  return desired
})

export const syncCapabilityInfos = Effect.fn("CapabilityInfoSync.sync")(function*() {
  const kube = yield* KubeClient
  const desired = yield* desiredInfos
  for (const info of desired.values()) yield* kube.apply(info, FieldManager)
  const existing = yield* kube.list(ApiVersion, "CapabilityInfo", { labelSelector: `${ManagedBy}=halkyon` })
  for (const item of existing.items) {
    if (desired.has(item.metadata.name)) continue
    yield* kube.delete({ apiVersion: ApiVersion, kind: "CapabilityInfo", name: item.metadata.name }).pipe(
      Effect.catchIf((e) => e.notFound, () => Effect.void)
    )
    yield* Effect.logInfo(`CapabilityInfo ${item.metadata.name} removed: no plugin serves it any more`)
  }
})

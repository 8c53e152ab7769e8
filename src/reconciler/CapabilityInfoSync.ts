/**
 * Keeps one CapabilityInfo per registered (category, type) in step with the
 * plugin registry: applied when a plugin registers, deleted when none serves
 * it any more (stale ones from earlier runs included). Only objects labelled
 * as ours are ever deleted: managed by halkyon, and by this operator instance
 * (the namespace it serves, in OperatorNamespaceLabel; none when it serves
 * all), so that two operators serving different namespaces never delete each
 * other's. One CapabilityInfo that cannot be applied never stops the others.
 */
import { Effect } from "effect"
import { ruleOf } from "../api/AdmissionPolicy.ts"
import { ApiVersion, type CapabilityInfoSpec, capabilityInfoName } from "../api/Capability.ts"
import { allowedValues } from "../api/ParameterRules.ts"
import type { KubeApiError } from "../kube/Errors.ts"
import { KubeClient } from "../kube/KubeClient.ts"
import type { KubeObject } from "../kube/KubeObject.ts"
import { descriptionProblem } from "../registry/Names.ts"
import type { PluginDescription, TypeInfo } from "../gen/halkyon/capability/v1/capability.ts"
import { PluginRegistry } from "../registry/PluginRegistry.ts"
import { FieldManager } from "./DependentRules.ts"

const ManagedBy = "app.kubernetes.io/managed-by"
/** The namespace the operator that made a CapabilityInfo serves; absent when it serves all namespaces. */
export const OperatorNamespaceLabel = "halkyon.io/operator-namespace"

/** The labels of this operator instance's CapabilityInfos. */
export const instanceLabels = (namespace: string | undefined): Record<string, string> =>
  namespace === undefined ? { [ManagedBy]: "halkyon" } : { [ManagedBy]: "halkyon", [OperatorNamespaceLabel]: namespace }

/** Selects this operator instance's CapabilityInfos, and no other instance's. */
export const instanceSelector = (namespace: string | undefined): string =>
  namespace === undefined
    ? `${ManagedBy}=halkyon,!${OperatorNamespaceLabel}`
    : `${ManagedBy}=halkyon,${OperatorNamespaceLabel}=${namespace}`

/** A type the registry serves, under the name of the object that stands for it. */
export interface ServedType {
  readonly name: string
  readonly plugin: string
  readonly description: PluginDescription
  readonly type: TypeInfo
}

/**
 * Each (category, type) the registry serves, named by `nameOf`; the first plugin by name wins a shared type.
 * A plugin whose names are not valid is left out: the registry refuses it, and a name here becomes an object's.
 */
export const servedTypes = Effect.fnUntraced(function*(nameOf: (category: string, type: string) => string) {
  const served = new Map<string, ServedType>()
  for (const entry of yield* (yield* PluginRegistry).entries) {
    const d = entry.description
    if (descriptionProblem(d) !== undefined) continue
    for (const type of d.types) {
      const name = nameOf(d.category, type.type)
      if (!served.has(name)) served.set(name, { name, plugin: entry.plugin, description: d, type })
    }
  }
  return [...served.values()]
})

/** The CapabilityInfos the registry implies, by name. */
export const desiredInfos = Effect.fnUntraced(function*(namespace: string | undefined) {
  const desired = new Map<string, KubeObject & { spec: CapabilityInfoSpec }>()
  for (const { name, plugin, description: d, type: t } of yield* servedTypes(capabilityInfoName)) {
    desired.set(name, {
      apiVersion: ApiVersion,
      kind: "CapabilityInfo",
      metadata: { name, labels: instanceLabels(namespace) },
      spec: {
        category: d.category,
        type: t.type,
        versions: t.versions,
        defaultVersion: t.defaultVersion,
        plugin,
        parameters: d.parameters.map((p) => {
          const rule = ruleOf(p)
          const allowed = allowedValues(rule)
          return {
            name: p.name,
            ...(p.description === "" ? {} : { description: p.description }),
            required: p.required,
            secret: p.secret,
            ...(p.defaultValue === "" ? {} : { default: p.defaultValue }),
            ...(rule.type === undefined ? {} : { type: rule.type }),
            ...(rule.type === "enum" ? { values: [...p.allowedValues] } : {}),
            ...(p.pattern === "" ? {} : { pattern: p.pattern }),
            ...(p.minimum === undefined ? {} : { minimum: p.minimum }),
            ...(p.maximum === undefined ? {} : { maximum: p.maximum }),
            ...(allowed === undefined ? {} : { allowed })
          }
        }),
        refuseUnknownParameters: d.refuseUnknownParameters
      }
    })
  }
  return desired
})

/** `namespace`: the one the operator serves, undefined when it serves all. */
export const syncCapabilityInfos = Effect.fn("CapabilityInfoSync.sync")(function*(namespace: string | undefined) {
  const kube = yield* KubeClient
  const desired = yield* desiredInfos(namespace)
  let failed: KubeApiError | undefined
  for (const info of desired.values()) {
    yield* kube.apply(info, FieldManager).pipe(
      Effect.catch((e) => {
        failed ??= e
        return Effect.logWarning(`CapabilityInfo ${info.metadata.name} (plugin ${info.spec.plugin}) could not be applied: ${e.message}`)
      })
    )
  }
  const existing = yield* kube.list(ApiVersion, "CapabilityInfo", { labelSelector: instanceSelector(namespace) })
  for (const item of existing.items) {
    if (desired.has(item.metadata.name)) continue
    yield* kube.delete({ apiVersion: ApiVersion, kind: "CapabilityInfo", name: item.metadata.name }).pipe(
      Effect.catchIf((e) => e.notFound, () => Effect.void)
    )
    yield* Effect.logInfo(`CapabilityInfo ${item.metadata.name} removed: no plugin serves it any more`)
  }
  // Retried by the caller, once the others are in place.
  if (failed !== undefined) return yield* failed
})

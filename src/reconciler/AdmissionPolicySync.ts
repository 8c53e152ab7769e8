/**
 * Keeps one ValidatingAdmissionPolicy and its binding per registered
 * (category, type) in step with the plugin registry, as CapabilityInfoSync
 * does CapabilityInfos: applied when a plugin registers, deleted when none
 * serves the type any more, stale ones from earlier runs included, and only
 * those labelled as this operator instance's. What they check comes from
 * Describe (src/api/AdmissionPolicy.ts).
 *
 * Where the operator may not manage admission policies (its RBAC lacks them,
 * or the API server does not serve admissionregistration.k8s.io/v1), it says
 * so once and leaves the checks to the plugins' CheckValidity, which the SDKs
 * run with the same rules; it tries again at each plugin change, silently.
 */
import { Effect } from "effect"
import {
  AdmissionApiVersion,
  admissionPolicy,
  admissionPolicyBinding,
  BindingKind,
  policyName,
  PolicyKind
} from "../api/AdmissionPolicy.ts"
import type { KubeApiError } from "../kube/Errors.ts"
import { KubeClient } from "../kube/KubeClient.ts"
import type { KubeObject } from "../kube/KubeObject.ts"
import { instanceLabels, instanceSelector, servedTypes } from "./CapabilityInfoSync.ts"
import { FieldManager } from "./DependentRules.ts"

/** The policies and bindings the registry implies, by name; the first plugin by name wins a shared type. */
export const desiredPolicies = Effect.fnUntraced(function*(namespace: string | undefined) {
  const desired = new Map<string, { readonly plugin: string; readonly policy: KubeObject; readonly binding: KubeObject }>()
  for (const { name, plugin, description, type } of yield* servedTypes(policyName)) {
    const id = { name, labels: instanceLabels(namespace), namespace }
    desired.set(name, { plugin, policy: admissionPolicy(description, type, id), binding: admissionPolicyBinding(id) })
  }
  return desired
})

/** Whether an answer means the operator cannot manage policies here at all (no RBAC, or no such API). */
const unmanageable = (e: KubeApiError) => e.forbiddenOrNotServed

/** What the operator says, once, when it cannot manage policies: why, and what to do about it. */
export const unmanageableMessage = (e: KubeApiError): string =>
  e.code === 404
    ? `the API server does not serve ${PolicyKind} in ${AdmissionApiVersion} (HTTP 404 on ${e.request}): ` +
      "Capability parameters are checked by the plugins only, after creation; to have the API server refuse them, " +
      `run Kubernetes 1.30 or later, which serves ${AdmissionApiVersion} unless its --runtime-config turns it off; ` +
      "the operator tries again at each plugin change"
    : `the operator may not manage ValidatingAdmissionPolicies (${e.message}): Capability parameters are checked by the plugins only, after creation; grant it the rules \`halkyon manifests\` prints to have the API server refuse them`

/**
 * Makes the sync, which remembers whether it said it cannot manage policies.
 * `namespace`: the one the operator serves, undefined when it serves all.
 */
export const makeAdmissionPolicySync = (namespace: string | undefined) => {
  let saidUnmanageable = false
  const fallBack = (e: KubeApiError) =>
    Effect.gen(function*() {
      if (saidUnmanageable) return
      saidUnmanageable = true
      yield* Effect.logWarning(unmanageableMessage(e))
    })

  const sync = Effect.gen(function*() {
    const kube = yield* KubeClient
    const desired = yield* desiredPolicies(namespace)
    let failed: KubeApiError | undefined
    for (const { plugin, policy, binding } of desired.values()) {
      // The policy first: a binding to a missing policy is ignored, while the reverse would check nothing.
      yield* kube.apply(policy, FieldManager).pipe(
        Effect.andThen(kube.apply(binding, FieldManager)),
        Effect.catch((e) => {
          if (unmanageable(e)) return Effect.fail(e)
          failed ??= e
          return Effect.logWarning(`admission policy ${policy.metadata.name} (plugin ${plugin}) could not be applied: ${e.message}`)
        })
      )
    }
    const selector = { labelSelector: instanceSelector(namespace) }
    // Bindings first, so that no binding is left pointing at a removed policy.
    for (const kind of [BindingKind, PolicyKind]) {
      const existing = yield* kube.list(AdmissionApiVersion, kind, selector)
      for (const item of existing.items) {
        if (desired.has(item.metadata.name)) continue
        yield* kube.delete({ apiVersion: AdmissionApiVersion, kind, name: item.metadata.name }).pipe(
          Effect.catchIf((e) => e.notFound, () => Effect.void)
        )
        if (kind === PolicyKind) yield* Effect.logInfo(`admission policy ${item.metadata.name} removed: no plugin serves it any more`)
      }
    }
    saidUnmanageable = false
    if (failed !== undefined) return yield* failed
  }).pipe(Effect.catchIf(unmanageable, fallBack))

  return Effect.withSpan(sync, "AdmissionPolicySync.sync")
}

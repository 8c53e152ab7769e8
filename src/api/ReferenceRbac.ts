/**
 * The identity that reads the Secrets and ConfigMaps a Capability's
 * parameters name by reference (`valueFrom`): its own ServiceAccount, which
 * the operator impersonates as it does each plugin's and the ServiceBinding
 * controller's, so that the operator's own role still holds no Secret. It
 * may read and watch Secrets and ConfigMaps (the watch is metadata only; a
 * value is read with get, of a referenced object only) and nothing else.
 */
import type { V1PolicyRule } from "@kubernetes/client-node"

export const ReferencesServiceAccount = "halkyon-parameter-references"

/** The user name the API server gives the references' ServiceAccount, as Impersonate-User carries it. */
export const referencesServiceAccountUser = (namespace: string): string => `system:serviceaccount:${namespace}:${ReferencesServiceAccount}`

/** Exactly what resolving and watching references needs. */
export const referenceRules: ReadonlyArray<V1PolicyRule> = [
  // get: a referenced object's value; list and watch: which referenced objects changed (metadata only).
  { apiGroups: [""], resources: ["secrets", "configmaps"], verbs: ["get", "list", "watch"] }
]

/**
 * The identity the ServiceBinding controller acts as in a cluster, and what
 * it may do: its own ServiceAccount (the operator impersonates it, as it does
 * each plugin's), so that the operator's own role still holds no Secret and
 * no workload. As the spec's RBAC section asks, its ClusterRole aggregates
 * every ClusterRole labelled `servicebinding.io/controller: "true"`; halkyon's
 * own rules (the default workload kinds, Secrets, Capabilities,
 * ServiceBindings, ClusterWorkloadResourceMappings) are one such labelled
 * role, and a cluster operator opts other Provisioned Service or workload
 * kinds (a kind a mapping describes, say) in with another.
 *
 * Binding Jobs takes more: a MutatingAdmissionPolicy per binding, which can
 * mutate any object the API server admits. That rule is a role of its own,
 * printed only with `halkyon manifests --bind-jobs` and always bound
 * cluster-wide (the policies are cluster-scoped), so that the default
 * identity cannot rewrite what others create.
 */
import type { V1PolicyRule } from "@kubernetes/client-node"

export const BindingServiceAccount = "halkyon-service-binding"
/** The label whose ClusterRoles the binding identity's role aggregates. */
export const BindingAggregationLabel = "servicebinding.io/controller"

/** The user name the API server gives the binding ServiceAccount, as Impersonate-User carries it. */
export const bindingServiceAccountUser = (namespace: string): string => `system:serviceaccount:${namespace}:${BindingServiceAccount}`

/** What the ServiceBinding controller itself needs: exactly the kinds it reads and writes. */
export const bindingRules: ReadonlyArray<V1PolicyRule> = [
  // ServiceBindings: watched; their finalizer patched; their status written.
  { apiGroups: ["servicebinding.io"], resources: ["servicebindings"], verbs: ["get", "list", "watch", "patch"] },
  { apiGroups: ["servicebinding.io"], resources: ["servicebindings/status"], verbs: ["patch"] },
  // ClusterWorkloadResourceMappings: watched; a change re-projects the bindings of the kind it maps.
  { apiGroups: ["servicebinding.io"], resources: ["clusterworkloadresourcemappings"], verbs: ["get", "list", "watch"] },
  // Capabilities: watched as Provisioned Services; the in-use finalizer patched; InUse written to their status.
  { apiGroups: ["halkyon.io"], resources: ["capabilities"], verbs: ["get", "list", "watch", "patch"] },
  { apiGroups: ["halkyon.io"], resources: ["capabilities/status"], verbs: ["patch"] },
  // Binding Secrets: read and watched (a new content rolls the workloads), never written.
  { apiGroups: [""], resources: ["secrets"], verbs: ["get", "list", "watch"] },
  // The default workload kinds: the projection is applied (patch) to them.
  {
    apiGroups: ["apps"],
    resources: ["deployments", "statefulsets", "daemonsets", "replicasets"],
    verbs: ["get", "list", "watch", "update", "patch"]
  },
  { apiGroups: ["batch"], resources: ["jobs", "cronjobs"], verbs: ["get", "list", "watch", "update", "patch"] }
]

/** The ClusterRole (and ClusterRoleBinding) of the opt-in rule below. */
export const BindingJobsRole = `${BindingServiceAccount}-jobs`

/**
 * What binding Jobs adds (`halkyon manifests --bind-jobs`): one
 * MutatingAdmissionPolicy and its binding per Job binding, which project into
 * a Job as it is created (a Job's template cannot change afterwards). Listed
 * once at start, applied, deleted. A policy may mutate any object at its
 * creation, cluster-wide: hence opt-in.
 */
export const bindJobsRules: ReadonlyArray<V1PolicyRule> = [
  {
    apiGroups: ["admissionregistration.k8s.io"],
    resources: ["mutatingadmissionpolicies", "mutatingadmissionpolicybindings"],
    verbs: ["list", "create", "patch", "delete"]
  }
]

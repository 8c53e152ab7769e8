/**
 * A plugin's own identity: the ServiceAccount `halkyon-plugin-<name>` in the
 * operator's namespace, which the operator impersonates to read, watch and
 * write that plugin's dependents, and the rules of its ClusterRole, derived
 * from what the plugin's Describe declares.
 *
 * The rules name exactly the declared kinds, and per kind exactly the verbs
 * the reconciler and controller use on dependents:
 * - get: a dependent missing from the cache is read from the API server;
 * - list, watch: the kind is watched (`watched`), by label, as the plugin;
 * - create, patch: the dependent is created (`created`) by server-side
 *   apply, which the API server authorizes as patch, and as create too when
 *   the object does not exist yet;
 * - patch: the dependent is updated (`updated`): an apply, or a merge patch.
 * - delete: a created dependent the plugin no longer builds is pruned, and
 *   all are deleted, in reverse order, when the Capability is (the operator's
 *   finalizer; a dependent with deletion policy orphan is patched instead).
 * Nothing is ever updated with PUT.
 *
 * Resource names come without discovery (manifests are printed without a
 * cluster): a static map for the kinds whose plural the rule below would get
 * wrong, otherwise the lower-cased kind pluralized as the Kubernetes code
 * generators do ("-s", "-x", "-z", "-ch", "-sh" take "es"; a consonant and
 * "y" becomes "ies"; anything else takes "s"). A CRD whose plural differs
 * from that needs an entry in `knownPlurals`.
 *
 * Pure: no I/O. `halkyon manifests` renders these rules; the operator names
 * the same ServiceAccount when it impersonates.
 */
import type { V1PolicyRule } from "@kubernetes/client-node"
import { CapabilityResource } from "./Crds.ts"

export const PluginServiceAccountPrefix = "halkyon-plugin-"

/** What the rules are derived from: a dependent as the plugin's Describe declares it. */
export interface DeclaredDependent {
  readonly apiVersion: string
  readonly kind: string
  readonly watched: boolean
  readonly created: boolean
  readonly updated: boolean
  readonly owned: boolean
}

/** A plugin name as a DNS-1123 label: lower case, anything else than [a-z0-9-] as "-". */
const dnsLabel = (name: string) =>
  name.toLowerCase().replace(/[^a-z0-9-]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 63 - PluginServiceAccountPrefix.length) || "unnamed"

/** The ServiceAccount a plugin's dependents are written as. */
export const pluginServiceAccountName = (plugin: string): string => `${PluginServiceAccountPrefix}${dnsLabel(plugin)}`

/** The user name the API server gives that ServiceAccount, as Impersonate-User carries it. */
export const pluginUser = (namespace: string, plugin: string): string =>
  `system:serviceaccount:${namespace}:${pluginServiceAccountName(plugin)}`

/** The API group of an apiVersion: "" for the core group ("v1"). */
export const groupOf = (apiVersion: string): string => {
  const slash = apiVersion.indexOf("/")
  return slash === -1 ? "" : apiVersion.slice(0, slash)
}

/** Kinds whose resource name the pluralization rule would get wrong, by kind. */
export const knownPlurals: Readonly<Record<string, string>> = {
  Endpoints: "endpoints",
  PodMetrics: "pods",
  NodeMetrics: "nodes"
}

/** The resource name of a kind, without discovery. */
export const resourceOf = (kind: string): string => {
  const known = knownPlurals[kind]
  if (known !== undefined) return known
  const lower = kind.toLowerCase()
  if (/(s|x|z|ch|sh)$/.test(lower)) return `${lower}es`
  if (/[^aeiou]y$/.test(lower)) return `${lower.slice(0, -1)}ies`
  return `${lower}s`
}

/** The verbs, in this order, that rules list. */
const VerbOrder = ["get", "list", "watch", "create", "patch", "update", "delete"] as const

/** The verbs the operator uses on one declared dependent. */
export const dependentVerbs = (dependent: DeclaredDependent): ReadonlyArray<string> => {
  const verbs = new Set<string>(["get"])
  if (dependent.watched) { for (const v of ["list", "watch"]) verbs.add(v) }
  // delete: what the plugin no longer builds is pruned, and everything goes, in order, with the Capability.
  if (dependent.created) { for (const v of ["create", "patch", "delete"]) verbs.add(v) }
  if (dependent.updated) verbs.add("patch")
  return VerbOrder.filter((v) => verbs.has(v))
}

/**
 * The rules of a plugin's ClusterRole: one per declared kind, sorted by
 * group and resource, with the union of the verbs of that kind's dependents;
 * and, when a dependent is owned, `update` on capabilities/finalizers: the
 * owner reference carries blockOwnerDeletion, which the
 * OwnerReferencesPermissionEnforcement admission plugin allows only to who
 * may update the owner's finalizers.
 */
export const pluginRules = (dependents: ReadonlyArray<DeclaredDependent>): ReadonlyArray<V1PolicyRule> => {
  const byResource = new Map<string, { group: string; resource: string; verbs: Set<string> }>()
  for (const d of dependents) {
    const group = groupOf(d.apiVersion)
    const resource = resourceOf(d.kind)
    const key = `${group}/${resource}`
    const entry = byResource.get(key) ?? { group, resource, verbs: new Set<string>() }
    for (const v of dependentVerbs(d)) entry.verbs.add(v)
    byResource.set(key, entry)
  }
  const rules: Array<V1PolicyRule> = [...byResource.values()]
    .sort((a, b) => (a.group === b.group ? a.resource.localeCompare(b.resource) : a.group.localeCompare(b.group)))
    .map((e) => ({ apiGroups: [e.group], resources: [e.resource], verbs: VerbOrder.filter((v) => e.verbs.has(v)) }))
  if (dependents.some((d) => d.owned)) {
    rules.push({ apiGroups: [CapabilityResource.group], resources: [`${CapabilityResource.plural}/finalizers`], verbs: ["update"] })
  }
  return rules
}

/** What a 403 names: the permission the identity lacks. */
export interface MissingPermission {
  readonly user: string
  readonly verb: string
  readonly group: string
  readonly resource: string
  readonly namespace: string | undefined
}

/**
 * Reads the permission a Forbidden answer names, from the API server's
 * message: `User "u" cannot patch resource "secrets" in API group "" in the
 * namespace "apps"`. Undefined when the message is not of that form.
 */
export const missingPermission = (detail: string): MissingPermission | undefined => {
  const match = /User "([^"]*)" cannot ([a-z]+) resource "([^"]*)" in API group "([^"]*)"(?: in the namespace "([^"]*)")?/.exec(detail)
  if (match === null) return undefined
  const [, user = "", verb = "", resource = "", group = "", namespace] = match
  return { user, verb, group, resource, namespace }
}

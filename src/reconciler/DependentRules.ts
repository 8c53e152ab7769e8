/**
 * DependentRules: what a plugin may hand back for the operator to write, checked
 * before any write of a reconcile. Pure: no I/O (the kinds' scopes come from
 * discovery, looked up by the caller), so it is tested by table.
 *
 * Built dependents: at most MaxDependents; each of at most MaxObjectBytes
 * (serialized), of an id declared in Describe, of exactly the declared
 * apiVersion and kind, of a namespaced kind, in the Capability's namespace
 * (absent means that one; another is refused, never replaced), named as the
 * API server would accept it. Updated dependents: the same, and the same
 * apiVersion, kind, namespace and name as the object they update.
 *
 * What passes is then owned (withOwnership): the Capability's namespace, our
 * label, its controller owner reference; the operator applies it as
 * FieldManager. `halkyon plugins render` prints the same.
 *
 * It does not decide what happens on a violation (the Reconciler does).
 */
import { ApiVersion } from "../api/Capability.ts"
import type { DependentInfo } from "../gen/halkyon/capability/v1/capability.ts"
import type { KubeObject } from "../kube/KubeObject.ts"

/** The field manager of every write of the operator's. */
export const FieldManager = "halkyon"
/** Set on every dependent, so that watches select only ours. */
export const CapabilityLabel = "halkyon.io/capability"

export const MaxDependents = 64
export const MaxObjectBytes = 1024 * 1024

export type Rule = "count" | "size" | "declared" | "kind" | "namespaced" | "namespace" | "name" | "identity" | "graph"

export const Rules: ReadonlyArray<Rule> = ["count", "size", "declared", "kind", "namespaced", "namespace", "name", "identity", "graph"]

export interface Violation {
  readonly rule: Rule
  /** The dependent id as the plugin sent it. */
  readonly id: string
  /** What a user reads: the rule broken and the object, e.g. "ConfigMap kube-system/x (id config) is not in namespace team-a". */
  readonly message: string
}

/** How a violation is reported (the Capability's Ready message, the log, `halkyon plugins render`). */
export const violationMessage = (plugin: string, violation: Violation) =>
  `plugin ${plugin} broke rule "${violation.rule}": ${violation.message}; nothing was written`

/** A dependent as the plugin returned it, with its serialized size. */
export interface Returned {
  readonly id: string
  readonly object: Readonly<Record<string, unknown>>
  readonly bytes: number
}

/** Whether a kind is namespaced, from discovery; undefined when the server does not know the kind. */
export type Scopes = (apiVersion: string, kind: string) => boolean | undefined

const subdomain = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/
const label1035 = /^[a-z]([-a-z0-9]*[a-z0-9])?$/

/** Kinds whose names the API server checks as DNS-1035 labels; every other kind's as a DNS-1123 subdomain. */
const labelNamedKinds = new Set(["v1/Service"])

/** Why `name` is not a valid name for the kind, or undefined when it is. */
export const nameProblem = (apiVersion: string, kind: string, name: string): string | undefined => {
  if (labelNamedKinds.has(`${apiVersion}/${kind}`)) {
    return name.length <= 63 && label1035.test(name)
      ? undefined
      : "is not a valid DNS-1035 label (a-z, 0-9 and '-', starting with a letter, at most 63)"
  }
  return name.length <= 253 && subdomain.test(name) ? undefined : "is not a valid DNS-1123 subdomain (a-z, 0-9, '-' and '.', at most 253)"
}

const field = (object: Readonly<Record<string, unknown>>, key: string): unknown => object[key]
const metadataOf = (object: Readonly<Record<string, unknown>>) => {
  const m = object.metadata
  return typeof m === "object" && m !== null ? (m as Record<string, unknown>) : {}
}
const text = (value: unknown) => (typeof value === "string" ? value : value === undefined ? "" : JSON.stringify(value))

/** "Kind namespace/name (id x)", as messages name an object. */
export const describeObject = (id: string, object: Readonly<Record<string, unknown>>) => {
  const m = metadataOf(object)
  const ns = text(m.namespace)
  const name = text(m.name)
  return `${text(field(object, "kind")) || "object"} ${ns === "" ? name : `${ns}/${name}`} (id ${id})`
}

/** The rules every returned object obeys, built or updated. */
const checkOne = (
  returned: Returned,
  declared: ReadonlyMap<string, DependentInfo>,
  namespace: string,
  scopes: Scopes
): Violation | undefined => {
  const { id, object, bytes } = returned
  const what = describeObject(id, object)
  const violation = (rule: Rule, why: string): Violation => ({ rule, id, message: `${what} ${why}` })
  if (bytes > MaxObjectBytes) return violation("size", `is ${bytes} bytes serialized, over the limit of ${MaxObjectBytes}`)
  const info = declared.get(id)
  if (info === undefined) {
    return violation(
      "declared",
      `has an id the plugin did not declare in Describe (declared: ${[...declared.keys()].join(", ") || "none"})`
    )
  }
  const apiVersion = text(field(object, "apiVersion"))
  const kind = text(field(object, "kind"))
  if (apiVersion !== info.apiVersion || kind !== info.kind) {
    return violation("kind", `is a ${apiVersion} ${kind}, but the plugin declared ${id} as a ${info.apiVersion} ${info.kind}`)
  }
  if (scopes(apiVersion, kind) === false) {
    return violation("namespaced", `is of a cluster-scoped kind; a plugin may only return namespaced objects`)
  }
  const m = metadataOf(object)
  if (m.namespace !== undefined && m.namespace !== namespace) {
    return violation("namespace", `is not in the Capability's namespace ${namespace}`)
  }
  const problem = nameProblem(apiVersion, kind, text(m.name))
  if (problem !== undefined) return violation("name", `has a name that ${problem}`)
  return undefined
}

/** The first rule that what BuildDependents returned breaks, or undefined when it breaks none. */
export const checkBuilt = (
  built: ReadonlyArray<Returned>,
  declared: ReadonlyArray<DependentInfo>,
  namespace: string,
  scopes: Scopes
): Violation | undefined => {
  if (built.length > MaxDependents) {
    return { rule: "count", id: "", message: `the plugin returned ${built.length} dependents, over the limit of ${MaxDependents}` }
  }
  const infos = new Map(declared.map((d) => [d.id, d]))
  for (const b of built) {
    const v = checkOne(b, infos, namespace, scopes)
    if (v !== undefined) return v
  }
  return undefined
}

/** The first rule that what UpdateDependent returned for `existing` breaks, or undefined. */
export const checkUpdated = (
  updated: Returned,
  existing: {
    readonly apiVersion: string
    readonly kind: string
    readonly metadata: { readonly name: string; readonly namespace?: string }
  },
  declared: ReadonlyArray<DependentInfo>,
  namespace: string,
  scopes: Scopes
): Violation | undefined => {
  const v = checkOne(updated, new Map(declared.map((d) => [d.id, d])), namespace, scopes)
  if (v !== undefined) return v
  const m = metadataOf(updated.object)
  const same = text(field(updated.object, "apiVersion")) === existing.apiVersion &&
    text(field(updated.object, "kind")) === existing.kind &&
    (m.namespace === undefined ? namespace : m.namespace) === (existing.metadata.namespace ?? namespace) &&
    m.name === existing.metadata.name
  if (same) return undefined
  const before = describeObject(updated.id, existing as unknown as Record<string, unknown>)
  return {
    rule: "identity",
    id: updated.id,
    message: `the update of ${before} returned ${
      describeObject(updated.id, updated.object)
    }: an update keeps apiVersion, kind, namespace and name`
  }
}

/**
 * The object to apply: what the plugin built (checked by DependentRules), in
 * the Capability's namespace, labelled as ours, owned by the Capability
 * (unless the plugin says not), and without the fields an apply must not
 * carry (a plugin may hand back an object as read from the server).
 */
export const withOwnership = (object: Record<string, unknown>, owner: KubeObject, info: DependentInfo | undefined): KubeObject => {
  const { status: _status, ...rest } = object
  const metadata = { ...(object.metadata as Record<string, unknown>) }
  // Owner references are the operator's to set: a plugin's own could hand the object to another owner's garbage collection.
  for (const field of ["managedFields", "resourceVersion", "uid", "creationTimestamp", "generation", "selfLink", "ownerReferences"]) {
    delete metadata[field]
  }
  const owned = info === undefined || info.owned
  return {
    ...(rest as unknown as KubeObject),
    metadata: {
      ...(metadata as unknown as KubeObject["metadata"]),
      // DependentRules refused any other namespace before this.
      namespace: owner.metadata.namespace,
      labels: { ...(metadata.labels as Record<string, string> | undefined), [CapabilityLabel]: owner.metadata.name },
      ...(owned
        ? {
          ownerReferences: [{
            apiVersion: ApiVersion,
            kind: "Capability",
            name: owner.metadata.name,
            uid: owner.metadata.uid ?? "",
            controller: true,
            blockOwnerDeletion: true
          }]
        }
        : {})
    }
  }
}

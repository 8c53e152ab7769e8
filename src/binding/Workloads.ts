/**
 * Where a built-in workload kind keeps its pod template, and label selectors
 * as the API's query string. The kinds are the spec's PodSpec-able defaults
 * with a fixed path (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job) and
 * CronJob, whose template is one level down: these are bound by server-side
 * apply at that path, but for Job, whose template cannot change once it
 * exists: it is projected as it is created (JobPolicy.ts), and the path says
 * where to look for that projection. Any other kind, and a built-in one a
 * ClusterWorkloadResourceMapping names, goes through Mapping.ts. Also the
 * record, on a ServiceBinding, of the kinds it has projected into.
 */
import { Schema } from "effect"
import type { LabelSelector } from "../api/ServiceBinding.ts"

const TemplatePaths: Readonly<Record<string, ReadonlyArray<string>>> = {
  "apps/v1/Deployment": ["spec", "template"],
  "apps/v1/StatefulSet": ["spec", "template"],
  "apps/v1/DaemonSet": ["spec", "template"],
  "apps/v1/ReplicaSet": ["spec", "template"],
  "batch/v1/Job": ["spec", "template"],
  "batch/v1/CronJob": ["spec", "jobTemplate", "spec", "template"]
}

/** The path of the pod template in an object of this built-in kind; undefined for any other kind. */
export const templatePath = (apiVersion: string, kind: string): ReadonlyArray<string> | undefined => TemplatePaths[`${apiVersion}/${kind}`]

export const supportedKinds = (): ReadonlyArray<string> => Object.keys(TemplatePaths)

/** The value at `path`, or undefined. */
export const at = (value: unknown, path: ReadonlyArray<string>): unknown =>
  path.reduce<unknown>((v, key) => (typeof v === "object" && v !== null ? (v as Record<string, unknown>)[key] : undefined), value)

/** `{a: {b: value}}` for the path ["a", "b"]. */
export const nest = (path: ReadonlyArray<string>, value: unknown): Record<string, unknown> =>
  path.reduceRight<unknown>((inner, key) => ({ [key]: inner }), value) as Record<string, unknown>

/** A metav1.LabelSelector as the labelSelector query parameter says it. */
export const selectorQuery = (selector: LabelSelector): string => {
  const terms = Object.entries(selector.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`)
  for (const e of selector.matchExpressions ?? []) {
    const values = `(${(e.values ?? []).join(",")})`
    if (e.operator === "In") terms.push(`${e.key} in ${values}`)
    else if (e.operator === "NotIn") terms.push(`${e.key} notin ${values}`)
    else if (e.operator === "Exists") terms.push(e.key)
    else terms.push(`!${e.key}`)
  }
  return terms.join(",")
}

/**
 * The env vars ("container/name") a field manager owns in the pod template
 * at `path`, as the workload's managedFields record them: what a binding
 * applied before, told apart from a user's variable of the same name.
 */
export const envOwnedBy = (workload: unknown, manager: string, path: ReadonlyArray<string>): ReadonlySet<string> => {
  const entries = (at(workload, ["metadata", "managedFields"]) ?? []) as ReadonlyArray<{ manager?: string; fieldsV1?: unknown }>
  const owned = new Set<string>()
  for (const entry of Array.isArray(entries) ? entries : []) {
    if (entry.manager !== manager) continue
    const spec = at(entry.fieldsV1, [...path.map((p) => `f:${p}`), "f:spec"])
    for (const list of ["f:containers", "f:initContainers"]) {
      for (const [containerKey, fields] of Object.entries((at(spec, [list]) ?? {}) as Record<string, unknown>)) {
        const container = keyName(containerKey)
        if (container === undefined) continue
        for (const envKey of Object.keys((at(fields, ["f:env"]) ?? {}) as Record<string, unknown>)) {
          const name = keyName(envKey)
          if (name !== undefined) owned.add(`${container}/${name}`)
        }
      }
    }
  }
  return owned
}

/** The name in a managedFields list key, `k:{"name":"app"}`. */
const keyName = (key: string): string | undefined => {
  if (!key.startsWith("k:")) return undefined
  try {
    const parsed = JSON.parse(key.slice(2)) as { name?: unknown }
    return typeof parsed.name === "string" ? parsed.name : undefined
  } catch {
    return undefined
  }
}

/**
 * On a ServiceBinding, the workload kinds it has projected into (a sorted JSON list of `apiVersion/kind`): recorded
 * before the first write to a kind, so that a binding whose `workload.kind` changes unbinds the old kind's workloads.
 */
export const ProjectedKindsAnnotation = "servicebinding.io/halkyon-projected-kinds"

export interface WorkloadKind {
  readonly apiVersion: string
  readonly kind: string
}

const ProjectedKinds = Schema.fromJsonString(
  Schema.Array(Schema.String.check(Schema.isPattern(/^([a-z0-9.-]{1,253}\/)?[a-z0-9]{1,63}\/[A-Za-z][A-Za-z0-9]{0,62}$/))).check(
    Schema.isMaxLength(16)
  )
)
const decodeProjectedKinds = Schema.decodeUnknownExit(ProjectedKinds)

/** The kinds recorded in the annotation's value; none for a missing, garbled or oversized one (a hand edit must not stop a reconcile). */
export const projectedKinds = (value: string | undefined): ReadonlyArray<WorkloadKind> => {
  if (value === undefined || value.length > 8_192) return []
  const decoded = decodeProjectedKinds(value)
  if (decoded._tag === "Failure") return []
  return decoded.value.map((k) => ({ apiVersion: k.slice(0, k.lastIndexOf("/")), kind: k.slice(k.lastIndexOf("/") + 1) }))
}

/** The annotation's value for these kinds: each once, sorted, so that an unchanged set writes the same string. */
export const projectedKindsValue = (kinds: ReadonlyArray<WorkloadKind>): string =>
  JSON.stringify([...new Set(kinds.map((k) => `${k.apiVersion}/${k.kind}`))].sort())

/** Whether two kinds are one (a version apart at most): the same objects, served in another version. */
export const sameKind = (a: WorkloadKind, b: WorkloadKind): boolean => a.kind === b.kind && groupOf(a.apiVersion) === groupOf(b.apiVersion)

const groupOf = (apiVersion: string): string => (apiVersion.includes("/") ? apiVersion.slice(0, apiVersion.indexOf("/")) : "")

/**
 * Where a built-in workload kind keeps its pod template, and label selectors
 * as the API's query string. The kinds are the spec's PodSpec-able defaults
 * with a fixed path (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job) and
 * CronJob, whose template is one level down: these are bound by server-side
 * apply at that path. Any other kind, and a built-in one a
 * ClusterWorkloadResourceMapping names, goes through Mapping.ts.
 */
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

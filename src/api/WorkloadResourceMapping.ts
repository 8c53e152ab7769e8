/**
 * The `ClusterWorkloadResourceMapping` resource (`servicebinding.io/v1`,
 * cluster-scoped) of the Service Binding spec: where, in a workload kind that
 * is not a plain PodSpec-able one, the pod template's pieces sit. Its name is
 * the mapped resource's `<plural>.<group>` (`cronjobs.batch`); each entry of
 * `spec.versions` gives, for one version of that resource (or `*`, any
 * other), the locations of the annotations, the container-like fragments and
 * the volumes, as JSONPath expressions.
 *
 * This module owns the schema (the controller decodes with it, the CRD is
 * derived from it); the paths are parsed and applied by
 * src/binding/Mapping.ts.
 */
import { Schema } from "effect"

export const MappingKind = "ClusterWorkloadResourceMapping"

const doc = <S extends Schema.Top>(schema: S, description: string) => schema.annotate({ description }) as S

export const MappingContainer = Schema.Struct({
  path: doc(
    Schema.String,
    "A JSONPath to the container-like fragments of the workload, e.g. .spec.template.spec.containers[*]; halkyon accepts fields and [*] wildcards."
  ),
  name: Schema.optional(doc(
    Schema.String,
    "A Fixed JSONPath, within each fragment, to the container's name (e.g. .name); omitted, spec.workload.containers does not filter these fragments."
  )),
  env: Schema.optional(doc(Schema.String, "A Fixed JSONPath, within each fragment, to its []EnvVar; defaults to .env.")),
  volumeMounts: Schema.optional(
    doc(Schema.String, "A Fixed JSONPath, within each fragment, to its []VolumeMount; defaults to .volumeMounts.")
  )
}).annotate({ description: "Container-like fragments of the workload: every object the path matches is bound as a container." })
export type MappingContainer = typeof MappingContainer.Type

export const MappingTemplate = Schema.Struct({
  version: doc(
    Schema.String,
    "The version of the mapped resource this entry is for (v1, v1beta1…), or * for any version without an entry of its own."
  ),
  annotations: Schema.optional(doc(
    Schema.String,
    "A Fixed JSONPath to the map of annotations that reach the pods; defaults to .spec.template.metadata.annotations."
  )),
  containers: Schema.optional(doc(
    Schema.Array(MappingContainer),
    "The container-like fragments; omitted, those of a PodSpec-able resource (.spec.template.spec.containers[*] and initContainers[*])."
  )),
  volumes: Schema.optional(
    doc(Schema.String, "A Fixed JSONPath to the workload's []Volume; defaults to .spec.template.spec.volumes.")
  )
}).annotate({ description: "Where one version of the mapped resource keeps its pod template's annotations, containers and volumes." })
export type MappingTemplate = typeof MappingTemplate.Type

export const WorkloadResourceMappingSpec = Schema.Struct({
  versions: doc(Schema.Array(MappingTemplate), "One entry per version of the mapped resource (or * for all of them).")
}).annotate({ description: "How the mapped resource's versions map to a pod template." })

export const ClusterWorkloadResourceMapping = Schema.Struct({
  apiVersion: Schema.optional(Schema.String),
  kind: Schema.optional(Schema.String),
  metadata: Schema.Struct({
    name: Schema.String,
    generation: Schema.optional(Schema.Number)
  }),
  spec: WorkloadResourceMappingSpec
}).annotate({
  description:
    "Where a workload resource (named <plural>.<group>) keeps its pod template, so that ServiceBindings can project into it (Service Binding for Kubernetes)."
})
export type ClusterWorkloadResourceMapping = typeof ClusterWorkloadResourceMapping.Type

/** The name a mapping for this resource has: `<plural>.<group>`, or the plural alone for the core group. */
export const mappingName = (apiVersion: string, plural: string): string => {
  const group = apiVersion.includes("/") ? apiVersion.slice(0, apiVersion.indexOf("/")) : ""
  return group === "" ? plural : `${plural}.${group}`
}

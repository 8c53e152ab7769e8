/**
 * The `ServiceBinding` resource (`servicebinding.io/v1`) of the Service
 * Binding for Kubernetes specification, as halkyon reads it: which service's
 * binding Secret is projected into which workloads, and how. The shape is
 * the spec's (README "Service Binding", Resource Type Schema), so bindings
 * written for another implementation apply unchanged.
 *
 * This module owns the schema (the controller decodes with it, the CRD is
 * derived from it); the projection rules are src/binding/Projection.ts.
 */
import { Schema } from "effect"
import { BindingReference, Condition } from "./Capability.ts"

export const BindingGroup = "servicebinding.io"
export const BindingVersion = "v1"
export const BindingApiVersion = `${BindingGroup}/${BindingVersion}`

const doc = <S extends Schema.Top>(schema: S, description: string) => schema.annotate({ description }) as S

/** A metav1.LabelSelector. */
export const LabelSelector = Schema.Struct({
  matchLabels: Schema.optional(doc(Schema.Record(Schema.String, Schema.String), "Labels a workload must carry, each with this value.")),
  matchExpressions: Schema.optional(doc(
    Schema.Array(
      Schema.Struct({
        key: doc(Schema.String, "The label's key."),
        operator: doc(
          Schema.Literals(["In", "NotIn", "Exists", "DoesNotExist"]),
          "How the label is compared: In, NotIn, Exists or DoesNotExist."
        ),
        values: Schema.optional(doc(Schema.Array(Schema.String), "The values for In and NotIn."))
      }).annotate({ description: "One label requirement." })
    ),
    "Label requirements, all of which a workload must meet."
  ))
}).annotate({ description: "Selects workloads by their labels (metav1.LabelSelector)." })
export type LabelSelector = typeof LabelSelector.Type

export const ServiceReference = Schema.Struct({
  apiVersion: doc(
    Schema.String,
    "The service's API version: halkyon.io/v1beta1 for a Capability, v1 for a Secret, or any Provisioned Service's."
  ),
  kind: doc(Schema.String, "The service's kind: Capability, Secret (bound directly), or any kind with status.binding.name."),
  name: doc(Schema.String, "The service's name, in the binding's namespace.")
}).annotate({ description: "The Provisioned Service whose binding Secret is projected (an ObjectReference in this namespace)." })

export const WorkloadReference = Schema.Struct({
  apiVersion: doc(Schema.String, "The workload's API version, e.g. apps/v1."),
  kind: doc(
    Schema.String,
    "The workload's kind: Deployment, StatefulSet, DaemonSet, ReplicaSet, CronJob, Job (projected as it is created, its template unchangeable afterwards; needs an operator installed with halkyon manifests --bind-jobs), or another kind with a pod template."
  ),
  name: Schema.optional(doc(Schema.String, "The workload's name; exclusive with selector.")),
  selector: Schema.optional(doc(LabelSelector, "Selects workloads by label; exclusive with name. Each match is bound.")),
  containers: Schema.optional(doc(Schema.Array(Schema.String), "Only these containers (and init containers) are bound; omitted, all are."))
}).annotate({ description: "The workloads the binding is projected into, by name or label selector, in this namespace." })

export const EnvMapping = Schema.Struct({
  name: doc(Schema.String, "The environment variable's name."),
  key: doc(Schema.String, "The binding Secret's entry whose value it takes; the Secret must hold it (else Ready=False, MissingKey).")
}).annotate({ description: "An entry of the binding Secret, also given as an environment variable." })
export type EnvMapping = typeof EnvMapping.Type

/**
 * A binding's name, which names its directory: the spec's `[a-z0-9\-\.]{1,253}`,
 * and not `.` or `..` (a directory that is no directory of its own). RE2, as
 * the API server checks it: no lookahead, so the two names are left out by
 * the alternatives. The `u` flag lets the CRD carry it as its pattern.
 */
export const BindingNamePattern = /^([a-z0-9-][a-z0-9.-]{0,252}|\.[a-z0-9-][a-z0-9.-]{0,251}|\.\.[a-z0-9.-]{1,251})$/u
export const BindingName = Schema.String.check(Schema.isPattern(BindingNamePattern))

export const ServiceBindingSpec = Schema.Struct({
  name: Schema.optional(doc(
    BindingName,
    "The binding's directory under $SERVICE_BINDING_ROOT: lowercase letters, digits, '-' and '.' (1-253, not . or ..); defaults to the ServiceBinding's name."
  )),
  type: Schema.optional(doc(Schema.String, "Overrides the projected type entry.")),
  provider: Schema.optional(doc(Schema.String, "Overrides the projected provider entry.")),
  service: doc(ServiceReference, "The Provisioned Service: a Capability, any resource with status.binding.name, or a Secret."),
  workload: doc(WorkloadReference, "The workloads to project the binding into."),
  env: Schema.optional(doc(Schema.Array(EnvMapping), "Binding Secret entries also given as environment variables."))
}).annotate({ description: "Which service is bound to which workloads, and how." })
export type ServiceBindingSpec = typeof ServiceBindingSpec.Type

export const ServiceBindingStatus = Schema.Struct({
  observedGeneration: Schema.optional(doc(Schema.Number, "The spec generation this status describes.")),
  conditions: Schema.optional(doc(Schema.Array(Condition), "Ready (and ServiceAvailable): kubectl wait --for=condition=Ready reads it.")),
  binding: Schema.optional(doc(BindingReference, "The Secret projected into the workloads."))
}).annotate({ description: "Whether the binding is projected, and which Secret." })
export type ServiceBindingStatus = typeof ServiceBindingStatus.Type

export const ServiceBinding = Schema.Struct({
  apiVersion: Schema.optional(Schema.String),
  kind: Schema.optional(Schema.String),
  metadata: Schema.Struct({
    // The directory when spec.name is not given. The API server's own name rules (a DNS subdomain) already keep
    // it within the pattern; checked here too, as the controller reads it.
    name: BindingName,
    namespace: Schema.optional(Schema.String),
    uid: Schema.optional(Schema.String),
    generation: Schema.optional(Schema.Number),
    deletionTimestamp: Schema.optional(Schema.String),
    finalizers: Schema.optional(Schema.Array(Schema.String))
  }),
  spec: ServiceBindingSpec,
  status: Schema.optional(ServiceBindingStatus)
}).annotate({ description: "Projects a Provisioned Service's binding Secret into workloads (Service Binding for Kubernetes)." })
export type ServiceBinding = typeof ServiceBinding.Type

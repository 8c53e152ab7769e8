/**
 * The `Capability` resource (`halkyon.io/v1beta1`), as plugins and the
 * operator read it. The spec is exactly the original Halkyon's, so existing
 * YAML applies unchanged: category, type, version and `[{name, value}]`
 * parameters. Category and type compare case-insensitively.
 *
 * This module is the one source of truth for both resources' shapes: the
 * reconciler decodes with these schemas and `halkyon manifests` derives the
 * CRDs' OpenAPI schemas from them.
 *
 * Status follows Kubernetes conventions rather than the original's
 * (`{lastUpdate, reason, message, conditions[]}` with Ready/Pending/Failed
 * condition types): a standard `Ready` condition that `kubectl wait` reads,
 * `observedGeneration`, per-dependent detail beside it, and the name of the
 * Secret a workload binds to.
 */
import { Schema } from "effect"

export const Group = "halkyon.io"
export const Version = "v1beta1"
export const ApiVersion = `${Group}/${Version}`

export const Parameter = Schema.Struct({
  name: Schema.String,
  value: Schema.optional(Schema.String)
})
export type Parameter = typeof Parameter.Type

export const CapabilitySpec = Schema.Struct({
  category: Schema.NonEmptyString,
  type: Schema.NonEmptyString,
  version: Schema.optional(Schema.String),
  parameters: Schema.optional(Schema.Array(Parameter))
})
export type CapabilitySpec = typeof CapabilitySpec.Type

export const ObjectMeta = Schema.Struct({
  name: Schema.String,
  namespace: Schema.optional(Schema.String),
  uid: Schema.optional(Schema.String),
  generation: Schema.optional(Schema.Number),
  resourceVersion: Schema.optional(Schema.String),
  labels: Schema.optional(Schema.Record(Schema.String, Schema.String)),
  annotations: Schema.optional(Schema.Record(Schema.String, Schema.String))
})

/** A standard Kubernetes condition (metav1.Condition). */
export const Condition = Schema.Struct({
  type: Schema.String,
  status: Schema.Literals(["True", "False", "Unknown"]),
  reason: Schema.String,
  message: Schema.String,
  observedGeneration: Schema.optional(Schema.Number),
  lastTransitionTime: Schema.String
})
export type Condition = typeof Condition.Type

/** How one dependent is doing, as the plugin judged it. */
export const DependentStatus = Schema.Struct({
  id: Schema.String,
  kind: Schema.String,
  name: Schema.String,
  ready: Schema.Boolean,
  reason: Schema.String,
  message: Schema.String
})
export type DependentStatus = typeof DependentStatus.Type

export const CapabilityStatus = Schema.Struct({
  observedGeneration: Schema.optional(Schema.Number),
  conditions: Schema.optional(Schema.Array(Condition)),
  dependents: Schema.optional(Schema.Array(DependentStatus)),
  /** The Secret a workload binds to (the original hard-coded `<name>-config`). */
  bindingSecret: Schema.optional(Schema.String),
  /** The plugin that serves this Capability, and the version it chose. */
  plugin: Schema.optional(Schema.String),
  version: Schema.optional(Schema.String)
})
export type CapabilityStatus = typeof CapabilityStatus.Type

export const Capability = Schema.Struct({
  apiVersion: Schema.optional(Schema.String),
  kind: Schema.optional(Schema.String),
  metadata: ObjectMeta,
  spec: CapabilitySpec,
  status: Schema.optional(CapabilityStatus)
})
export type Capability = typeof Capability.Type


/**
 * CapabilityInfo (cluster-scoped, short name `capinfo`): one per registered
 * (category, type), named `<category>-<type>` lower-cased, so users and tools
 * can see what the cluster offers. Versions are a list (the original joined
 * them with " / ").
 */
export const CapabilityInfoSpec = Schema.Struct({
  category: Schema.String,
  type: Schema.String,
  versions: Schema.Array(Schema.String),
  defaultVersion: Schema.String,
  plugin: Schema.String,
  parameters: Schema.Array(
    Schema.Struct({
      name: Schema.String,
      description: Schema.optional(Schema.String),
      required: Schema.optional(Schema.Boolean),
      secret: Schema.optional(Schema.Boolean),
      default: Schema.optional(Schema.String)
    })
  )
})
export type CapabilityInfoSpec = typeof CapabilityInfoSpec.Type

export const CapabilityInfo = Schema.Struct({
  apiVersion: Schema.optional(Schema.String),
  kind: Schema.optional(Schema.String),
  metadata: ObjectMeta,
  spec: CapabilityInfoSpec
})
export type CapabilityInfo = typeof CapabilityInfo.Type

export const capabilityInfoName = (category: string, type: string) => `${category}-${type}`.toLowerCase()

/** Decodes a Capability from the JSON bytes that travel over the wire. */
export const decodeCapabilityJson = Schema.decodeUnknownSync(Schema.fromJsonString(Capability))


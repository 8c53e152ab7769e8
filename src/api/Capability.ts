/**
 * The `Capability` resource (`halkyon.io/v1beta1`), as plugins and the
 * operator read it. The spec is exactly the original Halkyon's, so existing
 * YAML applies unchanged: category, type, version and `[{name, value}]`
 * parameters. Category and type compare case-insensitively.
 *
 * This module owns the schema of the spec; the CRD and the status live with
 * the reconciler.
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
  category: Schema.String,
  type: Schema.String,
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

export const Capability = Schema.Struct({
  apiVersion: Schema.optional(Schema.String),
  kind: Schema.optional(Schema.String),
  metadata: ObjectMeta,
  spec: CapabilitySpec
})
export type Capability = typeof Capability.Type

/** Decodes a Capability from the JSON bytes that travel over the wire. */
export const decodeCapabilityJson = Schema.decodeUnknownSync(Schema.fromJsonString(Capability))

/** Looks a parameter up by name; names compare exactly, as in the original. */
export const parameterValue = (capability: Capability, name: string): string | undefined =>
  capability.spec.parameters?.find((p) => p.name === name)?.value

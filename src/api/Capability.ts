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

/** Describes a field for `kubectl explain` (the CRDs carry it). */
const doc = <S extends Schema.Top>(schema: S, description: string) => schema.annotate({ description }) as S

/**
 * A CEL rule the API server checks (`x-kubernetes-validations`): Crds.ts puts
 * the annotation into the CRD, and the same rule holds in the decoder beside
 * it (a Schema check), so the reconciler refuses exactly what admission does.
 */
export const ValidationsAnnotation = "halkyon/x-kubernetes-validations"
export interface CelRule {
  readonly rule: string
  readonly message: string
}

/** One key of a Secret or ConfigMap in the Capability's namespace. */
const keySelector = (kind: "Secret" | "ConfigMap") =>
  Schema.Struct({
    name: doc(Schema.NonEmptyString, `The ${kind}'s name, in the Capability's namespace.`),
    key: doc(Schema.NonEmptyString, `The key in the ${kind}'s data whose value the parameter takes.`)
  }).annotate({ description: `A key of a ${kind} in the Capability's namespace.` })

const oneSource: CelRule = {
  rule: "has(self.secretKeyRef) != has(self.configMapKeyRef)",
  message: "valueFrom takes exactly one of secretKeyRef and configMapKeyRef"
}

export const ParameterSource = Schema.Struct({
  secretKeyRef: Schema.optional(doc(
    keySelector("Secret"),
    "Takes the value from a key of a Secret in the Capability's namespace; the operator resolves it before each call to the plugin, never shows it, and reconciles again when the Secret changes."
  )),
  configMapKeyRef: Schema.optional(doc(
    keySelector("ConfigMap"),
    "Takes the value from a key of a ConfigMap in the Capability's namespace; resolved and watched as a secretKeyRef is."
  ))
}).check(Schema.makeFilter((s) => (s.secretKeyRef === undefined) !== (s.configMapKeyRef === undefined) || oneSource.message))
  .annotate({
    description: "Where the parameter's value comes from instead of value: exactly one of secretKeyRef and configMapKeyRef.",
    [ValidationsAnnotation]: [oneSource]
  })
export type ParameterSource = typeof ParameterSource.Type

const valueOrValueFrom: CelRule = {
  rule: "!(has(self.value) && has(self.valueFrom))",
  message: "a parameter takes value or valueFrom, not both"
}

export const Parameter = Schema.Struct({
  name: doc(Schema.String, "The parameter's name, as the plugin declares it (kubectl get capinfo lists them), e.g. DB_USER."),
  value: Schema.optional(
    doc(Schema.String, "The parameter's value, as a string; omitted (and no valueFrom), the plugin's default applies.")
  ),
  valueFrom: Schema.optional(doc(
    ParameterSource,
    "Takes the value from a Secret or a ConfigMap in the Capability's namespace instead of value (a password, say): the Capability then holds only the reference."
  ))
}).check(Schema.makeFilter((p) => p.value === undefined || p.valueFrom === undefined || valueOrValueFrom.message))
  .annotate({
    description:
      "One parameter of the capability: a name the plugin understands and its value, given inline (value) or by reference (valueFrom).",
    [ValidationsAnnotation]: [valueOrValueFrom]
  })
export type Parameter = typeof Parameter.Type

export const CapabilitySpec = Schema.Struct({
  category: doc(Schema.NonEmptyString, "What kind of capability this is, e.g. database, cache, broker. Compared case-insensitively."),
  type: doc(
    Schema.NonEmptyString,
    "Which one of its category, e.g. postgres. With the category it selects the plugin that serves it (kubectl get capinfo lists them). Compared case-insensitively."
  ),
  version: Schema.optional(
    doc(Schema.String, "The version to provision, one the plugin serves; omitted or empty, the plugin's default version.")
  ),
  parameters: Schema.optional(
    doc(
      Schema.Array(Parameter),
      "Settings passed to the plugin, as name/value pairs (a value may come from a Secret or ConfigMap, valueFrom); the plugin checks them."
    )
  )
}).annotate({ description: "What is asked for: the category, type and version of the capability, and its parameters." })
export type CapabilitySpec = typeof CapabilitySpec.Type

export const ObjectMeta = Schema.Struct({
  // Not part of the CRDs' schemas (the API server owns metadata); read by the reconciler.
  name: Schema.String,
  namespace: Schema.optional(Schema.String),
  uid: Schema.optional(Schema.String),
  generation: Schema.optional(Schema.Number),
  resourceVersion: Schema.optional(Schema.String),
  labels: Schema.optional(Schema.Record(Schema.String, Schema.String)),
  annotations: Schema.optional(Schema.Record(Schema.String, Schema.String))
})

/**
 * The operator's finalizer on every Capability it applied dependents for: on
 * deletion it removes them in reverse order, then this finalizer.
 */
export const DependentsFinalizer = "halkyon.io/dependents"
/** The ServiceBinding controller's: a bound Capability waits for its bindings to go, then its dependents go. */
export const InUseFinalizer = "servicebinding.io/halkyon-in-use"

/** A standard Kubernetes condition (metav1.Condition). */
export const Condition = Schema.Struct({
  type: doc(Schema.String, "The condition's type; halkyon sets Ready."),
  status: doc(Schema.Literals(["True", "False", "Unknown"]), "True, False or Unknown."),
  reason: doc(
    Schema.String,
    "Why, in one CamelCase word, e.g. Ready, DependentsNotReady, NoPlugin, PluginViolation (docs/api.md lists them)."
  ),
  message: doc(Schema.String, "Why, for a person: what is wrong and what to do."),
  observedGeneration: Schema.optional(doc(Schema.Number, "The spec generation this condition was computed from.")),
  lastTransitionTime: doc(Schema.String, "When the status last changed (RFC 3339).")
}).annotate({ description: "A standard Kubernetes condition (metav1.Condition)." })
export type Condition = typeof Condition.Type

/** How one dependent is doing, as the plugin judged it. */
export const DependentStatus = Schema.Struct({
  id: doc(Schema.String, "The dependent's id, as the plugin declares it."),
  kind: doc(Schema.String, "The dependent's Kubernetes kind, e.g. StatefulSet."),
  name: doc(Schema.String, "The dependent object's name, in the Capability's namespace."),
  ready: doc(
    Schema.Boolean,
    "Whether it counts as ready: as the plugin judges it, or true once applied when the plugin does not check it."
  ),
  reason: doc(
    Schema.String,
    "Why it is or is not ready, in one word: the plugin's reason; Applied (applied, not checked for readiness); Waiting (held back by a dependency, see waitingFor); or Deleting (the Capability is being deleted and this object is not gone yet)."
  ),
  message: doc(Schema.String, "Why, for a person."),
  waitingFor: Schema.optional(
    doc(
      Schema.Array(Schema.String),
      "Only with reason Waiting: the ids of the dependencies this one waits for (declared wait_for_ready and not ready yet, or waiting themselves); it is neither created nor updated until they are ready."
    )
  )
}).annotate({ description: "How one object the plugin created for this Capability is doing." })
export type DependentStatus = typeof DependentStatus.Type

/** One object the operator applied for a Capability: what it prunes and deletes, and in which order. */
export const InventoryEntry = Schema.Struct({
  id: doc(Schema.String, "The dependent's id, as the plugin declares it."),
  apiVersion: doc(Schema.String, "The object's apiVersion."),
  kind: doc(Schema.String, "The object's kind."),
  name: doc(Schema.String, "The object's name, in the Capability's namespace."),
  uid: doc(Schema.String, "The object's uid: only this very object is ever deleted, never another of the same name."),
  dependsOn: Schema.optional(
    doc(Schema.Array(Schema.String), "The ids it was applied after; it is deleted before them.")
  ),
  orphan: Schema.optional(
    doc(
      Schema.Boolean,
      "True when its deletion policy is orphan: when the Capability is deleted or the dependent no longer built, it is kept, released from its owner reference and label."
    )
  )
}).annotate({ description: "One object the operator applied for this Capability." })
export type InventoryEntry = typeof InventoryEntry.Type

/** A LocalObjectReference to a Secret, as servicebinding.io's `status.binding` is. */
export const BindingReference = Schema.Struct({
  name: doc(Schema.String, "The Secret's name, in the same namespace.")
}).annotate({ description: "A Secret in the same namespace, by name." })
export type BindingReference = typeof BindingReference.Type

export const CapabilityStatus = Schema.Struct({
  observedGeneration: Schema.optional(doc(Schema.Number, "The spec generation the operator last reconciled.")),
  conditions: Schema.optional(doc(Schema.Array(Condition), "The Ready condition: kubectl wait --for=condition=Ready reads it.")),
  dependents: Schema.optional(
    doc(Schema.Array(DependentStatus), "Every object the plugin created for this Capability, and how it is doing.")
  ),
  /** The Secret a workload binds to (the original hard-coded `<name>-config`). */
  bindingSecret: Schema.optional(
    doc(
      Schema.String,
      "The Secret, in this namespace, that holds what an application needs to connect (host, port, user, password…); kept for compatibility, binding.name says the same."
    )
  ),
  /** The Provisioned Service duck type of the Service Binding spec (servicebinding.io): a ServiceBinding reads it. */
  binding: Schema.optional(
    doc(
      BindingReference,
      "The binding Secret as the Service Binding specification's Provisioned Service publishes it: a ServiceBinding names this Capability and projects that Secret."
    )
  ),
  inventory: Schema.optional(
    doc(
      Schema.Array(InventoryEntry),
      "Every object the operator applied for this Capability: it prunes those the plugin no longer builds and deletes them all, in reverse order, when the Capability is deleted."
    )
  ),
  /** The plugin that serves this Capability, and the version it chose. */
  plugin: Schema.optional(doc(Schema.String, "The plugin that serves this Capability.")),
  version: Schema.optional(doc(Schema.String, "The version the plugin provisioned (the default one when the spec names none)."))
}).annotate({ description: "What the operator observed: the Ready condition, each dependent, and the binding Secret." })
export type CapabilityStatus = typeof CapabilityStatus.Type

export const Capability = Schema.Struct({
  apiVersion: Schema.optional(Schema.String),
  kind: Schema.optional(Schema.String),
  metadata: ObjectMeta,
  spec: CapabilitySpec,
  status: Schema.optional(CapabilityStatus)
}).annotate({
  description:
    "A capability (a database, a cache, a broker…) an application needs, provisioned by the plugin that serves its category and type."
})
export type Capability = typeof Capability.Type

/**
 * CapabilityInfo (cluster-scoped, short name `capinfo`): one per registered
 * (category, type), named `<category>-<type>` lower-cased, so users and tools
 * can see what the cluster offers. Versions are a list (the original joined
 * them with " / ").
 */
export const CapabilityInfoSpec = Schema.Struct({
  category: doc(Schema.String, "The category a plugin serves, as a Capability's spec.category names it."),
  type: doc(Schema.String, "The type a plugin serves, as a Capability's spec.type names it."),
  versions: doc(Schema.Array(Schema.String), "The versions a Capability of this type may ask for."),
  defaultVersion: doc(Schema.String, "The version provisioned when a Capability names none."),
  plugin: doc(Schema.String, "The plugin that serves this category and type."),
  parameters: doc(
    Schema.Array(
      Schema.Struct({
        name: doc(Schema.String, "The parameter's name, as a Capability's spec.parameters[].name gives it."),
        description: Schema.optional(doc(Schema.String, "What the parameter does, as the plugin describes it.")),
        required: Schema.optional(doc(Schema.Boolean, "Whether a Capability must give it.")),
        secret: Schema.optional(doc(Schema.Boolean, "Whether its value is a secret (a password, say).")),
        default: Schema.optional(doc(Schema.String, "The value used when a Capability does not give it.")),
        type: Schema.optional(
          doc(
            Schema.Literals(["string", "integer", "boolean", "enum"]),
            "What its value must spell: string, integer, boolean (true or false) or enum (one of values); absent, any string."
          )
        ),
        values: Schema.optional(doc(Schema.Array(Schema.String), "The values an enum parameter may take.")),
        pattern: Schema.optional(doc(Schema.String, "The RE2 regular expression a string parameter's value must match.")),
        minimum: Schema.optional(doc(Schema.Int, "The least value of an integer parameter.")),
        maximum: Schema.optional(doc(Schema.Int, "The greatest value of an integer parameter.")),
        allowed: Schema.optional(
          doc(Schema.String, "What its value must be, as the API server says when it refuses one, e.g. an integer from 1024 to 65535.")
        )
      }).annotate({ description: "One parameter the plugin understands, with the schema the API server enforces." })
    ),
    "The parameters a Capability of this type may give."
  ),
  refuseUnknownParameters: Schema.optional(
    doc(Schema.Boolean, "Whether a Capability may give only these parameters: the API server refuses any other name.")
  )
}).annotate({ description: "What the cluster offers for one category and type: versions, plugin, parameters." })
export type CapabilityInfoSpec = typeof CapabilityInfoSpec.Type

export const CapabilityInfo = Schema.Struct({
  apiVersion: Schema.optional(Schema.String),
  kind: Schema.optional(Schema.String),
  metadata: ObjectMeta,
  spec: CapabilityInfoSpec
}).annotate({ description: "A (category, type) the cluster's plugins offer, with its versions and parameters; kept by the operator." })
export type CapabilityInfo = typeof CapabilityInfo.Type

export const capabilityInfoName = (category: string, type: string) => `${category}-${type}`.toLowerCase()

/** Decodes a Capability from the JSON bytes that travel over the wire. */
export const decodeCapabilityJson = Schema.decodeUnknownSync(Schema.fromJsonString(Capability))

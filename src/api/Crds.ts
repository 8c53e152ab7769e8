/**
 * The CustomResourceDefinitions of `Capability` and `CapabilityInfo`, and the
 * names (group, plural, short names…) other modules address them by.
 *
 * The CRDs' OpenAPI schemas are derived from the Effect Schemas of
 * `Capability.ts`, never written by hand, so the API server refuses exactly
 * what the reconciler could not decode (as far as OpenAPI can say it).
 *
 * Why not `Schema.toJsonSchemaDocument`: it describes the schema's canonical
 * JSON codec, where an optional field reads `anyOf: [T, null]` and a number
 * also accepts the strings "NaN" and "Infinity". A structural schema allows
 * neither `anyOf` of types nor nulls, so we walk the encoded side of the AST
 * ourselves and reuse only each check's own JSON Schema fragment (minLength,
 * pattern, minimum…).
 */
import { type JsonSchema, type Schema, SchemaAST, type SchemaRepresentation } from "effect"
import { Capability, CapabilityInfo, type CelRule, Group, ValidationsAnnotation, Version } from "./Capability.ts"
import { BindingApiVersion, BindingGroup, BindingVersion, ServiceBinding } from "./ServiceBinding.ts"
import { ClusterWorkloadResourceMapping, MappingKind } from "./WorkloadResourceMapping.ts"

/** How `Capability` is addressed on the API server. */
export const CapabilityResource = {
  group: Group,
  version: Version,
  apiVersion: `${Group}/${Version}`,
  kind: "Capability",
  listKind: "CapabilityList",
  plural: "capabilities",
  singular: "capability",
  shortNames: ["cap"],
  crdName: `capabilities.${Group}`
} as const

/** How `ServiceBinding` (servicebinding.io/v1, namespaced) is addressed on the API server. */
export const ServiceBindingResource = {
  group: BindingGroup,
  version: BindingVersion,
  apiVersion: BindingApiVersion,
  kind: "ServiceBinding",
  listKind: "ServiceBindingList",
  plural: "servicebindings",
  singular: "servicebinding",
  shortNames: [],
  crdName: `servicebindings.${BindingGroup}`
} as const

/** How `ClusterWorkloadResourceMapping` (servicebinding.io/v1, cluster-scoped) is addressed on the API server. */
export const WorkloadResourceMappingResource = {
  group: BindingGroup,
  version: BindingVersion,
  apiVersion: BindingApiVersion,
  kind: MappingKind,
  listKind: `${MappingKind}List`,
  plural: "clusterworkloadresourcemappings",
  singular: "clusterworkloadresourcemapping",
  shortNames: [],
  crdName: `clusterworkloadresourcemappings.${BindingGroup}`
} as const

/** How `CapabilityInfo` (cluster-scoped) is addressed on the API server. */
export const CapabilityInfoResource = {
  group: Group,
  version: Version,
  apiVersion: `${Group}/${Version}`,
  kind: "CapabilityInfo",
  listKind: "CapabilityInfoList",
  plural: "capabilityinfos",
  singular: "capabilityinfo",
  shortNames: ["capinfo"],
  crdName: `capabilityinfos.${Group}`
} as const

/** A structural OpenAPI v3 schema node, as the API server reads it (JSON names). */
export interface OpenApiSchema {
  readonly type?: "object" | "array" | "string" | "number" | "integer" | "boolean"
  readonly description?: string
  readonly properties?: { readonly [name: string]: OpenApiSchema }
  readonly required?: ReadonlyArray<string>
  readonly additionalProperties?: OpenApiSchema
  readonly items?: OpenApiSchema
  readonly enum?: ReadonlyArray<string | number | boolean>
  readonly nullable?: boolean
  readonly format?: string
  readonly pattern?: string
  readonly minLength?: number
  readonly maxLength?: number
  readonly minItems?: number
  readonly maxItems?: number
  readonly uniqueItems?: boolean
  readonly minProperties?: number
  readonly maxProperties?: number
  readonly minimum?: number
  readonly maximum?: number
  readonly exclusiveMinimum?: boolean
  readonly exclusiveMaximum?: boolean
  readonly multipleOf?: number
  readonly "x-kubernetes-preserve-unknown-fields"?: true
  /** CEL rules the API server checks at admission (the Schema's own check says the same to the decoder). */
  readonly "x-kubernetes-validations"?: ReadonlyArray<CelRule>
}

/** A schema that cannot be said in a structural OpenAPI schema: a programming error in Capability.ts. */
export class UnstructuralSchemaError extends Error {
  constructor(readonly path: string, detail: string) {
    super(`cannot derive a structural OpenAPI schema at ${path || "<root>"}: ${detail}`)
    this.name = "UnstructuralSchemaError"
  }
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] }
type Node = Mutable<OpenApiSchema>

const isApproximation = (
  output: SchemaRepresentation.ToJsonSchema.CheckOutput
): output is readonly [JsonSchema.JsonSchema, true] => Array.isArray(output)

const numberAt = (fragment: JsonSchema.JsonSchema, key: string): number | undefined =>
  typeof fragment[key] === "number" ? fragment[key] : undefined

/** A lower or upper bound, as OpenAPI v3.0 says it: a number and an exclusive flag. */
interface Bound {
  readonly value: number
  readonly exclusive: boolean
}

/** The tighter of two bounds (`sign` 1 for lower bounds, -1 for upper ones). */
const tighter = (a: Bound | undefined, b: Bound | undefined, sign: 1 | -1): Bound | undefined => {
  if (a === undefined) return b
  if (b === undefined) return a
  if (a.value === b.value) return { value: a.value, exclusive: a.exclusive || b.exclusive }
  return (a.value - b.value) * sign > 0 ? a : b
}

// JSON Schema 2020-12 gives an exclusive bound as a number under its own key; OpenAPI v3.0 gives
// the number under minimum/maximum with a boolean flag beside it.
const bounds = [
  { key: "minimum", flag: "exclusiveMinimum", sign: 1 },
  { key: "maximum", flag: "exclusiveMaximum", sign: -1 }
] as const

/** Folds one check's fragment into the node, keeping the tighter of two constraints. */
const constrain = (node: Node, fragment: JsonSchema.JsonSchema): void => {
  // isInt says `type: integer`.
  if (fragment.type === "integer" && node.type === "number") node.type = "integer"
  for (const key of ["minLength", "minItems", "minProperties"] as const) {
    const value = numberAt(fragment, key)
    if (value !== undefined) node[key] = Math.max(node[key] ?? value, value)
  }
  for (const key of ["maxLength", "maxItems", "maxProperties"] as const) {
    const value = numberAt(fragment, key)
    if (value !== undefined) node[key] = Math.min(node[key] ?? value, value)
  }
  for (const { key, flag, sign } of bounds) {
    const current = node[key]
    let bound: Bound | undefined = current === undefined ? undefined : { value: current, exclusive: node[flag] === true }
    const inclusive = numberAt(fragment, key)
    const exclusive = numberAt(fragment, flag)
    if (inclusive !== undefined) bound = tighter(bound, { value: inclusive, exclusive: false }, sign)
    if (exclusive !== undefined) bound = tighter(bound, { value: exclusive, exclusive: true }, sign)
    if (bound === undefined) continue
    node[key] = bound.value
    if (bound.exclusive) node[flag] = true
    else delete node[flag]
  }
  if (fragment.uniqueItems === true) node.uniqueItems = true
  // OpenAPI has room for one pattern, format and multipleOf: a second one is left to the decoder
  // (RE2, which the API server uses, has no lookahead to join two patterns).
  if (typeof fragment.pattern === "string") node.pattern ??= fragment.pattern
  if (typeof fragment.format === "string") node.format ??= fragment.format
  const multipleOf = numberAt(fragment, "multipleOf")
  if (multipleOf !== undefined) node.multipleOf ??= multipleOf
}

/**
 * Adds what the AST node's checks say, through each check's own JSON Schema
 * fragment. A fragment may be a looser approximation (string lengths count code
 * points there), which is safe: the reconciler's decode stays the authority.
 * Checks without a fragment, or with keywords OpenAPI lacks, are left to it.
 */
const applyChecks = (node: Node, checks: ReadonlyArray<SchemaAST.Check<unknown>> | undefined): void => {
  for (const check of checks ?? []) {
    if (check._tag === "FilterGroup") {
      applyChecks(node, check.checks)
      continue
    }
    const compile = check.annotations?.toJsonSchema
    if (compile === undefined) continue
    const output = compile({ type: node.type, schemas: [] })
    constrain(node, isApproximation(output) ? output[0] : output)
  }
}

const literalType = (value: SchemaAST.LiteralValue, path: string): "string" | "number" | "boolean" => {
  switch (typeof value) {
    case "string":
      return "string"
    case "number":
      return "number"
    case "boolean":
      return "boolean"
    default:
      throw new UnstructuralSchemaError(path, "a bigint literal has no JSON form")
  }
}

/** Literals of one JSON type become an `enum`. */
const enumOf = (values: ReadonlyArray<SchemaAST.LiteralValue>, path: string): Node => {
  const types = new Set(values.map((value) => literalType(value, path)))
  const [type] = types
  if (type === undefined || types.size > 1) throw new UnstructuralSchemaError(path, "a union of literals must share one JSON type")
  // literalType threw on bigints.
  return { type, enum: values.filter((value) => typeof value !== "bigint") }
}

const walk = (ast: SchemaAST.AST, path: string, seen: ReadonlySet<SchemaAST.AST>): Node => {
  const node = walkType(ast, path, seen)
  const description = SchemaAST.resolveDescription(ast)
  if (description !== undefined && node.description === undefined) node.description = description
  applyChecks(node, ast.checks)
  const rules = SchemaAST.resolveAt<ReadonlyArray<CelRule>>(ValidationsAnnotation)(ast)
  if (rules !== undefined && rules.length > 0) node["x-kubernetes-validations"] = rules.map((r) => ({ ...r }))
  return node
}

const walkType = (ast: SchemaAST.AST, path: string, seen: ReadonlySet<SchemaAST.AST>): Node => {
  switch (ast._tag) {
    case "String":
    case "TemplateLiteral":
      return { type: "string" }
    case "Number":
      return { type: "number" }
    case "Boolean":
      return { type: "boolean" }
    case "Literal":
      return enumOf([ast.literal], path)
    case "Enum":
      return enumOf(ast.enums.map(([, value]) => value), path)
    case "Unknown":
    case "Any":
      // The one place a structural schema needs it: a value of any shape.
      return { "x-kubernetes-preserve-unknown-fields": true }
    case "Union": {
      // An optional field is `T | undefined`; optionality is `required`'s business.
      const members = ast.types.filter((t) => t._tag !== "Undefined" && t._tag !== "Null")
      const nullable = ast.types.some((t) => t._tag === "Null")
      const [only] = members
      let node: Node
      if (members.length === 1 && only !== undefined) node = walk(only, path, seen)
      else if (members.length > 0 && members.every(SchemaAST.isLiteral)) node = enumOf(members.map((t) => t.literal), path)
      else throw new UnstructuralSchemaError(path, `a union of ${ast.types.map((t) => t._tag).join(", ")} has no single type`)
      if (nullable) node.nullable = true
      return node
    }
    case "Arrays": {
      const [item] = ast.rest
      if (ast.elements.length > 0 || ast.rest.length !== 1 || item === undefined) {
        throw new UnstructuralSchemaError(path, "tuples have no structural form; use an array of one item type")
      }
      return { type: "array", items: walk(item, `${path}[]`, seen) }
    }
    case "Objects":
      return walkObject(ast, path, seen)
    case "Suspend": {
      // Structural schemas are finite trees: a recursive schema cannot be inlined.
      if (seen.has(ast)) throw new UnstructuralSchemaError(path, "recursive schemas cannot be inlined")
      return walk(ast.thunk(), path, new Set([...seen, ast]))
    }
    default:
      throw new UnstructuralSchemaError(path, `${ast._tag} has no JSON form`)
  }
}

const walkObject = (ast: SchemaAST.Objects, path: string, seen: ReadonlySet<SchemaAST.AST>): Node => {
  const [index, ...moreIndexes] = ast.indexSignatures
  if (index !== undefined) {
    // A record: structural schemas allow `additionalProperties` only without `properties`.
    if (ast.propertySignatures.length > 0 || moreIndexes.length > 0 || index.parameter._tag !== "String") {
      throw new UnstructuralSchemaError(path, "only a plain string-keyed record can be a map")
    }
    return { type: "object", additionalProperties: walk(index.type, `${path}.*`, seen) }
  }
  const properties: Record<string, OpenApiSchema> = {}
  const required: Array<string> = []
  for (const property of ast.propertySignatures) {
    if (typeof property.name !== "string") throw new UnstructuralSchemaError(path, "property names must be strings")
    const at = path === "" ? property.name : `${path}.${property.name}`
    properties[property.name] = walk(property.type, at, seen)
    if (!SchemaAST.isOptional(property.type)) required.push(property.name)
  }
  return { type: "object", properties, ...(required.length > 0 ? { required } : {}) }
}

/**
 * The structural OpenAPI v3 schema of a schema's encoded side: what is stored
 * on the API server is JSON as the schema encodes it.
 */
export const openApiSchema = (schema: Schema.Top): OpenApiSchema => walk(SchemaAST.toEncoded(schema.ast), "", new Set())

/**
 * The schema of a whole resource: its spec and status from the schema, while
 * apiVersion, kind and metadata are the API server's (it allows nothing more
 * than `type: object` for metadata).
 */
export const resourceSchema = (schema: Schema.Top, description: string): OpenApiSchema => {
  const derived = openApiSchema(schema)
  const implicit = ["apiVersion", "kind", "metadata"]
  const required = (derived.required ?? []).filter((name) => !implicit.includes(name))
  return {
    type: "object",
    description,
    properties: {
      ...derived.properties,
      apiVersion: {
        type: "string",
        description:
          "The versioned schema of this representation of the object; servers convert recognized schemas to the latest internal value."
      },
      kind: { type: "string", description: "The REST resource this object represents, in CamelCase." },
      // The API server allows nothing more here, and kubectl explain documents metadata itself.
      metadata: { type: "object" }
    },
    ...(required.length > 0 ? { required } : {})
  }
}

/** A printer column of a CRD (`kubectl get` shows it). */
export interface PrinterColumn {
  readonly name: string
  readonly type: "string" | "date"
  readonly jsonPath: string
}

/**
 * A CustomResourceDefinition as plain JSON, in the API's own field names
 * (`enum`, `x-kubernetes-validations`): what `halkyon manifests` prints and
 * what a raw request or `kubectl apply` sends as it is. Not client-node's
 * model, whose serializer would drop these keywords (it reads `_enum`).
 */
export interface CustomResourceDefinition {
  readonly apiVersion: "apiextensions.k8s.io/v1"
  readonly kind: "CustomResourceDefinition"
  // Cluster-scoped: no namespace (said so that code reading any manifest's namespace reads undefined here).
  readonly metadata: { readonly name: string; readonly namespace?: undefined; readonly labels: { readonly [name: string]: string } }
  readonly spec: {
    readonly group: string
    readonly names: {
      readonly kind: string
      readonly listKind: string
      readonly plural: string
      readonly singular: string
      readonly shortNames: ReadonlyArray<string>
    }
    readonly scope: "Namespaced" | "Cluster"
    readonly versions: ReadonlyArray<{
      readonly name: string
      readonly served: boolean
      readonly storage: boolean
      readonly schema: { readonly openAPIV3Schema: OpenApiSchema }
      readonly additionalPrinterColumns: ReadonlyArray<PrinterColumn>
      readonly subresources?: { readonly status: Record<string, never> }
    }>
  }
}

const readyCondition = `.status.conditions[?(@.type=="Ready")]`

const age: PrinterColumn = { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" }

const crd = (
  names:
    | typeof CapabilityResource
    | typeof CapabilityInfoResource
    | typeof ServiceBindingResource
    | typeof WorkloadResourceMappingResource,
  scope: "Namespaced" | "Cluster",
  schema: OpenApiSchema,
  columns: ReadonlyArray<PrinterColumn>,
  withStatus: boolean
): CustomResourceDefinition => ({
  apiVersion: "apiextensions.k8s.io/v1",
  kind: "CustomResourceDefinition",
  metadata: { name: names.crdName, labels: { "app.kubernetes.io/name": "halkyon" } },
  spec: {
    group: names.group,
    names: {
      kind: names.kind,
      listKind: names.listKind,
      plural: names.plural,
      singular: names.singular,
      shortNames: [...names.shortNames]
    },
    scope,
    versions: [
      {
        name: names.version,
        served: true,
        storage: true,
        schema: { openAPIV3Schema: schema },
        additionalPrinterColumns: [...columns],
        // The status subresource: spec writes ignore status and /status writes ignore spec.
        ...(withStatus ? { subresources: { status: {} } } : {})
      }
    ]
  }
})

/** The `capabilities.halkyon.io` CRD: namespaced, with a status subresource. */
export const capabilityCrd = (): CustomResourceDefinition =>
  crd(
    CapabilityResource,
    "Namespaced",
    resourceSchema(
      Capability,
      "A capability (a database, a cache, a broker…) an application needs, provisioned by the plugin that serves its category and type."
    ),
    [
      { name: "Category", type: "string", jsonPath: ".spec.category" },
      { name: "Type", type: "string", jsonPath: ".spec.type" },
      { name: "Version", type: "string", jsonPath: ".spec.version" },
      { name: "Ready", type: "string", jsonPath: `${readyCondition}.status` },
      { name: "Reason", type: "string", jsonPath: `${readyCondition}.reason` },
      age
    ],
    true
  )

/** The `capabilityinfos.halkyon.io` CRD: cluster-scoped, what the registered plugins offer. */
export const capabilityInfoCrd = (): CustomResourceDefinition =>
  crd(
    CapabilityInfoResource,
    "Cluster",
    resourceSchema(
      CapabilityInfo,
      "A (category, type) the cluster's plugins offer, with its versions and parameters; kept by the operator."
    ),
    [
      { name: "Category", type: "string", jsonPath: ".spec.category" },
      { name: "Type", type: "string", jsonPath: ".spec.type" },
      { name: "Versions", type: "string", jsonPath: ".spec.versions" },
      { name: "Plugin", type: "string", jsonPath: ".spec.plugin" },
      age
    ],
    false
  )

/**
 * The `servicebindings.servicebinding.io` CRD (the spec's v1 schema): namespaced,
 * with a status subresource. Omit it where another implementation installs it.
 */
export const serviceBindingCrd = (): CustomResourceDefinition => {
  const base = crd(
    ServiceBindingResource,
    "Namespaced",
    resourceSchema(ServiceBinding, "Projects a Provisioned Service's binding Secret into workloads (Service Binding for Kubernetes)."),
    [
      { name: "Ready", type: "string", jsonPath: `${readyCondition}.status` },
      { name: "Reason", type: "string", jsonPath: `${readyCondition}.reason` },
      age
    ],
    true
  )
  // The spec recommends this label on CRDs of Provisioned Services; a ServiceBinding is one too (status.binding).
  return { ...base, metadata: { ...base.metadata, labels: { ...base.metadata.labels, "servicebinding.io/provisioned-service": "true" } } }
}

/**
 * The `clusterworkloadresourcemappings.servicebinding.io` CRD (the spec's v1
 * schema): cluster-scoped, no status. Installed with the ServiceBinding CRD.
 */
export const workloadResourceMappingCrd = (): CustomResourceDefinition =>
  crd(
    WorkloadResourceMappingResource,
    "Cluster",
    resourceSchema(
      ClusterWorkloadResourceMapping,
      "Where a workload resource (this object's name: <plural>.<group>) keeps its pod template, for ServiceBindings to project into."
    ),
    [age],
    false
  )

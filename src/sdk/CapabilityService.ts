/**
 * Answers the halkyon.capability.v1 RPCs from a PluginDefinition: decodes the
 * Capability, resolves its version and parameters, and calls the author's
 * functions. Errors become gRPC statuses with a message for the user: a
 * Capability that cannot be decoded is INVALID_ARGUMENT, an author's function
 * that throws is INTERNAL naming the dependent.
 */
import type { Capability } from "../api/Capability.ts"
import {
  ConditionState,
  DeletionPolicy,
  type DependentCondition,
  type ObservedDependent,
  type PluginDescription
} from "../gen/halkyon/capability/v1/capability.ts"
import { ParameterType } from "../gen/halkyon/capability/v1/capability.ts"
import { BuildDependents, CheckValidity, Describe, EvaluateConditions, UpdateDependent } from "../protocol/Methods.ts"
import { jsonBytes, jsonText } from "../protocol/Rpc.ts"
import type {
  Built,
  Condition,
  Context,
  DependentDefinition,
  ObjectShape,
  Observed,
  ParameterCheck,
  PluginDefinition,
  TypeDefinition
} from "./Plugin.ts"
import * as Messages from "./Messages.ts"
import { GrpcError, type GrpcServer, Status } from "./wire/GrpcServer.ts"

/** The default version of a type: declared, or the last listed. */
export const defaultVersion = (t: TypeDefinition): string => t.defaultVersion ?? t.versions[t.versions.length - 1] ?? ""

const ParameterTypes = {
  string: ParameterType.PARAMETER_TYPE_STRING,
  integer: ParameterType.PARAMETER_TYPE_INTEGER,
  boolean: ParameterType.PARAMETER_TYPE_BOOLEAN,
  enum: ParameterType.PARAMETER_TYPE_ENUM
} as const

const wirePolicy = (policy: "delete" | "orphan" | undefined) =>
  policy === "orphan" ? DeletionPolicy.DELETION_POLICY_ORPHAN : DeletionPolicy.DELETION_POLICY_DELETE

export const describe = (plugin: PluginDefinition): PluginDescription => ({
  name: plugin.name,
  category: plugin.category,
  types: plugin.types.map((t) => ({ type: t.type, versions: [...t.versions], defaultVersion: defaultVersion(t) })),
  parameters: (plugin.parameters ?? []).map((p) => ({
    name: p.name,
    description: p.description ?? "",
    required: p.required ?? false,
    secret: p.secret ?? false,
    defaultValue: p.default ?? "",
    type: ParameterTypes[p.type ?? "string"],
    allowedValues: [...(p.values ?? [])],
    pattern: p.pattern ?? "",
    ...(p.minimum === undefined ? {} : { minimum: p.minimum }),
    ...(p.maximum === undefined ? {} : { maximum: p.maximum })
  })),
  refuseUnknownParameters: plugin.refuseUnknownParameters ?? false,
  dependents: plugin.dependents.map((d) => ({
    id: d.id,
    apiVersion: d.apiVersion,
    kind: d.kind,
    watched: d.watched ?? true,
    owned: d.owned ?? true,
    created: d.created ?? true,
    updated: d.update !== undefined,
    checkedForReadiness: d.ready !== undefined,
    binding: d.binding ?? false,
    dependsOn: [...(d.dependsOn ?? [])],
    waitForReady: d.waitForReady ?? false,
    deletionPolicy: wirePolicy(typeof d.deletionPolicy === "function" ? "delete" : d.deletionPolicy)
  }))
})

/**
 * The Capability schema (effect's Schema) is loaded on the first call rather
 * than at start-up: evaluating it would delay a bundled plugin's handshake
 * (docs/performance.md), and the first call comes after the handshake anyway.
 */
let capabilityModule: Promise<typeof import("../api/Capability.ts")> | undefined
const loadCapabilitySchema = () => (capabilityModule ??= import("../api/Capability.ts"))

/**
 * One reconcile sends the same Capability, byte for byte, in three or four
 * calls: the last few decoded are kept by their JSON text, so each is decoded
 * once (a Schema decode costs more than the rest of a call's work).
 */
const RecentCapabilities = 64
const recent = new Map<string, Capability>()

const decode = async (bytes: Uint8Array): Promise<Capability> => {
  const text = jsonText(bytes)
  const known = recent.get(text)
  if (known !== undefined) return known
  const { decodeCapabilityJson } = await loadCapabilitySchema()
  let capability: Capability
  try {
    capability = decodeCapabilityJson(text)
  } catch (error) {
    throw new GrpcError(Status.INVALID_ARGUMENT, Messages.unreadableCapability(error instanceof Error ? error.message : String(error)))
  }
  if (recent.size >= RecentCapabilities) recent.delete(recent.keys().next().value as string)
  recent.set(text, capability)
  return capability
}

const findType = (plugin: PluginDefinition, capability: Capability): TypeDefinition | undefined =>
  plugin.types.find((t) => t.type.toLowerCase() === capability.spec.type.toLowerCase())

/** Nothing observed: what every call but BuildDependents sees. */
const nothingObserved: Observed = { get: () => undefined, ids: [] }

/** The observed dependents, by id, as BuildDependents received them. */
export const observedOf = (objects: ReadonlyMap<string, ObjectShape>): Observed => ({
  get: <O extends ObjectShape>(id: string) => objects.get(id) as O | undefined,
  ids: [...objects.keys()]
})

/** Builds what the author's functions see; undefined version when the type is unknown. */
export const makeContext = (plugin: PluginDefinition, capability: Capability, observed: Observed = nothingObserved): Context => {
  const type = findType(plugin, capability)
  const requested = capability.spec.version ?? ""
  const parameters: Record<string, string | undefined> = {}
  for (const p of plugin.parameters ?? []) parameters[p.name] = p.default
  for (const p of capability.spec.parameters ?? []) {
    if (p.value !== undefined && p.value !== "") parameters[p.name] = p.value
  }
  return {
    capability,
    name: capability.metadata.name,
    namespace: capability.metadata.namespace ?? "default",
    version: requested !== "" ? requested : type === undefined ? "" : defaultVersion(type),
    parameters,
    observed
  }
}

/**
 * The checks every plugin gets: category, type, version, required parameters,
 * and each given parameter's type and bounds (and its name, when the plugin
 * refuses unknown ones), with the admission policy's sentences.
 */
export const validate = (plugin: PluginDefinition, capability: Capability, checkParameters: ParameterCheck): Array<string> => {
  const errors: Array<string> = []
  const { category, type: typeName, version } = capability.spec
  if (category.toLowerCase() !== plugin.category.toLowerCase()) {
    errors.push(Messages.categoryNotServed(category, plugin.name, plugin.category))
  }
  const type = findType(plugin, capability)
  if (type === undefined) {
    errors.push(Messages.typeNotServed(typeName, plugin.name, plugin.types.map((t) => t.type)))
    return errors
  }
  if (version !== undefined && version !== "" && !type.versions.includes(version)) {
    errors.push(Messages.versionNotSupported(version, type.type, plugin.name, type.versions))
  }
  const context = makeContext(plugin, capability)
  for (const p of plugin.parameters ?? []) {
    if (p.required === true && (context.parameters[p.name] ?? "") === "") errors.push(Messages.parameterRequired(p.name))
  }
  errors.push(...checkParameters(plugin, capability))
  if (errors.length === 0 && plugin.validate !== undefined) errors.push(...plugin.validate(context))
  return errors
}

/** Runs an author's function, turning a throw into an INTERNAL status naming the dependent. */
const guarded = <A>(what: string, f: () => A): A => {
  try {
    return f()
  } catch (error) {
    if (error instanceof GrpcError) throw error
    throw new GrpcError(Status.INTERNAL, Messages.failed(what, error instanceof Error ? error.message : String(error)))
  }
}

export const findDependent = (plugin: PluginDefinition, id: string): DependentDefinition<ObjectShape> => {
  const found = plugin.dependents.find((d) => d.id === id)
  if (found === undefined) {
    throw new GrpcError(Status.NOT_FOUND, Messages.unknownDependent(plugin.name, id, plugin.dependents.map((d) => d.id)))
  }
  return found
}

/** A dependent's condition when fetching it failed: missing is pending, anything else failed. */
const conditionFromFetchError = (
  d: DependentDefinition<ObjectShape>,
  context: Context,
  error: { reason: string; message: string }
): Condition =>
  error.reason === "NotFound"
    ? { state: "pending", reason: "NotFound", message: Messages.dependentMissing(d.kind, context.name) }
    : { state: "failed", reason: error.reason || "FetchFailed", message: error.message }

const stateOf: Record<Condition["state"], ConditionState> = {
  ready: ConditionState.CONDITION_STATE_READY,
  pending: ConditionState.CONDITION_STATE_PENDING,
  failed: ConditionState.CONDITION_STATE_FAILED
}

/**
 * A dependent's built object with the declared apiVersion and kind, first;
 * one that names others is the plugin's mistake. Here rather than in
 * Plugin.ts: this module is loaded after the handshake, and must share no
 * module with the code loaded before it (Services.ts says why).
 */
const withTypeMeta = (declared: DependentDefinition<ObjectShape>, built: Built<ObjectShape>): ObjectShape => {
  const { apiVersion, kind } = built
  if ((apiVersion !== undefined && apiVersion !== declared.apiVersion) || (kind !== undefined && kind !== declared.kind)) {
    throw new Error(
      Messages.builtOtherKind(declared.id, declared.apiVersion, declared.kind, apiVersion ?? declared.apiVersion, kind ?? declared.kind)
    )
  }
  // Declared first, so they lead the object; set again after, in case `built` holds them as undefined.
  const object: Record<string, unknown> = { apiVersion: declared.apiVersion, kind: declared.kind, ...built }
  object.apiVersion = declared.apiVersion
  object.kind = declared.kind
  return object
}

/** Builds one dependent, apiVersion and kind filled in. */
const build = (d: DependentDefinition<ObjectShape>, context: Context): ObjectShape =>
  guarded(`building dependent ${d.id}`, () => withTypeMeta(d, d.build(context)))

/** The built dependents the Capability includes now, in the order declared, with a deletion policy decided per Capability. */
export const buildDependents = (
  plugin: PluginDefinition,
  context: Context
): Array<{ readonly id: string; readonly object: ObjectShape; readonly deletionPolicy?: "delete" | "orphan" }> =>
  // One `map` over the declared list, then a filter: a plugin's own list type may decide in `map` (the hostile fixture does).
  plugin.dependents
    .map((d) => {
      if (d.include !== undefined && !guarded(`deciding whether to include dependent ${d.id}`, () => d.include?.(context) ?? true)) {
        return undefined
      }
      const policy = d.deletionPolicy
      return typeof policy === "function"
        ? { id: d.id, object: build(d, context), deletionPolicy: guarded(`deciding the deletion policy of ${d.id}`, () => policy(context)) }
        : { id: d.id, object: build(d, context) }
    })
    .filter((d) => d !== undefined)

/** The object to apply over `existing`, or undefined when it is fine as it is (or the dependent is never updated). */
export const updateDependent = (plugin: PluginDefinition, id: string, existing: ObjectShape, context: Context): ObjectShape | undefined => {
  const d = findDependent(plugin, id)
  if (d.update === undefined) return undefined
  const update = d.update.bind(d)
  const desired = build(d, context)
  return guarded(`updating dependent ${d.id}`, () => update(existing, desired, context))
}

/** What was observed of one dependent: the object, or why fetching it failed. */
export type Observation = { readonly object: object } | { readonly error: { readonly reason: string; readonly message: string } }

/** The condition of each observed dependent that is checked for readiness, in the order observed. */
export const evaluateConditions = (
  plugin: PluginDefinition,
  context: Context,
  observed: ReadonlyArray<{ readonly id: string; readonly observation: Observation | undefined }>
): Array<{ readonly id: string; readonly condition: Condition }> => {
  const conditions: Array<{ readonly id: string; readonly condition: Condition }> = []
  for (const { id, observation } of observed) {
    const d = findDependent(plugin, id)
    const ready = d.ready
    if (ready === undefined) continue
    const condition = guarded(`evaluating dependent ${d.id}`, (): Condition => {
      if (observation === undefined) {
        return { state: "failed", reason: "NoObservation", message: Messages.noObservation(d.id) }
      }
      return "object" in observation
        ? ready.call(d, observation.object as ObjectShape, context)
        : conditionFromFetchError(d, context, observation.error)
    })
    conditions.push({ id: d.id, condition })
  }
  return conditions
}

/** An observation as it came over the wire. */
const observationOf = (id: string, wire: ObservedDependent["observation"]): Observation | undefined => {
  switch (wire?.$case) {
    case "object": {
      const bytes = wire.value
      return { object: guarded(`evaluating dependent ${id}`, () => JSON.parse(jsonText(bytes)) as ObjectShape) }
    }
    case "error":
      return { error: wire.value }
    case undefined:
    default:
      return undefined
  }
}

/** The observed dependents as BuildDependents and UpdateDependent received them (objects only). */
const observedFrom = (wire: ReadonlyArray<ObservedDependent>): Observed => {
  const objects = new Map<string, ObjectShape>()
  for (const o of wire) {
    const observation = observationOf(o.id, o.observation)
    if (observation !== undefined && "object" in observation) objects.set(o.id, observation.object as ObjectShape)
  }
  return observedOf(objects)
}

/** Registers the CapabilityPlugin service for `plugin` on `server`. */
export const registerCapabilityService = (server: GrpcServer, plugin: PluginDefinition, checkParameters: ParameterCheck): void => {
  const description = describe(plugin)
  server
    .unary(Describe, () => description)
    .unary(CheckValidity, async (request) => {
      const capability = await decode(request.capability)
      return { errors: guarded("validity check", () => validate(plugin, capability, checkParameters)) }
    })
    .unary(BuildDependents, async (request) => {
      const context = makeContext(plugin, await decode(request.capability), observedFrom(request.observed))
      return {
        dependents: buildDependents(plugin, context).map(({ id, object, deletionPolicy }) => ({
          id,
          object: jsonBytes(object),
          deletionPolicy: deletionPolicy === undefined ? undefined : wirePolicy(deletionPolicy)
        }))
      }
    })
    .unary(UpdateDependent, async (request) => {
      const d = findDependent(plugin, request.id)
      if (d.update === undefined) return { needsUpdate: false, updated: Buffer.alloc(0) }
      const context = makeContext(plugin, await decode(request.capability), observedFrom(request.observed))
      const existing = guarded(`reading existing ${d.id}`, () => JSON.parse(jsonText(request.existing)) as ObjectShape)
      const updated = updateDependent(plugin, d.id, existing, context)
      return updated === undefined ? { needsUpdate: false, updated: Buffer.alloc(0) } : { needsUpdate: true, updated: jsonBytes(updated) }
    })
    .unary(EvaluateConditions, async (request) => {
      const context = makeContext(plugin, await decode(request.capability))
      const observed = request.observed.map((o) => ({ id: o.id, observation: observationOf(o.id, o.observation) }))
      return {
        conditions: evaluateConditions(plugin, context, observed).map(({ id, condition }): DependentCondition => ({
          id,
          state: stateOf[condition.state],
          reason: condition.reason ?? "",
          message: condition.message ?? "",
          attributes: { ...condition.attributes }
        }))
      }
    })
}

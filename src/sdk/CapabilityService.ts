/**
 * Answers the halkyon.capability.v1 RPCs from a PluginDefinition: decodes the
 * Capability, resolves its version and parameters, and calls the author's
 * functions. Errors become gRPC statuses with a message for the user: a
 * Capability that cannot be decoded is INVALID_ARGUMENT, an author's function
 * that throws is INTERNAL naming the dependent.
 */
import type { Capability } from "../api/Capability.ts"
import { ConditionState, type DependentCondition, type PluginDescription } from "../gen/halkyon/capability/v1/capability.ts"
import { BuildDependents, CheckValidity, Describe, EvaluateConditions, UpdateDependent } from "../protocol/Methods.ts"
import { jsonBytes, jsonText } from "../protocol/Rpc.ts"
import type { Condition, Context, DependentDefinition, KubeObject, PluginDefinition, TypeDefinition } from "./Plugin.ts"
import { GrpcError, type GrpcServer, Status } from "./wire/GrpcServer.ts"


/** The default version of a type: declared, or the last listed. */
export const defaultVersion = (t: TypeDefinition): string => t.defaultVersion ?? t.versions[t.versions.length - 1] ?? ""

export const describe = (plugin: PluginDefinition): PluginDescription => ({
  name: plugin.name,
  category: plugin.category,
  types: plugin.types.map((t) => ({ type: t.type, versions: [...t.versions], defaultVersion: defaultVersion(t) })),
  parameters: (plugin.parameters ?? []).map((p) => ({
    name: p.name,
    description: p.description ?? "",
    required: p.required ?? false,
    secret: p.secret ?? false,
    defaultValue: p.default ?? ""
  })),
  dependents: plugin.dependents.map((d) => ({
    id: d.id,
    apiVersion: d.apiVersion,
    kind: d.kind,
    watched: d.watched ?? true,
    owned: d.owned ?? true,
    created: d.created ?? true,
    updated: d.update !== undefined,
    checkedForReadiness: d.ready !== undefined,
    binding: d.binding ?? false
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
    throw new GrpcError(Status.INVALID_ARGUMENT, `the Capability could not be read: ${error instanceof Error ? error.message : String(error)}`)
  }
  if (recent.size >= RecentCapabilities) recent.delete(recent.keys().next().value as string)
  recent.set(text, capability)
  return capability
}

const findType = (plugin: PluginDefinition, capability: Capability): TypeDefinition | undefined =>
  plugin.types.find((t) => t.type.toLowerCase() === capability.spec.type.toLowerCase())

/** Builds what the author's functions see; undefined version when the type is unknown. */
export const makeContext = (plugin: PluginDefinition, capability: Capability): Context => {
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
    parameters
  }
}

/** The checks every plugin gets: category, type, version, required parameters. */
export const validate = (plugin: PluginDefinition, capability: Capability): Array<string> => {
  const errors: Array<string> = []
  const { category, type: typeName, version } = capability.spec
  if (category.toLowerCase() !== plugin.category.toLowerCase()) {
    errors.push(`category "${category}" is not served by plugin ${plugin.name} (it serves "${plugin.category}")`)
  }
  const type = findType(plugin, capability)
  if (type === undefined) {
    errors.push(`type "${typeName}" is not served by plugin ${plugin.name}; supported types: ${plugin.types.map((t) => t.type).join(", ")}`)
    return errors
  }
  if (version !== undefined && version !== "" && !type.versions.includes(version)) {
    errors.push(`version "${version}" of ${type.type} is not supported; supported versions: ${type.versions.join(", ")}`)
  }
  const context = makeContext(plugin, capability)
  for (const p of plugin.parameters ?? []) {
    if (p.required === true && (context.parameters[p.name] ?? "") === "") errors.push(`parameter ${p.name} is required`)
  }
  if (errors.length === 0 && plugin.validate !== undefined) errors.push(...plugin.validate(context))
  return errors
}

/** Runs an author's function, turning a throw into an INTERNAL status naming the dependent. */
const guarded = <A>(what: string, f: () => A): A => {
  try {
    return f()
  } catch (error) {
    if (error instanceof GrpcError) throw error
    throw new GrpcError(Status.INTERNAL, `${what} failed: ${error instanceof Error ? error.message : String(error)}`)
  }
}

const findDependent = (plugin: PluginDefinition, id: string): DependentDefinition => {
  const found = plugin.dependents.find((d) => d.id === id)
  if (found === undefined) {
    throw new GrpcError(Status.NOT_FOUND, `plugin ${plugin.name} has no dependent "${id}"; it has: ${plugin.dependents.map((d) => d.id).join(", ")}`)
  }
  return found
}

/** A dependent's condition when fetching it failed: missing is pending, anything else failed. */
const conditionFromFetchError = (d: DependentDefinition, context: Context, error: { reason: string; message: string }): Condition =>
  error.reason === "NotFound"
    ? { state: "pending", reason: "NotFound", message: `${d.kind} for ${context.name} does not exist yet` }
    : { state: "failed", reason: error.reason || "FetchFailed", message: error.message }

const stateOf: Record<Condition["state"], ConditionState> = {
  ready: ConditionState.CONDITION_STATE_READY,
  pending: ConditionState.CONDITION_STATE_PENDING,
  failed: ConditionState.CONDITION_STATE_FAILED
}

/** Registers the CapabilityPlugin service for `plugin` on `server`. */
export const registerCapabilityService = (server: GrpcServer, plugin: PluginDefinition): void => {
  const description = describe(plugin)
  server
    .unary(Describe, () => description)
    .unary(CheckValidity, async (request) => {
      const capability = await decode(request.capability)
      return { errors: guarded("validity check", () => validate(plugin, capability)) }
    })
    .unary(BuildDependents, async (request) => {
      const context = makeContext(plugin, await decode(request.capability))
      return {
        dependents: plugin.dependents.map((d) => ({ id: d.id, object: jsonBytes(guarded(`building dependent ${d.id}`, () => d.build(context))) }))
      }
    })
    .unary(UpdateDependent, async (request) => {
      const d = findDependent(plugin, request.id)
      if (d.update === undefined) return { needsUpdate: false, updated: Buffer.alloc(0) }
      const update = d.update.bind(d)
      const context = makeContext(plugin, await decode(request.capability))
      const existing = guarded(`reading existing ${d.id}`, () => JSON.parse(jsonText(request.existing)) as KubeObject)
      const desired = guarded(`building dependent ${d.id}`, () => d.build(context))
      const updated = guarded(`updating dependent ${d.id}`, () => update(existing, desired, context))
      return updated === undefined ? { needsUpdate: false, updated: Buffer.alloc(0) } : { needsUpdate: true, updated: jsonBytes(updated) }
    })
    .unary(EvaluateConditions, async (request) => {
      const context = makeContext(plugin, await decode(request.capability))
      const conditions: Array<DependentCondition> = []
      for (const observed of request.observed) {
        const d = findDependent(plugin, observed.id)
        const ready = d.ready
        if (ready === undefined) continue
        const condition = guarded(`evaluating dependent ${d.id}`, (): Condition => {
          switch (observed.observation?.$case) {
            case "object":
              return ready.call(d, JSON.parse(jsonText(observed.observation.value)) as KubeObject, context)
            case "error":
              return conditionFromFetchError(d, context, observed.observation.value)
            case undefined:
            default:
              return { state: "failed", reason: "NoObservation", message: `no object nor error was sent for ${d.id}` }
          }
        })
        conditions.push({
          id: d.id,
          state: stateOf[condition.state],
          reason: condition.reason ?? "",
          message: condition.message ?? "",
          attributes: { ...condition.attributes }
        })
      }
      return { conditions }
    })
}

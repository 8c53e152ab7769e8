/**
 * Answers the halkyon.capability.v1 RPCs from a PluginDefinition: decodes the
 * Capability, resolves its version and parameters, and calls the author's
 * functions. Errors become gRPC statuses with a message for the user: a
 * Capability that cannot be decoded is INVALID_ARGUMENT, an author's function
 * that throws is INTERNAL naming the dependent.
 */
import type { MessageInitShape } from "@bufbuild/protobuf"
import { decodeCapabilityJson, type Capability } from "../api/Capability.ts"
import {
  CapabilityPlugin,
  ConditionState,
  type DependentConditionSchema,
  type PluginDescriptionSchema
} from "../gen/halkyon/capability/v1/capability_pb.ts"
import type { Condition, Context, DependentDefinition, KubeObject, PluginDefinition, TypeDefinition } from "./Plugin.ts"
import { GrpcError, type GrpcServer, Status } from "./wire/GrpcServer.ts"

const encoder = new TextEncoder()
const decoder = new TextDecoder()
const toJson = (value: unknown): Uint8Array => encoder.encode(JSON.stringify(value))

/** The default version of a type: declared, or the last listed. */
export const defaultVersion = (t: TypeDefinition): string => t.defaultVersion ?? t.versions[t.versions.length - 1] ?? ""

export const describe = (plugin: PluginDefinition): MessageInitShape<typeof PluginDescriptionSchema> => ({
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
    checkedForReadiness: d.ready !== undefined
  }))
})

const decode = (bytes: Uint8Array): Capability => {
  try {
    return decodeCapabilityJson(decoder.decode(bytes))
  } catch (error) {
    throw new GrpcError(Status.INVALID_ARGUMENT, `the Capability could not be read: ${error instanceof Error ? error.message : String(error)}`)
  }
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
  ready: ConditionState.READY,
  pending: ConditionState.PENDING,
  failed: ConditionState.FAILED
}

/** Registers the CapabilityPlugin service for `plugin` on `server`. */
export const registerCapabilityService = (server: GrpcServer, plugin: PluginDefinition): void => {
  const description = describe(plugin)
  const { describe: describeMethod, checkValidity, buildDependents, updateDependent, evaluateConditions } = CapabilityPlugin.method
  server
    .unary(describeMethod, () => description)
    .unary(checkValidity, (request) => ({ errors: guarded("validity check", () => validate(plugin, decode(request.capability))) }))
    .unary(buildDependents, (request) => {
      const context = makeContext(plugin, decode(request.capability))
      return {
        dependents: plugin.dependents.map((d) => ({ id: d.id, object: toJson(guarded(`building dependent ${d.id}`, () => d.build(context))) }))
      }
    })
    .unary(updateDependent, (request) => {
      const d = findDependent(plugin, request.id)
      if (d.update === undefined) return { needsUpdate: false }
      const update = d.update.bind(d)
      const context = makeContext(plugin, decode(request.capability))
      const existing = guarded(`reading existing ${d.id}`, () => JSON.parse(decoder.decode(request.existing)) as KubeObject)
      const desired = guarded(`building dependent ${d.id}`, () => d.build(context))
      const updated = guarded(`updating dependent ${d.id}`, () => update(existing, desired, context))
      return updated === undefined ? { needsUpdate: false } : { needsUpdate: true, updated: toJson(updated) }
    })
    .unary(evaluateConditions, (request) => {
      const context = makeContext(plugin, decode(request.capability))
      const conditions: Array<MessageInitShape<typeof DependentConditionSchema>> = []
      for (const observed of request.observed) {
        const d = findDependent(plugin, observed.id)
        const ready = d.ready
        if (ready === undefined) continue
        const condition = guarded(`evaluating dependent ${d.id}`, (): Condition => {
          switch (observed.observation.case) {
            case "object":
              return ready.call(d, JSON.parse(decoder.decode(observed.observation.value)) as KubeObject, context)
            case "error":
              return conditionFromFetchError(d, context, observed.observation.value)
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

/**
 * What `halkyon plugins render` does, loaded only when it runs (it brings the
 * plugin host, the gRPC client and js-yaml): one Capability through one
 * plugin, with no cluster, by the reconciler's own rules. The Capability is
 * decoded as the operator decodes it, the plugin chosen as the registry
 * chooses, its validity checked, its dependents checked by DependentRules and
 * owned by withOwnership, and, given observed objects, their conditions
 * rolled up into the status (Status.ts) the operator would write.
 *
 * It does not ask the plugin about updates of observed objects: the
 * operator does that against the live object. Nor does it read a parameter
 * given by reference (`valueFrom`): with no cluster, the plugin is shown the
 * reference in its place (`<from Secret db-credentials, key password>`), so a
 * value never reaches the output.
 */
import { readFileSync } from "node:fs"
import * as NodeServices from "@effect/platform-node/NodeServices"
import { Effect, Layer, Schema } from "effect"
import { ApiVersion, Capability, type DependentStatus } from "../api/Capability.ts"
import type { DependentInfo } from "../gen/halkyon/capability/v1/capability.ts"
import type { KubeObject } from "../kube/KubeObject.ts"
import { Metrics } from "../metrics/Metrics.ts"
import { PluginClient, type Observation } from "../plugin-client/PluginClient.ts"
import { classify } from "../plugin-host/PluginFiles.ts"
import { PluginLauncher } from "../plugin-host/PluginLauncher.ts"
import { Redactions } from "../plugin-host/Redactions.ts"
import { attach, launch, type LaunchOptions } from "../plugin-host/PluginProcess.ts"
import type { ReattachTarget } from "../protocol/Reattach.ts"
import { checkBuilt, FieldManager, violationMessage, withOwnership } from "../reconciler/DependentRules.ts"
import { placeholderOf, withValues } from "../reconciler/ParameterReferences.ts"
import { nextStatus, rollUp } from "../reconciler/Status.ts"
import { PluginRegistry } from "../registry/PluginRegistry.ts"

/** Stands for the Capability's uid in owner references: the API server assigns the real one. */
export const PlaceholderUid = "RENDER-PLACEHOLDER-capability-uid"

export class RenderFailed extends Schema.TaggedError<RenderFailed>()("RenderFailed", { detail: Schema.String }) {
  override get message() {
    return this.detail
  }
}

export interface RenderOptions {
  readonly plugin: { readonly path: string } | { readonly reattach: ReattachTarget }
  readonly capabilityFile: string
  readonly observedFiles: ReadonlyArray<string>
  readonly namespace: string | undefined
  readonly output: "yaml" | "json"
  readonly launch: LaunchOptions
}

/** What render found: the objects to apply, and the status the observed objects give. */
export interface Rendered {
  readonly capability: string
  readonly plugin: string
  readonly fieldManager: string
  readonly ownerUidPlaceholder: string
  readonly dependents: ReadonlyArray<KubeObject>
  readonly status?: unknown
}

/** Kinds the API server serves cluster-scoped: with no discovery to ask, render knows these. */
const clusterScoped = new Set([
  "v1/Namespace",
  "v1/Node",
  "v1/PersistentVolume",
  "rbac.authorization.k8s.io/v1/ClusterRole",
  "rbac.authorization.k8s.io/v1/ClusterRoleBinding",
  "storage.k8s.io/v1/StorageClass",
  "storage.k8s.io/v1/CSIDriver",
  "apiextensions.k8s.io/v1/CustomResourceDefinition",
  "scheduling.k8s.io/v1/PriorityClass",
  "networking.k8s.io/v1/IngressClass",
  "admissionregistration.k8s.io/v1/ValidatingWebhookConfiguration",
  "admissionregistration.k8s.io/v1/MutatingWebhookConfiguration",
  "apiregistration.k8s.io/v1/APIService",
  "node.k8s.io/v1/RuntimeClass",
  "halkyon.io/v1beta1/CapabilityInfo"
])
const scopes = (apiVersion: string, kind: string) => (clusterScoped.has(`${apiVersion}/${kind}`) ? false : undefined)

const loadYaml = Effect.promise(() => import("js-yaml"))

/** Every document of a YAML or JSON file, Lists flattened, empty documents dropped. */
const readObjects = (file: string) =>
  Effect.gen(function*() {
    const yaml = yield* loadYaml
    const text = yield* Effect.try({
      try: () => readFileSync(file, "utf8"),
      catch: (e) => new RenderFailed({ detail: `cannot read ${file}: ${e instanceof Error ? e.message : String(e)}` })
    })
    const docs = yield* Effect.try({
      // The core schema: timestamps stay strings, as the API server sends them.
      try: () => yaml.loadAll(text, undefined, { schema: yaml.CORE_SCHEMA, filename: file }),
      catch: (e) => new RenderFailed({ detail: `${file} is neither YAML nor JSON: ${e instanceof Error ? e.message : String(e)}` })
    })
    const objects: Array<Record<string, unknown>> = []
    const add = (doc: unknown) => {
      if (typeof doc !== "object" || doc === null || Array.isArray(doc)) return
      const o = doc as Record<string, unknown>
      if (typeof o.kind === "string" && o.kind.endsWith("List") && Array.isArray(o.items)) o.items.forEach(add)
      else objects.push(o)
    }
    docs.forEach(add)
    return objects
  })

const metadataOf = (
  o: Record<string, unknown>
) => (typeof o.metadata === "object" && o.metadata !== null ? (o.metadata as Record<string, unknown>) : {})

/** The Capability of the file, in its namespace, with the placeholder uid the owner references name. */
const readCapability = (file: string, namespace: string | undefined) =>
  Effect.gen(function*() {
    const found = (yield* readObjects(file)).filter((o) => o.kind === "Capability")
    if (found.length !== 1) {
      return yield* new RenderFailed({
        detail: `${file} holds ${found.length} Capabilities; render takes a file with exactly one (kind: Capability)`
      })
    }
    const raw = found[0] as Record<string, unknown>
    const metadata = metadataOf(raw)
    const ns = typeof metadata.namespace === "string" && metadata.namespace !== "" ? metadata.namespace : namespace ?? "default"
    const object = { ...raw, apiVersion: raw.apiVersion ?? ApiVersion, metadata: { ...metadata, namespace: ns, uid: PlaceholderUid } }
    const decoded = Schema.decodeUnknownExit(Capability)(object)
    // The operator's own words for a spec it cannot read (reason InvalidSpec).
    if (decoded._tag === "Failure") return yield* new RenderFailed({ detail: `the Capability cannot be read: ${String(decoded.cause)}` })
    return withValues(object as unknown as KubeObject, placeholderOf)
  })

const sameObject = (a: KubeObject, b: Record<string, unknown>) => {
  const m = metadataOf(b)
  return b.apiVersion === a.apiVersion && b.kind === a.kind && m.name === a.metadata.name &&
    (m.namespace === undefined || m.namespace === a.metadata.namespace)
}

export const render = Effect.fn("plugins.render")(function*(options: RenderOptions) {
  const capability = yield* readCapability(options.capabilityFile, options.namespace)
  const observedObjects = (yield* Effect.forEach(options.observedFiles, readObjects)).flat()
  const registry = yield* PluginRegistry
  const launched = "path" in options.plugin
    ? yield* Effect.gen(function*() {
      const { path } = options.plugin as { readonly path: string }
      const file = classify(path)
      if (file === undefined || !("form" in file)) {
        return yield* new RenderFailed({
          detail: `${path} is not a plugin: it ${file?.reason ?? "is a dotfile"}; name a plugin executable or .js bundle`
        })
      }
      return yield* launch(file, options.launch)
    })
    : yield* attach(options.plugin.reattach, options.launch)
  const name = launched.file.name
  yield* registry.register(name, launched.description, launched.connection)
  const { category, type, version = "" } = (capability as unknown as Capability).spec
  const resolution = yield* registry.resolve(category, type, version)
  const { connection, description } = resolution

  const errors = yield* connection.checkValidity(capability)
  if (errors.length > 0) {
    return yield* new RenderFailed({
      detail: `the Capability is invalid (the operator would set Ready=False, reason Invalid): ${errors.join("; ")}`
    })
  }
  const built = yield* connection.buildDependents(capability)
  const violation = checkBuilt(built, description.dependents, capability.metadata.namespace ?? "", scopes)
  if (violation !== undefined) {
    return yield* new RenderFailed({
      detail: `the operator would refuse this (Ready=False, reason PluginViolation): ${violationMessage(name, violation)}`
    })
  }
  const infos = new Map(description.dependents.map((d) => [d.id, d]))
  const owned = built.map((b) => ({
    id: b.id,
    info: infos.get(b.id) as DependentInfo,
    object: withOwnership(b.object, capability, infos.get(b.id))
  }))
  const rendered: Rendered = {
    capability: `${capability.metadata.namespace}/${capability.metadata.name}`,
    plugin: name,
    fieldManager: FieldManager,
    ownerUidPlaceholder: PlaceholderUid,
    dependents: owned.map((o) => o.object)
  }
  if (options.observedFiles.length === 0) return rendered

  // As the reconciler: the plugin judges the checked dependents it is shown; the others count as applied.
  const seen = owned.map((o) => ({ ...o, observed: observedObjects.find((x) => sameObject(o.object, x)) }))
  const observations: Array<Observation> = seen.flatMap((
    o
  ) => (o.info.checkedForReadiness && o.observed !== undefined ? [{ id: o.id, object: o.observed }] : []))
  const conditions = observations.length === 0 ? [] : yield* connection.evaluateConditions(capability, observations)
  const byId = new Map(conditions.map((c) => [c.id, c]))
  const dependents = seen.map((o): DependentStatus & { readonly failed: boolean } => {
    const base = { id: o.id, kind: String(o.object.kind), name: o.object.metadata.name }
    const c = byId.get(o.id)
    if (c !== undefined) return { ...base, ready: c.state === "ready", reason: c.reason, message: c.message, failed: c.state === "failed" }
    if (o.info.checkedForReadiness && o.observed === undefined) {
      return {
        ...base,
        ready: false,
        reason: "NotObserved",
        message: "no observed object of this name was given (--observed)",
        failed: false
      }
    }
    return { ...base, ready: true, reason: "Applied", message: "", failed: false }
  })
  const binding = seen.find((o) => o.info.binding)
  const status = nextStatus(
    undefined,
    {
      ...rollUp(dependents),
      dependents: dependents.map(({ failed: _failed, ...d }) => d),
      bindingSecret: binding?.object.metadata.name,
      plugin: name,
      version: resolution.version
    },
    capability.metadata.generation,
    new Date()
  )
  return { ...rendered, status }
}, (effect) =>
  effect.pipe(
    Effect.scoped,
    Effect.provide(Layer.mergeAll(
      PluginRegistry.layer,
      PluginClient.layer.pipe(Layer.provide(Metrics.layer)),
      PluginLauncher.local.pipe(Layer.provide(NodeServices.layer)),
      // Render passes no resolved value (references show as placeholders): nothing to redact.
      Redactions.layer
    )),
    Effect.mapError((e) => (e instanceof RenderFailed ? e : new RenderFailed({ detail: e.message })))
  ))

/** The rendered objects as the operator applies them: YAML documents with what cannot be shown inline said in comments, or JSON. */
export const format = (r: Rendered, output: "yaml" | "json") =>
  Effect.map(loadYaml, (yaml) => {
    if (output === "json") return JSON.stringify(r, null, 2)
    const dump = (o: unknown) => yaml.dump(o, { noRefs: true, lineWidth: -1 }).trimEnd()
    const header = [
      `# Capability ${r.capability}, rendered by plugin ${r.plugin}: ${r.dependents.length} dependent${
        r.dependents.length === 1 ? "" : "s"
      }, in apply order.`,
      `# The operator applies each by server-side apply with field manager "${r.fieldManager}", as the plugin's own identity.`,
      `# ${r.ownerUidPlaceholder} stands for the Capability's uid, which the API server assigns.`
    ].join("\n")
    const docs = r.dependents.map(dump)
    const status = r.status === undefined
      ? []
      : [`# The status the observed objects give the Capability:\nstatus:\n${dump(r.status).replace(/^/gm, "  ")}`]
    return `${header}\n${[...docs, ...status].join("\n---\n")}\n`
  })

/**
 * Reconciler: one Capability, by key ("namespace/name"), from what is to what
 * its plugin says should be, level-based (it reads the current state, never
 * an event):
 *
 * decode the spec -> find the plugin -> the plugin's validity check -> its
 * dependents, applied in order by server-side apply (field manager halkyon,
 * a controller owner reference to the Capability), stopping at the first
 * failure -> their conditions -> the status, written only when it changed ->
 * an Event when the Ready condition changes.
 *
 * It returns when to look again, or fails with an API error to be retried
 * with backoff. It does not watch or queue: the Controller does.
 */
import { Context, Effect, Layer, Schema } from "effect"
import { ApiVersion, Capability, type CapabilityStatus, type DependentStatus } from "../api/Capability.ts"
import type { DependentInfo } from "../gen/halkyon/capability/v1/capability.ts"
import { recordEvent } from "../kube/Events.ts"
import { KubeApiError, KubeClient, type ObjectRef } from "../kube/KubeClient.ts"
import { type KubeObject, objectKey } from "../kube/KubeObject.ts"
import type { PluginCallError } from "../plugin-client/Errors.ts"
import type { BuiltDependent, Observation } from "../plugin-client/PluginClient.ts"
import { PluginRegistry, type Resolution } from "../registry/PluginRegistry.ts"
import { ObjectCache } from "../controller/ObjectCache.ts"
import type { ReconcileResult } from "../controller/Workers.ts"
import { nextStatus, type Outcome, readyCondition, rollUp, sameStatus } from "./Status.ts"

export const FieldManager = "halkyon"
/** Set on every dependent, so that watches select only ours. */
export const CapabilityLabel = "halkyon.io/capability"


const decodeExit = Schema.decodeUnknownExit(Capability)
// The cache replaces objects on update and never changes them: a version
// reconciled again (a dependent's event, a retry) is not decoded again.
const decodedVersions = new WeakMap<KubeObject, ReturnType<typeof decodeExit>>()
const decodeCapability = (raw: KubeObject) => {
  let exit = decodedVersions.get(raw)
  if (exit === undefined) decodedVersions.set(raw, exit = decodeExit(raw))
  return exit
}

/** What one reconcile found, and whether to look again soon (retry) or with backoff (failure). */
type Attempt = Outcome & { readonly retry?: boolean; readonly failure?: KubeApiError }

/** How long to wait before retrying a Capability whose plugin is down or restarting. */
const PluginRetryMs = 5_000

export class Reconciler extends Context.Service<Reconciler, {
  readonly reconcile: (key: string) => Effect.Effect<ReconcileResult, KubeApiError>
  /** Keys waiting for a plugin that serves them; reconciled again when plugins change. */
  readonly waitingForPlugin: Effect.Effect<ReadonlyArray<string>>
}>()("halkyon/reconciler/Reconciler") {
  static readonly layer = Layer.effect(Reconciler, Effect.suspend(() => make()))
}

const make = Effect.fnUntraced(function*() {
  const kube = yield* KubeClient
  const registry = yield* PluginRegistry
  const cache = yield* ObjectCache

  /**
   * The cached object; on a miss, undefined when its kind's informer has
   * listed everything of ours, else the API server's answer.
   */
  const read = (ref: ObjectRef) => {
    const hit = cache.get(ref)
    if (hit !== undefined || cache.synced(ref.apiVersion, ref.kind)) return Effect.succeed<KubeObject | undefined>(hit)
    return kube.get(ref).pipe(
      Effect.tap((o) => Effect.sync(() => cache.put(o))),
      Effect.map((o): KubeObject | undefined => o),
      Effect.catchIf((e) => e.notFound, () => Effect.succeed(undefined))
    )
  }
  /** Every write's answer goes into the cache at once (write-through). */
  const remember = (o: KubeObject) => Effect.sync(() => cache.put(o))
  const context = yield* Effect.context<KubeClient>()
  const waiting = new Set<string>()

  /** Writes the status when it changed, with an Event when Ready changed. */
  const report = (raw: KubeObject, previous: CapabilityStatus | undefined, outcome: Outcome) =>
    Effect.gen(function*() {
      const status = nextStatus(previous, outcome, raw.metadata.generation, new Date())
      if (sameStatus(previous, status)) return
      // A merge patch keeps keys it does not name: null removes the facts that no longer hold.
      const patch = { plugin: null, version: null, bindingSecret: null, dependents: null, ...status }
      yield* kube.patchStatus({ apiVersion: ApiVersion, kind: "Capability", namespace: raw.metadata.namespace, name: raw.metadata.name }, patch).pipe(
        Effect.tap(remember)
      )
      const before = readyCondition(previous)
      const key = objectKey(raw)
      if (before?.status !== outcome.ready || before.reason !== outcome.reason) {
        yield* Effect.logInfo(`capability ${key}: Ready=${outcome.ready} (${outcome.reason}) ${outcome.message}`).pipe(
          Effect.annotateLogs({ capability: key, ready: outcome.ready, reason: outcome.reason })
        )
        // Events mark what a user acts on: Ready, or a failure. Waiting for
        // dependents is progress, logged but not an Event (one per Capability
        // created would double the API writes of a large rollout).
        if (outcome.reason !== "DependentsNotReady") {
          yield* recordEvent(raw, outcome.ready === "True" ? "Normal" : "Warning", outcome.reason, outcome.message).pipe(Effect.provideContext(context))
        }
      }
    })

  const reconcile = Effect.fn("Reconciler.reconcile")(function*(key: string) {
    const [namespace = "", name = ""] = key.split("/")
    yield* Effect.annotateCurrentSpan({ capability: key })
    const raw = yield* read({ apiVersion: ApiVersion, kind: "Capability", namespace, name })
    // Deleted: the garbage collector removes the dependents through their owner references.
    if (raw === undefined || raw.metadata.deletionTimestamp !== undefined) {
      waiting.delete(key)
      return {}
    }
    const previous = (raw as { status?: CapabilityStatus }).status
    const decoded = decodeCapability(raw)
    if (decoded._tag === "Failure") {
      yield* report(raw, previous, { ready: "False", reason: "InvalidSpec", message: `the Capability cannot be read: ${String(decoded.cause)}` })
      return {}
    }
    const capability = decoded.value
    const { category, type, version = "" } = capability.spec
    const resolved = yield* registry.resolve(category, type, version).pipe(Effect.result)
    if (resolved._tag === "Failure") {
      const error = resolved.failure
      if (error._tag === "NoPluginFound") {
        waiting.add(key)
        yield* report(raw, previous, { ready: "False", reason: "NoPlugin", message: error.message })
        return {}
      }
      yield* report(raw, previous, { ready: "Unknown", reason: "PluginUnavailable", message: error.message })
      return { requeueAfterMs: PluginRetryMs }
    }
    waiting.delete(key)
    const outcome = yield* provision(raw, resolved.success).pipe(
      Effect.catchTag(["PluginUnavailable", "PluginTimeout"], (e) =>
        Effect.succeed<Attempt>({ ready: "Unknown", reason: "PluginUnavailable", message: e.message, retry: true })
      ),
      Effect.catchTag("PluginCallFailed", (e) => Effect.succeed<Attempt>({ ready: "False", reason: "PluginError", message: e.message }))
    )
    const { failure, retry, ...reported } = outcome
    yield* report(raw, previous, { ...reported, plugin: resolved.success.plugin, version: resolved.success.version })
    if (failure !== undefined) return yield* failure
    return retry === true ? { requeueAfterMs: PluginRetryMs } : {}
  })

  /** Validity, dependents in order, conditions: what the Ready condition should say. */
  const provision = (raw: KubeObject, resolution: Resolution): Effect.Effect<Attempt, PluginCallError | KubeApiError> =>
    Effect.gen(function*() {
      const { connection, description } = resolution
      const errors = yield* connection.checkValidity(raw)
      if (errors.length > 0) return { ready: "False", reason: "Invalid", message: errors.join("; ") }
      const built = yield* connection.buildDependents(raw)
      const infos = new Map(description.dependents.map((d) => [d.id, d]))
      const observed: Array<{ built: BuiltDependent; info: DependentInfo | undefined; object: KubeObject }> = []
      for (const dependent of built) {
        const info = infos.get(dependent.id)
        const result = yield* applyDependent(raw, dependent, info, resolution).pipe(Effect.result)
        if (result._tag === "Failure") {
          const e = result.failure
          if (e._tag !== "KubeApiError" || e.code === 0) return yield* e
          return {
            ready: "False",
            reason: "ApplyFailed",
            message: `${String(dependent.object.kind)} ${nameOf(dependent.object)} (${dependent.id}) could not be applied: ${e.detail}`,
            dependents: observed.map((o) => dependentStatus(o.built, true, "Applied", "")),
            // Retried with backoff once the status says why.
            failure: e
          }
        }
        // Objects read or written went through the cache, which dropped their managedFields.
        if (result.success !== undefined) observed.push({ built: dependent, info, object: result.success })
      }
      const checked = observed.filter((o) => o.info?.checkedForReadiness === true)
      const observations: Array<Observation> = checked.map((o) => ({ id: o.built.id, object: o.object }))
      const conditions = checked.length === 0 ? [] : yield* connection.evaluateConditions(raw, observations)
      const byId = new Map(conditions.map((c) => [c.id, c]))
      const dependents = observed.map((o) => {
        const c = byId.get(o.built.id)
        return c === undefined
          ? { ...dependentStatus(o.built, true, "Applied", ""), failed: false }
          : { ...dependentStatus(o.built, c.state === "ready", c.reason, c.message), failed: c.state === "failed" }
      })
      const binding = observed.find((o) => o.info?.binding === true)
      return {
        ...rollUp(dependents),
        dependents: dependents.map(({ failed: _failed, ...d }) => d),
        bindingSecret: binding === undefined ? undefined : nameOf(binding.object)
      }
    })

  /**
   * Creates a missing dependent, or asks the plugin whether an existing one
   * needs an update; returns the object as it now is (undefined when it is
   * missing and the plugin does not want it created).
   */
  const applyDependent = (raw: KubeObject, dependent: BuiltDependent, info: DependentInfo | undefined, resolution: Resolution) =>
    Effect.gen(function*() {
      const desired = withOwnership(dependent.object, raw, info)
      const ref = { apiVersion: desired.apiVersion, kind: desired.kind, namespace: desired.metadata.namespace, name: desired.metadata.name }
      const existing = yield* read(ref)
      if (existing === undefined) {
        if (info !== undefined && !info.created) return undefined
        // Not forced: should an object of that name exist that is not ours
        // (the cache holds only ours), its manager's fields make this fail
        // with a conflict rather than be taken over.
        return yield* kube.apply(desired, FieldManager, { force: false }).pipe(Effect.tap(remember))
      }
      const owners = existing.metadata.ownerReferences ?? []
      if (owners.some((o) => o.controller === true && o.uid !== raw.metadata.uid)) {
        return yield* new KubeApiError({
          code: 409,
          reason: "AlreadyExists",
          detail: `a ${ref.kind} named ${ref.name} already exists and is controlled by another owner`,
          request: `apply ${ref.kind} ${ref.namespace}/${ref.name}`
        })
      }
      if (info === undefined || !info.updated) return existing
      const decision = yield* resolution.connection.updateDependent(dependent.id, raw, existing)
      if (!decision.needsUpdate || decision.updated === undefined) return existing
      const updated = withOwnership(decision.updated, raw, info)
      // Fields another manager set (a hand edit's list items, say) survive an
      // apply, or make it invalid (two ports of one name). Then a merge patch,
      // whose lists replace the server's whole, puts the plugin's object back.
      const replace = Effect.logDebug(`${ref.kind} ${ref.namespace}/${ref.name}: fields another manager set stand in the way of the apply; replacing them`).pipe(
        Effect.andThen(kube.mergePatch(ref, updated, FieldManager)),
        Effect.tap(remember)
      )
      const applied = yield* kube.apply(updated, FieldManager).pipe(
        Effect.tap(remember),
        Effect.map((o): KubeObject | undefined => o),
        Effect.catchIf((e) => e.code === 422, () => Effect.succeed(undefined))
      )
      if (applied === undefined) return yield* replace
      const again = yield* resolution.connection.updateDependent(dependent.id, raw, applied)
      return again.needsUpdate ? yield* replace : applied
    })

  return Reconciler.of({ reconcile, waitingForPlugin: Effect.sync(() => [...waiting]) })
})

const nameOf = (object: Record<string, unknown>) => String((object.metadata as { name?: unknown } | undefined)?.name ?? "")

const dependentStatus = (built: BuiltDependent, ready: boolean, reason: string, message: string): DependentStatus => ({
  id: built.id,
  kind: String(built.object.kind),
  name: nameOf(built.object),
  ready,
  reason,
  message
})

/**
 * The object to apply: what the plugin built, in the Capability's namespace,
 * labelled as ours, owned by the Capability (unless the plugin says not), and
 * without the fields an apply must not carry (a plugin may hand back an
 * object as read from the server).
 */
export const withOwnership = (object: Record<string, unknown>, owner: KubeObject, info: DependentInfo | undefined): KubeObject => {
  const { status: _status, ...rest } = object
  const metadata = { ...(object.metadata as Record<string, unknown>) }
  for (const field of ["managedFields", "resourceVersion", "uid", "creationTimestamp", "generation", "selfLink"]) delete metadata[field]
  const owned = info === undefined || info.owned
  return {
    ...(rest as unknown as KubeObject),
    metadata: {
      ...(metadata as unknown as KubeObject["metadata"]),
      namespace: (metadata.namespace as string | undefined) ?? owner.metadata.namespace,
      labels: { ...(metadata.labels as Record<string, string> | undefined), [CapabilityLabel]: owner.metadata.name },
      ...(owned
        ? {
            ownerReferences: [{
              apiVersion: ApiVersion,
              kind: "Capability",
              name: owner.metadata.name,
              uid: owner.metadata.uid ?? "",
              controller: true,
              blockOwnerDeletion: true
            }]
          }
        : {})
    }
  }
}

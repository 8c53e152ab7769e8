/**
 * Reconciler: one Capability, by key ("namespace/name"), from what is to what
 * its plugin says should be, level-based (it reads the current state, never
 * an event):
 *
 * decode the spec -> find the plugin -> the plugin's validity check -> the
 * operator's finalizer (Teardown.ts) -> its dependents, built from what is
 * observed of this Capability's own, checked (DependentRules.ts) and refused
 * where another owner holds a name (Conflict), all before the first write ->
 * the dependents applied in the waves of their graph (DependentGraph.ts), a
 * wave concurrently, by server-side apply (field manager halkyon, a
 * controller owner reference to the Capability; create-only for new ones, the
 * existing uid as precondition for updates) as the plugin's own identity
 * (PluginIdentity); a dependent behind one that waits for readiness and is
 * not ready waits; the plugin asked to build again before a wave that depends
 * on what was just written; stopping at the first failed wave -> their
 * conditions, the plugin shown only objects this Capability controls ->
 * what it no longer builds pruned (Inventory.ts, Teardown.ts) -> the status
 * with the inventory, written only when it changed -> an Event when the Ready
 * condition changes. A rule broken is PluginViolation, with nothing of that
 * build written; a write the API server forbids the plugin's identity is
 * Forbidden, naming the missing permission. A Capability marked for deletion
 * goes to Teardown.finalize.
 *
 * It returns when to look again, or fails with an API error to be retried
 * with backoff. It does not watch or queue: the Controller does.
 */
import { Clock, Context, Data, Effect, Layer, Schema } from "effect"
import { ApiVersion, Capability, type CapabilityStatus, type DependentStatus, type InventoryEntry } from "../api/Capability.ts"
import { declaresGraph, dependencies, graphProblem, levels } from "../protocol/DependentGraph.ts"
import { inventoryRef, staleEntries } from "./Inventory.ts"
import { makeTeardown, RemovalPollMs } from "./Teardown.ts"
import { DeletionPolicy, type DependentInfo } from "../gen/halkyon/capability/v1/capability.ts"
import { recordEvent } from "../kube/Events.ts"
import { type KubeApi, KubeClient, type ObjectRef } from "../kube/KubeClient.ts"
import { type KubeObject, objectKey } from "../kube/KubeObject.ts"
import type { PluginCallError } from "../plugin-client/Errors.ts"
import type { BuiltDependent, Observation } from "../plugin-client/PluginClient.ts"
import { PluginRegistry, type Resolution } from "../registry/PluginRegistry.ts"
import { ObjectCache } from "../controller/ObjectCache.ts"
import type { ReconcileResult } from "../controller/Workers.ts"
import { makeKeyedBackoff } from "../config/Backoff.ts"
import { Metrics } from "../metrics/Metrics.ts"
import { checkBuilt, checkUpdated, FieldManager, type Violation, violationMessage, withOwnership } from "./DependentRules.ts"
import { describeForbidden, PluginIdentity } from "./PluginIdentity.ts"
import { ParameterReferences } from "./ParameterReferences.ts"
import { nextStatus, type Outcome, readyCondition, redactOutcome, rollUp, sameStatus } from "./Status.ts"
import { KubeApiError } from "../kube/Errors.ts"

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
type Attempt = Outcome & { readonly retry?: boolean; readonly failure?: KubeApiError; readonly requeueAfterMs?: number }

/**
 * When to retry a Capability whose plugin is down, restarting, timing out or
 * busy: exponential per Capability (1 s, 2 s, 4 s… up to a minute), reset by
 * a reconcile that reached its plugin. A hung plugin's Capabilities then cost
 * fewer and fewer workers, where a fixed delay kept coming back.
 */
export const PluginRetryBaseMs = 1_000
export const PluginRetryMaxMs = 60_000

export class Reconciler extends Context.Service<Reconciler, {
  readonly reconcile: (key: string) => Effect.Effect<ReconcileResult, KubeApiError>
  /** Keys waiting for a plugin that serves them; reconciled again when plugins change. */
  readonly waitingForPlugin: Effect.Effect<ReadonlyArray<string>>
}>()("halkyon/reconciler/Reconciler") {
  /** Needs ParameterReferences: the operator gives it the identity that reads referenced Secrets. */
  static readonly layerNoDeps = Layer.effect(Reconciler, Effect.suspend(() => make()))
  /** References read with the KubeClient's own identity. */
  static readonly layer = Reconciler.layerNoDeps.pipe(Layer.provideMerge(ParameterReferences.layer()))
}

const make = Effect.fnUntraced(function*() {
  const kube = yield* KubeClient
  const registry = yield* PluginRegistry
  const cache = yield* ObjectCache
  const metrics = yield* Metrics
  const identity = yield* PluginIdentity
  const references = yield* ParameterReferences

  /**
   * The cached object; on a miss, undefined when its kind's informer has
   * listed everything of ours, else the API server's answer (asked as `as`).
   */
  const read = (ref: ObjectRef, as: KubeApi = kube, keep: (o: KubeObject) => boolean = () => true) => {
    const hit = cache.get(ref)
    if (hit !== undefined || cache.synced(ref.apiVersion, ref.kind)) return Effect.succeed<KubeObject | undefined>(hit)
    return as.get(ref).pipe(
      Effect.tap((o) => Effect.sync(() => keep(o) && cache.put(o))),
      Effect.map((o): KubeObject | undefined => o),
      Effect.catchIf((e) => e.notFound, () => Effect.succeed(undefined))
    )
  }
  /** Every write's answer goes into the cache at once (write-through). */
  const remember = (o: KubeObject) => Effect.sync(() => cache.put(o))
  const context = yield* Effect.context<KubeClient>()
  const waiting = new Set<string>()
  /** Plugin retries in a row, by Capability: from 1 s, doubling to a minute. */
  const pluginRetries = makeKeyedBackoff(PluginRetryBaseMs, PluginRetryMaxMs)
  const retryLater = (key: string) => Effect.map(pluginRetries.next(key), (requeueAfterMs) => ({ requeueAfterMs }))

  /** Writes the status when it changed, with an Event when Ready changed. */
  const report = (raw: KubeObject, previous: CapabilityStatus | undefined, outcome: Outcome) =>
    Effect.gen(function*() {
      const status = nextStatus(previous, outcome, raw.metadata.generation, new Date(yield* Clock.currentTimeMillis))
      if (sameStatus(previous, status)) return
      // A merge patch keeps keys it does not name: null removes the facts that no longer hold.
      const patch = { plugin: null, version: null, bindingSecret: null, binding: null, dependents: null, inventory: null, ...status }
      yield* kube.patchStatus(
        { apiVersion: ApiVersion, kind: "Capability", namespace: raw.metadata.namespace, name: raw.metadata.name },
        patch
      ).pipe(
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
          yield* recordEvent(raw, outcome.ready === "True" ? "Normal" : "Warning", outcome.reason, outcome.message).pipe(
            Effect.provideContext(context)
          )
        }
      }
    })

  const { ensureFinalizer, finalize, removeEntries } = makeTeardown({ kube, cache, identity, report, remember })

  const reconcile = Effect.fn("Reconciler.reconcile")(function*(key: string) {
    const [namespace = "", name = ""] = key.split("/")
    yield* Effect.annotateCurrentSpan({ capability: key })
    const raw = yield* read({ apiVersion: ApiVersion, kind: "Capability", namespace, name })
    if (raw === undefined || raw.metadata.deletionTimestamp !== undefined) {
      waiting.delete(key)
      pluginRetries.reset(key)
      references.forget(key)
      // Marked for deletion: the operator removes the dependents in order, then lets it go.
      return raw === undefined ? {} : yield* finalize(raw, key)
    }
    const previous = (raw as { status?: CapabilityStatus }).status
    const decoded = decodeCapability(raw)
    if (decoded._tag === "Failure") {
      yield* report(raw, previous, {
        ready: "False",
        reason: "InvalidSpec",
        message: `the Capability cannot be read: ${String(decoded.cause)}`
      })
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
      yield* report(raw, previous, { ready: "Unknown", reason: unavailableReason(error), message: error.message })
      return yield* retryLater(key)
    }
    waiting.delete(key)
    // Parameters given by reference: resolved for the plugin only; their values never reach a status, Event or log.
    const parameters = yield* references.resolve(key, raw, capability).pipe(Effect.result)
    if (parameters._tag === "Failure") {
      const e = parameters.failure
      if (e.code === 403) {
        yield* report(raw, previous, {
          ready: "False",
          reason: "ParameterReferenceForbidden",
          message: `a parameter's reference could not be read: ${e.detail}`
        })
      }
      return yield* e
    }
    if (parameters.success._tag === "NotFound") {
      // The watch on the referenced kind reconciles it again when the object appears or changes.
      yield* report(raw, previous, { ready: "False", reason: "ParameterReferenceNotFound", message: parameters.success.message })
      return {}
    }
    const { capability: forPlugin, redact } = parameters.success
    const outcome = yield* provision(forPlugin, resolved.success, redact).pipe(
      // An API server's refusal may quote what the plugin built from a value: the workers log it.
      Effect.mapError((e) => (e._tag === "KubeApiError" ? redactError(e, redact) : e)),
      Effect.catchTag(
        ["PluginUnavailable", "PluginTimeout"],
        (e) => Effect.succeed<Attempt | "busy">({ ready: "Unknown", reason: unavailableReason(e), message: e.message, retry: true })
      ),
      Effect.catchTag(
        "PluginCallFailed",
        (e) => Effect.succeed<Attempt | "busy">({ ready: "False", reason: "PluginError", message: e.message })
      ),
      Effect.catchTag("PluginBusy", () => Effect.succeed<Attempt | "busy">("busy"))
    )
    // Its plugin has its share of the workers already: the status stays as it is, the Capability waits its turn.
    if (outcome === "busy") return yield* retryLater(key)
    const { failure, retry, requeueAfterMs, ...reported } = outcome
    yield* report(raw, previous, redactOutcome({ ...reported, plugin: resolved.success.plugin, version: resolved.success.version }, redact))
    if (retry === true) return yield* retryLater(key)
    pluginRetries.reset(key)
    if (failure !== undefined) return yield* redactError(failure, redact)
    return requeueAfterMs === undefined ? {} : { requeueAfterMs }
  })

  /**
   * Validity, then the dependents wave by wave (DependentGraph): each build
   * checked before any of its writes; a wave's dependents applied
   * concurrently; one whose dependency waits for readiness and is not ready
   * left waiting; the plugin asked to build again when a later wave depends on
   * what an earlier one wrote (it sees it observed). Then conditions, and the
   * entries no longer built pruned: what the Ready condition should say.
   */
  const provision = (
    raw: KubeObject,
    resolution: Resolution,
    redact: (text: string) => string
  ): Effect.Effect<Attempt, PluginCallError | KubeApiError> =>
    Effect.gen(function*() {
      const { connection, description } = resolution
      const errors = yield* connection.checkValidity(raw)
      if (errors.length > 0) return { ready: "False", reason: "Invalid", message: errors.join("; ") }
      const nodes = description.dependents
      // The registry refuses such a plugin at load; a reconcile never applies one's answer.
      const graph = graphProblem(nodes)
      if (graph !== undefined) return yield* violated(raw, resolution, { rule: "graph", id: "", message: graph }, redact)
      const previous = ((raw as { status?: CapabilityStatus }).status?.inventory) ?? []
      // Before the first write: whatever is applied from now on is deleted, in order, with the Capability.
      yield* ensureFinalizer(raw)
      const namespace = raw.metadata.namespace ?? ""
      const scopes = yield* scopesOf(nodes)
      const infos = new Map(nodes.map((d) => [d.id, d]))
      const deps = dependencies(nodes)
      const level = levels(nodes)
      const rebuilds = declaresGraph(nodes)
      const client = identity.clientFor(resolution.plugin)

      // This Capability's own objects, as the cache holds them: what the plugin is shown.
      const observed = new Map<string, KubeObject>()
      for (const e of previous) {
        const o = yield* read(inventoryRef(e, namespace), client, (x) => controlledBy(x, raw)).pipe(
          Effect.orElseSucceed(() => undefined)
        )
        if (o !== undefined && o.metadata.uid === e.uid && controlledBy(o, raw)) observed.set(e.id, o)
      }
      const buildChecked = Effect.gen(function*() {
        const shown = [...observed].map(([id, object]) => ({ id, object }))
        const built = yield* connection.buildDependents(raw, shown)
        return { built, observed: shown, refused: checkBuilt(built, nodes, namespace, scopes) }
      })
      let current = yield* buildChecked
      if (current.refused !== undefined) return yield* violated(raw, resolution, current.refused, redact)
      // Before the first write too: a name another owner holds refuses the whole answer.
      for (const dependent of current.built) {
        const info = infos.get(dependent.id)
        if (info === undefined) continue
        const existing = yield* read(refOf(withOwnership(dependent.object, raw, info)), client, (o) => controlledBy(o, raw)).pipe(
          Effect.orElseSucceed(() => undefined)
        )
        if (existing !== undefined && !controlledBy(existing, raw)) return yield* conflict(raw, dependent.id, existing, client)
      }
      /** Ids written since the build in `current`: a dependent depending on one is built again first. */
      const unseen = new Set<string>()

      const applied = new Map<string, { built: BuiltDependent; info: DependentInfo; object: KubeObject }>()
      const waitingFor = new Map<string, ReadonlyArray<string>>()
      const ready = new Set<string>()
      const statusSoFar = () => [...applied.values()].map((o) => dependentStatus(o.built, true, "Applied", ""))
      const inventoryNow = (): Array<InventoryEntry> => {
        const entries = new Map(previous.map((e) => [e.id, e]))
        for (const o of applied.values()) {
          const e = entryOf(o.built.id, o.object, deps.get(o.built.id) ?? [], o.built.deletionPolicy ?? o.info.deletionPolicy)
          const old = entries.get(e.id)
          // Another object under the same id and another name: the old one stays listed until pruned.
          // (Under the same name the old one is gone: two objects cannot share a name.)
          if (old !== undefined && old.uid !== e.uid && (old.name !== e.name || old.kind !== e.kind)) {
            entries.set(`${e.id}\u0000old`, old)
          }
          entries.set(e.id, e)
        }
        return [...entries.values()]
      }
      /** The dependencies that hold `id` back: included, and not applied yet or not ready when waited for. */
      const blockersOf = (id: string, included: ReadonlySet<string>) =>
        (deps.get(id) ?? []).filter((d) => included.has(d) && (waitingFor.has(d) || (infos.get(d)?.waitForReady === true && !ready.has(d))))
      const maxLevel = Math.max(-1, ...level.values())
      for (let l = 0; l <= maxLevel; l++) {
        if (rebuilds && unseen.size > 0) {
          const included = new Set(current.built.map((b) => b.id))
          // A dependent that waits anyway needs no new build.
          const inWave = current.built.filter((b) => level.get(b.id) === l && blockersOf(b.id, included).length === 0)
          if (inWave.some((b) => (deps.get(b.id) ?? []).some((d) => unseen.has(d)))) {
            current = yield* buildChecked
            if (current.refused !== undefined) {
              const v = yield* violated(raw, resolution, current.refused, redact)
              return { ...v, inventory: inventoryNow() }
            }
            unseen.clear()
          }
        }
        const included = new Set(current.built.map((b) => b.id))
        const wave = current.built.filter((b) => level.get(b.id) === l)
        const plan: Array<Step> = []
        for (const dependent of wave) {
          const info = infos.get(dependent.id)
          if (info === undefined) continue
          // A dependency left out of this reconcile holds nothing back; one not applied, or not ready, does.
          const blockers = blockersOf(dependent.id, included)
          if (blockers.length > 0) {
            waitingFor.set(dependent.id, blockers)
            continue
          }
          const desired = withOwnership(dependent.object, raw, info)
          // Cached only when ours: no watch would tell the cache that someone else's went away.
          const existing = yield* read(refOf(desired), client, (o) => controlledBy(o, raw)).pipe(Effect.result)
          if (existing._tag === "Failure") {
            if (existing.failure.code === 403) {
              return { ...forbidden(existing.failure, dependent, resolution, [...applied.values()]), inventory: inventoryNow() }
            }
            return yield* existing.failure
          }
          if (existing.success === undefined) {
            if (info.created) plan.push({ dependent, info, create: desired })
            continue
          }
          // Not ours: neither written nor shown to the plugin.
          if (!controlledBy(existing.success, raw)) {
            return { ...(yield* conflict(raw, dependent.id, existing.success, client)), inventory: inventoryNow() }
          }
          const found = existing.success
          if (!info.updated) {
            plan.push({ dependent, info, keep: found })
            continue
          }
          const decision = yield* connection.updateDependent(dependent.id, raw, found, current.observed)
          if (!decision.needsUpdate || decision.updated === undefined) {
            plan.push({ dependent, info, keep: found })
            continue
          }
          const wrong = checkUpdated(
            { id: dependent.id, object: decision.updated, bytes: decision.bytes },
            found,
            nodes,
            namespace,
            scopes
          )
          if (wrong !== undefined) return { ...(yield* violated(raw, resolution, wrong, redact)), inventory: inventoryNow() }
          plan.push({ dependent, info, keep: found, update: withOwnership(decision.updated, raw, info), observed: current.observed })
        }

        // One wave's dependents depend on none of each other: written concurrently.
        const results = yield* Effect.forEach(
          plan,
          (step) => Effect.map(write(raw, step, resolution, client).pipe(Effect.result), (result) => ({ step, result })),
          { concurrency: "unbounded" }
        )
        for (const { step, result } of results) {
          if (result._tag === "Success") {
            const before = "keep" in step ? step.keep.metadata.resourceVersion : undefined
            if (before !== result.success.metadata.resourceVersion) unseen.add(step.dependent.id)
            // Objects read or written went through the cache, which dropped their managedFields.
            applied.set(step.dependent.id, { built: step.dependent, info: step.info, object: result.success })
            observed.set(step.dependent.id, result.success)
          }
        }
        for (const { step, result } of results) {
          if (result._tag === "Success") continue
          const e = result.failure
          if (e._tag === "Conflict") {
            return { ...(yield* conflict(raw, step.dependent.id, e.existing, client)), inventory: inventoryNow() }
          }
          if (e._tag !== "KubeApiError" || e.code === 0) return yield* e
          if (e.code === 403) return { ...forbidden(e, step.dependent, resolution, [...applied.values()]), inventory: inventoryNow() }
          return {
            ready: "False",
            reason: "ApplyFailed",
            message: `${String(step.dependent.object.kind)} ${
              nameOf(step.dependent.object)
            } (${step.dependent.id}) could not be applied: ${e.detail}`,
            dependents: statusSoFar(),
            inventory: inventoryNow(),
            // Retried with backoff once the status says why.
            failure: e
          }
        }
        // Those that hold the next waves back: ready when the plugin says so (or, judged by nothing, once applied).
        const gates = plan.filter((s) => s.info.waitForReady && applied.has(s.dependent.id))
        const judged = gates.filter((s) => s.info.checkedForReadiness)
        for (const s of gates) if (!s.info.checkedForReadiness) ready.add(s.dependent.id)
        if (judged.length > 0) {
          const conditions = yield* connection.evaluateConditions(
            raw,
            judged.flatMap((s) => {
              const o = applied.get(s.dependent.id)
              return o === undefined ? [] : [{ id: s.dependent.id, object: o.object }]
            })
          )
          for (const c of conditions) if (c.state === "ready") ready.add(c.id)
        }
      }

      // Only objects this Capability controls reach the plugin.
      const observedNow = [...applied.values()]
      const checked = observedNow.filter((o) => o.info.checkedForReadiness && controlledBy(o.object, raw))
      const observations: Array<Observation> = checked.map((o) => ({ id: o.built.id, object: o.object }))
      const conditions = checked.length === 0 ? [] : yield* connection.evaluateConditions(raw, observations)
      const byId = new Map(conditions.map((c) => [c.id, c]))
      const dependents = observedNow.map((o) => {
        const c = byId.get(o.built.id)
        return c === undefined
          ? { ...dependentStatus(o.built, true, "Applied", ""), failed: false }
          : { ...dependentStatus(o.built, c.state === "ready", c.reason, c.message), failed: c.state === "failed" }
      })
      for (const b of current.built) {
        const on = waitingFor.get(b.id)
        if (on === undefined) continue
        const names = on.map((d) => {
          const o = applied.get(d)
          return o === undefined ? d : `${d} (${o.object.kind} ${o.object.metadata.name})`
        })
        dependents.push({
          ...dependentStatus(b, false, "Waiting", `waits for ${names.join(", ")} to be ready`),
          waitingFor: on,
          failed: false
        })
      }

      // Built now: kept. A dependent waiting keeps its entry (its object is left as it is).
      const builtNow = current.built.map((b) => ({
        id: b.id,
        apiVersion: String(b.object.apiVersion),
        kind: String(b.object.kind),
        name: nameOf(b.object)
      }))
      const inventory = inventoryNow()
      const stale = staleEntries(inventory, builtNow)
      const removal = yield* removeEntries(raw, stale, client)
      const gone = new Set(removal.removed.map((e) => e.uid))
      const binding = observedNow.find((o) => o.info.binding)
      const attempt: Attempt = {
        ...rollUp(dependents),
        dependents: dependents.map(({ failed: _failed, ...d }) => d),
        bindingSecret: binding === undefined ? undefined : nameOf(binding.object),
        inventory: inventory.filter((e) => !gone.has(e.uid))
      }
      if (removal.stuck.length > 0) return { ...attempt, requeueAfterMs: RemovalPollMs }
      return attempt
    })

  /** Whether the declared kinds are namespaced, from discovery (cached by the client). */
  const scopesOf = (declared: ReadonlyArray<DependentInfo>) =>
    Effect.gen(function*() {
      const known = new Map<string, boolean | undefined>()
      for (const d of declared) {
        const key = `${d.apiVersion}/${d.kind}`
        if (!known.has(key)) known.set(key, yield* kube.namespaced(d.apiVersion, d.kind))
      }
      return (apiVersion: string, kind: string) => known.get(`${apiVersion}/${kind}`)
    })

  /** The API server refused the plugin's identity: the status names the permission and how to grant it; retried with backoff. */
  const forbidden = (
    e: KubeApiError,
    dependent: BuiltDependent,
    resolution: Resolution,
    observed: ReadonlyArray<{ readonly built: BuiltDependent }>
  ): Attempt => ({
    ready: "False",
    reason: "Forbidden",
    message: describeForbidden({
      detail: e.detail,
      object: `${String(dependent.object.kind)} ${nameOf(dependent.object)} (${dependent.id})`,
      plugin: resolution.plugin,
      actingAs: identity.userOf(resolution.plugin),
      regenerate: identity.settings.regenerate
    }),
    dependents: observed.map((o) => dependentStatus(o.built, true, "Applied", "")),
    // Retried with backoff: the RBAC may be applied meanwhile.
    failure: e
  })

  /** A plugin's answer broke a rule: counted, logged, and the Capability fails with nothing written. */
  const violated = (raw: KubeObject, resolution: Resolution, violation: Violation, redact: (text: string) => string) =>
    Effect.gen(function*() {
      metrics.pluginViolation(resolution.plugin, violation.rule)
      const message = redact(violationMessage(resolution.plugin, violation))
      yield* Effect.logWarning(`capability ${objectKey(raw)}: ${message}`).pipe(
        Effect.annotateLogs({ capability: objectKey(raw), plugin: resolution.plugin, rule: violation.rule })
      )
      return { ready: "False", reason: "PluginViolation", message } satisfies Attempt
    })

  /** An object of a dependent's name exists that this Capability does not control: never taken over. */
  const conflict = (raw: KubeObject, id: string, existing: KubeObject, client: KubeApi) =>
    Effect.gen(function*() {
      // The cache drops managedFields: the server's copy names the managers.
      const full = yield* client.get(refOf(existing)).pipe(Effect.orElseSucceed(() => existing))
      const what = `${existing.kind} ${objectKey(existing)} (id ${id})`
      const message = `${what} already exists and is not controlled by this Capability (${holders(full)}); ` +
        "halkyon neither changes it nor shows it to the plugin: delete or rename it, or the Capability"
      return {
        ready: "False",
        reason: "Conflict",
        message,
        // Retried with backoff: the object may go away.
        failure: new KubeApiError({ code: 409, reason: "Conflict", detail: message, request: `apply ${what}` })
      } satisfies Attempt
    })

  /** Creates, updates or keeps one planned dependent; returns it as it now is. */
  const write = (
    raw: KubeObject,
    step: Step,
    resolution: Resolution,
    kube: KubeApi
  ): Effect.Effect<KubeObject, KubeApiError | Conflict | PluginCallError> =>
    Effect.gen(function*() {
      if ("create" in step) {
        // Create-only: a resourceVersion no object can have is ignored by a
        // create and fails (409) the apply on any object of that name that
        // exists (the cache holds only ours), which is then never taken over.
        const desired = { ...step.create, metadata: { ...step.create.metadata, resourceVersion: CreateOnly } }
        return yield* kube.apply(desired, FieldManager, { force: false }).pipe(
          Effect.tap(remember),
          Effect.catchIf(
            (e) => e.code === 409,
            (e) =>
              kube.get(refOf(step.create)).pipe(
                Effect.catchIf((g) => g.notFound, () => Effect.fail(e)),
                Effect.flatMap((found): Effect.Effect<never, KubeApiError | Conflict> =>
                  controlledBy(found, raw) ? Effect.fail(e) : Effect.fail(new Conflict({ existing: found }))
                )
              )
          )
        )
      }
      const existing = step.keep
      const updated = step.update
      if (updated === undefined) return existing
      const ref = refOf(existing)
      // Force and merge patches only on the object checked to be ours: its uid is their precondition.
      const owned = { ...updated, metadata: { ...updated.metadata, uid: existing.metadata.uid } }
      // Fields another manager set (a hand edit's list items, say) survive an
      // apply, or make it invalid (two ports of one name). Then a merge patch,
      // whose lists replace the server's whole, puts the plugin's object back.
      const replace = Effect.logDebug(
        `${ref.kind} ${ref.namespace}/${ref.name}: fields another manager set stand in the way of the apply; replacing them`
      ).pipe(
        Effect.andThen(kube.mergePatch(ref, owned, FieldManager)),
        Effect.tap(remember)
      )
      const applied = yield* kube.apply(owned, FieldManager).pipe(
        Effect.tap(remember),
        Effect.map((o): KubeObject | undefined => o),
        Effect.catchIf((e) => e.code === 422, () => Effect.succeed(undefined))
      )
      if (applied === undefined) return yield* replace
      const again = yield* resolution.connection.updateDependent(step.dependent.id, raw, applied, step.observed)
      return again.needsUpdate ? yield* replace : applied
    })

  return Reconciler.of({ reconcile, waitingForPlugin: Effect.sync(() => [...waiting]) })
})

/** The error with `redact` applied to the server's words. */
const redactError = (e: KubeApiError, redact: (text: string) => string): KubeApiError => {
  const detail = redact(e.detail)
  return detail === e.detail ? e : new KubeApiError({ code: e.code, reason: e.reason, detail, request: e.request })
}

/** The Ready reason for a plugin that is not there: PluginOOMKilled when its memory limit killed it. */
const unavailableReason = (error: object) =>
  "memoryKilled" in error && error.memoryKilled === true ? "PluginOOMKilled" : "PluginUnavailable"

/** The largest resourceVersion the API server parses: a precondition that only a create meets. */
const CreateOnly = "18446744073709551615"

/** One dependent, checked, and what the reconcile does with it. */
type Step =
  {
    readonly dependent: BuiltDependent
    readonly info: DependentInfo
    /** What the build this step comes from was shown. */
    readonly observed?: ReadonlyArray<{ readonly id: string; readonly object: unknown }>
  } &
  (
    | { readonly create: KubeObject }
    | { readonly keep: KubeObject; readonly update?: KubeObject }
  )

/** A dependent's name is taken by an object this Capability does not control. */
class Conflict extends Data.TaggedError("Conflict")<{ readonly existing: KubeObject }> {}

/** The inventory entry of an applied object. */
const entryOf = (id: string, object: KubeObject, dependsOn: ReadonlyArray<string>, policy: DeletionPolicy): InventoryEntry => ({
  id,
  apiVersion: object.apiVersion,
  kind: object.kind,
  name: object.metadata.name,
  uid: object.metadata.uid ?? "",
  ...(dependsOn.length === 0 ? {} : { dependsOn: [...dependsOn] }),
  ...(policy === DeletionPolicy.DELETION_POLICY_ORPHAN ? { orphan: true } : {})
})

const refOf = (o: KubeObject): ObjectRef => ({
  apiVersion: o.apiVersion,
  kind: o.kind,
  namespace: o.metadata.namespace,
  name: o.metadata.name
})

/** Whether `object` carries `capability`'s controller owner reference, uid matched. */
export const controlledBy = (object: KubeObject, capability: KubeObject): boolean =>
  capability.metadata.uid !== undefined &&
  (object.metadata.ownerReferences ?? []).some((o) => o.controller === true && o.uid === capability.metadata.uid && o.kind === "Capability")

/** Who holds an object, for a Conflict message: its controller, other owners, its field managers. */
const holders = (o: KubeObject): string => {
  const owners = (o.metadata.ownerReferences ?? []).map((r) => `${r.controller === true ? "controlled" : "owned"} by ${r.kind} ${r.name}`)
  const managers = [...new Set((o.metadata.managedFields ?? []).map((m) => m.manager ?? "").filter((m) => m !== ""))]
  return [
    ...(owners.length === 0 ? ["no owner reference"] : owners),
    ...(managers.length === 0 ? [] : [`managed by ${managers.join(", ")}`])
  ].join("; ")
}

const nameOf = (object: Record<string, unknown>) => String((object.metadata as { name?: unknown } | undefined)?.name ?? "")

const dependentStatus = (built: BuiltDependent, ready: boolean, reason: string, message: string): DependentStatus => ({
  id: built.id,
  kind: String(built.object.kind),
  name: nameOf(built.object),
  ready,
  reason,
  message
})

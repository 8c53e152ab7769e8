/**
 * The ServiceBinding controller: projects a Provisioned Service's binding
 * Secret into workloads (Projection.ts), as the Service Binding spec asks.
 *
 * - ServiceBindings, Capabilities and Secrets are watched; a change enqueues
 *   the bindings that use it (indexes filled by each reconcile), so a new
 *   Secret content re-projects at once (its hash annotation rolls the pods).
 * - A binding's reconcile resolves its service (a Capability, which must be
 *   Ready; any resource with status.binding.name; or a Secret), the Secret,
 *   and every workload, and checks what the spec requires of them (a type
 *   entry, the env keys, the roots, no one else's variable: Projection.ts's
 *   refusals), all before the first write; then applies each
 *   workload's projection by server-side apply under the binding's own field
 *   manager, so the user's fields survive and unbinding (an empty apply)
 *   removes exactly what the binding owned.
 * - A workload kind a ClusterWorkloadResourceMapping names, or any kind that
 *   is not built in (the spec's PodSpec-able default), is projected through
 *   the mapping instead (Mapping.ts) and written as a merge patch guarded by
 *   its resourceVersion: a custom resource's lists need not merge by name.
 *   Mappings are watched; a change re-reconciles the bindings of the kinds
 *   of its group, and an invalid one is reported (InvalidMapping).
 * - A Job's template cannot change once it exists: a binding of Jobs keeps
 *   a MutatingAdmissionPolicy (JobPolicy.ts) that has the API server project
 *   into each matching Job as it is created; it is Ready once the policy is
 *   in place, and reports a matching Job made without the projection. The
 *   policy goes with the binding, or when it names another kind. Keeping
 *   them is opt-in (`halkyon manifests --bind-jobs`): where the controller
 *   may not (403) or they are not served (404), it says once what to do, and
 *   a Job binding reports ProjectionFailed saying it too.
 * - A Capability bound by a ServiceBinding carries a finalizer; deleting it
 *   waits with Ready=False, reason InUse, naming the bindings, until they go.
 * - Workloads of the kinds bindings name are watched: a new, deleted,
 *   relabelled or changed (new generation) one enqueues the bindings of its
 *   namespace that name its kind; a binding is also reconciled again every
 *   minute. Workloads of its kind
 *   that hold fields of its manager but are no longer its targets (a name
 *   changed in the spec, labels that no longer match) are unbound.
 * - The kinds a binding projects into are recorded on it (an annotation)
 *   before the first write to each: when its workload kind changes, every
 *   workload of the former kinds is unbound before the record is pruned, and
 *   its deletion unbinds every recorded kind.
 *
 * The worker loop, the queue and the watches are src/controller/'s.
 */
import { Clock, Deferred, Effect, FiberMap, Schema, type Scope } from "effect"
import { ApiVersion as CapabilityApiVersion, type Condition, InUseFinalizer } from "../api/Capability.ts"
import { BindingApiVersion, ServiceBinding, type ServiceBindingStatus } from "../api/ServiceBinding.ts"
import { ClusterWorkloadResourceMapping, MappingKind, mappingName } from "../api/WorkloadResourceMapping.ts"
import { inform } from "../controller/Informer.ts"
import { type ReconcileResult, type RunningWorkers, runWorkers } from "../controller/Workers.ts"
import { makeWorkQueue } from "../controller/WorkQueue.ts"
import type { KubeApiError } from "../kube/Errors.ts"
import { type KubeApi, KubeClient, type ObjectRef } from "../kube/KubeClient.ts"
import { type KubeObject, objectKey } from "../kube/KubeObject.ts"
import { kubeTime } from "../kube/Time.ts"
import {
  bindMapped,
  mappingAnnotation,
  mergePatchOf,
  PodSpecable,
  refuseMapped,
  type ResolvedMapping,
  resolveMapping,
  unbindMapped
} from "./Mapping.ts"
import {
  BindingAnnotation,
  JobApiVersion,
  JobKind,
  jobPolicy,
  jobPolicyBinding,
  jobPolicyName,
  jobPolicySelector,
  MutatingApiVersion,
  MutatingBindingKind,
  MutatingPolicyKind,
  noPolicyAdvice,
  projectedInto
} from "./JobPolicy.ts"
import { type Binding, intent, type PodTemplate, refuseSecret, refuseTemplate } from "./Projection.ts"
import {
  at,
  envOwnedBy,
  nest,
  ProjectedKindsAnnotation,
  projectedKinds,
  projectedKindsValue,
  sameKind,
  selectorQuery,
  templatePath,
  type WorkloadKind
} from "./Workloads.ts"

/** On a ServiceBinding: its projection is removed before it goes. */
export const UnbindFinalizer = "servicebinding.io/halkyon-unbind"
/** On a bound Capability: it is not deleted while a ServiceBinding uses it. */
export { InUseFinalizer }

/** The field manager of one binding's projection: its own, so that two bindings of one workload never take each other's fields. */
export const bindingFieldManager = (name: string): string => `halkyon-binding.${name}`.slice(0, 128)

/** The field manager of the controller's own writes to bindings and Capabilities (finalizers, the record of kinds). */
export const ControllerFieldManager = "halkyon-binding"

export interface BindingControllerOptions {
  /** Only this namespace; all namespaces when undefined. */
  readonly namespace: string | undefined
  readonly concurrency: number
  readonly shutdownTimeoutMs: number
}

const ResyncMs = 60_000
/** The field manager of the Job bindings' admission policies. */
const PolicyFieldManager = "halkyon-service-binding"
const MissingRetryMs = 3_000

const decodeBinding = Schema.decodeUnknownExit(ServiceBinding)
const decodeMapping = Schema.decodeUnknownExit(ClusterWorkloadResourceMapping)

/**
 * How a binding reaches a kind's pod template: server-side apply at a fixed
 * path (the built-in kinds, when no mapping names them), a
 * MutatingAdmissionPolicy that projects at creation (Jobs, whose template
 * cannot change afterwards; JobPolicy.ts), a merge patch
 * through a mapping (a ClusterWorkloadResourceMapping, or the PodSpec-able
 * default for any other kind), or why neither can be used.
 */
type Route =
  | { readonly apply: ReadonlyArray<string> }
  | { readonly admit: ReadonlyArray<string> }
  | { readonly mapping: ResolvedMapping }
  | { readonly invalid: string }
  | { readonly unknown: string }

/** What one reconcile concluded, for the status. */
interface Verdict {
  readonly ready: "True" | "False" | "Unknown"
  readonly reason: string
  readonly message: string
  readonly serviceAvailable: boolean
  readonly secret?: string | undefined
  readonly requeueAfterMs?: number | undefined
}

/**
 * A binding's verdict once the service is resolved: Projected (`projected` says where), or, with problems, the first
 * one's reason and every message, and how many workloads of the kind did take the projection (`bound`).
 */
const projectionVerdict = (
  secret: string,
  problems: ReadonlyArray<{ readonly reason: string; readonly message: string }>,
  bound: number,
  kind: string,
  projected: string
): Verdict => {
  const first = problems[0]
  return {
    ready: first === undefined ? "True" : "False",
    reason: first === undefined ? "Projected" : first.reason,
    message: first === undefined
      ? projected
      : problems.map((p) => p.message).join("; ") +
        (bound === 0 ? "" : ` (projected into the ${bound} other ${kind}${bound === 1 ? "" : "s"})`),
    serviceAvailable: true,
    secret,
    requeueAfterMs: ResyncMs
  }
}

const refOf = (o: KubeObject): ObjectRef => ({
  apiVersion: o.apiVersion,
  kind: o.kind,
  namespace: o.metadata.namespace,
  name: o.metadata.name
})
const conditionsOf = (o: KubeObject | undefined): ReadonlyArray<Condition> =>
  ((o as { status?: { conditions?: ReadonlyArray<Condition> } } | undefined)?.status?.conditions) ?? []
const bindingNameOf = (o: KubeObject): string | undefined =>
  (o as { status?: { binding?: { name?: unknown } } }).status?.binding?.name as string | undefined
/** The key of the Capability a binding names as its service, if it names one. */
const capabilityUsed = (binding: KubeObject): string | undefined => {
  const service = (binding as { spec?: { service?: { apiVersion?: string; kind?: string; name?: string } } }).spec?.service
  return service?.kind === "Capability" && service.apiVersion === CapabilityApiVersion && service.name !== undefined
    ? `${binding.metadata.namespace ?? ""}/${service.name}`
    : undefined
}

/**
 * What bindings read of a Capability: who it is, its finalizers and deletion,
 * its Ready condition and binding Secret. Kept instead of the whole object
 * (spec, the dependents' status, managedFields), the bulk of this map when a
 * namespace holds thousands of Capabilities.
 */
const bindingView = (o: KubeObject): KubeObject => {
  const { managedFields: _, ...metadata } = o.metadata as KubeObject["metadata"] & { managedFields?: unknown }
  const status = (o as { status?: { conditions?: unknown; binding?: unknown } }).status
  const view = { apiVersion: o.apiVersion, kind: o.kind, metadata }
  return status === undefined ? view : Object.assign(view, { status: { conditions: status.conditions, binding: status.binding } })
}
const finalizersOf = (o: KubeObject): ReadonlyArray<string> => ((o.metadata as { finalizers?: ReadonlyArray<string> }).finalizers) ?? []

/** JSON with keys sorted: the server's copy and ours compare equal whatever their key order. */
const canonical = (value: unknown): string =>
  JSON.stringify(value, (_key, v: unknown) =>
    typeof v === "object" && v !== null && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v)

export const startBindingController = Effect.fn("BindingController.start")(function*(
  options: BindingControllerOptions
): Effect.fn.Return<RunningWorkers, never, KubeClient | Scope.Scope> {
  const kube = yield* KubeClient
  const queue = yield* makeWorkQueue({ baseMs: 200, maxMs: 60_000 })
  const bindings = new Map<string, KubeObject>()
  const capabilities = new Map<string, KubeObject>()
  /** Which bindings use a Capability or a Secret ("namespace/name"), as their last reconcile found. */
  const byCapability = new Map<string, Set<string>>()
  const bySecret = new Map<string, Set<string>>()
  const index = (map: Map<string, Set<string>>, key: string | undefined, binding: string) => {
    for (const [k, set] of map) {
      if (k === key) continue
      set.delete(binding)
      if (set.size === 0) map.delete(k)
    }
    if (key !== undefined) map.set(key, (map.get(key) ?? new Set()).add(binding))
  }
  const enqueueAll = (keys: Set<string> | undefined) => Effect.forEach([...(keys ?? [])], (k) => queue.add(`b:${k}`), { discard: true })

  // The MutatingAdmissionPolicies of Job bindings (JobPolicy.ts), by name: listed once, then kept as they are applied and
  // deleted, so that a binding of any other kind needs no request to know it has none to remove.
  let policies: Set<string> | undefined
  let saidNoPolicies = false
  /** Whether an answer means this controller cannot keep admission policies here at all (no RBAC, or no such API). */
  const unmanageable = (e: KubeApiError) => e.forbiddenOrNotServed
  const knownPolicies = Effect.gen(function*() {
    if (policies !== undefined) return policies
    const listed = yield* kube.list(MutatingApiVersion, MutatingPolicyKind, { labelSelector: jobPolicySelector }).pipe(
      Effect.map(({ items }) => new Set(items.map((i) => i.metadata.name))),
      // Not allowed, or not served: there is none this controller made and could remove.
      Effect.catchIf(unmanageable, () => Effect.succeed(new Set<string>()))
    )
    policies = listed
    return listed
  })
  /** Removes the binding's policy, if it has one: deleted, or no longer bound to Jobs. */
  const removePolicy = (namespace: string, bindingName: string) =>
    Effect.gen(function*() {
      const name = jobPolicyName(namespace, bindingName)
      if (!(yield* knownPolicies).has(name)) return
      // Its binding first, so that none is left pointing at a removed policy.
      for (const kind of [MutatingBindingKind, MutatingPolicyKind]) {
        yield* kube.delete({ apiVersion: MutatingApiVersion, kind, name }).pipe(Effect.catchIf((e) => e.notFound, () => Effect.void))
      }
      policies?.delete(name)
      yield* Effect.logInfo(`servicebinding ${namespace}/${bindingName}: MutatingAdmissionPolicy ${name} removed`)
    })
  /** Applies a binding's policy, then its binding (a binding to a missing policy does nothing; the reverse would). */
  const applyPolicy = (policy: ReturnType<typeof jobPolicy>, policyBinding: ReturnType<typeof jobPolicyBinding>) =>
    Effect.gen(function*() {
      const known = yield* knownPolicies
      yield* kube.apply(policy as unknown as KubeObject, PolicyFieldManager)
      known.add(policy.metadata.name)
      yield* kube.apply(policyBinding as unknown as KubeObject, PolicyFieldManager)
      saidNoPolicies = false
    })
  const sayNoPolicies = (e: KubeApiError) =>
    Effect.gen(function*() {
      if (saidNoPolicies) return
      saidNoPolicies = true
      yield* Effect.logWarning(
        `the ServiceBinding controller may not keep MutatingAdmissionPolicies (${e.message}): a ServiceBinding of Jobs cannot ` +
          `project into them as they are created, and reports ProjectionFailed; ${noPolicyAdvice(e.code)}`
      )
    })

  /**
   * Removes the policies of bindings that are gone without this controller (their finalizer removed by hand while it
   * did not run), once the bindings are listed: those of namespaces this controller serves only.
   */
  const sweepPolicies = Effect.gen(function*() {
    const listed = yield* kube.list(MutatingApiVersion, MutatingPolicyKind, { labelSelector: jobPolicySelector })
    for (const policy of listed.items) {
      const owner = policy.metadata.annotations?.[BindingAnnotation] ?? ""
      const [namespace = "", name = ""] = owner.split("/")
      if (bindings.has(owner) || name === "" || (options.namespace !== undefined && namespace !== options.namespace)) continue
      ;(yield* knownPolicies).add(policy.metadata.name)
      yield* removePolicy(namespace, name)
    }
  }).pipe(
    Effect.catchIf(unmanageable, () => Effect.void),
    Effect.catch((e) => Effect.logWarning(`removing the admission policies of deleted ServiceBindings failed: ${e.message}`))
  )

  yield* inform({
    apiVersion: BindingApiVersion,
    kind: "ServiceBinding",
    namespace: options.namespace,
    onObject: (object, deleted) => {
      const key = objectKey(object)
      if (deleted) bindings.delete(key)
      else bindings.set(key, object)
      // A Capability whose deletion waited for this binding may go now: its reconcile, queued when the binding let go,
      // may have run before this event removed the binding from the cache.
      const used = deleted ? capabilityUsed(object) : undefined
      return queue.add(`b:${key}`).pipe(Effect.andThen(used === undefined ? Effect.void : queue.add(`c:${used}`)))
    },
    onSynced: sweepPolicies
  }).pipe(Effect.forkScoped)
  yield* inform({
    apiVersion: CapabilityApiVersion,
    kind: "Capability",
    namespace: options.namespace,
    onObject: (object, deleted) => {
      const key = objectKey(object)
      if (deleted) capabilities.delete(key)
      else capabilities.set(key, bindingView(object))
      return enqueueAll(byCapability.get(key)).pipe(
        Effect.andThen(object.metadata.deletionTimestamp !== undefined && !deleted ? queue.add(`c:${key}`) : Effect.void)
      )
    }
  }).pipe(Effect.forkScoped)
  yield* inform({
    apiVersion: "v1",
    kind: "Secret",
    namespace: options.namespace,
    onObject: (object) => enqueueAll(bySecret.get(objectKey(object)))
  }).pipe(Effect.forkScoped)
  // ClusterWorkloadResourceMappings, by name (<plural>.<group>): a change re-reconciles the bindings of workloads in
  // that group (those of other kinds of the group find nothing to change), each unbinding with the mapping it used
  // and binding again with the new one.
  const mappings = new Map<string, KubeObject>()
  const mappingsSynced = yield* Deferred.make<void>()
  yield* inform({
    apiVersion: BindingApiVersion,
    kind: MappingKind,
    onObject: (object, deleted) => {
      if (deleted) mappings.delete(object.metadata.name)
      else mappings.set(object.metadata.name, object)
      const name = object.metadata.name
      const group = name.includes(".") ? name.slice(name.indexOf(".") + 1) : ""
      const users = [...bindings.values()].filter((b) => {
        const apiVersion = (b as { spec?: { workload?: { apiVersion?: string } } }).spec?.workload?.apiVersion ?? ""
        return (apiVersion.includes("/") ? apiVersion.slice(0, apiVersion.indexOf("/")) : "") === group
      })
      return Effect.forEach(users, (b) => queue.add(`b:${objectKey(b)}`), { discard: true })
    },
    onSynced: Deferred.succeed(mappingsSynced, undefined).pipe(Effect.asVoid)
  }).pipe(Effect.forkScoped)

  /** How this binding's workload kind is reached (see Route). */
  const routeOf = (apiVersion: string, kind: string) =>
    Effect.gen(function*(): Effect.fn.Return<Route, KubeApiError> {
      const builtIn = templatePath(apiVersion, kind)
      // A kind of no built-in path waits for the mappings' first list: the default must not be used for a kind that has one.
      if (builtIn === undefined) yield* Deferred.await(mappingsSynced)
      const plural = yield* kube.plural(apiVersion, kind)
      if (plural === undefined) return { unknown: `the API server serves no ${kind} in ${apiVersion} (is its CRD installed?)` }
      const name = mappingName(apiVersion, plural)
      const raw = mappings.get(name)
      if (raw === undefined && builtIn !== undefined) {
        return apiVersion === JobApiVersion && kind === JobKind ? { admit: builtIn } : { apply: builtIn }
      }
      if (raw === undefined) return { mapping: PodSpecable }
      const decoded = decodeMapping(raw)
      if (decoded._tag === "Failure") return { invalid: `ClusterWorkloadResourceMapping ${name} is not valid: ${String(decoded.cause)}` }
      const resolved = resolveMapping(decoded.value, apiVersion.includes("/") ? apiVersion.slice(apiVersion.indexOf("/") + 1) : apiVersion)
      return "error" in resolved ? { invalid: `${resolved.error}; fix the mapping (see docs/binding.md)` } : { mapping: resolved }
    })

  // Workloads, one watch per kind that bindings name (started by their first reconcile): a workload created, deleted,
  // relabelled or given a new spec (a new generation) enqueues the bindings of its namespace that name its kind.
  // Its status updates, and the echoes of the bindings' own applies once they are no-ops, enqueue nothing.
  const workloadWatches = yield* FiberMap.make<string>()
  const workloadSeen = new Map<string, string>()
  const watchWorkloads = (apiVersion: string, kind: string) =>
    FiberMap.run(
      workloadWatches,
      `${apiVersion}/${kind}`,
      inform({
        apiVersion,
        kind,
        namespace: options.namespace,
        onObject: (object, deleted) => {
          const id = `${apiVersion}/${kind}/${objectKey(object)}`
          const fingerprint = `${object.metadata.generation ?? ""}|${JSON.stringify(object.metadata.labels ?? {})}`
          if (deleted) workloadSeen.delete(id)
          else if (workloadSeen.get(id) === fingerprint) return Effect.void
          else workloadSeen.set(id, fingerprint)
          const users = [...bindings.values()].filter((b) => {
            const w = (b as { spec?: { workload?: { apiVersion?: string; kind?: string } } }).spec?.workload
            return b.metadata.namespace === object.metadata.namespace && w?.apiVersion === apiVersion && w.kind === kind
          })
          return Effect.forEach(users, (b) => queue.add(`b:${objectKey(b)}`), { discard: true })
        }
      }).pipe(Effect.provideService(KubeClient, kube)),
      { onlyIfMissing: true }
    )

  /** Patches metadata.finalizers, guarded by the resourceVersion read. */
  const setFinalizers = (o: KubeObject, finalizers: ReadonlyArray<string>) =>
    kube.mergePatch(refOf(o), { metadata: { finalizers, resourceVersion: o.metadata.resourceVersion } }, ControllerFieldManager)

  /** Puts the in-use finalizer on a bound Capability (none for another kind of service), once. */
  const markInUse = (capability: KubeObject | undefined) =>
    capability === undefined || finalizersOf(capability).includes(InUseFinalizer)
      ? Effect.void
      : setFinalizers(capability, [...finalizersOf(capability), InUseFinalizer]).pipe(Effect.asVoid)

  /** The bindings (keys) that name this Capability as their service, but for those already unbound and going. */
  const usersOf = (capability: KubeObject) =>
    [...bindings.values()].filter((b) =>
      capabilityUsed(b) === objectKey(capability) &&
      !(b.metadata.deletionTimestamp !== undefined && !finalizersOf(b).includes(UnbindFinalizer))
    ).map((b) => b.metadata.name).sort()

  /** A Capability being deleted: held while bindings use it (Ready=False, InUse), released once none does. */
  const reconcileCapability = (key: string) =>
    Effect.gen(function*() {
      const capability = capabilities.get(key)
      if (capability === undefined || capability.metadata.deletionTimestamp === undefined) return {}
      if (!finalizersOf(capability).includes(InUseFinalizer)) return {}
      const users = usersOf(capability)
      if (users.length === 0) {
        yield* setFinalizers(capability, finalizersOf(capability).filter((f) => f !== InUseFinalizer))
        return {}
      }
      const message = `deletion waits: ServiceBinding ${users.join(", ")} still use${
        users.length === 1 ? "s" : ""
      } this Capability; delete ${users.length === 1 ? "it" : "them"} first`
      const before = conditionsOf(capability).find((c) => c.type === "Ready")
      if (before?.reason !== "InUse" || before.message !== message) {
        const now = kubeTime(new Date(yield* Clock.currentTimeMillis))
        const ready: Condition = {
          type: "Ready",
          status: "False",
          reason: "InUse",
          message,
          lastTransitionTime: before?.status === "False" ? before.lastTransitionTime : now
        }
        yield* kube.patchStatus(refOf(capability), { conditions: [...conditionsOf(capability).filter((c) => c.type !== "Ready"), ready] })
        yield* Effect.logInfo(`capability ${key}: Ready=False (InUse) ${message}`)
      }
      return {}
    })

  /** The binding Secret's name, or why there is none yet. */
  const resolveService = (namespace: string, service: { apiVersion: string; kind: string; name: string }, bindingKey: string) =>
    Effect.gen(
      function*(): Effect.fn.Return<{ secret: string; capability?: KubeObject } | { notReady: string; retryMs?: number }, KubeApiError> {
        if (service.apiVersion === "v1" && service.kind === "Secret") {
          index(byCapability, undefined, bindingKey)
          return { secret: service.name }
        }
        if (service.apiVersion === CapabilityApiVersion && service.kind === "Capability") {
          const capKey = `${namespace}/${service.name}`
          index(byCapability, capKey, bindingKey)
          const capability = capabilities.get(capKey) ?? (yield* get({ ...service, namespace }))
          if (capability === undefined) return { notReady: `Capability ${service.name} does not exist` }
          if (capability.metadata.deletionTimestamp !== undefined) return { notReady: `Capability ${service.name} is being deleted` }
          const ready = conditionsOf(capability).find((c) => c.type === "Ready")
          if (ready?.status !== "True") return { notReady: `Capability ${service.name} is not Ready (${ready?.reason ?? "no status yet"})` }
          const name = bindingNameOf(capability)
          if (name === undefined) return { notReady: `Capability ${service.name} publishes no binding Secret (status.binding.name)` }
          return { secret: name, capability }
        }
        index(byCapability, undefined, bindingKey)
        const found = yield* get({ ...service, namespace })
        if (found === undefined) return { notReady: `${service.kind} ${service.name} does not exist`, retryMs: MissingRetryMs }
        const name = bindingNameOf(found)
        if (name === undefined) {
          return { notReady: `${service.kind} ${service.name} publishes no binding Secret (status.binding.name)`, retryMs: MissingRetryMs }
        }
        return { secret: name }
      }
    )

  const get = (ref: ObjectRef, as: KubeApi = kube) =>
    as.get(ref).pipe(
      Effect.map((o): KubeObject | undefined => o),
      Effect.catchIf((e) => e.notFound, () => Effect.succeed(undefined))
    )

  /** The workloads a binding names, by name or selector. */
  const workloadsOf = (namespace: string, workload: ServiceBinding["spec"]["workload"]) =>
    Effect.gen(function*() {
      if (workload.name !== undefined) {
        const one = yield* get({ apiVersion: workload.apiVersion, kind: workload.kind, namespace, name: workload.name })
        return one === undefined ? [] : [one]
      }
      const listed = yield* kube.list(workload.apiVersion, workload.kind, {
        namespace,
        labelSelector: selectorQuery(workload.selector ?? {})
      })
      return listed.items
    })

  /**
   * Workloads of the kind that still hold fields of this binding's manager but
   * are no longer its targets (renamed in the spec, labels changed, or all of
   * them on deletion): they are unbound.
   */
  const formerlyBound = (
    namespace: string,
    workload: WorkloadKind,
    manager: string,
    targets: ReadonlyArray<KubeObject>
  ) =>
    kube.list(workload.apiVersion, workload.kind, { namespace }).pipe(
      Effect.map(({ items }) =>
        items.filter((w) =>
          !targets.some((t) => t.metadata.name === w.metadata.name) && (w.metadata.managedFields ?? []).some((m) => m.manager === manager)
        )
      )
    )

  /** Workloads of the kind that carry this binding's mapping marker but are no longer its targets. */
  const formerlyMapped = (
    namespace: string,
    workload: WorkloadKind,
    bindingName: string,
    targets: ReadonlyArray<KubeObject>
  ) =>
    kube.list(workload.apiVersion, workload.kind, { namespace }).pipe(
      Effect.map(({ items }) =>
        items.filter((w) =>
          !targets.some((t) => t.metadata.name === w.metadata.name) &&
          w.metadata.annotations?.[mappingAnnotation(bindingName)] !== undefined
        )
      )
    )

  /**
   * Unbinds the workloads of a kind, reached by `route`, that this binding projected into but that are not among
   * `targets` (all of them for none).
   */
  const unbindKind = (
    namespace: string,
    workload: WorkloadKind,
    route: Route,
    binding: Binding,
    targets: ReadonlyArray<KubeObject>
  ) =>
    Effect.gen(function*() {
      const manager = bindingFieldManager(binding.name)
      // A Job's template cannot change: what its creation got stays (the policy is removed by the caller).
      if ("admit" in route) return
      if ("apply" in route) {
        // An empty apply under the binding's manager drops every field it owned, and only those.
        for (const w of yield* formerlyBound(namespace, workload, manager, targets)) yield* applyTo(w, route.apply, undefined, manager)
      } else if (!("unknown" in route)) {
        // Through the mapping each was bound with (kept on it); an invalid mapping now does not stop an unbind.
        const fallback = "mapping" in route ? route.mapping : PodSpecable
        for (const w of yield* formerlyMapped(namespace, workload, binding.name, targets)) {
          yield* patchTo(w, unbindMapped(w, binding, fallback), manager)
        }
      }
    })

  /**
   * Unbinds every workload of the kinds the binding recorded (its annotation) but no longer names. A kind this
   * controller may not list, or that is no longer served, holds nothing it could unbind: it is skipped with a warning
   * (and then pruned like the others), so that a hand-edited record cannot stop the binding. A kind served in another
   * version of the current one's group is the current kind: not unbound, only recorded under the current version.
   */
  const unbindFormerKinds = (namespace: string, kinds: ReadonlyArray<WorkloadKind>, binding: Binding, bindingKey: string) =>
    Effect.forEach(kinds, (k) =>
      routeOf(k.apiVersion, k.kind).pipe(
        Effect.flatMap((route) => unbindKind(namespace, k, route, binding, [])),
        Effect.catchIf(
          (e) => e.forbiddenOrNotServed,
          (e) =>
            Effect.logWarning(
              `servicebinding ${bindingKey}: the ${k.kind} (${k.apiVersion}) it projected into before was not unbound: ${e.message}`
            )
        )
      ), { discard: true })

  /** The workload changed to `after`, as a merge patch guarded by the resourceVersion read (a conflict is retried). */
  const patchTo = (workload: KubeObject, after: KubeObject, manager: string) => {
    const patch = mergePatchOf(workload, after) as { metadata?: Record<string, unknown> }
    if (Object.keys(patch).length === 0) return Effect.void
    return kube.mergePatch(
      refOf(workload),
      { ...patch, metadata: { ...patch.metadata, resourceVersion: workload.metadata.resourceVersion } },
      manager
    ).pipe(Effect.asVoid)
  }

  /** An apply of the binding's fields in the workload (none: an unbind). */
  const applyTo = (workload: KubeObject, path: ReadonlyArray<string>, fields: PodTemplate | undefined, manager: string) =>
    kube.apply(
      {
        apiVersion: workload.apiVersion,
        kind: workload.kind,
        metadata: { name: workload.metadata.name, namespace: workload.metadata.namespace ?? "", uid: workload.metadata.uid ?? "" },
        ...(fields === undefined ? {} : nest(path, fields))
      } as KubeObject,
      manager
    )

  const writeStatus = (raw: KubeObject, generation: number | undefined, verdict: Verdict) =>
    Effect.gen(function*() {
      const previous = (raw as { status?: ServiceBindingStatus }).status
      const now = kubeTime(new Date(yield* Clock.currentTimeMillis))
      const condition = (type: string, status: "True" | "False" | "Unknown", reason: string, message: string): Condition => {
        const before = previous?.conditions?.find((c) => c.type === type)
        return {
          type,
          status,
          reason,
          message,
          ...(generation === undefined ? {} : { observedGeneration: generation }),
          lastTransitionTime: before !== undefined && before.status === status ? before.lastTransitionTime : now
        }
      }
      const status: ServiceBindingStatus = {
        ...(generation === undefined ? {} : { observedGeneration: generation }),
        conditions: [
          condition("Ready", verdict.ready, verdict.reason, verdict.message),
          verdict.serviceAvailable
            ? condition("ServiceAvailable", "True", "ResolvedBindingSecret", "")
            : condition("ServiceAvailable", "False", "ServiceNotReady", verdict.message)
        ],
        ...(verdict.secret === undefined ? {} : { binding: { name: verdict.secret } })
      }
      if (canonical(status) === canonical(previous)) return
      yield* kube.patchStatus(refOf(raw), { binding: null, ...status })
      const before = previous?.conditions?.find((c) => c.type === "Ready")
      if (before?.status !== verdict.ready || before.reason !== verdict.reason) {
        yield* Effect.logInfo(`servicebinding ${objectKey(raw)}: Ready=${verdict.ready} (${verdict.reason}) ${verdict.message}`)
      }
    })

  const reconcileBinding = (key: string) =>
    Effect.gen(function*(): Effect.fn.Return<ReconcileResult, KubeApiError> {
      const raw = bindings.get(key)
      if (raw === undefined) {
        index(byCapability, undefined, key)
        index(bySecret, undefined, key)
        // Gone without its finalizer's path (removed by hand): its policy goes all the same.
        const [namespace = "", name = ""] = key.split("/")
        yield* removePolicy(namespace, name)
        return {}
      }
      const namespace = raw.metadata.namespace ?? ""
      const manager = bindingFieldManager(raw.metadata.name)
      const decoded = decodeBinding(raw)
      if (decoded._tag === "Failure") {
        // Unreadable, it names no workload to unbind: its deletion is not held up.
        if (raw.metadata.deletionTimestamp !== undefined && finalizersOf(raw).includes(UnbindFinalizer)) {
          yield* removePolicy(namespace, raw.metadata.name)
          yield* setFinalizers(raw, finalizersOf(raw).filter((f) => f !== UnbindFinalizer))
          return {}
        }
        yield* writeStatus(raw, raw.metadata.generation, {
          ready: "False",
          reason: "InvalidSpec",
          message: String(decoded.cause),
          serviceAvailable: false
        })
        return {}
      }
      const sb = decoded.value
      const { workload } = sb.spec
      const binding: Binding = {
        name: raw.metadata.name,
        directory: sb.spec.name ?? raw.metadata.name,
        type: sb.spec.type,
        provider: sb.spec.provider,
        env: sb.spec.env,
        containers: workload.containers
      }
      const route = yield* routeOf(workload.apiVersion, workload.kind)
      /** Unbinds the workloads of the kind this binding projected into, but no longer targets. */
      const unbindStale = (targets: ReadonlyArray<KubeObject>) => unbindKind(namespace, workload, route, binding, targets)
      // The kinds it projected into before (recorded before the first write to each): those it no longer names are
      // unbound whole, then pruned from the record; the current one is recorded before anything is written to it.
      const kindsValue = raw.metadata.annotations?.[ProjectedKindsAnnotation]
      const formerKinds = projectedKinds(kindsValue).filter((k) => !sameKind(k, workload))
      const recorded = projectedKindsValue([{ apiVersion: workload.apiVersion, kind: workload.kind }])

      if (raw.metadata.deletionTimestamp !== undefined) {
        if (!finalizersOf(raw).includes(UnbindFinalizer)) return {}
        yield* unbindStale([])
        yield* unbindFormerKinds(namespace, formerKinds, binding, key)
        yield* removePolicy(namespace, raw.metadata.name)
        yield* setFinalizers(raw, finalizersOf(raw).filter((f) => f !== UnbindFinalizer))
        index(bySecret, undefined, key)
        index(byCapability, undefined, key)
        // A Capability whose deletion waited for this binding may go now.
        if (sb.spec.service.kind === "Capability") yield* queue.add(`c:${namespace}/${sb.spec.service.name}`)
        return {}
      }
      yield* unbindFormerKinds(namespace, formerKinds, binding, key)
      if (!finalizersOf(raw).includes(UnbindFinalizer) || kindsValue !== recorded) {
        // One patch (the finalizer, the record of kinds); its echo reconciles again.
        yield* kube.mergePatch(
          refOf(raw),
          {
            metadata: {
              finalizers: finalizersOf(raw).includes(UnbindFinalizer) ? finalizersOf(raw) : [...finalizersOf(raw), UnbindFinalizer],
              annotations: { [ProjectedKindsAnnotation]: recorded },
              resourceVersion: raw.metadata.resourceVersion
            }
          },
          ControllerFieldManager
        )
        return {}
      }
      const report = (verdict: Verdict) =>
        writeStatus(raw, raw.metadata.generation, verdict).pipe(Effect.as<ReconcileResult>({ requeueAfterMs: verdict.requeueAfterMs }))

      // No longer bound to Jobs (or never): no policy projects this binding into them any more.
      if (!("admit" in route)) yield* removePolicy(namespace, raw.metadata.name)
      if (!("unknown" in route)) yield* watchWorkloads(workload.apiVersion, workload.kind)
      if ((workload.name === undefined) === (workload.selector === undefined)) {
        return yield* report({
          ready: "False",
          reason: "InvalidSpec",
          message: "spec.workload needs a name or a selector, not both",
          serviceAvailable: false
        })
      }
      if ("unknown" in route) {
        return yield* report({
          ready: "False",
          reason: "WorkloadNotFound",
          message: route.unknown,
          serviceAvailable: false,
          requeueAfterMs: MissingRetryMs
        })
      }
      if ("invalid" in route) {
        // What is projected stays as it is until the mapping is fixed (its change reconciles this binding again).
        return yield* report({ ready: "False", reason: "InvalidMapping", message: route.invalid, serviceAvailable: false })
      }
      // Everything is read and checked before the first write: nothing is half-applied for a missing piece.
      const service = yield* resolveService(namespace, sb.spec.service, key)
      if ("notReady" in service) {
        index(bySecret, undefined, key)
        return yield* report({
          ready: "False",
          reason: "ServiceNotReady",
          message: service.notReady,
          serviceAvailable: false,
          requeueAfterMs: service.retryMs ?? ResyncMs
        })
      }
      index(bySecret, `${namespace}/${service.secret}`, key)
      const secret = yield* get({ apiVersion: "v1", kind: "Secret", namespace, name: service.secret })
      if (secret === undefined) {
        return yield* report({
          ready: "False",
          reason: "ServiceNotReady",
          message: `the binding Secret ${service.secret} does not exist`,
          serviceAvailable: false,
          requeueAfterMs: ResyncMs
        })
      }
      const bound = { name: service.secret, data: ((secret as { data?: Record<string, string> }).data) ?? {} }
      const unfit = refuseSecret(binding, bound)
      if (unfit !== undefined) {
        // Its change (a type or key added) reconciles this binding again.
        return yield* report({
          ready: "False",
          ...unfit,
          serviceAvailable: true,
          secret: service.secret,
          requeueAfterMs: ResyncMs
        })
      }
      const jobsVerdict = (policyName: string, path: ReadonlyArray<string>, jobs: ReadonlyArray<KubeObject>): Verdict => {
        // A Job made before the policy, or left out by it (what refuseTemplate refuses), is reported: its template cannot change.
        const problems = jobs.filter((j) => !projectedInto(j, binding.name)).map((j) => {
          const refusal = refuseTemplate((at(j, path) ?? {}) as PodTemplate, binding, () => false)
          return refusal === undefined
            ? {
              reason: "ProjectionFailed",
              message: `Job ${j.metadata.name} was created before this binding's MutatingAdmissionPolicy took effect, and a Job's pod ` +
                "template cannot change: delete it and create it again to have it bound"
            }
            : { reason: refusal.reason, message: `Job ${j.metadata.name}: ${refusal.message}` }
        })
        const projected = jobs.filter((j) => projectedInto(j, binding.name)).map((j) => j.metadata.name)
        const which = workload.name !== undefined
          ? `Job ${workload.name} is`
          : `Jobs matching ${selectorQuery(workload.selector ?? {})} are`
        return projectionVerdict(
          service.secret,
          problems,
          projected.length,
          "Job",
          `${which} projected as created, by MutatingAdmissionPolicy ${policyName}` +
            (projected.length === 0 ? "" : `; projected into Job ${projected.join(", ")}`)
        )
      }
      // Jobs: a MutatingAdmissionPolicy projects into each as it is created; where none can be kept, what follows
      // tries today's apply, which the API server refuses for a Job that exists (ProjectionFailed, saying why).
      let noPolicy: string | undefined
      if ("admit" in route) {
        const policy = jobPolicy(binding, bound, { namespace, name: workload.name, selector: workload.selector })
        const applied = yield* applyPolicy(policy, jobPolicyBinding(namespace, binding.name)).pipe(Effect.result)
        if (applied._tag === "Failure" && applied.failure.code === 422) {
          // Refused as invalid (its expression too long for a very long spec.env, say): retrying cannot help. The
          // server's answer quotes the whole expression; its verdict is at the end.
          const detail = applied.failure.detail
          const verdict = detail.includes("compilation failed:")
            ? detail.slice(detail.lastIndexOf("compilation failed:"))
            : detail.slice(-300)
          return yield* report({
            ready: "False",
            reason: "ProjectionFailed",
            message: `the API server refused the MutatingAdmissionPolicy that would project this binding into Jobs as they are ` +
              `created: ${verdict.slice(0, 300)}`,
            serviceAvailable: true,
            secret: service.secret,
            requeueAfterMs: ResyncMs
          })
        }
        if (applied._tag === "Failure") {
          if (!unmanageable(applied.failure)) return yield* applied.failure
          yield* sayNoPolicies(applied.failure)
          noPolicy = noPolicyAdvice(applied.failure.code)
        } else {
          yield* markInUse(service.capability)
          return yield* report(jobsVerdict(policy.metadata.name, route.admit, yield* workloadsOf(namespace, workload)))
        }
      }
      /** How the workloads are written: a Job without its policy as any built-in kind (which the API server refuses). */
      const written: Route = "admit" in route ? { apply: route.admit } : route
      const workloads = yield* workloadsOf(namespace, workload)
      if (workloads.length === 0 && noPolicy !== undefined) {
        // Not "does not exist": once it does, it cannot be bound, and the cluster operator is the one to act.
        return yield* report({
          ready: "False",
          reason: "ProjectionFailed",
          message: (workload.name !== undefined ? `Job ${workload.name}` : `a Job matching ${selectorQuery(workload.selector ?? {})}`) +
            ` will not be projected as it is created: ${noPolicy}`,
          serviceAvailable: true,
          secret: service.secret,
          requeueAfterMs: ResyncMs
        })
      }
      if (workloads.length === 0) {
        return yield* report({
          ready: "False",
          reason: "WorkloadNotFound",
          message: workload.name !== undefined
            ? `${workload.kind} ${workload.name} does not exist`
            : `no ${workload.kind} matches the selector ${selectorQuery(workload.selector ?? {})}`,
          serviceAvailable: true,
          secret: service.secret,
          requeueAfterMs: MissingRetryMs
        })
      }
      // A workload that cannot take the projection (a root set by valueFrom, a variable of someone else's) is left as it
      // is; the others are bound, as the spec asks of each match of a selector ("as if it was specified by name in a
      // distinct ServiceBinding"), and the refusals reported together. Its change (a new generation) reconciles again.
      const refusalOf = (w: KubeObject) => {
        if ("mapping" in written) return refuseMapped(w, written.mapping, binding)
        if (!("apply" in written)) return undefined
        // What the binding applied before is its manager's, as the server records it: a user's variable is not.
        const owned = envOwnedBy(w, manager, written.apply)
        return refuseTemplate((at(w, written.apply) ?? {}) as PodTemplate, binding, (c, v) => owned.has(`${c}/${v}`))
      }
      const refused: Array<{ readonly reason: string; readonly message: string }> = []
      const writable = workloads.filter((w) => {
        const refusal = refusalOf(w)
        if (refusal !== undefined) refused.push({ reason: refusal.reason, message: `${w.kind} ${w.metadata.name}: ${refusal.message}` })
        return refusal === undefined
      })
      if (writable.length > 0) yield* markInUse(service.capability)
      const write = (w: KubeObject) =>
        "apply" in written
          ? applyTo(w, written.apply, intent((at(w, written.apply) ?? {}) as PodTemplate, binding, bound), manager).pipe(Effect.asVoid)
          : "mapping" in written
          ? patchTo(w, bindMapped(w, written.mapping, binding, bound), manager)
          : Effect.void
      yield* unbindStale(workloads)
      const failures: Array<{ readonly reason: string; readonly message: string }> = []
      for (const w of writable) {
        const applied = yield* write(w).pipe(Effect.result)
        if (applied._tag === "Failure") {
          // Retryable (the server is away, a conflict): retried with backoff; else reported.
          if (applied.failure.code === 0 || applied.failure.code === 409 || applied.failure.code >= 500) return yield* applied.failure
          // The API server's answer for a Job is its whole template, dumped: what to do says more.
          const detail = w.kind === "Job" && applied.failure.code === 422
            ? "Kubernetes refuses any change to a Job's pod template once the Job exists, and " + (noPolicy === undefined
              ? "a ClusterWorkloadResourceMapping names jobs.batch, so Jobs are not projected as they are created: delete it, "
              : `no MutatingAdmissionPolicy projects a Job as it is created: ${noPolicy}; `) +
              "or bind a CronJob instead (its Jobs are made from its bound template), or write the projection into the Job's manifest"
            : applied.failure.detail
          failures.push({ reason: "ProjectionFailed", message: `${w.kind} ${w.metadata.name}: ${detail}` })
        }
      }
      return yield* report(
        projectionVerdict(
          service.secret,
          [...refused, ...failures],
          writable.length - failures.length,
          workload.kind,
          `projected into ${workload.kind} ${workloads.map((w) => w.metadata.name).join(", ")}`
        )
      )
    })

  return yield* runWorkers({
    kind: "servicebinding",
    queue,
    concurrency: options.concurrency,
    shutdownTimeoutMs: options.shutdownTimeoutMs,
    reconcile: (key: string) => (key.startsWith("c:") ? reconcileCapability(key.slice(2)) : reconcileBinding(key.slice(2)))
  })
})

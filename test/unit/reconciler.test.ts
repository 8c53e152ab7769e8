/**
 * The reconciler's decision table, one row per branch, against the in-memory
 * API server and a fake plugin connection: what Ready says (status, reason,
 * message), what reconcile returns (done, look again later, or fail to be
 * retried with backoff), which Event is recorded, and which dependents exist.
 * A new reason is a new row. Below the table: the status is written only
 * when it changes, Events follow Ready's changes, and dependents are kept
 * as the plugin wants them.
 */
import { describe, expect, test } from "bun:test"
import { Context, Effect, Exit, Layer, Logger } from "effect"
import { TestClock } from "effect/testing"
import { ApiVersion, type CapabilityStatus } from "../../src/api/Capability.ts"
import { ObjectCache } from "../../src/controller/ObjectCache.ts"
import { Metrics } from "../../src/metrics/Metrics.ts"
import { PluginIdentity } from "../../src/reconciler/PluginIdentity.ts"
import { KubeApiError } from "../../src/kube/Errors.ts"
import type { KubeObject } from "../../src/kube/KubeObject.ts"
import { PluginCallFailed, PluginTimeout, PluginUnavailable } from "../../src/plugin-client/Errors.ts"
import { Reconciler } from "../../src/reconciler/Reconciler.ts"
import { PluginRegistry } from "../../src/registry/PluginRegistry.ts"
import { type FakeKube, makeFakeKube, withoutImpersonation } from "../support/FakeKube.ts"
import { databaseDescription, type FakePlugin, makeFakePlugin } from "../support/FakePlugin.ts"

const Key = "shop/db"
const capabilityRef = { apiVersion: ApiVersion, kind: "Capability", namespace: "shop", name: "db" }
const capability = (spec: Record<string, unknown> = { category: "database", type: "postgres" }): KubeObject => ({
  apiVersion: ApiVersion,
  kind: "Capability",
  metadata: { name: "db", namespace: "shop" },
  spec
})

interface World {
  readonly kube: FakeKube
  readonly plugin: FakePlugin
  readonly registry: PluginRegistry["Service"]
  readonly cache: ObjectCache["Service"]
  readonly reconciler: Reconciler["Service"]
}

const world = Effect.gen(function*() {
  const kube = makeFakeKube()
  // Without impersonation: plugins act with the client's own identity (the fake has no RBAC).
  const services = Layer.mergeAll(PluginIdentity.layer(withoutImpersonation), PluginRegistry.layer, ObjectCache.layer, Metrics.layer).pipe(
    Layer.provideMerge(kube.layer)
  )
  const context = yield* Layer.build(Reconciler.layer.pipe(Layer.provideMerge(services)))
  const world: World = {
    kube,
    plugin: makeFakePlugin(),
    registry: Context.get(context, PluginRegistry),
    cache: Context.get(context, ObjectCache),
    reconciler: Context.get(context, Reconciler)
  }
  return world
})

const run = <A, E>(body: (w: World) => Effect.Effect<A, E>) =>
  Effect.runPromise(Effect.scoped(Effect.flatMap(world, body)).pipe(Effect.provide(TestClock.layer()), Effect.provide(Logger.layer([]))))

const register = (w: World) => w.registry.register("pg", databaseDescription(), w.plugin.connection)
const statusOf = (w: World) => Effect.map(w.kube.client.get(capabilityRef), (o) => (o as { status?: CapabilityStatus }).status)
const readyOf = (status: CapabilityStatus | undefined) => status?.conditions?.find((c) => c.type === "Ready")
const events = (w: World) => w.kube.objects("v1", "Event", "shop").map((e) => `${String(e.type)} ${String(e.reason)}`)
const statusWrites = (w: World) => w.kube.requests.filter((r) => r.verb === "patchStatus").length
const dependents = (w: World) =>
  [...w.kube.objects("v1", "Secret", "shop"), ...w.kube.objects("apps/v1", "StatefulSet", "shop")].map((o) =>
    `${o.kind} ${o.metadata.name}`
  )
const refusal = (code: number, reason: string) => new KubeApiError({ code, reason, detail: `refused: ${reason}`, request: "test" })

/** What reconcile returned: done, look again after a while, or a failure (retried with backoff) with its HTTP code. */
type Returned = "done" | { readonly requeueAfterMs: number } | { readonly failsWith: number }

interface Row {
  readonly name: string
  readonly spec?: Record<string, unknown>
  /** What the world is like before the reconcile (plugins registered, calls failing, objects in the way). */
  readonly arrange: (w: World) => Effect.Effect<void, unknown>
  readonly ready: "True" | "False" | "Unknown"
  readonly reason: string
  /** A part of the Ready condition's message. */
  readonly message: string
  readonly returned: Returned
  /** The Event recorded, "Type Reason", or none. */
  readonly event: string | undefined
  /** Dependents that exist afterwards. */
  readonly dependents: ReadonlyArray<string>
}

const table: ReadonlyArray<Row> = [
  {
    name: "a spec that does not decode",
    spec: { category: "database" },
    arrange: register,
    ready: "False",
    reason: "InvalidSpec",
    message: "the Capability cannot be read",
    returned: "done",
    event: "Warning InvalidSpec",
    dependents: []
  },
  {
    name: "no plugin serves the type",
    spec: { category: "database", type: "mysql" },
    arrange: register,
    ready: "False",
    reason: "NoPlugin",
    message: "no plugin serves category \"database\", type \"mysql\"",
    returned: "done",
    event: "Warning NoPlugin",
    dependents: []
  },
  {
    name: "the plugin finds the Capability invalid",
    arrange: (w) =>
      Effect.andThen(register(w), Effect.sync(() => void (w.plugin.behaviour.validity = ["size must be positive", "no such tier"]))),
    ready: "False",
    reason: "Invalid",
    message: "size must be positive; no such tier",
    returned: "done",
    event: "Warning Invalid",
    dependents: []
  },
  {
    name: "the plugin is registered but unavailable (restarting)",
    arrange: (w) => Effect.andThen(register(w), w.registry.markUnavailable("pg", "exited with code 2")),
    ready: "Unknown",
    reason: "PluginUnavailable",
    message: "plugin pg is not available right now: exited with code 2",
    // The first of the exponential plugin retries (pluginRetryMs).
    returned: { requeueAfterMs: 1_000 },
    event: "Warning PluginUnavailable",
    dependents: []
  },
  {
    name: "the plugin goes away during a call",
    arrange: (w) =>
      Effect.andThen(
        register(w),
        Effect.sync(() => {
          w.plugin.behaviour.failing = {
            method: "buildDependents",
            error: new PluginUnavailable({ plugin: "pg", method: "BuildDependents", detail: "connection reset" })
          }
        })
      ),
    ready: "Unknown",
    reason: "PluginUnavailable",
    message: "connection reset",
    // The first of the exponential plugin retries (pluginRetryMs).
    returned: { requeueAfterMs: 1_000 },
    event: "Warning PluginUnavailable",
    dependents: []
  },
  {
    name: "the plugin does not answer in time",
    arrange: (w) =>
      Effect.andThen(
        register(w),
        Effect.sync(() => {
          w.plugin.behaviour.failing = {
            method: "evaluateConditions",
            error: new PluginTimeout({ plugin: "pg", method: "EvaluateConditions", timeoutMs: 10_000 })
          }
        })
      ),
    ready: "Unknown",
    reason: "PluginUnavailable",
    message: "did not answer EvaluateConditions within 10000 ms",
    // The first of the exponential plugin retries (pluginRetryMs).
    returned: { requeueAfterMs: 1_000 },
    event: "Warning PluginUnavailable",
    dependents: ["Secret db-config", "StatefulSet db"]
  },
  {
    name: "the plugin answers with an error",
    arrange: (w) =>
      Effect.andThen(
        register(w),
        Effect.sync(() => {
          w.plugin.behaviour.failing = {
            method: "checkValidity",
            error: new PluginCallFailed({ plugin: "pg", method: "CheckValidity", code: 13, detail: "nil pointer" })
          }
        })
      ),
    ready: "False",
    reason: "PluginError",
    message: "plugin pg failed CheckValidity: nil pointer",
    returned: "done",
    event: "Warning PluginError",
    dependents: []
  },
  {
    name: "the API server refuses a dependent (422)",
    arrange: (w) =>
      Effect.andThen(
        register(w),
        Effect.sync(() =>
          void w.kube.intercept((r) => (r.verb === "apply" && r.kind === "StatefulSet" ? refusal(422, "Invalid") : undefined))
        )
      ),
    ready: "False",
    reason: "ApplyFailed",
    message: "StatefulSet db (statefulset) could not be applied: refused: Invalid",
    returned: { failsWith: 422 },
    event: "Warning ApplyFailed",
    dependents: ["Secret db-config"]
  },
  {
    name: "a dependent's name is taken by an object another owner controls",
    arrange: (w) =>
      Effect.gen(function*() {
        yield* register(w)
        const ownerReferences = [{ apiVersion: "apps/v1", kind: "Deployment", name: "other", uid: "someone-else", controller: true }]
        yield* w.kube.client.create({
          apiVersion: "apps/v1",
          kind: "StatefulSet",
          metadata: { name: "db", namespace: "shop", ownerReferences },
          spec: { replicas: 3 }
        })
      }),
    ready: "False",
    reason: "Conflict",
    message: "StatefulSet shop/db (id statefulset) already exists and is not controlled by this Capability (controlled by Deployment other",
    returned: { failsWith: 409 },
    event: "Warning Conflict",
    dependents: ["StatefulSet db"]
  },
  {
    name:
      "a dependent's name is taken by an object that is not ours, found only by the create-only apply (its kind listed, so not read first)",
    arrange: (w) =>
      Effect.gen(function*() {
        yield* register(w)
        yield* w.kube.client.apply({
          apiVersion: "apps/v1",
          kind: "StatefulSet",
          metadata: { name: "db", namespace: "shop" },
          spec: { replicas: 3 }
        }, "kubectl")
        // As once the StatefulSet informer has listed: the cache holds every StatefulSet of ours, and this one is not.
        w.cache.markSynced("apps/v1", "StatefulSet")
      }),
    ready: "False",
    reason: "Conflict",
    message: "(no owner reference; managed by kubectl)",
    returned: { failsWith: 409 },
    // The Secret, planned as a create too, was written before the StatefulSet's apply found the conflict.
    event: "Warning Conflict",
    dependents: ["Secret db-config", "StatefulSet db"]
  },
  {
    name: "the plugin returns an object outside the Capability's namespace",
    arrange: (w) => Effect.andThen(register(w), Effect.sync(() => void (w.plugin.behaviour.foreignNamespace = "kube-system"))),
    ready: "False",
    reason: "PluginViolation",
    message: "plugin pg broke rule \"namespace\": StatefulSet kube-system/db (id statefulset) is not in the Capability",
    returned: "done",
    event: "Warning PluginViolation",
    dependents: []
  },
  {
    name: "dependents applied, not ready yet",
    arrange: (w) => Effect.andThen(register(w), Effect.sync(() => void (w.plugin.behaviour.state = "pending"))),
    ready: "False",
    reason: "DependentsNotReady",
    message: "StatefulSet db: the StatefulSet is pending",
    returned: "done",
    event: undefined,
    dependents: ["Secret db-config", "StatefulSet db"]
  },
  {
    name: "a dependent failed",
    arrange: (w) => Effect.andThen(register(w), Effect.sync(() => void (w.plugin.behaviour.state = "failed"))),
    ready: "False",
    reason: "DependentFailed",
    message: "StatefulSet db: the StatefulSet is failed",
    returned: "done",
    event: "Warning DependentFailed",
    dependents: ["Secret db-config", "StatefulSet db"]
  },
  {
    name: "every dependent ready",
    arrange: register,
    ready: "True",
    reason: "Ready",
    message: "all 2 dependents are ready",
    returned: "done",
    event: "Normal Ready",
    dependents: ["Secret db-config", "StatefulSet db"]
  }
]

describe("Reconciler decision table", () => {
  for (const row of table) {
    test(`${row.name}: Ready=${row.ready} (${row.reason})`, () =>
      run((w) =>
        Effect.gen(function*() {
          yield* w.kube.client.create(capability(row.spec))
          yield* row.arrange(w)
          const exit = yield* Effect.exit(w.reconciler.reconcile(Key))
          const returned: Returned = Exit.isSuccess(exit)
            ? exit.value.requeueAfterMs === undefined ? "done" : { requeueAfterMs: exit.value.requeueAfterMs }
            : { failsWith: exit.cause.reasons[0]?._tag === "Fail" ? (exit.cause.reasons[0].error as KubeApiError).code : -1 }
          expect(returned).toEqual(row.returned)
          const ready = readyOf(yield* statusOf(w))
          expect({ status: ready?.status, reason: ready?.reason }).toEqual({ status: row.ready, reason: row.reason })
          expect(ready?.message).toContain(row.message)
          expect(events(w)).toEqual(row.event === undefined ? [] : [row.event])
          expect(dependents(w).sort()).toEqual([...row.dependents].sort())
        })
      ))
  }
})

describe("Reconciler", () => {
  test("a deleted Capability: nothing written, nothing to retry", () =>
    run((w) =>
      Effect.gen(function*() {
        yield* register(w)
        expect(yield* w.reconciler.reconcile(Key)).toEqual({})
        expect(w.kube.requests.filter((r) => r.verb !== "get")).toEqual([])
      })
    ))

  test("the API server unreachable while applying: the reconcile fails, no status is written", () =>
    run((w) =>
      Effect.gen(function*() {
        yield* w.kube.client.create(capability())
        yield* register(w)
        w.kube.intercept((r) => (r.verb === "apply" ? refusal(0, "Unreachable") : undefined))
        const error = yield* Effect.flip(w.reconciler.reconcile(Key))
        expect(error.code).toBe(0)
        expect(statusWrites(w)).toBe(0)
      })
    ))

  test("Ready: the status names the plugin, version, binding Secret and each dependent, for this generation", () =>
    run((w) =>
      Effect.gen(function*() {
        yield* w.kube.client.create(capability({ category: "Database", type: "Postgres", version: "15" }))
        yield* register(w)
        yield* w.reconciler.reconcile(Key)
        const status = yield* statusOf(w)
        expect(status).toMatchObject({
          observedGeneration: 1,
          plugin: "pg",
          version: "15",
          bindingSecret: "db-config",
          binding: { name: "db-config" },
          dependents: [
            { id: "secret", kind: "Secret", name: "db-config", ready: true, reason: "Applied" },
            { id: "statefulset", kind: "StatefulSet", name: "db", ready: true, reason: "Ready" }
          ]
        })
        // Dependents are labelled as ours and controlled by the Capability.
        const [statefulSet] = w.kube.objects("apps/v1", "StatefulSet", "shop")
        const owner = yield* w.kube.client.get(capabilityRef)
        expect(statefulSet?.metadata.labels).toEqual({ "halkyon.io/capability": "db" })
        expect(statefulSet?.metadata.ownerReferences).toEqual([
          {
            apiVersion: ApiVersion,
            kind: "Capability",
            name: "db",
            uid: owner.metadata.uid ?? "",
            controller: true,
            blockOwnerDeletion: true
          }
        ])
        expect(statefulSet?.metadata.managedFields?.map((m) => m.manager)).toEqual(["halkyon"])
      })
    ))

  test("the status is written only when it changes, and one Event per change of Ready", () =>
    run((w) =>
      Effect.gen(function*() {
        yield* w.kube.client.create(capability())
        yield* register(w)
        yield* w.reconciler.reconcile(Key)
        yield* w.reconciler.reconcile(Key)
        yield* w.reconciler.reconcile(Key)
        expect(statusWrites(w)).toBe(1)
        expect(events(w)).toEqual(["Normal Ready"])
      })
    ))

  test("Events follow Ready: a change of status or of reason records one; waiting for dependents records none", () =>
    run((w) =>
      Effect.gen(function*() {
        yield* w.kube.client.create(capability())
        yield* register(w)
        const step = (change: () => void) => Effect.andThen(Effect.sync(change), w.reconciler.reconcile(Key))
        yield* step(() => void (w.plugin.behaviour.state = "pending"))
        yield* step(() => void (w.plugin.behaviour.state = "ready"))
        yield* step(() => void (w.plugin.behaviour.state = "failed"))
        // Same status (False), another reason.
        yield* step(() => void (w.plugin.behaviour.validity = ["bad"]))
        yield* step(() => void (w.plugin.behaviour.validity = []))
        expect(events(w)).toEqual(["Normal Ready", "Warning DependentFailed", "Warning Invalid", "Warning DependentFailed"])
        expect(statusWrites(w)).toBe(5)
      })
    ))

  test("lastTransitionTime moves when Ready's status changes, not when only its reason does", () =>
    run((w) =>
      Effect.gen(function*() {
        yield* w.kube.client.create(capability())
        yield* register(w)
        w.plugin.behaviour.state = "pending"
        yield* w.reconciler.reconcile(Key)
        const first = readyOf(yield* statusOf(w))?.lastTransitionTime
        yield* TestClock.adjust("1 minute")
        w.plugin.behaviour.state = "failed"
        yield* w.reconciler.reconcile(Key)
        expect(readyOf(yield* statusOf(w))?.lastTransitionTime).toBe(first)
        yield* TestClock.adjust("1 minute")
        w.plugin.behaviour.state = "ready"
        yield* w.reconciler.reconcile(Key)
        expect(first).toBe("1970-01-01T00:00:00Z")
        expect(readyOf(yield* statusOf(w))?.lastTransitionTime).toBe("1970-01-01T00:02:00Z")
      })
    ))

  test("a Capability waits for its plugin, and is no longer waiting once served", () =>
    run((w) =>
      Effect.gen(function*() {
        yield* w.kube.client.create(capability())
        yield* w.reconciler.reconcile(Key)
        expect(yield* w.reconciler.waitingForPlugin).toEqual([Key])
        yield* register(w)
        yield* w.reconciler.reconcile(Key)
        expect(yield* w.reconciler.waitingForPlugin).toEqual([])
        expect(readyOf(yield* statusOf(w))?.reason).toBe("Ready")
      })
    ))

  test("an update the API server refuses as an apply (422: another manager's fields make it invalid) is made by a merge patch", () =>
    run((w) =>
      Effect.gen(function*() {
        yield* w.kube.client.create(capability())
        yield* register(w)
        yield* w.reconciler.reconcile(Key)
        w.plugin.behaviour.replicas = 3
        w.kube.intercept((r) => (r.verb === "apply" && r.kind === "StatefulSet" ? refusal(422, "Invalid") : undefined))
        expect(yield* w.reconciler.reconcile(Key)).toEqual({})
        const statefulSet = yield* w.kube.client.get({ apiVersion: "apps/v1", kind: "StatefulSet", namespace: "shop", name: "db" })
        expect((statefulSet as { spec?: { replicas?: number } }).spec?.replicas).toBe(3)
        // The Capability's: the operator's finalizer, added before the first write.
        expect(w.kube.requests.filter((r) => r.verb === "mergePatch").map((r) => `${r.kind} ${r.fieldManager}`)).toEqual([
          "Capability halkyon",
          "StatefulSet halkyon"
        ])
        expect(readyOf(yield* statusOf(w))?.reason).toBe("Ready")
      })
    ))

  test("a dependent deleted by hand is created again; one the plugin wants changed is updated", () =>
    run((w) =>
      Effect.gen(function*() {
        yield* w.kube.client.create(capability())
        yield* register(w)
        yield* w.reconciler.reconcile(Key)
        const secretRef = { apiVersion: "v1", kind: "Secret", namespace: "shop", name: "db-config" }
        const secret = yield* w.kube.client.get(secretRef)
        yield* w.kube.client.delete(secretRef)
        // What the Secret informer does with the deletion's event.
        w.cache.remove(secret)
        w.plugin.behaviour.replicas = 2
        yield* w.reconciler.reconcile(Key)
        expect(dependents(w).sort()).toEqual(["Secret db-config", "StatefulSet db"])
        expect((yield* w.kube.client.get(secretRef)).metadata.uid).not.toBe(secret.metadata.uid)
        const [statefulSet] = w.kube.objects("apps/v1", "StatefulSet", "shop")
        expect((statefulSet as { spec?: { replicas?: number } } | undefined)?.spec?.replicas).toBe(2)
        expect(w.plugin.calls.filter((c) => c === "updateDependent").length).toBeGreaterThanOrEqual(2)
      })
    ))
})

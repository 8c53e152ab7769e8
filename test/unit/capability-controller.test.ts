/**
 * The Capability controller in memory: informers on the in-memory API
 * server, the real reconciler, a fake plugin. What enqueues a reconcile (a
 * new Capability, a new generation, a dependent changed or deleted by hand,
 * a plugin registering for a waiting Capability, a plugin replaced by a new
 * process) and what does not (the
 * echoes of the operator's own writes, a change that leaves the generation
 * alone).
 */
import { describe, expect, test } from "bun:test"
import { Context, Effect, Layer, Logger, type Scope } from "effect"
import { TestClock } from "effect/testing"
import { ApiVersion, type CapabilityStatus, DependentsFinalizer, InUseFinalizer } from "../../src/api/Capability.ts"
import { ObjectCache } from "../../src/controller/ObjectCache.ts"
import { Metrics } from "../../src/metrics/Metrics.ts"
import { PluginIdentity } from "../../src/reconciler/PluginIdentity.ts"
import type { ReconcileOutcome } from "../../src/controller/Workers.ts"
import { startController } from "../../src/reconciler/CapabilityController.ts"
import { Reconciler } from "../../src/reconciler/Reconciler.ts"
import { PluginRegistry } from "../../src/registry/PluginRegistry.ts"
import { type FakeKube, makeFakeKube, withoutImpersonation } from "../support/FakeKube.ts"
import { databaseDescription, type FakePlugin, makeFakePlugin } from "../support/FakePlugin.ts"
import { untilTurns } from "../support/fake-run.ts"

const capabilityRef = { apiVersion: ApiVersion, kind: "Capability", namespace: "shop", name: "db" }
const statefulSetRef = { apiVersion: "apps/v1", kind: "StatefulSet", namespace: "shop", name: "db" }

interface Harness {
  readonly kube: FakeKube
  readonly plugin: FakePlugin
  readonly registry: PluginRegistry["Service"]
  readonly reconciles: Array<ReconcileOutcome>
}

const until = (condition: () => boolean | Promise<boolean>, what: string) => untilTurns(condition, what)

/** Lets every fiber run what it can now (no time passes): events delivered, queues drained. */
const settle = Effect.gen(function*() {
  for (let i = 0; i < 200; i++) yield* Effect.yieldNow
})

const start = Effect.fnUntraced(function*(registerFirst: boolean, answerLagTurns = 0) {
  const kube = makeFakeKube({ answerLagTurns })
  const plugin = makeFakePlugin()
  // Without impersonation: plugins act with the client's own identity (the fake has no RBAC).
  const services = Layer.mergeAll(PluginIdentity.layer(withoutImpersonation), PluginRegistry.layer, ObjectCache.layer, Metrics.layer).pipe(
    Layer.provideMerge(kube.layer)
  )
  const context = yield* Layer.build(Reconciler.layer.pipe(Layer.provideMerge(services)))
  const registry = Context.get(context, PluginRegistry)
  if (registerFirst) yield* registry.register("pg", databaseDescription(), plugin.connection)
  const reconciles: Array<ReconcileOutcome> = []
  const controller = yield* startController({
    namespace: undefined,
    concurrency: 2,
    shutdownTimeoutMs: 1_000,
    onReconciled: (outcome) => void reconciles.push(outcome)
  }).pipe(Effect.provideContext(context))
  yield* controller.awaitSynced
  const harness: Harness = { kube, plugin, registry, reconciles }
  return harness
})

const readyOf = (h: Harness) =>
  Effect.runPromise(h.kube.client.get(capabilityRef)).then((o) =>
    (o as { status?: CapabilityStatus }).status?.conditions?.find((c) => c.type === "Ready")?.reason
  )
const replicas = (h: Harness) =>
  Effect.runPromise(h.kube.client.get(statefulSetRef)).then((o) => (o as { spec?: { replicas?: number } }).spec?.replicas, () => undefined)

const createCapability = (h: Harness) =>
  h.kube.client.create({
    apiVersion: ApiVersion,
    kind: "Capability",
    metadata: { name: "db", namespace: "shop" },
    spec: { category: "database", type: "postgres" }
  })

const run = <A, E>(effect: Effect.Effect<A, E, Scope.Scope>) =>
  Effect.runPromise(effect.pipe(Effect.scoped, Effect.provide(TestClock.layer()), Effect.provide(Logger.layer([]))))

describe("CapabilityController", () => {
  test("a new Capability is reconciled to Ready once: the echoes of its own writes enqueue nothing", () =>
    run(Effect.gen(function*() {
      const h = yield* start(true)
      yield* createCapability(h)
      yield* until(async () => (await readyOf(h)) === "Ready", "Ready")
      yield* settle
      yield* TestClock.adjust("1 minute")
      yield* settle
      expect(h.reconciles).toEqual(["success"])
      // The plugin's CapabilityInfo was published.
      expect(h.kube.objects(ApiVersion, "CapabilityInfo").map((o) => o.metadata.name)).toEqual(["database-postgres"])
    })))

  test("echoes that arrive before the write's answer is cached enqueue nothing either: every field is the operator's", () =>
    run(Effect.gen(function*() {
      // The watch events of each write reach the informers before the reconciler hears back.
      const h = yield* start(true, 50)
      yield* createCapability(h)
      yield* until(async () => (await readyOf(h)) === "Ready", "Ready")
      yield* settle
      yield* TestClock.adjust("1 minute")
      yield* settle
      expect(h.reconciles).toEqual(["success"])
    })))

  test("a change that leaves the generation alone enqueues nothing; a new generation does", () =>
    run(Effect.gen(function*() {
      const h = yield* start(true)
      yield* createCapability(h)
      yield* until(() => h.reconciles.length === 1, "the first reconcile")
      yield* h.kube.client.mergePatch(capabilityRef, { metadata: { labels: { team: "shop" } } }, "kubectl-label")
      yield* settle
      expect(h.reconciles.length).toBe(1)
      yield* h.kube.client.mergePatch(capabilityRef, { spec: { version: "15" } }, "kubectl-edit")
      yield* until(() => h.reconciles.length === 2, "a reconcile of the new generation")
    })))

  test("a Capability deleted while bound waits; the InUse finalizer removed enqueues it, and its dependents go in reverse order", () =>
    run(Effect.gen(function*() {
      const h = yield* start(true)
      yield* createCapability(h)
      yield* until(async () => (await readyOf(h)) === "Ready", "Ready")
      const current = yield* h.kube.client.get(capabilityRef)
      expect(current.metadata.finalizers).toEqual([DependentsFinalizer])
      yield* h.kube.client.mergePatch(capabilityRef, { metadata: { finalizers: [DependentsFinalizer, InUseFinalizer] } }, "halkyon-binding")
      yield* h.kube.client.delete(capabilityRef)
      yield* settle
      // Held: the binding's workloads still read the Secret.
      expect(h.kube.requests.filter((r) => r.verb === "delete").map((r) => r.kind)).toEqual(["Capability"])
      // A metadata change, no new generation: still enqueued, being deleted.
      yield* h.kube.client.mergePatch(capabilityRef, { metadata: { finalizers: [DependentsFinalizer] } }, "halkyon-binding")
      yield* until(() => h.kube.objects(ApiVersion, "Capability", "shop").length === 0, "the Capability gone")
      expect(h.kube.requests.filter((r) => r.verb === "delete").map((r) => r.kind)).toEqual(["Capability", "StatefulSet", "Secret"])
    })))

  test("a dependent deleted by hand is created again", () =>
    run(Effect.gen(function*() {
      const h = yield* start(true)
      yield* createCapability(h)
      yield* until(() => h.reconciles.length === 1, "the first reconcile")
      const before = yield* h.kube.client.get(statefulSetRef)
      yield* h.kube.client.delete(statefulSetRef)
      yield* until(() => h.reconciles.length === 2, "a reconcile of the owner")
      const after = yield* h.kube.client.get(statefulSetRef)
      expect(after.metadata.uid).not.toBe(before.metadata.uid)
    })))

  test("a dependent edited by hand is put back as the plugin wants it", () =>
    run(Effect.gen(function*() {
      const h = yield* start(true)
      yield* createCapability(h)
      yield* until(() => h.reconciles.length === 1, "the first reconcile")
      // The edit also sets a field the plugin does not: its manager stays on the object.
      const edit = { metadata: { annotations: { note: "tuned" } }, spec: { replicas: 5 } }
      yield* h.kube.client.mergePatch(statefulSetRef, edit, "kubectl-edit")
      yield* until(async () => (await replicas(h)) === 1, "replicas back to 1")
      yield* settle
      // The echo of the repair, though not the operator's alone, is known to the cache: no third reconcile.
      expect(h.reconciles.length).toBe(2)
      const managers = (yield* h.kube.client.get(statefulSetRef)).metadata.managedFields?.map((m) => m.manager)
      expect(managers?.sort()).toEqual(["halkyon", "kubectl-edit"])
    })))

  test("a Capability waiting for its plugin is reconciled when the plugin registers", () =>
    run(Effect.gen(function*() {
      const h = yield* start(false)
      yield* createCapability(h)
      yield* until(async () => (await readyOf(h)) === "NoPlugin", "NoPlugin")
      yield* h.registry.register("pg", databaseDescription(), h.plugin.connection)
      yield* settle
      // Registrations are debounced.
      yield* TestClock.adjust(100)
      yield* until(async () => (await readyOf(h)) === "Ready", "Ready")
    })))

  test("a plugin registered again as a new process (a replaced file) reconciles the Capabilities it serves; the same one again does not", () =>
    run(Effect.gen(function*() {
      const h = yield* start(true)
      yield* createCapability(h)
      yield* until(() => h.reconciles.length === 1, "the first reconcile")
      // The same process described again (a status change of the registry): nothing to do.
      yield* h.registry.register("pg", databaseDescription(), h.plugin.connection)
      yield* settle
      yield* TestClock.adjust(100)
      yield* settle
      expect(h.reconciles.length).toBe(1)
      // A new version: its answers may differ (what it no longer builds is pruned), so its Capabilities are reconciled.
      const next = makeFakePlugin()
      yield* h.registry.register("pg", databaseDescription(), next.connection)
      yield* settle
      yield* TestClock.adjust(100)
      yield* until(() => h.reconciles.length === 2, "a reconcile by the new version")
      expect(next.calls.length).toBeGreaterThan(0)
    })))
})

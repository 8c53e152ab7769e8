/**
 * Dependents as a graph: the pure parts by table (DependentGraph: order,
 * cycles, unknown ids; Inventory: what is pruned, in which waves things are
 * removed), then the Reconciler against the in-memory API server with a
 * graph plugin (creds, kept -> config -> db, waited for -> svc, optional):
 * waves and waiting, observed state (and what is kept out of it: an object
 * no longer controlled, or not the uid recorded), pruning that spares a look-alike, and
 * deletion driven by the operator's finalizer; with a fan (base <- left,
 * right), that one wave's writes and deletes overlap.
 */
import { describe, expect, test } from "bun:test"
import { Context, Deferred, Effect, Layer, Logger, type Scope } from "effect"
import { TestClock } from "effect/testing"
import {
  ApiVersion,
  type CapabilityStatus,
  decodeCapabilityJson,
  DependentsFinalizer,
  InUseFinalizer,
  type InventoryEntry
} from "../../src/api/Capability.ts"
import { buildDependents, describe as describePlugin, makeContext, observedOf } from "../../src/sdk/CapabilityService.ts"
import { definePlugin } from "../../src/sdk/Plugin.ts"
import { postgres } from "../../plugins/postgres/plugin.ts"
import { ObjectCache } from "../../src/controller/ObjectCache.ts"
import { DeletionPolicy, type PluginDescription } from "../../src/gen/halkyon/capability/v1/capability.ts"
import type { KubeObject } from "../../src/kube/KubeObject.ts"
import { Metrics } from "../../src/metrics/Metrics.ts"
import type { BuiltDependent, PluginConnection } from "../../src/plugin-client/PluginClient.ts"
import { dependencies, graphProblem, waves } from "../../src/protocol/DependentGraph.ts"
import { removalWaves, staleEntries } from "../../src/reconciler/Inventory.ts"
import { PluginIdentity } from "../../src/reconciler/PluginIdentity.ts"
import { Reconciler } from "../../src/reconciler/Reconciler.ts"
import { PluginRegistry } from "../../src/registry/PluginRegistry.ts"
import { makeFakeKube, type Request, withoutImpersonation } from "../support/FakeKube.ts"
import { dependentInfo } from "../support/FakePlugin.ts"

const node = (id: string, ...dependsOn: Array<string>) => ({ id, dependsOn })

describe("the graph of a plugin's dependents", () => {
  const graph = [node("creds"), node("config", "creds"), node("db", "config"), node("svc", "db"), node("metrics", "creds")]

  test("waves: each after what it depends on; independent ones together", () => {
    expect(waves(["creds", "config", "db", "svc", "metrics"], graph)).toEqual([["creds"], ["config", "metrics"], ["db"], ["svc"]])
  })

  test("a dependent left out does not move those after it up", () => {
    expect(waves(["creds", "db", "svc"], graph)).toEqual([["creds"], ["db"], ["svc"]])
  })

  test("without depends_on anywhere, the declared order is the graph", () => {
    const listed = [node("a"), node("b"), node("c")]
    expect([...dependencies(listed)]).toEqual([["a", []], ["b", ["a"]], ["c", ["b"]]])
    expect(waves(["a", "b", "c"], listed)).toEqual([["a"], ["b"], ["c"]])
  })

  test("a cycle is named, in apply order", () => {
    expect(graphProblem(graph)).toBeUndefined()
    expect(graphProblem([node("a", "c"), node("b", "a"), node("c", "b")])).toBe("the dependents form a cycle: a -> b -> c -> a")
    expect(graphProblem([node("a", "a")])).toBe("the dependents form a cycle: a -> a")
  })

  test("an unknown id is named with the declared ones", () => {
    expect(graphProblem([node("a"), node("b", "x")])).toBe("dependent b depends on x, which is not declared (declared: a, b)")
  })
})

const entry = (id: string, name: string, dependsOn: Array<string> = [], uid = `uid-${name}`): InventoryEntry => ({
  id,
  apiVersion: "v1",
  kind: "ConfigMap",
  name,
  uid,
  ...(dependsOn.length === 0 ? {} : { dependsOn })
})

describe("the inventory", () => {
  const inventory = [entry("creds", "x-creds"), entry("config", "x-config", ["creds"]), entry("db", "x-db", ["config"])]

  test("an id no longer built, or built as another object, is stale; the others are kept", () => {
    const built = [
      { id: "creds", apiVersion: "v1", kind: "ConfigMap", name: "x-creds" },
      { id: "config", apiVersion: "v1", kind: "ConfigMap", name: "x-config-2" }
    ]
    expect(staleEntries(inventory, built).map((e) => e.name)).toEqual(["x-config", "x-db"])
  })

  test("removal goes in reverse order of application, wave by wave", () => {
    expect(removalWaves(inventory).map((w) => w.map((e) => e.id))).toEqual([["db"], ["config"], ["creds"]])
    const fan = [entry("a", "a"), entry("b", "b", ["a"]), entry("c", "c", ["a"])]
    expect(removalWaves(fan).map((w) => w.map((e) => e.id))).toEqual([["b", "c"], ["a"]])
  })

  test("a status edited into a cycle still comes apart, in reverse recorded order", () => {
    const looped = [entry("a", "a", ["b"]), entry("b", "b", ["a"])]
    expect(removalWaves(looped).map((w) => w.map((e) => e.id))).toEqual([["b"], ["a"]])
  })
})

// The Reconciler with a graph plugin.

const description: PluginDescription = {
  name: "graph",
  category: "test",
  types: [{ type: "graph", versions: ["1"], defaultVersion: "1" }],
  parameters: [],
  refuseUnknownParameters: false,
  dependents: [
    dependentInfo("creds", "v1", "Secret", { deletionPolicy: DeletionPolicy.DELETION_POLICY_ORPHAN }),
    dependentInfo("config", "v1", "ConfigMap", { dependsOn: ["creds"] }),
    dependentInfo("db", "apps/v1", "StatefulSet", { dependsOn: ["config"], waitForReady: true, checkedForReadiness: true }),
    dependentInfo("svc", "v1", "Service", { dependsOn: ["db"] })
  ]
}

interface GraphPlugin {
  readonly connection: PluginConnection
  readonly state: { dbReady: boolean; expose: boolean; withConfig: boolean }
  /** The ids each BuildDependents call saw observed. */
  readonly builds: Array<ReadonlyArray<string>>
  /** What the last BuildDependents call answered. */
  readonly built: Array<BuiltDependent>
}

const makeGraphPlugin = (): GraphPlugin => {
  const state = { dbReady: false, expose: true, withConfig: true }
  const builds: Array<ReadonlyArray<string>> = []
  const built: Array<BuiltDependent> = []
  const sized = (id: string, object: Record<string, unknown>): BuiltDependent => ({ id, object, bytes: JSON.stringify(object).length })
  const connection: PluginConnection = {
    describe: Effect.succeed(description),
    checkValidity: () => Effect.succeed([]),
    buildDependents: (_capability, observed = []) =>
      Effect.sync(() => {
        builds.push(observed.map((o) => o.id))
        const creds = observed.find((o) => o.id === "creds")?.object as { metadata?: { uid?: string } } | undefined
        const answer = [
          sized("creds", { apiVersion: "v1", kind: "Secret", metadata: { name: "x-creds" }, stringData: { password: "p" } }),
          ...(state.withConfig
            ? [sized("config", { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "x-config" }, data: { a: "1" } })]
            : []),
          sized("db", {
            apiVersion: "apps/v1",
            kind: "StatefulSet",
            // What the plugin saw of creds, where a test can read it.
            metadata: { name: "x-db", annotations: { creds: creds?.metadata?.uid ?? "unseen" } },
            spec: { replicas: 1, serviceName: "x-db" }
          }),
          ...(state.expose
            ? [sized("svc", { apiVersion: "v1", kind: "Service", metadata: { name: "x-svc" }, spec: { ports: [{ port: 1 }] } })]
            : [])
        ]
        built.splice(0, built.length, ...answer)
        return answer
      }),
    updateDependent: () => Effect.succeed({ needsUpdate: false, updated: undefined, bytes: 0 }),
    evaluateConditions: (_capability, observed) =>
      Effect.succeed(observed.map((o) => ({
        id: o.id,
        state: state.dbReady ? "ready" as const : "pending" as const,
        reason: state.dbReady ? "Ready" : "NotReady",
        message: "",
        attributes: {}
      }))),
    ping: Effect.void,
    shutdown: Effect.void
  }
  return { connection, state, builds, built }
}

const Key = "shop/x"
const capabilityRef = { apiVersion: ApiVersion, kind: "Capability", namespace: "shop", name: "x" }

const worldOf = <P extends { readonly connection: PluginConnection }>(pluginDescription: PluginDescription, make: () => P) =>
  Effect.gen(function*() {
    const kube = makeFakeKube()
    const services = Layer.mergeAll(PluginIdentity.layer(withoutImpersonation), PluginRegistry.layer, ObjectCache.layer, Metrics.layer)
      .pipe(
        Layer.provideMerge(kube.layer)
      )
    const context = yield* Layer.build(Reconciler.layer.pipe(Layer.provideMerge(services)))
    const plugin = make()
    yield* Context.get(context, PluginRegistry).register(pluginDescription.name, pluginDescription, plugin.connection)
    yield* kube.client.create({
      apiVersion: ApiVersion,
      kind: "Capability",
      metadata: { name: "x", namespace: "shop" },
      spec: { category: "test", type: pluginDescription.types[0]?.type ?? "" }
    } as KubeObject)
    return {
      kube,
      plugin,
      reconciler: Context.get(context, Reconciler),
      cache: Context.get(context, ObjectCache),
      registry: Context.get(context, PluginRegistry)
    }
  })
const world = worldOf(description, makeGraphPlugin)
type World = Effect.Success<typeof world>

const run = <A, E>(body: (w: World) => Effect.Effect<A, E>) => runIn(world, body)
const runIn = <W, A, E, E2>(made: Effect.Effect<W, E2, Scope.Scope>, body: (w: W) => Effect.Effect<A, E>) =>
  Effect.runPromise(Effect.scoped(Effect.flatMap(made, body)).pipe(Effect.provide(TestClock.layer()), Effect.provide(Logger.layer([]))))

const statusOf = (w: Pick<World, "kube">) =>
  Effect.map(w.kube.client.get(capabilityRef), (o) => (o as { status?: CapabilityStatus }).status)
const names = (w: World) =>
  [
    ...w.kube.objects("v1", "Secret", "shop"),
    ...w.kube.objects("v1", "ConfigMap", "shop"),
    ...w.kube.objects("apps/v1", "StatefulSet", "shop"),
    ...w.kube.objects("v1", "Service", "shop")
  ].map((o) => o.metadata.name).sort()
/** What the Capability informer does: the cache gets the Capability as it now is. */
const informed = (w: Pick<World, "kube" | "cache">) => Effect.map(w.kube.client.get(capabilityRef), (o) => void w.cache.put(o))
const deletes = (w: World) => w.kube.requests.filter((r) => r.verb === "delete").map((r) => r.name)

describe("the Reconciler applies a graph", () => {
  test("svc waits for db to be ready, and the status says what waits on what; then it is created", () =>
    run((w) =>
      Effect.gen(function*() {
        yield* w.reconciler.reconcile(Key)
        expect(names(w)).toEqual(["x-config", "x-creds", "x-db"])
        const status = yield* statusOf(w)
        const svc = status?.dependents?.find((d) => d.id === "svc")
        expect(svc).toMatchObject({ ready: false, reason: "Waiting", waitingFor: ["db"] })
        expect(svc?.message).toBe("waits for db (StatefulSet x-db) to be ready")
        expect(status?.inventory?.map((e) => e.id)).toEqual(["creds", "config", "db"])
        w.plugin.state.dbReady = true
        yield* w.reconciler.reconcile(Key)
        expect(names(w)).toEqual(["x-config", "x-creds", "x-db", "x-svc"])
        expect(status?.conditions?.find((c) => c.type === "Ready")?.reason).toBe("DependentsNotReady")
      })
    ))

  test("the plugin is asked again once what a later dependent depends on is observed: db is built from the creds written", () =>
    run((w) =>
      Effect.gen(function*() {
        yield* w.reconciler.reconcile(Key)
        // First build: nothing observed; then once more before each wave that depends on one just written.
        expect(w.plugin.builds).toEqual([[], ["creds"], ["creds", "config"]])
        const creds = w.kube.objects("v1", "Secret", "shop")[0]
        const db = w.kube.objects("apps/v1", "StatefulSet", "shop")[0]
        expect(db?.metadata.annotations?.creds).toBe(creds?.metadata.uid)
        // Steady state: one build, with everything observed.
        const before = w.plugin.builds.length
        yield* w.reconciler.reconcile(Key)
        expect(w.plugin.builds.length).toBe(before + 1)
        expect(w.plugin.builds.at(-1)).toEqual(["creds", "config", "db"])
      })
    ))

  test("a dependent no longer built is pruned, by uid; a look-alike with our label stays", () =>
    run((w) =>
      Effect.gen(function*() {
        w.plugin.state.dbReady = true
        yield* w.reconciler.reconcile(Key)
        yield* w.kube.client.create({
          apiVersion: "v1",
          kind: "Service",
          metadata: { name: "x-lookalike", namespace: "shop", labels: { "halkyon.io/capability": "x" } }
        } as KubeObject)
        w.plugin.state.expose = false
        yield* w.reconciler.reconcile(Key)
        expect(names(w)).toEqual(["x-config", "x-creds", "x-db", "x-lookalike"])
        expect(deletes(w)).toEqual(["x-svc"])
        expect((yield* statusOf(w))?.inventory?.map((e) => e.id)).toEqual(["creds", "config", "db"])
      })
    ))

  test("a plugin version that drops a dependent from its declaration prunes it", () =>
    run((w) =>
      Effect.gen(function*() {
        w.plugin.state.dbReady = true
        yield* w.reconciler.reconcile(Key)
        expect(names(w)).toEqual(["x-config", "x-creds", "x-db", "x-svc"])
        w.plugin.state.withConfig = false
        const next: PluginDescription = {
          ...description,
          dependents: description.dependents.filter((d) => d.id !== "config").map((d) => d.id === "db" ? { ...d, dependsOn: ["creds"] } : d)
        }
        yield* w.registry.register("graph", next, w.plugin.connection)
        yield* w.reconciler.reconcile(Key)
        expect(names(w)).toEqual(["x-creds", "x-db", "x-svc"])
        expect(deletes(w)).toEqual(["x-config"])
        expect((yield* statusOf(w))?.inventory?.map((e) => e.id)).toEqual(["creds", "db", "svc"])
      })
    ))

  // The informer's view of creds once someone changed it: it keeps our label, so the cache holds it.
  const foreignCreds = {
    "its owner reference removed": (w: World) =>
      Effect.gen(function*() {
        const ref = { apiVersion: "v1", kind: "Secret", namespace: "shop", name: "x-creds" }
        return yield* w.kube.client.mergePatch(ref, { metadata: { ownerReferences: null } }, "someone")
      }),
    "deleted and made again under its name, without owner": (w: World) =>
      Effect.gen(function*() {
        yield* w.kube.client.delete({ apiVersion: "v1", kind: "Secret", namespace: "shop", name: "x-creds" })
        return yield* w.kube.client.create({
          apiVersion: "v1",
          kind: "Secret",
          metadata: { name: "x-creds", namespace: "shop", labels: { "halkyon.io/capability": "x" } },
          stringData: { password: "theirs" }
        } as KubeObject)
      })
  }
  for (const [how, change] of Object.entries(foreignCreds)) {
    test(`creds ${how} is no longer shown to the plugin, and nothing is built from it or written`, () =>
      run((w) =>
        Effect.gen(function*() {
          w.plugin.state.dbReady = true
          yield* w.reconciler.reconcile(Key)
          const ours = w.kube.objects("v1", "Secret", "shop")[0]?.metadata.uid
          expect(w.plugin.builds.at(-1)).toContain("creds")
          expect(w.kube.objects("apps/v1", "StatefulSet", "shop")[0]?.metadata.annotations?.creds).toBe(ours)
          const foreign = yield* change(w)
          w.cache.put(foreign)
          const builds = w.plugin.builds.length
          const writes = w.kube.requests.filter((r) => r.verb === "apply" || r.verb === "mergePatch").length
          yield* Effect.result(w.reconciler.reconcile(Key))
          // One build, before any write: it saw the other three, not creds, and built db from no creds.
          expect(w.plugin.builds.slice(builds)).toEqual([["config", "db", "svc"]])
          const db = w.plugin.built.find((b) => b.id === "db")?.object as KubeObject | undefined
          expect(db?.metadata.annotations?.creds).toBe("unseen")
          // Not taken over, and nothing built from that answer applied: Conflict, naming creds.
          expect(w.kube.requests.filter((r) => r.verb === "apply" || r.verb === "mergePatch").length).toBe(writes)
          expect(w.kube.objects("apps/v1", "StatefulSet", "shop")[0]?.metadata.annotations?.creds).toBe(ours)
          const ready = (yield* statusOf(w))?.conditions?.find((c) => c.type === "Ready")
          expect(ready?.reason).toBe("Conflict")
          expect(ready?.message).toContain("Secret shop/x-creds (id creds) already exists and is not controlled by this Capability")
        })
      ))
  }

  test("creds made again with a copy of its owner reference (a restore) is not shown to the first build: not the uid recorded", () =>
    run((w) =>
      Effect.gen(function*() {
        w.plugin.state.dbReady = true
        yield* w.reconciler.reconcile(Key)
        const ref = { apiVersion: "v1", kind: "Secret", namespace: "shop", name: "x-creds" }
        const before = yield* w.kube.client.get(ref)
        yield* w.kube.client.delete(ref)
        const restored = yield* w.kube.client.create({
          apiVersion: "v1",
          kind: "Secret",
          metadata: {
            name: "x-creds",
            namespace: "shop",
            labels: before.metadata.labels,
            ownerReferences: before.metadata.ownerReferences
          },
          stringData: { password: "restored" }
        } as KubeObject)
        expect(restored.metadata.uid).not.toBe(before.metadata.uid)
        w.cache.put(restored)
        const builds = w.plugin.builds.length
        yield* w.reconciler.reconcile(Key)
        expect(w.plugin.builds[builds]).toEqual(["config", "db", "svc"])
        // db is not updated (the plugin does not update it): nothing built from the restored Secret reached it.
        expect(w.kube.objects("apps/v1", "StatefulSet", "shop")[0]?.metadata.annotations?.creds).toBe(before.metadata.uid)
        // It carries the controller reference: kept, its uid recorded, and shown from the next reconcile on.
        expect((yield* statusOf(w))?.inventory?.find((e) => e.id === "creds")?.uid).toBe(restored.metadata.uid)
        yield* w.reconciler.reconcile(Key)
        expect(w.plugin.builds.at(-1)).toEqual(["creds", "config", "db", "svc"])
      })
    ))

  test("a new Capability gets the operator's finalizer before its first dependent", () =>
    run((w) =>
      Effect.gen(function*() {
        yield* w.reconciler.reconcile(Key)
        const first = w.kube.requests.findIndex((r) => r.verb === "apply")
        const finalizer = w.kube.requests.findIndex((r) => r.verb === "mergePatch" && r.kind === "Capability")
        expect(finalizer).toBeGreaterThanOrEqual(0)
        expect(finalizer).toBeLessThan(first)
        expect((yield* w.kube.client.get(capabilityRef)).metadata.finalizers).toEqual([DependentsFinalizer])
      })
    ))
})

describe("the Reconciler deletes a Capability's dependents", () => {
  const provisioned = (w: World) =>
    Effect.gen(function*() {
      w.plugin.state.dbReady = true
      yield* w.reconciler.reconcile(Key)
      yield* w.reconciler.reconcile(Key)
      expect(names(w)).toEqual(["x-config", "x-creds", "x-db", "x-svc"])
      yield* w.kube.client.delete(capabilityRef)
      yield* informed(w)
    })

  test("in reverse order, keeping creds without owner or label, then lets the Capability go", () =>
    run((w) =>
      Effect.gen(function*() {
        yield* provisioned(w)
        expect(yield* w.reconciler.reconcile(Key)).toEqual({})
        expect(deletes(w).slice(1)).toEqual(["x-svc", "x-db", "x-config"])
        expect(names(w)).toEqual(["x-creds"])
        const creds = w.kube.objects("v1", "Secret", "shop")[0]
        expect(creds?.metadata.ownerReferences).toBeUndefined()
        expect(creds?.metadata.labels?.["halkyon.io/capability"]).toBeUndefined()
        expect(w.kube.objects(ApiVersion, "Capability", "shop")).toEqual([])
      })
    ))

  test("a foreign finalizer on db holds it: the status names it, config waits; once it goes, the deletion completes", () =>
    run((w) =>
      Effect.gen(function*() {
        yield* provisioned(w)
        const dbRef = { apiVersion: "apps/v1", kind: "StatefulSet", namespace: "shop", name: "x-db" }
        yield* w.kube.client.mergePatch(dbRef, { metadata: { finalizers: ["example.com/hold"] } }, "someone")
        expect(yield* w.reconciler.reconcile(Key)).toEqual({ requeueAfterMs: 1_000 })
        const status = yield* statusOf(w)
        const ready = status?.conditions?.find((c) => c.type === "Ready")
        expect(ready?.reason).toBe("Deleting")
        expect(ready?.message).toContain("StatefulSet shop/x-db (id db) waits for finalizer example.com/hold")
        expect(status?.dependents?.map((d) => `${d.id} ${d.reason} ${d.message}`)).toEqual([
          "db Deleting held by finalizer example.com/hold"
        ])
        expect(status?.inventory?.map((e) => e.id)).toEqual(["creds", "config", "db"])
        expect(names(w)).toEqual(["x-config", "x-creds", "x-db"])
        yield* w.kube.client.mergePatch(dbRef, { metadata: { finalizers: null } }, "someone")
        yield* informed(w)
        expect(yield* w.reconciler.reconcile(Key)).toEqual({})
        expect(names(w)).toEqual(["x-creds"])
        expect(w.kube.objects(ApiVersion, "Capability", "shop")).toEqual([])
      })
    ))

  test("while a ServiceBinding holds the Capability (InUse), nothing is deleted", () =>
    run((w) =>
      Effect.gen(function*() {
        w.plugin.state.dbReady = true
        yield* w.reconciler.reconcile(Key)
        yield* w.reconciler.reconcile(Key)
        const current = yield* w.kube.client.get(capabilityRef)
        yield* w.kube.client.mergePatch(
          capabilityRef,
          { metadata: { finalizers: [...(current.metadata.finalizers ?? []), InUseFinalizer] } },
          "halkyon-binding"
        )
        yield* w.kube.client.delete(capabilityRef)
        yield* informed(w)
        expect(yield* w.reconciler.reconcile(Key)).toEqual({})
        expect(names(w)).toEqual(["x-config", "x-creds", "x-db", "x-svc"])
        yield* w.kube.client.mergePatch(capabilityRef, { metadata: { finalizers: [DependentsFinalizer] } }, "halkyon-binding")
        yield* informed(w)
        yield* w.reconciler.reconcile(Key)
        expect(names(w)).toEqual(["x-creds"])
      })
    ))
})

// Two dependents depending only on a common one: one wave, written (and removed) concurrently.

const fanDescription: PluginDescription = {
  ...description,
  name: "fan",
  types: [{ type: "fan", versions: ["1"], defaultVersion: "1" }],
  dependents: [
    dependentInfo("base", "v1", "ConfigMap"),
    dependentInfo("left", "v1", "ConfigMap", { dependsOn: ["base"] }),
    dependentInfo("right", "v1", "ConfigMap", { dependsOn: ["base"] })
  ]
}

const makeFanPlugin = () => {
  const configMap = (id: string): BuiltDependent => {
    const object = { apiVersion: "v1", kind: "ConfigMap", metadata: { name: `x-${id}` }, data: { id } }
    return { id, object, bytes: JSON.stringify(object).length }
  }
  const connection: PluginConnection = {
    describe: Effect.succeed(fanDescription),
    checkValidity: () => Effect.succeed([]),
    buildDependents: () => Effect.succeed(["base", "left", "right"].map(configMap)),
    updateDependent: () => Effect.succeed({ needsUpdate: false, updated: undefined, bytes: 0 }),
    evaluateConditions: () => Effect.succeed([]),
    ping: Effect.void,
    shutdown: Effect.void
  }
  return { connection }
}

/**
 * Holds the `verb` request for x-left open until the one for x-right has
 * started, and logs when each starts and when x-left's goes on. Written one
 * after the other, x-right would never start while x-left is held: then a
 * bounded number of scheduler turns lets x-left go on, and the log shows the
 * order.
 */
const holdLeftUntilRight = (kube: ReturnType<typeof makeFakeKube>, verb: Request["verb"]) =>
  Effect.gen(function*() {
    const rightStarted = yield* Deferred.make<void>()
    const log: Array<string> = []
    kube.hold((request) => {
      if (request.verb !== verb || request.kind !== "ConfigMap") return undefined
      if (request.name === "x-right") {
        return Effect.sync(() => log.push("x-right starts")).pipe(Effect.andThen(Deferred.succeed(rightStarted, undefined)))
      }
      if (request.name !== "x-left") return Effect.sync(() => void log.push(`${request.name} starts`))
      return Effect.sync(() => log.push("x-left starts")).pipe(
        Effect.andThen(Effect.race(Deferred.await(rightStarted), Effect.repeat(Effect.yieldNow, { times: 1_000 }))),
        Effect.andThen(Effect.sync(() => void log.push("x-left goes on")))
      )
    })
    return log
  })

describe("a wave's dependents go together", () => {
  const fanWorld = worldOf(fanDescription, makeFanPlugin)
  const configMaps = (w: Effect.Success<typeof fanWorld>) => w.kube.objects("v1", "ConfigMap", "shop").map((o) => o.metadata.name).sort()

  test("left and right, depending only on base, are applied concurrently: right starts while left's write is held", () =>
    runIn(fanWorld, (w) =>
      Effect.gen(function*() {
        const log = yield* holdLeftUntilRight(w.kube, "apply")
        yield* w.reconciler.reconcile(Key)
        expect(log).toEqual(["x-base starts", "x-left starts", "x-right starts", "x-left goes on"])
        expect(configMaps(w)).toEqual(["x-base", "x-left", "x-right"])
        expect((yield* statusOf(w))?.inventory?.map((e) => `${e.id}<-${(e.dependsOn ?? []).join(",")}`)).toEqual([
          "base<-",
          "left<-base",
          "right<-base"
        ])
      })))

  test("and deleted concurrently, in one wave before base: right's delete starts while left's is held", () =>
    runIn(fanWorld, (w) =>
      Effect.gen(function*() {
        yield* w.reconciler.reconcile(Key)
        yield* w.kube.client.delete(capabilityRef)
        yield* informed(w)
        const log = yield* holdLeftUntilRight(w.kube, "delete")
        expect(yield* w.reconciler.reconcile(Key)).toEqual({})
        expect(log).toEqual(["x-left starts", "x-right starts", "x-left goes on", "x-base starts"])
        expect(configMaps(w)).toEqual([])
        expect(w.kube.objects(ApiVersion, "Capability", "shop")).toEqual([])
      })))
})

describe("the TypeScript SDK's graph", () => {
  const postgresCapability = (parameters: Array<{ name: string; value: string }>) =>
    decodeCapabilityJson(JSON.stringify({
      apiVersion: ApiVersion,
      kind: "Capability",
      metadata: { name: "orders", namespace: "shop" },
      spec: { category: "database", type: "postgres", parameters }
    }))

  test("postgres keeps its Secret on deletion only when KEEP_SECRET=true", () => {
    const policy = (parameters: Array<{ name: string; value: string }>) =>
      buildDependents(postgres, makeContext(postgres, postgresCapability(parameters))).find((d) => d.id === "config-secret")
        ?.deletionPolicy
    expect(policy([])).toBe("delete")
    expect(policy([{ name: "KEEP_SECRET", value: "true" }])).toBe("orphan")
    expect(describePlugin(postgres).dependents.map((d) => d.deletionPolicy)).toEqual([0, 0, 0])
  })

  test("postgres: the Secret first, then the StatefulSet and the Service together; nothing waits for the database", () => {
    const declared = describePlugin(postgres).dependents
    expect(declared.map((d) => [d.id, d.dependsOn, d.waitForReady])).toEqual([
      ["config-secret", [], false],
      ["statefulset", ["config-secret"], false],
      ["service", ["config-secret"], false]
    ])
    expect(graphProblem(declared)).toBeUndefined()
    expect(waves(declared.map((d) => d.id), declared)).toEqual([["config-secret"], ["statefulset", "service"]])
  })

  test("postgres builds its Secret from the observed one: a generated password stays", () => {
    const observed = {
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "orders-config" },
      data: { DB_PASSWORD: Buffer.from("kept").toString("base64") }
    }
    const context = makeContext(postgres, postgresCapability([]), observedOf(new Map([["config-secret", observed]])))
    const secret = buildDependents(postgres, context).find((d) => d.id === "config-secret")?.object as {
      stringData?: Record<string, string>
    }
    expect(secret.stringData?.DB_PASSWORD).toBe("kept")
  })

  test("include leaves a dependent out; definePlugin refuses a cycle, naming it", () => {
    const plugin = definePlugin({
      name: "p",
      category: "c",
      types: [{ type: "t", versions: ["1"] }],
      dependents: [
        { id: "a", apiVersion: "v1", kind: "ConfigMap", build: () => ({ metadata: { name: "a" } }) },
        {
          id: "b",
          apiVersion: "v1",
          kind: "ConfigMap",
          dependsOn: ["a"],
          include: (ctx) => ctx.parameters.B === "true",
          build: () => ({ metadata: { name: "b" } })
        }
      ]
    })
    const capability = (b: string) =>
      decodeCapabilityJson(JSON.stringify({
        metadata: { name: "x", namespace: "n" },
        spec: { category: "c", type: "t", parameters: [{ name: "B", value: b }] }
      }))
    expect(buildDependents(plugin, makeContext(plugin, capability("false"))).map((d) => d.id)).toEqual(["a"])
    expect(buildDependents(plugin, makeContext(plugin, capability("true"))).map((d) => d.id)).toEqual(["a", "b"])
    expect(describePlugin(plugin).dependents.map((d) => d.dependsOn)).toEqual([[], ["a"]])
    expect(() =>
      definePlugin({
        ...plugin,
        dependents: plugin.dependents.map((d) => d.id === "a" ? { ...d, dependsOn: ["b"] } : d)
      })
    ).toThrow("the dependents form a cycle: a -> b -> a")
  })
})

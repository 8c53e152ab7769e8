/**
 * The in-memory API server the unit tests use keeps the real one's rules:
 * resourceVersions, conflicts, 404s, server-side apply ownership, owner
 * references, watches with bookmarks and 410 Gone, label selectors. Were it
 * laxer than the server, the tests built on it would prove too little.
 */
import { describe, expect, test } from "bun:test"
import { Effect, Fiber, type Scope, Stream } from "effect"
import type { WatchEvent } from "../../src/kube/KubeClient.ts"
import type { KubeObject } from "../../src/kube/KubeObject.ts"
import { makeFakeKube, parseLabelSelector } from "../support/FakeKube.ts"

const run = <A, E>(effect: Effect.Effect<A, E, Scope.Scope>) => Effect.runPromise(Effect.scoped(effect))

const configMap = (name: string, data: Record<string, string>, labels?: Record<string, string>): KubeObject => ({
  apiVersion: "v1",
  kind: "ConfigMap",
  metadata: { name, namespace: "ns", ...(labels === undefined ? {} : { labels }) },
  data
})
const told = (e: WatchEvent) => (e.type === "BOOKMARK" ? e.type : `${e.type} ${e.object.metadata.name}`)
const ref = (name: string) => ({ apiVersion: "v1", kind: "ConfigMap", namespace: "ns", name })

describe("FakeKube", () => {
  test("resourceVersions increase with every write; generation only with the spec", () =>
    run(Effect.gen(function*() {
      const kube = makeFakeKube()
      const deployment = { apiVersion: "apps/v1", kind: "Deployment", namespace: "ns", name: "d" }
      const a = yield* kube.client.create({
        apiVersion: "apps/v1",
        kind: "Deployment",
        metadata: { name: "d", namespace: "ns" },
        spec: { replicas: 1 }
      })
      const b = yield* kube.client.mergePatch(deployment, { spec: { replicas: 2 } }, "me")
      const c = yield* kube.client.patchStatus(deployment, { readyReplicas: 2 })
      expect(Number(b.metadata.resourceVersion)).toBeGreaterThan(Number(a.metadata.resourceVersion))
      expect(Number(c.metadata.resourceVersion)).toBeGreaterThan(Number(b.metadata.resourceVersion))
      expect([a.metadata.generation, b.metadata.generation, c.metadata.generation]).toEqual([1, 2, 2])
      expect(a.metadata.uid).toBeDefined()
    })))

  test("a write naming a stale resourceVersion is a 409 Conflict; a missing object a 404", () =>
    run(Effect.gen(function*() {
      const kube = makeFakeKube()
      const first = yield* kube.client.create(configMap("a", { x: "1" }))
      yield* kube.client.mergePatch(ref("a"), { data: { x: "2" } }, "me")
      const stalePatch = { metadata: { resourceVersion: first.metadata.resourceVersion }, data: { x: "3" } }
      const stale = yield* Effect.flip(kube.client.mergePatch(ref("a"), stalePatch, "me"))
      expect([stale.code, stale.reason]).toEqual([409, "Conflict"])
      const missing = yield* Effect.flip(kube.client.get(ref("nope")))
      expect(missing.notFound).toBe(true)
      const again = yield* Effect.flip(kube.client.create(configMap("a", {})))
      expect([again.code, again.reason]).toEqual([409, "AlreadyExists"])
      expect((yield* Effect.flip(kube.client.delete(ref("nope")))).code).toBe(404)
    })))

  test("preconditions: a resourceVersion or uid in an apply binds an update, and a create ignores them", () =>
    run(Effect.gen(function*() {
      const kube = makeFakeKube()
      const never = "18446744073709551615"
      const withMeta = (data: Record<string, string>, meta: Record<string, string>) => ({
        ...configMap("a", data),
        metadata: { name: "a", namespace: "ns", ...meta }
      })
      const created = yield* kube.client.apply(withMeta({ x: "1" }, { resourceVersion: never, uid: "mine" }), "me")
      expect(created.metadata.uid).not.toBe("mine")
      const again = yield* Effect.flip(kube.client.apply(withMeta({ x: "2" }, { resourceVersion: never }), "me"))
      expect(again.code).toBe(409)
      const otherUid = yield* Effect.flip(kube.client.apply(withMeta({ x: "2" }, { uid: "someone-else" }), "me"))
      expect(otherUid.detail).toContain("Precondition failed: UID in precondition: someone-else")
      const sameUid = yield* kube.client.apply(withMeta({ x: "2" }, { uid: created.metadata.uid ?? "" }), "me")
      expect(sameUid.data).toEqual({ x: "2" })
    })))

  test("server-side apply: another manager's field with another value conflicts unless forced, which takes it over", () =>
    run(Effect.gen(function*() {
      const kube = makeFakeKube()
      yield* kube.client.apply(configMap("a", { x: "1", y: "1" }), "alice")
      // The same value: shared, no conflict.
      yield* kube.client.apply(configMap("a", { x: "1" }), "bob", { force: false })
      const conflict = yield* Effect.flip(kube.client.apply(configMap("a", { y: "2" }), "bob", { force: false }))
      expect(conflict.code).toBe(409)
      expect(conflict.detail).toContain("conflict with \"alice\": .data.y")
      const forced = yield* kube.client.apply(configMap("a", { x: "1", y: "2" }), "bob", { force: true })
      expect(forced.data).toEqual({ x: "1", y: "2" })
      const entries = forced.metadata.managedFields ?? []
      const managers = Object.fromEntries(entries.map((m) => [m.manager, (m as { fieldsV1?: unknown }).fieldsV1]))
      expect(managers.alice).toEqual({ "f:data": { "f:x": {} } })
      expect(managers.bob).toEqual({ "f:data": { "f:x": {}, "f:y": {} } })
    })))

  test("server-side apply: a field the manager stops applying goes, unless another manager owns it", () =>
    run(Effect.gen(function*() {
      const kube = makeFakeKube()
      yield* kube.client.apply(configMap("a", { x: "1", y: "1", z: "1" }), "alice")
      yield* kube.client.mergePatch(ref("a"), { data: { z: "9" } }, "kubectl-edit")
      const after = yield* kube.client.apply(configMap("a", { x: "1" }), "alice")
      // y was alice's alone; z was taken over by the edit.
      expect(after.data).toEqual({ x: "1", z: "9" })
      // Applying the same again writes nothing.
      const again = yield* kube.client.apply(configMap("a", { x: "1" }), "alice")
      expect(again.metadata.resourceVersion).toBe(after.metadata.resourceVersion)
    })))

  test("one entry per manager and operation: a manager's own update is not pruned by its apply, and conflicts with it", () =>
    run(Effect.gen(function*() {
      const kube = makeFakeKube()
      yield* kube.client.apply(configMap("a", { x: "1" }), "alice")
      yield* kube.client.mergePatch(ref("a"), { data: { z: "1" } }, "alice")
      const after = yield* kube.client.apply(configMap("a", { x: "2" }), "alice")
      expect(after.data).toEqual({ x: "2", z: "1" })
      expect(after.metadata.managedFields?.map((m) => `${m.manager} ${m.operation}`)).toEqual(["alice Apply", "alice Update"])
      const conflict = yield* Effect.flip(kube.client.apply(configMap("a", { x: "2", z: "2" }), "alice", { force: false }))
      expect(conflict.detail).toContain("conflict with \"alice\" using v1: .data.z")
    })))

  test("owner references are kept, and deleting the owner deletes its dependents", () =>
    run(Effect.gen(function*() {
      const kube = makeFakeKube()
      const owner = yield* kube.client.create(configMap("owner", {}))
      const ownerReferences = [{ apiVersion: "v1", kind: "ConfigMap", name: "owner", uid: owner.metadata.uid ?? "", controller: true }]
      const owned = { ...configMap("dep", { a: "b" }), metadata: { name: "dep", namespace: "ns", ownerReferences } }
      const dependent = yield* kube.client.apply(owned, "me")
      expect(dependent.metadata.ownerReferences).toEqual(ownerReferences)
      yield* kube.client.delete(ref("owner"))
      expect(kube.objects("v1", "ConfigMap")).toEqual([])
    })))

  test("label selectors: exists, not exists, equality, inequality, in, notin", () => {
    const labels = { app: "db", tier: "back" }
    const cases: ReadonlyArray<[string, boolean]> = [
      ["app", true],
      ["!app", false],
      ["app=db", true],
      ["app==web", false],
      ["app!=web", true],
      ["tier in (front, back)", true],
      ["tier notin (front,back)", false],
      ["app=db,tier in (front)", false],
      ["missing", false],
      ["", true]
    ]
    for (const [selector, expected] of cases) expect([selector, parseLabelSelector(selector)(labels)]).toEqual([selector, expected])
  })

  test("watches replay from a resourceVersion, carry bookmarks, and follow a label selector", () =>
    run(Effect.gen(function*() {
      const kube = makeFakeKube()
      const a = yield* kube.client.create(configMap("a", {}, { ours: "yes" }))
      yield* kube.client.create(configMap("b", {}))
      const seen: Array<string> = []
      const fiber = yield* kube.client.watch("v1", "ConfigMap", { resourceVersion: "0", labelSelector: "ours" }).pipe(
        Stream.runForEach((e: WatchEvent) => Effect.sync(() => void seen.push(told(e)))),
        Effect.forkScoped
      )
      yield* Effect.yieldNow
      // b starts matching: ADDED; a stops: DELETED.
      yield* kube.client.mergePatch(ref("b"), { metadata: { labels: { ours: "yes" } } }, "me")
      yield* kube.client.mergePatch(ref("a"), { metadata: { labels: { ours: null } } }, "me")
      kube.bookmark()
      kube.endWatches()
      yield* Fiber.join(fiber)
      expect(seen).toEqual(["ADDED a", "ADDED b", "DELETED a", "BOOKMARK"])
      // From a's creation on: what happened since.
      const replayed = yield* kube.client.watch("v1", "ConfigMap", { resourceVersion: a.metadata.resourceVersion ?? "" }).pipe(
        Stream.take(3),
        Stream.runCollect
      )
      expect(replayed.map(told)).toEqual(["ADDED b", "MODIFIED b", "MODIFIED a"])
    })))

  test("a watch from a compacted resourceVersion fails with 410 Expired", () =>
    run(Effect.gen(function*() {
      const kube = makeFakeKube()
      const a = yield* kube.client.create(configMap("a", {}))
      yield* kube.client.mergePatch(ref("a"), { data: { x: "1" } }, "me")
      kube.compact()
      const watch = kube.client.watch("v1", "ConfigMap", { resourceVersion: a.metadata.resourceVersion ?? "" })
      const gone = yield* Effect.flip(Stream.runDrain(watch))
      expect([gone.code, gone.reason]).toEqual([410, "Expired"])
    })))
})

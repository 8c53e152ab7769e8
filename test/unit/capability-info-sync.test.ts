/**
 * CapabilityInfo sync against an in-memory API (apply, list by label
 * selector, delete): two operators serving different namespaces never delete
 * each other's, one CapabilityInfo that cannot be applied never stops the
 * others, and each parameter's whole schema is published.
 */
import { expect, test } from "bun:test"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { Effect, Layer, Logger } from "effect"
import type { PluginDescription } from "../../src/gen/halkyon/capability/v1/capability.ts"
import { KubeApiError } from "../../src/kube/Errors.ts"
import { KubeClient } from "../../src/kube/KubeClient.ts"
import type { KubeObject } from "../../src/kube/KubeObject.ts"
import type { PluginConnection } from "../../src/plugin-client/PluginClient.ts"
import { instanceSelector, syncCapabilityInfos } from "../../src/reconciler/CapabilityInfoSync.ts"
import { PluginRegistry } from "../../src/registry/PluginRegistry.ts"
import { describe as describePlugin } from "../../src/sdk/CapabilityService.ts"
import { definePlugin, type PluginDefinition } from "../../src/sdk/Plugin.ts"
import { TypedParameterSchema } from "../support/typed-schema.ts"

const description = (category: string, type: string): PluginDescription => ({
  name: type,
  refuseUnknownParameters: false,
  category,
  types: [{ type, versions: ["1"], defaultVersion: "1" }],
  parameters: [],
  dependents: []
})

/** Equality-based selectors as the API server reads them: `k=v` and `!k`, comma-separated. */
const matches = (object: KubeObject, selector: string) =>
  selector.split(",").every((term) => {
    const labels = object.metadata.labels ?? {}
    if (term.startsWith("!")) return !(term.slice(1) in labels)
    const [k = "", v = ""] = term.split("=")
    return labels[k] === v
  })

const fakeApi = (store: Map<string, KubeObject>, refuse: (o: KubeObject) => boolean = () => false) => {
  const unused = () => Effect.die(new Error("not used by the sync"))
  const api: KubeClient["Service"] = KubeClient.of({
    namespaced: unused,
    plural: unused,
    impersonating: () => api,
    actingAs: undefined,
    get: unused,
    watch: () => unused() as never,
    mergePatch: unused,
    patchStatus: unused,
    create: unused,
    server: "memory",
    apply: (object) => {
      if (refuse(object)) {
        return Effect.fail(new KubeApiError({ code: 422, reason: "Invalid", detail: "refused", request: `apply ${object.metadata.name}` }))
      }
      store.set(object.metadata.name, object)
      return Effect.succeed(object)
    },
    list: (_apiVersion, _kind, options) =>
      Effect.succeed({ items: [...store.values()].filter((o) => matches(o, options?.labelSelector ?? "")), resourceVersion: "1" }),
    delete: (ref) => Effect.sync(() => void store.delete(ref.name))
  })
  return Layer.succeed(KubeClient, api)
}

const operator = (
  store: Map<string, KubeObject>,
  namespace: string | undefined,
  plugins: ReadonlyArray<PluginDescription>,
  refuse?: (o: KubeObject) => boolean
) =>
  Effect.runPromise(
    Effect.gen(function*() {
      const registry = yield* PluginRegistry
      for (const d of plugins) yield* registry.register(d.name, d, {} as PluginConnection)
      yield* syncCapabilityInfos(namespace).pipe(Effect.ignore)
    }).pipe(Effect.provide(Layer.mergeAll(PluginRegistry.layer, fakeApi(store, refuse))), Effect.provide(Logger.layer([])))
  )

test("two operators serving different namespaces: each deletes only its own stale CapabilityInfos", async () => {
  const store = new Map<string, KubeObject>()
  await operator(store, "team-a", [description("database", "postgres")])
  await operator(store, "team-b", [description("cache", "redis")])
  await operator(store, undefined, [description("queue", "kafka")])
  expect([...store.keys()].sort()).toEqual(["cache-redis", "database-postgres", "queue-kafka"])
  expect(store.get("database-postgres")?.metadata.labels).toEqual({
    "app.kubernetes.io/managed-by": "halkyon",
    "halkyon.io/operator-namespace": "team-a"
  })
  expect(store.get("queue-kafka")?.metadata.labels).toEqual({ "app.kubernetes.io/managed-by": "halkyon" })
  // team-b restarts with no plugin: only its own goes.
  await operator(store, "team-b", [])
  expect([...store.keys()].sort()).toEqual(["database-postgres", "queue-kafka"])
  // The cluster-wide one restarts with no plugin: the namespaced ones stay.
  await operator(store, undefined, [])
  expect([...store.keys()]).toEqual(["database-postgres"])
})

test("selectors name one instance each", () => {
  expect(instanceSelector(undefined)).toBe("app.kubernetes.io/managed-by=halkyon,!halkyon.io/operator-namespace")
  expect(instanceSelector("shop")).toBe("app.kubernetes.io/managed-by=halkyon,halkyon.io/operator-namespace=shop")
})

test("one CapabilityInfo the API refuses: the others are applied, and stale ones still removed", async () => {
  const store = new Map<string, KubeObject>()
  await operator(store, undefined, [description("old", "gone")])
  await operator(
    store,
    undefined,
    [description("database", "postgres"), description("cache", "redis")],
    (o) => o.metadata.name === "cache-redis"
  )
  expect([...store.keys()]).toEqual(["database-postgres"])
})

test("the typed plugin's parameters are published whole: every parameter, its type, values, pattern, bounds, secret, default, allowed", async () => {
  const typed = (JSON.parse(readFileSync(join(import.meta.dir, "../../go/sdk/testdata/validity.json"), "utf8")) as {
    typed: { plugin: Omit<PluginDefinition, "dependents"> }
  }).typed
  const store = new Map<string, KubeObject>()
  await operator(store, undefined, [describePlugin(definePlugin({ ...typed.plugin, dependents: [] }))])
  const spec = store.get("database-postgres")?.spec as { parameters?: unknown; refuseUnknownParameters?: unknown } | undefined
  expect(spec?.parameters).toEqual(TypedParameterSchema)
  expect(spec?.refuseUnknownParameters).toBe(true)
})

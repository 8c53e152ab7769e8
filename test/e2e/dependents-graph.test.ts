/**
 * Dependents as a graph, end to end: the compiled operator against a real
 * kube-apiserver, with the `graph` fixture plugin (test/fixtures/plugins/
 * graph): creds Secret (kept on deletion) -> config ConfigMap -> db
 * StatefulSet (waited for until ready, env from the observed creds) -> svc
 * Service (only when EXPOSE=true); the `cyclic` fixture, refused at load;
 * postgres's KEEP_SECRET; the same graph declared with the Go SDK
 * (test/fixtures/go-plugins/graph); and, last, an upgrade: graph.js replaced
 * in the running operator's folder by the `graph-v2` fixture, which no
 * longer builds config.
 *
 * The local control plane runs kube-controller-manager: its garbage
 * collector deletes a dependent only once its owner Capability is gone, so
 * whatever goes away while the Capability lives, the operator deleted.
 * Deletion order is read from the watch events' resourceVersions (etcd's
 * revision, one order for every kind).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { copyFileSync, mkdtempSync, renameSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import {
  type ApiResponse,
  capabilityPath,
  type Cluster,
  dig,
  markStatefulSetReady,
  type Operator,
  readyOf,
  startCluster,
  startOperator,
  untilReady,
  createNamespace,
  watchDeletions
} from "../support/cluster.ts"
import { builtPlugin, eventually, testPlugin } from "../support/paths.ts"

const ns = "graphs"
let cluster: Cluster
let operator: Operator
let pluginsDir: string

const paths = {
  secret: (name: string) => `/api/v1/namespaces/${ns}/secrets/${name}`,
  configMap: (name: string) => `/api/v1/namespaces/${ns}/configmaps/${name}`,
  statefulSet: (name: string) => `/apis/apps/v1/namespaces/${ns}/statefulsets/${name}`,
  service: (name: string) => `/api/v1/namespaces/${ns}/services/${name}`
}
const exists = async (path: string) => (await cluster.api("GET", path)).status === 200
const capability = (name: string) => cluster.api("GET", capabilityPath(ns, name))

const createCapability = async (name: string, expose: boolean) => {
  const created = await cluster.api("POST", capabilityPath(ns), {
    apiVersion: "halkyon.io/v1beta1",
    kind: "Capability",
    metadata: { name },
    spec: { category: "test", type: "graph", parameters: [{ name: "EXPOSE", value: String(expose) }] }
  })
  expect(created.status).toBe(201)
}

const statusOf = (c: ApiResponse) => (c.body as { status?: Record<string, unknown> }).status
const dependentsOf = (c: ApiResponse) =>
  dig<Array<{ id: string; reason: string; message: string; waitingFor?: Array<string> }>>(c.body, "status", "dependents") ?? []
const inventoryIds = (c: ApiResponse) => (dig<Array<{ id: string }>>(c.body, "status", "inventory") ?? []).map((e) => e.id).sort()

/** Waits until `check` holds of the Capability, else fails with its last status. */
const untilCapability = async (name: string, what: string, check: (c: ApiResponse) => boolean, timeoutMs = 30_000) => {
  let last: unknown
  const ok = await eventually(
    async () => {
      const c = await capability(name)
      last = c.status === 404 ? "(gone)" : statusOf(c)
      return check(c)
    },
    timeoutMs,
    50
  )
  if (!ok) throw new Error(`${name}: ${what} did not happen within ${timeoutMs} ms; last status: ${JSON.stringify(last)}`)
}

const startTheOperator = () => untilReady(startOperator(cluster, pluginsDir))

beforeAll(async () => {
  cluster = await startCluster()
  await createNamespace(cluster, ns)
  pluginsDir = mkdtempSync(join(tmpdir(), "halkyon-graph-plugins-"))
  copyFileSync(testPlugin("graph.js"), join(pluginsDir, "graph.js"))
  copyFileSync(testPlugin("cyclic.js"), join(pluginsDir, "cyclic.js"))
  copyFileSync(builtPlugin("postgres.js"), join(pluginsDir, "postgres.js"))
  copyFileSync(testPlugin("go-graph"), join(pluginsDir, "gograph"))
  operator = await startTheOperator()
}, 120_000)

afterAll(async () => {
  await operator?.stop()
  await cluster?.plane.stop()
  if (pluginsDir !== undefined) rmSync(pluginsDir, { recursive: true, force: true })
})

describe("a plugin whose dependents form a cycle", () => {
  test("is refused at load, the cycle named; its Capabilities find no plugin", async () => {
    expect(await eventually(() => operator.logs.some((l) => l.includes("plugin cyclic.js is refused")), 10_000)).toBe(true)
    const line = operator.logs.find((l) => l.includes("plugin cyclic.js is refused")) ?? ""
    expect(line).toMatch(/the dependents form a cycle: (a -> b -> a|b -> a -> b)/)
    const created = await cluster.api("POST", capabilityPath(ns), {
      apiVersion: "halkyon.io/v1beta1",
      kind: "Capability",
      metadata: { name: "loop" },
      spec: { category: "test", type: "cyclic" }
    })
    expect(created.status).toBe(201)
    await untilCapability("loop", "Ready=False (NoPlugin)", (c) => readyOf(c)?.reason === "NoPlugin")
    expect(await exists(paths.configMap("loop-a"))).toBe(false)
  })
})

describe("a Capability whose dependents form a graph", () => {
  test("svc waits for db to be ready, and the status says so; db's env comes from the observed creds", async () => {
    await createCapability("shop", true)
    await untilCapability("shop", "db applied, svc waiting", (c) => dependentsOf(c).some((d) => d.id === "svc" && d.reason === "Waiting"))
    const shop = await capability("shop")
    const svc = dependentsOf(shop).find((d) => d.id === "svc")
    expect(svc?.waitingFor).toEqual(["db"])
    expect(svc?.message).toContain("waits for db (StatefulSet shop-db) to be ready")
    expect(readyOf(shop)?.reason).toBe("DependentsNotReady")
    expect(await exists(paths.service("shop-svc"))).toBe(false)
    expect(inventoryIds(shop)).toEqual(["config", "creds", "db"])

    const secret = await cluster.api("GET", paths.secret("shop-creds"))
    const password = Buffer.from(dig<string>(secret.body, "data", "password") ?? "", "base64").toString()
    expect(password.length).toBeGreaterThan(10)
    const sts = await cluster.api("GET", paths.statefulSet("shop-db"))
    const env = dig<Array<{ name: string; value: string }>>(sts.body, "spec", "template", "spec", "containers", 0, "env") ?? []
    expect(env).toEqual([{ name: "PASSWORD", value: password }])
  }, 60_000)

  test("once db is ready, svc is created within 2 s and the Capability is Ready", async () => {
    await markStatefulSetReady(cluster, ns, "shop-db")
    expect(await eventually(() => exists(paths.service("shop-svc")), 2_000)).toBe(true)
    await untilCapability("shop", "Ready=True", (c) => readyOf(c)?.status === "True")
    expect(inventoryIds(await capability("shop"))).toEqual(["config", "creds", "db", "svc"])
  }, 60_000)

  test("EXPOSE=false prunes svc, and only it: a look-alike with the same labels stays", async () => {
    const lookAlike = await cluster.api("POST", `/api/v1/namespaces/${ns}/services`, {
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: "shop-lookalike", labels: { "halkyon.io/capability": "shop" } },
      spec: { selector: { app: "graph-shop" }, ports: [{ port: 5432 }] }
    })
    expect(lookAlike.status).toBe(201)
    const patched = await cluster.api(
      "PATCH",
      capabilityPath(ns, "shop"),
      { spec: { parameters: [{ name: "EXPOSE", value: "false" }] } },
      "application/merge-patch+json"
    )
    expect(patched.status).toBe(200)
    expect(await eventually(async () => !(await exists(paths.service("shop-svc"))), 10_000)).toBe(true)
    await untilCapability("shop", "svc gone from the inventory", (c) => !inventoryIds(c).includes("svc"))
    expect(await exists(paths.service("shop-lookalike"))).toBe(true)
    expect(await exists(paths.statefulSet("shop-db"))).toBe(true)
  }, 60_000)

  test("deleting it deletes db before config, keeps creds without owner or labels, and completes within 10 s", async () => {
    const statefulSets = await watchDeletions(cluster, `/apis/apps/v1/namespaces/${ns}/statefulsets`)
    const configMaps = await watchDeletions(cluster, `/api/v1/namespaces/${ns}/configmaps`)
    try {
      const started = Date.now()
      expect((await cluster.api("DELETE", capabilityPath(ns, "shop"))).status).toBe(200)
      expect(await eventually(async () => (await capability("shop")).status === 404, 10_000, 50)).toBe(true)
      const seconds = (Date.now() - started) / 1000
      console.log(`deleting a Capability of 3 dependents in 3 waves (one kept) took ${seconds.toFixed(2)} s`)
      expect(await eventually(() => statefulSets.deleted.has("shop-db") && configMaps.deleted.has("shop-config"), 5_000)).toBe(true)
      expect(statefulSets.deleted.get("shop-db")).toBeLessThan(configMaps.deleted.get("shop-config") ?? 0)
    } finally {
      await statefulSets.stop()
      await configMaps.stop()
    }
    const creds = await cluster.api("GET", paths.secret("shop-creds"))
    expect(creds.status).toBe(200)
    expect(dig(creds.body, "metadata", "ownerReferences")).toBeUndefined()
    expect(dig(creds.body, "metadata", "labels", "halkyon.io/capability")).toBeUndefined()
    expect(dig<string>(creds.body, "data", "password")).toBeDefined()
    expect(await exists(paths.service("shop-lookalike"))).toBe(true)
  }, 60_000)

  test("a foreign finalizer on db holds the deletion, the status says so; after a SIGKILL the next operator finishes it", async () => {
    await createCapability("held", false)
    await untilCapability("held", "db applied", (c) => inventoryIds(c).includes("db"))
    const hold = await cluster.api(
      "PATCH",
      paths.statefulSet("held-db"),
      { metadata: { finalizers: ["example.com/hold"] } },
      "application/merge-patch+json"
    )
    expect(hold.status).toBe(200)
    const statefulSets = await watchDeletions(cluster, `/apis/apps/v1/namespaces/${ns}/statefulsets`)
    const configMaps = await watchDeletions(cluster, `/api/v1/namespaces/${ns}/configmaps`)
    try {
      expect((await cluster.api("DELETE", capabilityPath(ns, "held"))).status).toBe(200)
      await untilCapability("held", "Ready=False (Deleting) naming the finalizer", (c) => {
        const ready = readyOf(c)
        return ready?.reason === "Deleting" && ready.message.includes("example.com/hold")
      })
      const held = await capability("held")
      expect(readyOf(held)?.message).toContain(`StatefulSet ${ns}/held-db (id db) waits for finalizer example.com/hold`)
      expect(dependentsOf(held).map((d) => [d.id, d.reason])).toEqual([["db", "Deleting"]])
      // db is not gone: config, which it depends on, is not deleted.
      expect(await exists(paths.configMap("held-config"))).toBe(true)

      expect(await operator.stop("SIGKILL")).not.toBe(0)
      const released = await cluster.api(
        "PATCH",
        paths.statefulSet("held-db"),
        { metadata: { finalizers: null } },
        "application/merge-patch+json"
      )
      expect(released.status).toBe(200)
      expect(await eventually(async () => !(await exists(paths.statefulSet("held-db"))), 5_000)).toBe(true)
      // No operator: nothing else moves.
      expect(await exists(paths.configMap("held-config"))).toBe(true)
      expect((await capability("held")).status).toBe(200)

      operator = await startTheOperator()
      expect(await eventually(async () => (await capability("held")).status === 404, 30_000, 50)).toBe(true)
      expect(await exists(paths.configMap("held-config"))).toBe(false)
      expect(await eventually(() => statefulSets.deleted.has("held-db") && configMaps.deleted.has("held-config"), 5_000)).toBe(true)
      expect(statefulSets.deleted.get("held-db")).toBeLessThan(configMaps.deleted.get("held-config") ?? 0)
      const creds = await cluster.api("GET", paths.secret("held-creds"))
      expect(creds.status).toBe(200)
      expect(dig(creds.body, "metadata", "ownerReferences")).toBeUndefined()
    } finally {
      await statefulSets.stop()
      await configMaps.stop()
    }
  }, 90_000)
})

describe("postgres on deletion", () => {
  const postgres = async (name: string, keep: boolean) => {
    const created = await cluster.api("POST", capabilityPath(ns), {
      apiVersion: "halkyon.io/v1beta1",
      kind: "Capability",
      metadata: { name },
      spec: { category: "database", type: "postgres", parameters: keep ? [{ name: "KEEP_SECRET", value: "true" }] : [] }
    })
    expect(created.status).toBe(201)
    await untilCapability(name, "its three dependents applied", (c) => inventoryIds(c).length === 3)
    expect((await cluster.api("DELETE", capabilityPath(ns, name))).status).toBe(200)
    expect(await eventually(async () => (await capability(name)).status === 404, 10_000, 50)).toBe(true)
    expect(await exists(paths.statefulSet(name))).toBe(false)
    return cluster.api("GET", paths.secret(`${name}-config`))
  }

  test("keeps its Secret, without owner or label, only when KEEP_SECRET=true", async () => {
    const kept = await postgres("kept", true)
    expect(kept.status).toBe(200)
    expect(dig(kept.body, "metadata", "ownerReferences")).toBeUndefined()
    expect(dig(kept.body, "metadata", "labels", "halkyon.io/capability")).toBeUndefined()
    expect(dig<string>(kept.body, "data", "DB_PASSWORD")).toBeDefined()
    expect((await postgres("dropped", false)).status).toBe(404)
  }, 60_000)
})

describe("a Go plugin's graph (go/sdk)", () => {
  test("config is built from the observed creds; svc comes and goes with EXPOSE; creds is kept on deletion", async () => {
    const path = capabilityPath(ns, "gg")
    const created = await cluster.api("POST", capabilityPath(ns), {
      apiVersion: "halkyon.io/v1beta1",
      kind: "Capability",
      metadata: { name: "gg" },
      spec: { category: "test", type: "gograph", parameters: [{ name: "EXPOSE", value: "true" }] }
    })
    expect(created.status).toBe(201)
    await untilCapability("gg", "Ready=True", (c) => readyOf(c)?.status === "True")
    const config = await cluster.api("GET", paths.configMap("gg-config"))
    expect(dig(config.body, "data", "password")).toBe("from-go-gg")
    expect(await exists(paths.service("gg-svc"))).toBe(true)
    const patched = await cluster.api(
      "PATCH",
      path,
      { spec: { parameters: [{ name: "EXPOSE", value: "false" }] } },
      "application/merge-patch+json"
    )
    expect(patched.status).toBe(200)
    expect(await eventually(async () => !(await exists(paths.service("gg-svc"))), 10_000)).toBe(true)
    expect((await cluster.api("DELETE", path)).status).toBe(200)
    expect(await eventually(async () => (await capability("gg")).status === 404, 10_000, 50)).toBe(true)
    expect(await exists(paths.configMap("gg-config"))).toBe(false)
    const creds = await cluster.api("GET", paths.secret("gg-creds"))
    expect(creds.status).toBe(200)
    expect(dig(creds.body, "metadata", "ownerReferences")).toBeUndefined()
  }, 60_000)
})

// Last: it replaces the graph plugin of the operator every test above uses.
describe("a plugin version that drops a dependent", () => {
  test("replacing graph.js by graph-v2 (no config) in the running operator's folder prunes config, and only it; Ready again", async () => {
    await createCapability("up", true)
    await untilCapability("up", "db applied", (c) => inventoryIds(c).includes("db"))
    await markStatefulSetReady(cluster, ns, "up-db")
    await untilCapability("up", "Ready=True with svc", (c) => readyOf(c)?.status === "True" && inventoryIds(c).includes("svc"))
    expect(inventoryIds(await capability("up"))).toEqual(["config", "creds", "db", "svc"])
    const lookAlike = await cluster.api("POST", `/api/v1/namespaces/${ns}/configmaps`, {
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: "up-lookalike", labels: { "halkyon.io/capability": "up" } },
      data: { database: "up" }
    })
    expect(lookAlike.status).toBe(201)
    const uids = async () =>
      Object.fromEntries(
        await Promise.all(
          [paths.secret("up-creds"), paths.statefulSet("up-db"), paths.service("up-svc"), paths.configMap("up-lookalike")].map(
            async (p) => [p, dig<string>((await cluster.api("GET", p)).body, "metadata", "uid")] as const
          )
        )
      )
    const before = await uids()
    const watches = await Promise.all([
      watchDeletions(cluster, `/api/v1/namespaces/${ns}/configmaps`),
      watchDeletions(cluster, `/api/v1/namespaces/${ns}/secrets`),
      watchDeletions(cluster, `/apis/apps/v1/namespaces/${ns}/statefulsets`),
      watchDeletions(cluster, `/api/v1/namespaces/${ns}/services`)
    ])
    try {
      // As a new release would: the file replaced (renamed over), while the operator runs.
      copyFileSync(testPlugin("graph-v2.js"), join(pluginsDir, "graph.js.new"))
      const replaced = Date.now()
      renameSync(join(pluginsDir, "graph.js.new"), join(pluginsDir, "graph.js"))
      expect(
        await eventually(() => operator.logs.some((l) => l.includes("plugin graph.js was replaced: the new version serves")), 30_000)
      ).toBe(true)
      expect(await eventually(async () => !(await exists(paths.configMap("up-config"))), 10_000, 50)).toBe(true)
      console.log(`from graph.js replaced by graph-v2 to config pruned: ${((Date.now() - replaced) / 1000).toFixed(2)} s`)
      await untilCapability(
        "up",
        "config gone from the inventory, Ready=True",
        (c) => !inventoryIds(c).includes("config") && readyOf(c)?.status === "True"
      )
      const up = await capability("up")
      expect(inventoryIds(up)).toEqual(["creds", "db", "svc"])
      expect(dependentsOf(up).map((d) => d.id).sort()).toEqual(["creds", "db", "svc"])
      // Nothing else: the same objects (uids) as before, the look-alike with our label included.
      expect(await uids()).toEqual(before)
      // The operator deleted it; only it (the watches' DELETED events; GC deletes nothing while the Capability lives).
      expect(await eventually(() => watches[0]?.deleted.has("up-config") === true, 5_000)).toBe(true)
      expect(watches.map((w) => [...w.deleted.keys()])).toEqual([["up-config"], [], [], []])
    } finally {
      for (const w of watches) await w.stop()
    }
  }, 90_000)
})

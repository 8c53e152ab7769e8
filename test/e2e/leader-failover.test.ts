/**
 * Two compiled operators with --leader-elect on one cluster: only the leader
 * reconciles; kill it and the other takes over within the lease duration;
 * stop it with SIGTERM and the Lease is released for an immediate takeover;
 * kill it while a deletion it started is held by someone else's finalizer,
 * and the one that takes over finishes that deletion, in order.
 */
import { afterAll, beforeAll, expect, test } from "bun:test"
import { copyFileSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import {
  type ApiResponse,
  capabilityPath,
  type Cluster,
  dig,
  type Operator,
  readyOf,
  startCluster,
  startOperator,
  watchDeletions
} from "../support/cluster.ts"
import { eventually, testPlugin } from "../support/paths.ts"

let cluster: Cluster
let pluginsDir: string
const operators: Array<Operator> = []
const LeaseMs = 3_000
const election = ["--leader-elect", "--lease-duration", `${LeaseMs}ms`, "--renew-deadline", "2s", "--retry-period", "250ms"]

const start = () => {
  const operator = startOperator(cluster, pluginsDir, election)
  operators.push(operator)
  return operator
}
const leads = (o: Operator) => o.logs.some((l) => l.includes("operator ready: caches synced"))
const standsBy = (o: Operator) => o.logs.some((l) => l.includes("waiting to lead"))
const create = (name: string) =>
  cluster.api("POST", capabilityPath("default"), {
    apiVersion: "halkyon.io/v1beta1",
    kind: "Capability",
    metadata: { name },
    spec: { category: "test", type: "flaky" }
  })
const reconciledBy = (o: Operator, name: string) => o.logs.some((l) => l.includes(`capability default/${name}: Ready=`))
/**
 * How many reconciles an operator ran, summed over results, from its own /metrics. A standby that
 * reconciled would count here even when its status write changed nothing and it logged no line.
 */
const reconciles = async (o: Operator) => {
  const endpoint = o.endpoint("metrics")
  if (endpoint === undefined) throw new Error(`the operator logged no metrics endpoint:\n${o.logs.join("\n")}`)
  const response = await fetch(`${endpoint}/metrics`)
  expect(response.status).toBe(200)
  const text = await response.text()
  // Families with labels appear with their first series: an empty family is a count of zero.
  return [...text.matchAll(/^halkyon_reconcile_total\{[^}]*\} (\d+)$/gm)].reduce((sum, m) => sum + Number(m[1]), 0)
}
/** Watches of Capabilities open on kube-apiserver right now, from its own /metrics: every operator that runs a controller holds one. */
const capabilityWatches = async () => {
  const { plane } = cluster
  const response = await fetch(`${plane.server}/metrics`, {
    tls: { ca: plane.caCertPem, cert: plane.adminCertPem, key: plane.adminKeyPem },
    keepalive: false
  })
  expect(response.status).toBe(200)
  const text = await response.text()
  return [...text.matchAll(/^apiserver_longrunning_requests\{([^}]*)\} (\d+)$/gm)]
    .filter((m) => (m[1] ?? "").includes("resource=\"capabilities\"") && (m[1] ?? "").includes("verb=\"WATCH\""))
    .reduce((sum, m) => sum + Number(m[2]), 0)
}
const readyWithin = (name: string, ms: number) =>
  eventually(async () => readyOf(await cluster.api("GET", capabilityPath("default", name)))?.status === "True", ms, 50)

beforeAll(async () => {
  cluster = await startCluster()
  pluginsDir = mkdtempSync(join(tmpdir(), "halkyon-election-plugins-"))
  copyFileSync(testPlugin("flaky.js"), join(pluginsDir, "flaky.js"))
  copyFileSync(testPlugin("graph.js"), join(pluginsDir, "graph.js"))
}, 30 * 60_000)

afterAll(async () => {
  for (const o of operators) await o.stop("SIGKILL")
  await cluster?.plane.stop()
  if (pluginsDir !== undefined) rmSync(pluginsDir, { recursive: true, force: true })
})

test("of two instances only the leader reconciles; killed, the other takes over within the lease duration", async () => {
  const first = start()
  expect(await eventually(() => leads(first), 30_000)).toBe(true)
  // The leader watches Capabilities twice: its Capability controller and its ServiceBinding controller.
  const leaderWatches = 2
  expect(await eventually(async () => (await capabilityWatches()) === leaderWatches, 10_000)).toBe(true)
  const second = start()
  expect(await eventually(() => standsBy(second), 30_000)).toBe(true)
  // The standby is ready (it serves probes), but does not reconcile: it does not even watch Capabilities.
  expect(await eventually(async () => (await fetch(`${second.endpoint("health")}/readyz`)).status === 200, 5_000)).toBe(true)
  expect(await capabilityWatches()).toBe(leaderWatches)
  expect((await create("one")).status).toBe(201)
  expect(await readyWithin("one", 15_000)).toBe(true)
  // The log line follows the status write: wait for it.
  expect(await eventually(() => reconciledBy(first, "one"), 5_000)).toBe(true)
  expect(await eventually(async () => (await reconciles(first)) > 0, 5_000)).toBe(true)
  // The standby has not run a single reconcile, by its own count.
  expect(await reconciles(second)).toBe(0)
  expect(await capabilityWatches()).toBe(leaderWatches)
  expect(leads(second)).toBe(false)

  await first.stop("SIGKILL")
  const killed = Date.now()
  expect(await eventually(() => leads(second), LeaseMs + 5_000, 50)).toBe(true)
  const takeover = Date.now() - killed
  // A killed leader cannot release the Lease: the other waits for it to expire.
  expect(takeover).toBeLessThan(LeaseMs + 2_000)
  expect((await create("two")).status).toBe(201)
  expect(await readyWithin("two", 15_000)).toBe(true)
  expect(await eventually(() => reconciledBy(second, "two"), 5_000)).toBe(true)
  expect(await reconciles(second)).toBeGreaterThan(0)
  const lease = await cluster.api("GET", "/apis/coordination.k8s.io/v1/namespaces/default/leases/halkyon-operator")
  expect(dig<number>(lease.body, "spec", "leaseTransitions")).toBe(1)
}, 120_000)

test("a leader stopped with SIGTERM releases the Lease: the standby takes over at once", async () => {
  const [, second] = operators
  if (second === undefined) throw new Error("the first test did not start two operators")
  const third = start()
  expect(await eventually(() => standsBy(third), 30_000)).toBe(true)
  expect(await second.stop("SIGTERM")).toBe(0)
  const stopped = Date.now()
  expect(await eventually(() => leads(third), LeaseMs, 50)).toBe(true)
  expect(Date.now() - stopped).toBeLessThan(LeaseMs)
  expect((await create("three")).status).toBe(201)
  expect(await readyWithin("three", 15_000)).toBe(true)
}, 120_000)

test(
  "a leader killed while a deletion it started is held by a foreign finalizer: the standby takes over and finishes it, in order",
  async () => {
    const leader = operators.find((o) => o.proc.exitCode === null && o.proc.signalCode === null && leads(o))
    if (leader === undefined) throw new Error("the tests before left no leader")
    const standby = start()
    expect(await eventually(() => standsBy(standby), 30_000)).toBe(true)
    const path = (kind: "statefulsets" | "configmaps" | "secrets", name = "") =>
      `${kind === "statefulsets" ? "/apis/apps/v1" : "/api/v1"}/namespaces/default/${kind}${name === "" ? "" : `/${name}`}`
    const exists = async (p: string) => (await cluster.api("GET", p)).status === 200
    const capability = () => cluster.api("GET", capabilityPath("default", "held"))
    const inventoryIds = (c: ApiResponse) => (dig<Array<{ id: string }>>(c.body, "status", "inventory") ?? []).map((e) => e.id)

    // creds (Secret, kept on deletion) -> config (ConfigMap) -> db (StatefulSet): deleted db first, then config.
    const created = await cluster.api("POST", capabilityPath("default"), {
      apiVersion: "halkyon.io/v1beta1",
      kind: "Capability",
      metadata: { name: "held" },
      spec: { category: "test", type: "graph", parameters: [{ name: "EXPOSE", value: "false" }] }
    })
    expect(created.status).toBe(201)
    expect(await eventually(async () => inventoryIds(await capability()).includes("db"), 30_000, 50)).toBe(true)
    const hold = await cluster.api(
      "PATCH",
      path("statefulsets", "held-db"),
      { metadata: { finalizers: ["example.com/hold"] } },
      "application/merge-patch+json"
    )
    expect(hold.status).toBe(200)
    const statefulSets = await watchDeletions(cluster, path("statefulsets"))
    const configMaps = await watchDeletions(cluster, path("configmaps"))
    try {
      expect((await cluster.api("DELETE", capabilityPath("default", "held"))).status).toBe(200)
      expect(
        await eventually(
          async () => {
            const ready = readyOf(await capability())
            return ready?.reason === "Deleting" && ready.message.includes("example.com/hold")
          },
          30_000,
          50
        )
      ).toBe(true)
      // The leader started the deletion and waits: db is held, config (which db depends on) still there.
      expect(await exists(path("configmaps", "held-config"))).toBe(true)
      expect(leads(standby)).toBe(false)

      await leader.stop("SIGKILL")
      const killed = Date.now()
      const released = await cluster.api(
        "PATCH",
        path("statefulsets", "held-db"),
        { metadata: { finalizers: null } },
        "application/merge-patch+json"
      )
      expect(released.status).toBe(200)
      expect(await eventually(() => leads(standby), LeaseMs + 5_000, 50)).toBe(true)
      const takeover = Date.now() - killed
      expect(await eventually(async () => (await capability()).status === 404, 30_000, 50)).toBe(true)
      const finished = Date.now() - killed
      // Finished by the standby, now the Lease's holder: the old leader is dead.
      const lease = await cluster.api("GET", "/apis/coordination.k8s.io/v1/namespaces/default/leases/halkyon-operator")
      const holder = dig<string>(lease.body, "spec", "holderIdentity") ?? ""
      expect(holder).not.toBe("")
      expect(standby.logs.some((l) => l.includes(`waiting to lead (lease default/halkyon-operator, identity ${holder})`))).toBe(true)
      expect(await exists(path("configmaps", "held-config"))).toBe(false)
      expect(await eventually(() => statefulSets.deleted.has("held-db") && configMaps.deleted.has("held-config"), 5_000)).toBe(true)
      expect(statefulSets.deleted.get("held-db")).toBeLessThan(configMaps.deleted.get("held-config") ?? 0)
      const creds = await cluster.api("GET", path("secrets", "held-creds"))
      expect(creds.status).toBe(200)
      expect(dig(creds.body, "metadata", "ownerReferences")).toBeUndefined()
      console.log(
        `[leader-failover] deletion held by a foreign finalizer, leader SIGKILLed: the standby led ${takeover} ms after the kill, ` +
          `the deletion finished ${finished} ms after it (db before config, creds kept)`
      )
    } finally {
      await statefulSets.stop()
      await configMaps.stop()
    }
  },
  120_000
)

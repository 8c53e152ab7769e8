/**
 * The ServiceBinding controller's fence: a leader that loses the Lease with a
 * binding reconcile in flight interrupts it, as it does its Capability
 * reconciles (leader-audit.test.ts covers those).
 *
 * Two compiled replicas without --leader-check-writes; the first talks to the
 * API server through the fault proxy, the second directly, so every write the
 * proxy forwards is the first replica's. A ServiceBinding projects a plain
 * Secret into a Deployment; with the proxy holding the first replica's reads
 * of that Secret and its Lease requests, the Secret is changed: its binding
 * reconcile waits on the read, before any write, and it loses the Lease. Once
 * the other leads, the proxy lets the held requests through: the first
 * replica must have interrupted the reconcile, exit 1, and have written
 * nothing in the namespace after it lost the Lease.
 */
import { afterAll, beforeAll, expect, test } from "bun:test"
import { type Cluster, dig, type Operator, startCluster, startOperator } from "../support/cluster.ts"
import { type FaultProxy, startFaultProxy } from "../support/FaultProxy.ts"
import { createNamespace, fastElection, until } from "../support/faults.ts"
import { pluginsFolder, testPlugin } from "../support/paths.ts"

const ns = "bindfence"
const lease = "halkyon-bindfence"
const flags = [...fastElection(lease), "--namespace", ns]

let cluster: Cluster
let proxy: FaultProxy
const operators: Array<Operator> = []
const folders = [0, 1].map(() => pluginsFolder(testPlugin("flaky.js")))

beforeAll(async () => {
  // No kube-controller-manager: nothing but the two replicas writes to the Deployment.
  cluster = await startCluster({ controllerManager: false })
  await createNamespace(cluster, ns)
  proxy = startFaultProxy(cluster.plane)
}, 120_000)

afterAll(async () => {
  for (const o of operators) if (o.proc.exitCode === null) await o.stop("SIGKILL")
  await proxy?.stop()
  await cluster?.plane.stop()
  for (const f of folders) f.cleanup()
})

const leads = (o: Operator) => o.logs.some((l) => l.includes("operator ready: caches synced"))
const secretPath = `/api/v1/namespaces/${ns}/secrets/creds`
const deploymentPath = `/apis/apps/v1/namespaces/${ns}/deployments/web`
const bindingPath = `/apis/servicebinding.io/v1/namespaces/${ns}/servicebindings/sb`
const bindingReady = async () => {
  const b = await cluster.api("GET", bindingPath)
  const ready = dig<Array<{ type: string; status: string }>>(b.body, "status", "conditions")?.find((c) => c.type === "Ready")
  return ready?.status === "True" && dig<number>(b.body, "status", "observedGeneration") === dig<number>(b.body, "metadata", "generation")
}
const templateOf = async () => JSON.stringify(dig((await cluster.api("GET", deploymentPath)).body, "spec", "template"))

test(
  "a leader that loses the Lease with a ServiceBinding reconcile in flight interrupts it, exits 1, and writes nothing more",
  async () => {
    const [folderA, folderB] = folders
    if (folderA === undefined || folderB === undefined) throw new Error("no plugins folders")
    const a = startOperator(cluster, folderA.dir, flags, proxy.kubeconfigPath)
    operators.push(a)
    let exitedAt = 0
    void a.proc.exited.then(() => (exitedAt = performance.now()))
    await until("the first replica leads", () => leads(a), 30_000)
    const b = startOperator(cluster, folderB.dir, flags)
    operators.push(b)
    await until("the second replica stands by", () => b.logs.some((l) => l.includes("waiting to lead")), 30_000)

    const password = (p: string) => ({ password: Buffer.from(p).toString("base64") })
    expect(
      (await cluster.api("POST", `/api/v1/namespaces/${ns}/secrets`, {
        apiVersion: "v1",
        kind: "Secret",
        metadata: { name: "creds" },
        // The spec's binding carries a type entry; without one the binding is refused (MissingType).
        data: { type: Buffer.from("postgresql").toString("base64"), ...password("one") }
      })).status
    ).toBe(201)
    expect(
      (await cluster.api("POST", `/apis/apps/v1/namespaces/${ns}/deployments`, {
        apiVersion: "apps/v1",
        kind: "Deployment",
        metadata: { name: "web" },
        spec: {
          selector: { matchLabels: { app: "web" } },
          template: { metadata: { labels: { app: "web" } }, spec: { containers: [{ name: "app", image: "example.com/app:1" }] } }
        }
      })).status
    ).toBe(201)
    expect(
      (await cluster.api("POST", `/apis/servicebinding.io/v1/namespaces/${ns}/servicebindings`, {
        apiVersion: "servicebinding.io/v1",
        kind: "ServiceBinding",
        metadata: { name: "sb" },
        spec: {
          service: { apiVersion: "v1", kind: "Secret", name: "creds" },
          workload: { apiVersion: "apps/v1", kind: "Deployment", name: "web" }
        }
      })).status
    ).toBe(201)
    await until("the binding is Ready under the first replica", bindingReady, 20_000)
    const boundOnce = await templateOf()

    // From now on the first replica's Lease requests and its reads of the Secret wait in the proxy: it loses the
    // Lease, and any reconcile of the binding waits on its read of the Secret, before its first write.
    proxy.holdRequests((method, path) => path.endsWith(`/leases/${lease}`) || (method === "GET" && path === secretPath))
    const held = performance.now()
    expect((await cluster.api("PATCH", secretPath, { data: password("two") }, "application/merge-patch+json")).status).toBe(200)
    await until(
      "the first replica's binding reconcile waits on its read of the Secret",
      () => proxy.heldRequestPaths().includes(`GET ${secretPath}`),
      10_000,
      10
    )
    await until("the first replica says it lost the Lease", () => a.logs.some((l) => l.includes("lost leadership")), 10_000, 10)
    const lost = performance.now()
    await until("the second replica leads", () => leads(b), 20_000)
    const takeover = performance.now() - held
    const released = performance.now()
    proxy.releaseRequests()
    expect(await a.proc.exited).toBe(1)
    expect(a.logs.some((l) => /reconcile of servicebinding \S*sb interrupted: this replica may no longer write/.test(l))).toBe(true)
    // The second replica projects the new Secret; the first wrote nothing in the namespace once it had lost the Lease.
    await until("the second replica projects the changed Secret", async () => (await templateOf()) !== boundOnce, 20_000)
    const lateA = proxy.writes.filter((w) => w.at >= lost && w.path.includes(`/namespaces/${ns}/`))
    expect(lateA.map((w) => `${w.method} ${w.path}`)).toEqual([])
    expect(await b.stop()).toBe(0)
    console.log(
      `[faults] binding fence: the first replica's binding reconcile held on its GET of the Secret; the second led ${
        Math.round(takeover)
      } ms after the hold; the first exited 1 ${Math.round(exitedAt - lost)} ms after its loss was seen (${
        exitedAt <= released ? "before" : "after"
      } the held requests were let through), its reconcile interrupted, ` +
        `no write by it in the namespace after it lost the Lease`
    )
  },
  120_000
)

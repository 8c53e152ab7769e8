/**
 * Fault: the operator is SIGKILLed in the middle of a reconcile (the Secret
 * written, its StatefulSet and Service applies, which go together after it,
 * held in the fault proxy and dropped) and in the middle of a status write (held, then
 * dropped: the status still names the previous generation while no operator
 * runs). The next start converges: every Capability reconciled at its
 * generation, with all its dependents and a status that lists them.
 */
import { afterAll, beforeAll, expect, test } from "bun:test"
import { capabilityPath, type Cluster, dig, type Operator, readyOf, startCluster, startOperator, untilReady } from "../support/cluster.ts"
import { type FaultProxy, startFaultProxy } from "../support/FaultProxy.ts"
import {
  changeVersion,
  createCapability,
  createNamespace,
  FaultNamespace,
  notReconciled,
  untilReconciled,
  until
} from "../support/faults.ts"
import { builtPlugin, pluginsFolder } from "../support/paths.ts"

let cluster: Cluster
let proxy: FaultProxy
const operators: Array<Operator> = []
const plugins = pluginsFolder(builtPlugin("postgres.js"))

const start = async () => {
  const operator = await untilReady(startOperator(cluster, plugins.dir, [], proxy.kubeconfigPath))
  operators.push(operator)
  return operator
}

beforeAll(async () => {
  cluster = await startCluster()
  await createNamespace(cluster)
  proxy = startFaultProxy(cluster.plane)
}, 120_000)

afterAll(async () => {
  for (const operator of operators) if (operator.proc.exitCode === null && operator.proc.signalCode === null) await operator.stop()
  await proxy?.stop()
  await cluster?.plane.stop()
  plugins.cleanup()
})

/** The dependents a reconciled postgres Capability has: all there, all owned by it, all listed in its status. */
const complete = async (name: string) => {
  const capability = await cluster.api("GET", capabilityPath(FaultNamespace, name))
  const uid = dig<string>(capability.body, "metadata", "uid")
  const listed = (dig<Array<{ kind: string; name: string }>>(capability.body, "status", "dependents") ?? []).map((d) =>
    `${d.kind}/${d.name}`
  )
  const paths = [
    `/api/v1/namespaces/${FaultNamespace}/secrets/${name}-config`,
    `/apis/apps/v1/namespaces/${FaultNamespace}/statefulsets/${name}`,
    `/api/v1/namespaces/${FaultNamespace}/services/${name}`
  ]
  const owners = await Promise.all(
    paths.map(async (p) => dig<string>((await cluster.api("GET", p)).body, "metadata", "ownerReferences", 0, "uid"))
  )
  return { owners: owners.map((o) => o === uid), listed }
}

const killMidWrite = async (operator: Operator, what: string, writes = 1) => {
  await until(`the operator is in the middle of ${what}`, () => proxy.heldWrites().length >= writes, 15_000)
  const held = proxy.heldWrites()
  operator.proc.kill("SIGKILL")
  await operator.proc.exited
  return held
}

test("SIGKILL in the middle of a reconcile and of a status write: the next start converges, nothing half-written", async () => {
  let operator = await start()
  await createCapability(cluster, "settled", "16")
  await untilReconciled(cluster, ["settled"], 30_000)

  // 1. Mid-reconcile: the Secret is written; the StatefulSet and the Service, which depend on it alone and so are
  // applied together after it, are on their way.
  proxy.holdWrites((method, path) => method === "PATCH" && /\/(statefulsets|services)\/midway$/.test(path))
  await createCapability(cluster, "midway", "16")
  const heldReconcile = await killMidWrite(operator, "a reconcile", 2)
  proxy.releaseWrites(false)
  expect([...heldReconcile].sort()).toEqual([
    `PATCH /api/v1/namespaces/${FaultNamespace}/services/midway`,
    `PATCH /apis/apps/v1/namespaces/${FaultNamespace}/statefulsets/midway`
  ])
  expect((await cluster.api("GET", `/api/v1/namespaces/${FaultNamespace}/secrets/midway-config`)).status).toBe(200)
  expect((await cluster.api("GET", `/api/v1/namespaces/${FaultNamespace}/services/midway`)).status).toBe(404)
  expect((await cluster.api("GET", `/apis/apps/v1/namespaces/${FaultNamespace}/statefulsets/midway`)).status).toBe(404)
  const restarted = performance.now()
  operator = await start()
  await untilReconciled(cluster, ["settled", "midway"], 30_000)
  const firstConverged = Math.round(performance.now() - restarted)

  // 2. Mid-status-write, on a change: the dependents are updated, the status write is lost with the process (dropped in
  // the proxy, never reaching the API server), so the status still speaks of the old generation until an operator runs.
  proxy.holdWrites((method, path) => method === "PATCH" && path.endsWith("/capabilities/settled/status"))
  await changeVersion(cluster, "settled", "17")
  const heldStatus = await killMidWrite(operator, "a status write")
  proxy.releaseWrites(false)
  expect(heldStatus).toEqual([`PATCH /apis/halkyon.io/v1beta1/namespaces/${FaultNamespace}/capabilities/settled/status`])
  const stale = await cluster.api("GET", capabilityPath(FaultNamespace, "settled"))
  const generation = dig<number>(stale.body, "metadata", "generation")
  expect(readyOf(stale)?.observedGeneration).toBe((generation ?? 0) - 1)
  expect(dig<number>(stale.body, "status", "observedGeneration")).toBe((generation ?? 0) - 1)
  expect(await notReconciled(cluster, "settled")).toContain(`is not about generation ${generation}`)
  // The dependents were written before the status: the StatefulSet is already at the new version.
  const sts = await cluster.api("GET", `/apis/apps/v1/namespaces/${FaultNamespace}/statefulsets/settled`)
  expect(dig<string>(sts.body, "spec", "template", "spec", "containers", 0, "image")).toBe("postgres:17")
  const restartedAgain = performance.now()
  operator = await start()
  await untilReconciled(cluster, ["settled", "midway"], 30_000)
  const secondConverged = Math.round(performance.now() - restartedAgain)
  console.log(
    `[faults] SIGKILL: converged ${firstConverged} ms after the restart (mid-reconcile), ${secondConverged} ms (mid-status-write)`
  )

  for (const name of ["settled", "midway"]) {
    const { owners, listed } = await complete(name)
    expect(owners).toEqual([true, true, true])
    expect(listed.sort()).toEqual([`Secret/${name}-config`, `Service/${name}`, `StatefulSet/${name}`])
  }
}, 120_000)

/**
 * Fault: kube-apiserver restarted while the operator runs. Capabilities are
 * created, changed and deleted the moment the API server is back, before the
 * operator's watches have come back: every change is reconciled, and the
 * recovery time is reported and bounded. (No garbage collector runs here, so
 * a deletion shows only as the operator leaving the object alone.)
 */
import { afterAll, beforeAll, expect, test } from "bun:test"
import { capabilityPath, type Cluster, type Operator, startCluster, startOperator, untilReady } from "../support/cluster.ts"
import { changeVersion, createCapability, createNamespace, deleteCapability, FaultNamespace, untilReconciled } from "../support/faults.ts"
import { builtPlugin, pluginsFolder } from "../support/paths.ts"

// Reconciled within this long of the API server answering again (the informers relist with a backoff of at most 10 s).
const RECOVERY_BOUND_MS = 20_000

let cluster: Cluster
let operator: Operator
const plugins = pluginsFolder(builtPlugin("postgres.js"))

beforeAll(async () => {
  cluster = await startCluster()
  await createNamespace(cluster)
  operator = await untilReady(startOperator(cluster, plugins.dir))
}, 120_000)

afterAll(async () => {
  await operator?.stop()
  await cluster?.plane.stop()
  plugins.cleanup()
})

test("after a kube-apiserver restart, every Capability created, changed or deleted just after it is reconciled", async () => {
  for (const name of ["steady", "doomed"]) await createCapability(cluster, name, "16")
  await untilReconciled(cluster, ["steady", "doomed"], 30_000)

  const down = performance.now()
  await cluster.plane.restartApiServer()
  const back = performance.now()
  // The operator's watches broke with the old process; these land before they are back.
  await createCapability(cluster, "fresh", "15")
  await changeVersion(cluster, "steady", "17")
  await deleteCapability(cluster, "doomed")
  const reconciled = await untilReconciled(cluster, ["fresh", "steady"], 60_000)

  const recoveryMs = Math.round(reconciled - back)
  console.log(`[faults] kube-apiserver restart: down ${Math.round(back - down)} ms; every change reconciled ${recoveryMs} ms after it answered again`)
  expect(recoveryMs).toBeLessThan(RECOVERY_BOUND_MS)
  // Its dependents stay as they were (the garbage collector's job), and the operator does not recreate it.
  expect((await cluster.api("GET", capabilityPath(FaultNamespace, "doomed"))).status).toBe(404)
  // The deleted Capability is not written again (it would come back as a 404 or a conflict in the log).
  expect(operator.logs.filter((l) => l.includes("doomed") && l.includes("failed"))).toEqual([])
  expect(operator.proc.exitCode).toBeNull()
}, 120_000)

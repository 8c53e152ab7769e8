/**
 * Fault: kube-apiserver restarted while the operator runs (it talks to it
 * through the fault proxy). First, Capabilities are created, changed and
 * deleted the moment the API server is back: every change is reconciled, and
 * the recovery time is reported and bounded. Then, with the operator's
 * requests held in the proxy across the restart, the changes are made before
 * it can see the new API server at all, as they would through another replica
 * of it: its relist must replay them. A deletion is done when the operator has
 * torn the Capability's dependents down and released its finalizer, so it
 * counts as reconciled only once the Capability is gone.
 */
import { afterAll, beforeAll, expect, test } from "bun:test"
import { type Cluster, type Operator } from "../support/cluster.ts"
import type { FaultProxy } from "../support/FaultProxy.ts"
import {
  changeVersion,
  createCapability,
  deleteCapability,
  deletionWrites,
  type ProxiedOperator,
  startProxiedOperator,
  untilGone,
  untilReconciled,
  untilSettled,
  until,
  writesAbout,
  writesSince
} from "../support/faults.ts"

// Reconciled within this long of the API server answering again (the informers relist with a backoff of at most 10 s).
const RECOVERY_BOUND_MS = 20_000

let cluster: Cluster
let proxy: FaultProxy
let operator: Operator
let bed: ProxiedOperator | undefined

beforeAll(async () => {
  bed = await startProxiedOperator()
  ;({ cluster, proxy, operator } = bed)
}, 120_000)

afterAll(async () => {
  await bed?.stop()
})

test(
  "after a kube-apiserver restart, every Capability created, changed or deleted just after it is reconciled, within a bound",
  async () => {
    for (const name of ["steady", "doomed"]) await createCapability(cluster, name, "16")
    await untilReconciled(cluster, ["steady", "doomed"], 30_000)

    const from = proxy.writes.length
    const down = performance.now()
    await cluster.plane.restartApiServer()
    const back = performance.now()
    await createCapability(cluster, "fresh", "15")
    await changeVersion(cluster, "steady", "17")
    await deleteCapability(cluster, "doomed")
    const reconciled = Math.max(
      await untilReconciled(cluster, ["fresh", "steady"], 60_000),
      await untilGone(cluster, "doomed", 60_000)
    )

    const recoveryMs = Math.round(reconciled - back)
    console.log(
      `[faults] kube-apiserver restart: down ${
        Math.round(back - down)
      } ms; every change reconciled ${recoveryMs} ms after it answered again`
    )
    expect(recoveryMs).toBeLessThan(RECOVERY_BOUND_MS)
    expect(operator.logs.filter((l) => l.includes("doomed") && l.includes("failed"))).toEqual([])
    // Nothing written for the deleted one but its deletion: no apply or status write, its dependents deleted once each.
    await untilSettled(operator.endpoint("metrics") ?? "")
    expect(writesAbout(writesSince(proxy, from), "doomed")).toEqual(deletionWrites("doomed"))
  },
  90_000
)

test("changes made across a restart before the operator sees the new API server are all reconciled by its relist", async () => {
  for (const name of ["kept", "changed", "removed"]) await createCapability(cluster, name, "16")
  await untilReconciled(cluster, ["kept", "changed", "removed"], 30_000)

  const logsBefore = operator.logs.length
  proxy.holdRequests()
  await cluster.plane.restartApiServer()
  await until(
    "the operator saw its watches break",
    () => operator.logs.slice(logsBefore).some((l) => l.includes("watch of Capability broke")),
    15_000
  )
  await createCapability(cluster, "added", "15")
  await changeVersion(cluster, "changed", "17")
  await deleteCapability(cluster, "removed")
  // Its relist is on its way: held in the proxy, not yet answered.
  await until("the operator asked to relist", () => proxy.heldRequests() > 0, 15_000)
  const released = performance.now()
  proxy.releaseRequests()
  const reconciled = Math.max(
    await untilReconciled(cluster, ["kept", "changed", "added"], 30_000),
    await untilGone(cluster, "removed", 30_000)
  )
  console.log(
    `[faults] kube-apiserver restart, changes unseen until the relist: reconciled ${
      Math.round(reconciled - released)
    } ms after the operator could reach it`
  )
  expect(reconciled - released).toBeLessThan(RECOVERY_BOUND_MS)
  expect(operator.proc.exitCode).toBeNull()
}, 90_000)

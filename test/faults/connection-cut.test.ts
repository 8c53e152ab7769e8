/**
 * Fault: the connection between the operator and the API server is cut (the
 * fault proxy closes every connection and refuses new ones) while
 * Capabilities are changed, created and deleted, then restored. Every change
 * is reconciled (no lost event), and the proxy's count of write requests per
 * object shows no object written twice and nothing written for the
 * Capabilities nobody touched.
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

test("a cut connection, once restored, loses no change and writes no object twice", async () => {
  for (const name of ["untouched", "changed", "removed"]) await createCapability(cluster, name, "16")
  await untilReconciled(cluster, ["untouched", "changed", "removed"], 30_000)
  const metrics = operator.endpoint("metrics") ?? ""
  await untilSettled(metrics)

  const logsBefore = operator.logs.length
  await proxy.cut()
  await until(
    "the operator saw its watch break",
    () => operator.logs.slice(logsBefore).some((l) => l.includes("watch of Capability broke")),
    15_000
  )
  await changeVersion(cluster, "changed", "17")
  await createCapability(cluster, "added", "15")
  await deleteCapability(cluster, "removed")
  // It tried to list again, and could not: it is cut off, not merely between watches.
  await until(
    "a relist failed",
    () => operator.logs.slice(logsBefore).some((l) => l.includes("listing Capability") && l.includes("failed")),
    15_000
  )
  const from = proxy.writes.length
  const restored = performance.now()
  proxy.restore()

  const reconciled = Math.max(
    await untilReconciled(cluster, ["untouched", "changed", "added"], 30_000),
    await untilGone(cluster, "removed", 30_000)
  )
  await untilSettled(metrics)
  const writes = writesSince(proxy, from)
  const summary = [...writes].map(([k, n]) => `${k} ×${n}`).join(", ")
  console.log(`[faults] connection cut: reconciled ${Math.round(reconciled - restored)} ms after the restore; writes after it: ${summary}`)
  const twice = [...writes].filter(([, n]) => n > 1)
  expect(twice).toEqual([])
  expect(writesAbout(writes, "untouched")).toEqual({})
  // The removed Capability: its dependents deleted and the operator's finalizer let go, each once; nothing else.
  expect(writesAbout(writes, "removed")).toEqual(deletionWrites("removed"))
  // The changed StatefulSet and the added Capability's dependents and status were written.
  expect(Object.keys(writesAbout(writes, "changed")).length).toBeGreaterThan(0)
  expect(Object.keys(writesAbout(writes, "added")).length).toBeGreaterThan(0)
}, 90_000)

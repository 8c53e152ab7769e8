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
  metric,
  type ProxiedOperator,
  startProxiedOperator,
  untilReconciled,
  until
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

/** Writes since `from`, counted by method and object path. */
const writesSince = (from: number) => {
  const counts = new Map<string, number>()
  for (const w of proxy.writes.slice(from)) counts.set(`${w.method} ${w.path}`, (counts.get(`${w.method} ${w.path}`) ?? 0) + 1)
  return counts
}

test("a cut connection, once restored, loses no change and writes no object twice", async () => {
  for (const name of ["untouched", "changed", "removed"]) await createCapability(cluster, name, "16")
  await untilReconciled(cluster, ["untouched", "changed", "removed"], 30_000)
  const metrics = operator.endpoint("metrics") ?? ""
  await until("the work queue emptied", async () => (await metric(metrics, "halkyon_workqueue_depth")) === 0, 10_000)

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

  const reconciled = await untilReconciled(cluster, ["untouched", "changed", "added"], 30_000)
  await until("the work queue emptied", async () => (await metric(metrics, "halkyon_workqueue_depth")) === 0, 10_000)
  const writes = writesSince(from)
  const summary = [...writes].map(([k, n]) => `${k} ×${n}`).join(", ")
  console.log(`[faults] connection cut: reconciled ${Math.round(reconciled - restored)} ms after the restore; writes after it: ${summary}`)
  const twice = [...writes].filter(([, n]) => n > 1)
  expect(twice).toEqual([])
  const about = (name: string) => [...writes.keys()].filter((k) => k.includes(`/${name}`) || k.includes(`/${name}-`))
  expect(about("untouched")).toEqual([])
  // The removed Capability: its dependents deleted (once each, counted above) and the operator's finalizer let go; nothing else.
  expect(about("removed").filter((k) => !k.startsWith("DELETE ") && !k.startsWith("PATCH /apis/halkyon.io/"))).toEqual([])
  // The changed StatefulSet and the added Capability's dependents and status were written.
  expect(about("changed").length).toBeGreaterThan(0)
  expect(about("added").length).toBeGreaterThan(0)
}, 90_000)

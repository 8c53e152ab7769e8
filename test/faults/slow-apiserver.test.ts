/**
 * Fault: a slow API server (the fault proxy adds 200 ms to every request).
 * A batch of Capabilities is reconciled correctly (each at its generation,
 * no failed reconcile, no object written twice), and the throughput is
 * reported next to the same batch without the delay.
 */
import { afterAll, beforeAll, expect, test } from "bun:test"
import { type Cluster, type Operator, startCluster, startOperator, untilReady } from "../support/cluster.ts"
import { type FaultProxy, startFaultProxy } from "../support/FaultProxy.ts"
import { createCapability, createNamespace, metric, untilReconciled, until } from "../support/faults.ts"
import { builtPlugin, pluginsFolder } from "../support/paths.ts"

const BATCH = 12
const DELAY_MS = 200

let cluster: Cluster
let proxy: FaultProxy
let operator: Operator
const plugins = pluginsFolder(builtPlugin("postgres.js"))

beforeAll(async () => {
  cluster = await startCluster()
  await createNamespace(cluster)
  proxy = startFaultProxy(cluster.plane)
  operator = await untilReady(startOperator(cluster, plugins.dir, [], proxy.kubeconfigPath))
}, 120_000)

afterAll(async () => {
  await operator?.stop()
  await proxy?.stop()
  await cluster?.plane.stop()
  plugins.cleanup()
})

/** Creates a batch, waits until all are reconciled and the queue is empty; returns Capabilities per second and the writes made. */
const batch = async (prefix: string) => {
  const metrics = operator.endpoint("metrics") ?? ""
  const names = Array.from({ length: BATCH }, (_, i) => `${prefix}-${i}`)
  const from = proxy.writes.length
  const requestsFrom = proxy.requests()
  const start = performance.now()
  // All at once, so that the time is the operator's rather than the test's.
  await Promise.all(names.map((name) => createCapability(cluster, name, "16")))
  const done = await untilReconciled(cluster, names, 60_000)
  await until("the work queue emptied", async () => (await metric(metrics, "halkyon_workqueue_depth")) === 0, 10_000)
  const counts = new Map<string, number>()
  for (const w of proxy.writes.slice(from)) counts.set(`${w.method} ${w.path}`, (counts.get(`${w.method} ${w.path}`) ?? 0) + 1)
  const batchWrites = proxy.writes.slice(from)
  // From the test's first create to the operator's last write, as the proxy saw it.
  const span = ((batchWrites.at(-1)?.at ?? start) - start) / 1000
  return { perSecond: BATCH / ((done - start) / 1000), seconds: (done - start) / 1000, span, counts, requests: proxy.requests() - requestsFrom }
}

test(`with ${DELAY_MS} ms added to every API request, a batch of ${BATCH} Capabilities is reconciled correctly`, async () => {
  const fast = await batch("fast")
  proxy.delayMs = DELAY_MS
  const logsBefore = operator.logs.length
  const slow = await batch("slow")
  proxy.delayMs = 0
  console.log(
    `[faults] slow API server: ${BATCH} Capabilities reconciled in ${slow.seconds.toFixed(1)} s (${slow.perSecond.toFixed(2)}/s; last write at ` +
      `${slow.span.toFixed(1)} s; ${slow.requests} requests) with ${DELAY_MS} ms per request; ${fast.seconds.toFixed(1)} s ` +
      `(${fast.perSecond.toFixed(2)}/s; last write at ${fast.span.toFixed(1)} s; ${fast.requests} requests) without`
  )
  expect([...slow.counts].filter(([, n]) => n > 1)).toEqual([])
  // Each Capability: three dependents applied and one status written.
  expect(slow.counts.size).toBe(BATCH * 4)
  expect(operator.logs.slice(logsBefore).filter((l) => l.includes("failed"))).toEqual([])
  // The delay is paid, so the measurement is of a slow server.
  expect(slow.seconds).toBeGreaterThan(fast.seconds)
}, 120_000)

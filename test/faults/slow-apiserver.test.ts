/**
 * Fault: a slow API server (the fault proxy adds 200 ms to every request).
 * A batch of Capabilities is reconciled correctly (each at its generation,
 * no failed reconcile, no object written twice), and the throughput is
 * reported next to the same batch without the delay (the operator's
 * time is counted from the last create to its last write).
 */
import { afterAll, beforeAll, expect, test } from "bun:test"
import { type Cluster, type Operator } from "../support/cluster.ts"
import type { FaultProxy } from "../support/FaultProxy.ts"
import {
  createCapability,
  metric,
  type ProxiedOperator,
  startProxiedOperator,
  untilReconciled,
  untilSettled,
  writesSince
} from "../support/faults.ts"

const BATCH = 12
const DELAY_MS = 200

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

/** Creates a batch, waits until all are reconciled and the operator settled; returns Capabilities per second and the writes made. */
const batch = async (prefix: string) => {
  const metrics = operator.endpoint("metrics") ?? ""
  const names = Array.from({ length: BATCH }, (_, i) => `${prefix}-${i}`)
  const from = proxy.writes.length
  const requestsFrom = proxy.requests()
  const pluginSecondsBefore = await metric(metrics, "halkyon_plugin_call_duration_seconds_sum")
  const start = performance.now()
  // All at once, so that the time is the operator's rather than the test's.
  await Promise.all(names.map((name) => createCapability(cluster, name, "16")))
  const created = performance.now()
  const done = await untilReconciled(cluster, names, 60_000)
  await untilSettled(metrics)
  const counts = writesSince(proxy, from)
  const pluginSeconds = (await metric(metrics, "halkyon_plugin_call_duration_seconds_sum")) - pluginSecondsBefore
  const batchWrites = proxy.writes.slice(from)
  // From the test's last create to the operator's last write, as the proxy saw it.
  const span = ((batchWrites.at(-1)?.at ?? created) - created) / 1000
  const creating = (created - start) / 1000
  return {
    perSecond: BATCH / ((done - start) / 1000),
    seconds: (done - start) / 1000,
    span,
    creating,
    pluginSeconds,
    counts,
    requests: proxy.requests() - requestsFrom
  }
}

test(`with ${DELAY_MS} ms added to every API request, a batch of ${BATCH} Capabilities is reconciled correctly`, async () => {
  // A first Capability warms the API server and the plugin up, so that neither batch pays for that.
  await createCapability(cluster, "warm-up", "16")
  await untilReconciled(cluster, ["warm-up"], 30_000)
  const fast = await batch("fast")
  proxy.delayMs = DELAY_MS
  const logsBefore = operator.logs.length
  const slow = await batch("slow")
  proxy.delayMs = 0
  console.log(
    `[faults] slow API server: ${BATCH} Capabilities reconciled in ${slow.seconds.toFixed(1)} s (${
      slow.perSecond.toFixed(2)
    }/s; created in ${slow.creating.toFixed(1)} s, last write ` +
      `${slow.span.toFixed(1)} s after; ${slow.requests} requests; plugin calls ${
        slow.pluginSeconds.toFixed(1)
      } s in all) with ${DELAY_MS} ms per request; ${fast.seconds.toFixed(1)} s ` +
      `(${fast.perSecond.toFixed(2)}/s; created in ${fast.creating.toFixed(1)} s, last write ${
        fast.span.toFixed(1)
      } s after; ${fast.requests} requests; plugin calls ${fast.pluginSeconds.toFixed(1)} s in all) without`
  )
  expect([...slow.counts].filter(([, n]) => n > 1)).toEqual([])
  // Each Capability: its finalizer added, three dependents applied and one status written.
  expect(slow.counts.size).toBe(BATCH * 5)
  expect(operator.logs.slice(logsBefore).filter((l) => l.includes("failed"))).toEqual([])
  // The delay was on the operator's path: a Capability's five writes come one after another.
  expect(slow.span).toBeGreaterThanOrEqual((5 * DELAY_MS) / 1000)
}, 120_000)

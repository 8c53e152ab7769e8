/**
 * Fault: the operator's watch resourceVersion is too old (410 Expired). The
 * API server runs without its watch cache, so watches go to etcd; the fault
 * proxy ends the operator's watches and holds the new ones while Capabilities
 * change and etcd is compacted past every version the operator saw. Released,
 * the watches answer 410: the relist that follows misses no change.
 */
import { afterAll, beforeAll, expect, test } from "bun:test"
import { type Cluster, type Operator } from "../support/cluster.ts"
import type { FaultProxy } from "../support/FaultProxy.ts"
import {
  changeVersion,
  createCapability,
  deleteCapability,
  type ProxiedOperator,
  startProxiedOperator,
  untilGone,
  untilReconciled,
  until
} from "../support/faults.ts"

let cluster: Cluster
let proxy: FaultProxy
let operator: Operator
let bed: ProxiedOperator | undefined

/** Compacts etcd (through its HTTP gateway) up to its current revision; returns that revision. */
const compactEtcd = async (etcdUrl: string) => {
  const range = await fetch(`${etcdUrl}/v3/kv/range`, {
    method: "POST",
    body: JSON.stringify({ key: Buffer.from("/").toString("base64") })
  })
  const revision = Number(((await range.json()) as { header?: { revision?: string } }).header?.revision)
  if (!Number.isFinite(revision) || revision <= 0) throw new Error("etcd did not say its revision")
  const compacted = await fetch(`${etcdUrl}/v3/kv/compaction`, { method: "POST", body: JSON.stringify({ revision, physical: true }) })
  if (!compacted.ok) throw new Error(`etcd compaction failed: ${compacted.status} ${await compacted.text()}`)
  return revision
}

beforeAll(async () => {
  bed = await startProxiedOperator({ apiServerArgs: ["--watch-cache=false"], operatorArgs: ["--log-level", "debug"] })
  ;({ cluster, proxy, operator } = bed)
}, 120_000)

afterAll(async () => {
  await bed?.stop()
})

test("a watch whose resourceVersion etcd compacted away gets 410, and the relist reconciles every change made meanwhile", async () => {
  for (const name of ["kept", "changed", "removed"]) await createCapability(cluster, name, "16")
  await untilReconciled(cluster, ["kept", "changed", "removed"], 30_000)
  const expiredBefore = operator.logs.filter((l) => l.includes("expired: relisting")).length

  proxy.holdWatches()
  const ended = proxy.endWatches()
  expect(ended).toBeGreaterThan(0)
  // The informers watch again from the last version they saw; those requests wait in the proxy.
  await until(`${ended} watches asked again`, () => proxy.heldWatches() >= ended, 10_000)
  await createCapability(cluster, "added", "15")
  await changeVersion(cluster, "changed", "17")
  await deleteCapability(cluster, "removed")
  const revision = await compactEtcd(cluster.plane.etcdUrl)
  const released = performance.now()
  proxy.releaseWatches()

  await until(
    "the Capability watch answered 410",
    () => operator.logs.some((l) => l.includes("watch of Capability") && l.includes("expired: relisting")),
    15_000
  )
  const reconciled = Math.max(
    await untilReconciled(cluster, ["kept", "changed", "added"], 30_000),
    // Deleted while the watch was expired: the relist must see it gone and let its finalizer go.
    await untilGone(cluster, "removed", 30_000)
  )
  const expired = operator.logs.filter((l) => l.includes("expired: relisting")).length - expiredBefore
  console.log(
    `[faults] 410 relist: etcd compacted at revision ${revision}; ${expired} watches expired; every change reconciled ${
      Math.round(reconciled - released)
    } ms after the watches were released`
  )
  expect(expired).toBeGreaterThan(0)
  expect(operator.logs.filter((l) => l.includes("removed") && l.includes("failed"))).toEqual([])
  expect(operator.proc.exitCode).toBeNull()
}, 90_000)

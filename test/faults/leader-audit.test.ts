/**
 * Two compiled operator replicas with --leader-elect and --leader-check-writes,
 * the second one's clock 20 s ahead (--lease-clock-ahead), checked through
 * kube-apiserver's own audit log rather than through the replicas' word.
 * Each replica names itself in its User-Agent (`halkyon/<version> (<identity>)`),
 * so the audit log says which replica made every write.
 *
 * The leader is frozen (SIGSTOP) in the middle of reconciles whose plugin
 * calls take 2 s; the other takes the Lease once it has seen it unchanged for
 * the lease duration, and reconciles; the frozen one is then let go (SIGCONT)
 * with the plugin's answers waiting for it. The audit log must show every
 * write to the Capabilities' status and dependents, Events included, made by
 * one of the two, the first replica's last write answered before the second
 * acquired the Lease, and the second's first write after that: never two
 * replicas writing in overlapping intervals.
 */
import { afterAll, beforeAll, expect, test } from "bun:test"
import { existsSync, readFileSync } from "node:fs"
import { capabilityPath, type Cluster, type Operator, readyOf, startCluster, startOperator } from "../support/cluster.ts"
import { createNamespace, FaultNamespace, until } from "../support/faults.ts"
import { pluginsFolder, processesMatching, testPlugin } from "../support/paths.ts"

const LeaseNamespace = "default"
const LeaseName = "halkyon-audit"
const election = [
  "--leader-elect",
  "--leader-check-writes",
  "--leader-election-namespace",
  LeaseNamespace,
  "--leader-election-id",
  LeaseName,
  "--lease-duration",
  "2s",
  "--renew-deadline",
  "1500ms",
  "--retry-period",
  "250ms",
  // Whatever is in flight when leadership is lost is interrupted; this would otherwise let it finish.
  "--graceful-shutdown-timeout",
  "60s",
  // The frozen leader's plugin calls must not time out while it is frozen: their answers wait for it.
  "--call-timeout",
  "20s"
]

let cluster: Cluster
const operators: Array<Operator> = []
const folders = [pluginsFolder(testPlugin("flaky.js")), pluginsFolder(testPlugin("flaky.js"))]

beforeAll(async () => {
  cluster = await startCluster({ audit: true })
  await createNamespace(cluster)
}, 120_000)

afterAll(async () => {
  for (const o of operators) if (o.proc.exitCode === null) await o.stop("SIGKILL")
  await cluster?.plane.stop()
  for (const f of folders) f.cleanup()
})

interface AuditEvent {
  readonly stage: string
  readonly verb: string
  readonly userAgent?: string
  readonly objectRef?: { resource?: string; subresource?: string; namespace?: string; name?: string; apiGroup?: string }
  readonly responseStatus?: { code?: number }
  readonly requestReceivedTimestamp: string
  readonly stageTimestamp: string
}

/** RFC 3339 with microseconds, as the audit log writes it, in microseconds since the epoch. */
const micros = (time: string) => {
  const match = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?Z$/.exec(time)
  if (match === null) throw new Error(`not an audit timestamp: ${time}`)
  return Date.parse(`${match[1]}Z`) * 1000 + Number((match[2] ?? "").padEnd(6, "0").slice(0, 6))
}

const identityOf = (o: Operator) =>
  o.logs.map((l) => /waiting to lead \(lease [^,]+, identity ([^)]+)\)/.exec(l)?.[1]).find((m) => m !== undefined)

const capability = (name: string, mode: string) =>
  cluster.api("POST", capabilityPath(FaultNamespace), {
    apiVersion: "halkyon.io/v1beta1",
    kind: "Capability",
    metadata: { name },
    spec: { category: "test", type: "flaky", version: "1", parameters: [{ name: "MODE", value: mode }] }
  })

const readyAt = async (name: string) => {
  const object = await cluster.api("GET", capabilityPath(FaultNamespace, name))
  const ready = readyOf(object)
  return ready?.status === "True"
}

/** User plus system CPU time of a process, in clock ticks. */
const cpuTicks = (pid: number) => {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  return Number(fields[11]) + Number(fields[12])
}

test(
  "two replicas, one clock 20 s ahead, a leader frozen mid-reconcile: the audit log attributes every write, and no two replicas write in overlapping intervals",
  async () => {
    const auditLog = cluster.plane.auditLogPath
    if (auditLog === undefined) throw new Error("the control plane was started without audit")
    const [folderA, folderB] = folders
    if (folderA === undefined || folderB === undefined) throw new Error("no plugins folders")
    const a = startOperator(cluster, folderA.dir, election)
    operators.push(a)
    await until("the first replica leads", () => a.logs.some((l) => l.includes("operator ready: caches synced")), 30_000)
    const b = startOperator(cluster, folderB.dir, [...election, "--lease-clock-ahead", "20s"])
    operators.push(b)
    await until("the second replica stands by", () => identityOf(b) !== undefined, 30_000)
    const [idA, idB] = [identityOf(a), identityOf(b)]
    if (idA === undefined || idB === undefined) throw new Error("a replica logged no identity")

    for (const name of ["ok-0", "ok-1", "ok-2"]) expect((await capability(name, "ok")).status).toBe(201)
    await until(
      "the first Capabilities are Ready",
      async () => (await Promise.all(["ok-0", "ok-1", "ok-2"].map((n) => readyAt(n)))).every(Boolean),
      20_000
    )

    // Two reconciles in flight in the leader: its plugin spins 2 s on each build.
    const pluginA = (await processesMatching(`${folderA.dir}/flaky.js`))[0]
    if (pluginA === undefined) throw new Error("the first replica's plugin is not running")
    const before = cpuTicks(pluginA)
    for (const name of ["slow-0", "slow-1"]) expect((await capability(name, "slow")).status).toBe(201)
    await until("the leader's plugin is building", () => cpuTicks(pluginA) - before > 20, 10_000, 20)
    process.kill(a.proc.pid, "SIGSTOP")
    const frozen = performance.now()
    await until("the second replica leads", () => b.logs.some((l) => l.includes("operator ready: caches synced")), 20_000)
    const takeover = performance.now() - frozen
    // Let the plugin's answers arrive while the first replica is still frozen.
    await Bun.sleep(Math.max(0, 2_500 - (performance.now() - frozen)))
    process.kill(a.proc.pid, "SIGCONT")
    const exitA = await a.proc.exited
    expect(exitA).toBe(1)
    expect(a.logs.some((l) => l.includes("lost leadership"))).toBe(true)

    for (const name of ["ok-3"]) expect((await capability(name, "ok")).status).toBe(201)
    const all = ["ok-0", "ok-1", "ok-2", "ok-3", "slow-0", "slow-1"]
    await until(
      "every Capability is Ready under the second replica",
      async () => (await Promise.all(all.map((n) => readyAt(n)))).every(Boolean),
      40_000
    )
    expect(await b.stop()).toBe(0)

    // The audit log, as kube-apiserver wrote it.
    expect(existsSync(auditLog)).toBe(true)
    const events = readFileSync(auditLog, "utf8").split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l) as AuditEvent)
      .filter((e) => e.stage === "ResponseComplete")
    const halkyonUa = /^halkyon\/\S+ \((.+)\)$/
    const replicaOf = (e: AuditEvent) => halkyonUa.exec(e.userAgent ?? "")?.[1]
    const isLease = (e: AuditEvent) => e.objectRef?.resource === "leases" && e.objectRef.name === LeaseName
    // Every write in the namespace but the test's own Capability creates: status, dependents, Events.
    const operatorWrites = events.filter((e) =>
      e.objectRef?.namespace === FaultNamespace &&
      // kube-controller-manager's own (the namespace's default ServiceAccount and CA ConfigMap) are not the operator's.
      !(e.userAgent ?? "").startsWith("kube-controller-manager/") &&
      !(e.objectRef.resource === "capabilities" && e.objectRef.subresource === undefined && e.verb === "create" &&
        replicaOf(e) === undefined)
    )
    const unattributed = operatorWrites.filter((e) => replicaOf(e) !== idA && replicaOf(e) !== idB)
    expect(unattributed.map((e) => `${e.verb} ${e.objectRef?.resource}/${e.objectRef?.name} by ${e.userAgent}`)).toEqual([])
    const succeeded = operatorWrites.filter((e) => (e.responseStatus?.code ?? 0) < 300)
    const byA = succeeded.filter((e) => replicaOf(e) === idA)
    const byB = succeeded.filter((e) => replicaOf(e) === idB)
    expect(byA.length).toBeGreaterThan(0)
    expect(byB.length).toBeGreaterThan(0)

    // B's leadership, as the API server saw it: its first successful Lease write.
    const leaseWrites = events.filter((e) => isLease(e) && (e.responseStatus?.code ?? 0) < 300)
    const acquiredByB = leaseWrites.find((e) => replicaOf(e) === idB)
    if (acquiredByB === undefined) throw new Error("the second replica never wrote the Lease")
    const lastA = Math.max(...byA.map((e) => micros(e.stageTimestamp)))
    const firstB = Math.min(...byB.map((e) => micros(e.requestReceivedTimestamp)))
    const lastLeaseA = Math.max(...leaseWrites.filter((e) => replicaOf(e) === idA).map((e) => micros(e.stageTimestamp)))
    // The first replica's writes all answered before the second acquired; the second's all sent after.
    expect(lastA).toBeLessThan(micros(acquiredByB.requestReceivedTimestamp))
    expect(firstB).toBeGreaterThan(micros(acquiredByB.stageTimestamp))
    // No interleaving at all: sorted by arrival, the writers switch once.
    const order = succeeded.sort((x, y) => micros(x.requestReceivedTimestamp) - micros(y.requestReceivedTimestamp)).map(replicaOf)
    const switches = order.filter((r, i) => i > 0 && r !== order[i - 1]).length
    expect(switches).toBe(1)
    const refused = a.logs.filter((l) => /WriteRefused|not writing/.test(l)).length
    console.log(
      `[faults] leader audit: ${operatorWrites.length} operator writes audited (${byA.length} by the first replica, ${byB.length} by the second, ` +
        `${operatorWrites.length - succeeded.length} refused by the API server), every one attributed; ` +
        `the first replica's last write answered ${
          ((micros(acquiredByB.requestReceivedTimestamp) - lastA) / 1e6).toFixed(2)
        } s before the second acquired, ` +
        `its last Lease renewal ${((micros(acquiredByB.requestReceivedTimestamp) - lastLeaseA) / 1e6).toFixed(2)} s before; ` +
        `the second's first write ${((firstB - micros(acquiredByB.stageTimestamp)) / 1e6).toFixed(2)} s after acquiring; ` +
        `takeover ${Math.round(takeover)} ms after the freeze; ${refused} writes refused by the first replica's own check after it thawed`
    )
  },
  150_000
)

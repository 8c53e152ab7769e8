/**
 * Faults in plugins, under the compiled operator against a real API server:
 * a plugin that exits at every start (a crash loop with nothing to call), a
 * plugin that crashes in every call for its Capability, and a plugin that
 * hangs in every call while answering health checks (degraded by the call
 * breaker, then restarted: its process replaced). Only their own
 * Capabilities are affected: a postgres plugin's Capabilities are created,
 * changed and reconciled meanwhile in normal time; and the restarts are
 * backed off (the gaps between them, measured, grow).
 */
import { afterAll, beforeAll, expect, test } from "bun:test"
import { capabilityPath, type Cluster, type Operator, startCluster, startOperator, untilReady } from "../support/cluster.ts"
import {
  changeVersion,
  createCapability,
  createNamespace,
  FaultNamespace,
  metric,
  readyReason,
  untilReconciled,
  until
} from "../support/faults.ts"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { addPlugin, badPlugin, builtPlugin, pluginsFolder, processesMatching, testPlugin } from "../support/paths.ts"

let cluster: Cluster
let operator: Operator
const plugins = pluginsFolder(builtPlugin("postgres.js"), testPlugin("flaky.js"))
addPlugin(plugins.dir, testPlugin("go-stall"), "stall")
addPlugin(plugins.dir, badPlugin("exits"), "exits")

/** When each restart line of a plugin was first seen (performance.now()), sampled every 20 ms. */
const restartTimes = new Map<string, Array<number>>()
let seen = 0
const sampler = setInterval(() => {
  for (; seen < (operator?.logs.length ?? 0); seen++) {
    const match = /plugin (\S+) (stopped|keeps failing)/.exec(operator.logs[seen] ?? "")
    if (match?.[1] !== undefined) restartTimes.set(match[1], [...(restartTimes.get(match[1]) ?? []), performance.now()])
  }
}, 20)

const testCapability = async (name: string, type: string, mode?: string) => {
  const created = await cluster.api("POST", capabilityPath(FaultNamespace), {
    apiVersion: "halkyon.io/v1beta1",
    kind: "Capability",
    metadata: { name },
    spec: { category: "test", type, version: "1", parameters: mode === undefined ? [] : [{ name: "MODE", value: mode }] }
  })
  expect(created.status).toBe(201)
}

beforeAll(async () => {
  cluster = await startCluster()
  await createNamespace(cluster)
  // Assigned before it is ready, so that the sampler times its first restarts too.
  // Calls time out after 3 s (startOperator's default): the flaky plugin's slow build (2 s) fits.
  operator = startOperator(cluster, plugins.dir)
  await untilReady(operator)
}, 120_000)

afterAll(async () => {
  clearInterval(sampler)
  await operator?.stop()
  await cluster?.plane.stop()
  plugins.cleanup()
})

test("a crash-looping, a crashing and a hung plugin affect only their own Capabilities, and their restarts are backed off", async () => {
  const stall = join(plugins.dir, "stall")
  const hungPid = (await processesMatching(stall))[0]
  expect(hungPid).toBeDefined()
  await testCapability("crashes", "flaky", "crash")
  const hungSince = performance.now()
  await testCapability("hangs", "stall")
  const healthy = ["db-0", "db-1", "db-2", "db-3"]
  const started = performance.now()
  for (const name of healthy) await createCapability(cluster, name, "16")
  await untilReconciled(cluster, healthy, 20_000)
  const firstBatch = performance.now() - started
  // While the faulty plugins keep failing: a change and a new Capability.
  await until("the crashing plugin crashed twice", () => (restartTimes.get("flaky.js")?.length ?? 0) >= 2, 20_000)
  const changed = performance.now()
  await changeVersion(cluster, "db-0", "17")
  await createCapability(cluster, "db-4", "15")
  await untilReconciled(cluster, [...healthy, "db-4"], 15_000)
  const secondBatch = performance.now() - changed

  await until(
    "the crashing Capability reported its plugin unavailable",
    async () => (await readyReason(cluster, "crashes")) === "Unknown/PluginUnavailable",
    20_000
  )
  await until(
    "the hung Capability reported its plugin unavailable",
    async () => (await readyReason(cluster, "hangs")) === "Unknown/PluginUnavailable",
    20_000
  )
  const metrics = operator.endpoint("metrics") ?? ""
  await until(
    "the hung plugin's breaker tripped",
    async () => (await metric(metrics, "halkyon_plugin_breaker_trips_total", `plugin="stall"`)) > 0,
    30_000
  )
  // Degraded, it is restarted although it still answers health checks: that process ends, a new one serves.
  await until("the hung plugin was restarted", () => (restartTimes.get("stall")?.length ?? 0) > 0, 15_000)
  const restartedPid = await until(
    "the hung plugin's old process is gone and a new one runs",
    async () => {
      const pids = await processesMatching(stall)
      return pids.length > 0 && !pids.includes(hungPid ?? 0)
    },
    15_000,
    100
  ).then(async () => (await processesMatching(stall))[0])
  expect(operator.logs.some((l) => /plugin stall stopped: .*degraded/.test(l))).toBe(true)
  expect(await metric(metrics, "halkyon_plugin_restarts_total", `plugin="stall"`)).toBeGreaterThan(0)

  // The plugin that exits at every start: the gaps between its restarts double (0.5 s, 1 s, 2 s, 4 s, …).
  await until("five restarts of the crash-looping plugin", () => (restartTimes.get("exits")?.length ?? 0) >= 5, 40_000)
  const times = restartTimes.get("exits") ?? []
  const gaps = times.slice(1, 5).map((t, i) => Math.round(t - (times[i] ?? 0)))
  const crashes = restartTimes.get("flaky.js")?.length ?? 0
  const crashesWindow = Math.round(performance.now() - (restartTimes.get("flaky.js")?.[0] ?? performance.now()))
  console.log(
    `[faults] plugins: crash loop restart gaps ${
      gaps.join(", ")
    } ms; the crashing plugin restarted ${crashes} times in ${crashesWindow} ms; ` +
      `healthy Capabilities reconciled in ${Math.round(firstBatch)} ms (4 new), ${
        Math.round(secondBatch)
      } ms (1 changed, 1 new) meanwhile; ` +
      `the hung plugin restarted (pid ${hungPid} → ${restartedPid}) ${
        Math.round((restartTimes.get("stall")?.[0] ?? 0) - hungSince)
      } ms after its Capability was created`
  )
  for (let i = 1; i < gaps.length; i++) expect(gaps[i] ?? 0).toBeGreaterThan((gaps[i - 1] ?? 0) * 1.5)
  // The other plugins kept serving: nothing of the healthy one failed.
  expect(operator.logs.filter((l) => l.includes("db-") && l.includes("failed"))).toEqual([])
  expect(operator.proc.exitCode).toBeNull()
}, 120_000)

/** User plus system CPU time of a process, in clock ticks (fields 14 and 15 of /proc/<pid>/stat). */
const cpuTicks = (pid: number | undefined) => {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  return Number(fields[11]) + Number(fields[12])
}

// A SIGKILL from outside, as a node-wide OOM kill would be; a kill by the plugin's own memory limit
// (--plugin-memory-limit) is staged in plugin-oom.test.ts.
test("a plugin SIGKILLed in the middle of a call, as the OOM killer would, is restarted and its Capability reconciled", async () => {
  // The Capability that crashes the flaky plugin goes, so that only the kill below stops it.
  const del = await cluster.api("DELETE", capabilityPath(FaultNamespace, "crashes"))
  expect(del.status).toBe(200)
  const flaky = join(plugins.dir, "flaky.js")
  let pid: number | undefined
  await until("the flaky plugin is running", async () => (pid = (await processesMatching(flaky))[0]) !== undefined, 20_000, 100)
  if (pid === undefined) throw new Error("the flaky plugin is not running")
  const before = cpuTicks(pid)
  const restartsBefore = restartTimes.get("flaky.js")?.length ?? 0
  await testCapability("killed", "flaky", "slow")
  // Its build spins for 2 s: a quarter second of CPU spent says it is in the middle of the call.
  await until("the plugin is busy building", () => cpuTicks(pid) - before > 25, 10_000, 20)
  process.kill(pid, "SIGKILL")
  const killed = performance.now()
  await until("the operator restarted the killed plugin", () => (restartTimes.get("flaky.js")?.length ?? 0) > restartsBefore, 10_000)
  const ready = await until("the Capability became Ready", async () => (await readyReason(cluster, "killed")) === "True/Ready", 30_000, 100)
  console.log(`[faults] plugin SIGKILLed mid-call: its Capability Ready ${Math.round(ready - killed)} ms after the kill`)
  await untilReconciled(cluster, ["db-0", "db-1", "db-2", "db-3", "db-4"], 5_000)
  expect(operator.proc.exitCode).toBeNull()
}, 60_000)

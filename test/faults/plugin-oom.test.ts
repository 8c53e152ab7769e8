/**
 * A plugin killed for its memory, under the compiled operator against a real
 * API server: `halkyon run --plugin-memory-limit` and a hostile plugin (hog)
 * that allocates until something kills it. Whatever enforces the limit here
 * is exercised and checked: a cgroup (root, or a delegated group: the
 * kernel's OOM killer, counted in the group's oom_kill) or, where no cgroup
 * is writable, halkyon's watchdog (its own record). The test works out which
 * one this environment allows, as the operator must, and expects that one.
 * Either way: the Capability reports PluginOOMKilled, the restarts are backed
 * off, and a postgres plugin's Capabilities stay Ready meanwhile.
 */
import { afterAll, beforeAll, expect, test } from "bun:test"
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync } from "node:fs"
import { dirname, join } from "node:path"
import { capabilityPath, type Cluster, type Operator, startCluster, startOperator, untilReady } from "../support/cluster.ts"
import { createCapability, createNamespace, FaultNamespace, metric, readyReason, until, untilReconciled } from "../support/faults.ts"
import { builtPlugin, pluginsFolder, testPlugin } from "../support/paths.ts"

const LimitMi = 160
let cluster: Cluster
let operator: Operator
const plugins = pluginsFolder(builtPlugin("postgres.js"), testPlugin("hog.js"))

/** This process's cgroup folders (v2 with the memory controller, v1 memory), where the operator, its child, makes its groups. */
const cgroupFolders = (pid: number | "self") => {
  const lines = readFileSync(`/proc/${pid}/cgroup`, "utf8").split("\n")
  const v2 = lines.find((l) => l.startsWith("0::"))?.slice(3)
  const v1 = lines.map((l) => /^\d+:([^:]*):(.*)$/.exec(l)).find((m) => m?.[1]?.split(",").includes("memory"))?.[2]
  const mount = existsSync("/sys/fs/cgroup/cgroup.controllers") ? "/sys/fs/cgroup" : "/sys/fs/cgroup/unified"
  const v2dir = v2 === undefined ? undefined : join(mount, v2)
  const v2memory = v2dir !== undefined && (existsSync(join(v2dir, "cgroup.controllers"))
    ? readFileSync(join(v2dir, "cgroup.controllers"), "utf8").split(/\s+/).includes("memory")
    : false)
  return { v2: v2memory ? v2dir : undefined, v1: v1 === undefined ? undefined : join("/sys/fs/cgroup/memory", v1) }
}

/** Whether a group can be made in `dir`: what decides between a cgroup and the watchdog. */
const writable = (dir: string | undefined) => {
  if (dir === undefined) return false
  const probe = join(dir, `halkyon-test-probe-${process.pid}`)
  try {
    mkdirSync(probe)
    rmdirSync(probe)
    return true
  } catch {
    return false
  }
}

beforeAll(async () => {
  cluster = await startCluster()
  await createNamespace(cluster)
  operator = startOperator(cluster, plugins.dir, ["--plugin-memory-limit", `${LimitMi}Mi`])
  await untilReady(operator)
}, 120_000)

afterAll(async () => {
  await operator?.stop()
  await cluster?.plane.stop()
  plugins.cleanup()
})

test(
  "a plugin over its memory limit is killed by it, reported as PluginOOMKilled, restarted with backoff, and no other plugin is affected",
  async () => {
    const own = cgroupFolders("self")
    const expected = writable(own.v2) ? "cgroup-v2" : writable(own.v1) ? "cgroup-v1" : "watchdog"
    const announced = operator.logs.map((l) => /enforced by (\S+)/.exec(l)?.[1]).find((m) => m !== undefined)
    expect(announced).toBe(expected)

    const created = await cluster.api("POST", capabilityPath(FaultNamespace), {
      apiVersion: "halkyon.io/v1beta1",
      kind: "Capability",
      metadata: { name: "hog" },
      spec: { category: "test", type: "hog", version: "1" }
    })
    expect(created.status).toBe(201)
    const started = performance.now()
    const kills = () => operator.logs.filter((l) => l.includes("hog.js was killed for going over its memory limit"))
    await until(
      "the hog Capability reported PluginOOMKilled",
      async () => (await readyReason(cluster, "hog")) === "Unknown/PluginOOMKilled",
      30_000
    )
    const reported = performance.now() - started

    // Meanwhile, and while it keeps being killed, the postgres plugin's Capabilities are reconciled.
    const healthy = ["db-0", "db-1", "db-2"]
    const batch = performance.now()
    for (const name of healthy) await createCapability(cluster, name, "16")
    await untilReconciled(cluster, healthy, 20_000)
    const healthyMs = performance.now() - batch

    await until("three memory kills", () => kills().length >= 3, 40_000)
    const metrics = operator.endpoint("metrics") ?? ""
    const counted = await metric(metrics, "halkyon_plugin_memory_kills_total", `plugin="hog.js",by="${expected}"`)
    expect(counted).toBeGreaterThanOrEqual(3)

    // The restarts are backed off: each delay double the one before.
    const delays = operator.logs
      .map((l) => /plugin hog\.js (?:stopped|keeps failing).*?(?:restarting|next try) in (\d+) ms/.exec(l)?.[1])
      .filter((d) => d !== undefined)
      .map(Number)
    expect(delays.length).toBeGreaterThanOrEqual(3)
    for (let i = 1; i < 3; i++) expect(delays[i] ?? 0).toBe((delays[i - 1] ?? 0) * 2)

    // Evidence that the limit killed it, from whatever enforced it.
    let evidence: string
    if (expected === "watchdog") {
      const samples = kills().map((l) => Number(/resident set (\d+)Ki sampled over the limit/.exec(l)?.[1]))
      expect(samples.every((ki) => ki > LimitMi * 1024)).toBe(true)
      evidence = `watchdog samples ${samples.map((ki) => (ki / 1024).toFixed(1)).join(", ")} Mi over ${LimitMi} Mi`
    } else {
      // The kernel's own count, in the plugin's group beside the operator's (the operator may have moved into a leaf).
      const opGroups = cgroupFolders(operator.proc.pid)
      const dir = expected === "cgroup-v2" ? opGroups.v2 : opGroups.v1
      if (dir === undefined) throw new Error("the operator has no memory cgroup")
      const parents = [dir, dirname(dir)]
      const group = parents.flatMap((p) => readdirSync(p).filter((n) => n.startsWith("halkyon-plugin-hog.js-")).map((n) => join(p, n)))[0]
      if (group === undefined) throw new Error(`no group of the hog plugin under ${parents.join(" or ")}`)
      const reportedKills = kills().length
      const file = join(group, expected === "cgroup-v2" ? "memory.events" : "memory.oom_control")
      const oomKills = Number(/^oom_kill (\d+)$/m.exec(readFileSync(file, "utf8"))?.[1])
      const limit = readFileSync(join(group, expected === "cgroup-v2" ? "memory.max" : "memory.limit_in_bytes"), "utf8").trim()
      expect(Number(limit)).toBe(LimitMi * 1024 * 1024)
      // The kernel counted at least every kill the operator reported, and the operator reported it as the kernel's.
      expect(oomKills).toBeGreaterThanOrEqual(reportedKills)
      expect(kills().every((l) => l.includes("by the kernel's OOM killer"))).toBe(true)
      evidence = `kernel oom_kill ${oomKills} in ${file}`
    }

    // Only its Capabilities: the postgres plugin never stopped, its Capabilities are still Ready.
    expect(operator.logs.filter((l) => l.includes("plugin postgres.js stopped"))).toEqual([])
    await untilReconciled(cluster, healthy, 5_000)
    expect(await readyReason(cluster, "hog")).toMatch(/^Unknown\/(PluginOOMKilled|PluginUnavailable)$/)
    expect(operator.proc.exitCode).toBeNull()
    console.log(
      `[faults] plugin OOM (${expected}, limit ${LimitMi}Mi): PluginOOMKilled reported ${Math.round(reported)} ms after the create; ` +
        `${kills().length} kills, metric ${counted}, restart delays ${delays.slice(0, 4).join(", ")} ms; ${evidence}; ` +
        `3 postgres Capabilities reconciled in ${Math.round(healthyMs)} ms meanwhile`
    )
  },
  120_000
)

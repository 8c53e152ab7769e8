/**
 * Hostile plugins beside a well-behaved one, under the compiled operator
 * against a real kube-apiserver: floods of 400 MB without a newline on a
 * plugin's stdout and stderr, a plugin that hangs in BuildDependents while
 * answering health checks, and one with an invalid category. The operator
 * stays under 150 MB (VmHWM), the well-behaved plugin's Capabilities reach
 * Ready meanwhile, the hung one is degraded and restarted, and CapabilityInfo
 * sync serves the others. Two operators serving different namespaces never
 * delete each other's CapabilityInfos.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import {
  capabilityPath,
  type Cluster,
  type Operator,
  readyOf,
  startCluster,
  startOperator,
  untilReady,
  createNamespace
} from "../support/cluster.ts"
import { eventually, testPlugin } from "../support/paths.ts"

let cluster: Cluster
let operator: Operator
let pluginsDir: string
const ns = "isolation"

const capability = (name: string, type: string) =>
  cluster.api("POST", capabilityPath(ns), {
    apiVersion: "halkyon.io/v1beta1",
    kind: "Capability",
    metadata: { name },
    spec: { category: "test", type, version: "1", parameters: type === "flaky" ? [{ name: "MODE", value: "ok" }] : [] }
  })

const readyReason = async (name: string) => {
  const ready = readyOf(await cluster.api("GET", capabilityPath(ns, name)))
  return ready === undefined ? undefined : `${ready.status}/${ready.reason}`
}

/** The operator's peak resident memory, from the kernel. */
const peakRssMb = (pid: number) => {
  const line = readFileSync(`/proc/${pid}/status`, "utf8").split("\n").find((l) => l.startsWith("VmHWM:")) ?? ""
  return Number(/(\d+)/.exec(line)?.[1] ?? Number.NaN) / 1024
}

const metrics = async () => (await fetch(`${operator.endpoint("metrics")}/metrics`)).text()

beforeAll(async () => {
  cluster = await startCluster()
  await createNamespace(cluster, ns)
  pluginsDir = mkdtempSync(join(tmpdir(), "halkyon-isolation-plugins-"))
  copyFileSync(testPlugin("flaky.js"), join(pluginsDir, "flaky.js"))
  copyFileSync(testPlugin("go-stall"), join(pluginsDir, "stall"))
  for (const name of ["flood-stdout.js", "flood-stderr.js", "badcategory.js"]) copyFileSync(testPlugin("noisy.js"), join(pluginsDir, name))
  operator = await untilReady(startOperator(cluster, pluginsDir, ["--concurrency", "2", "--call-timeout", "1s", "--namespace", ns]))
}, 30 * 60_000)

afterAll(async () => {
  await operator?.stop()
  await cluster?.plane.stop()
  if (pluginsDir !== undefined) rmSync(pluginsDir, { recursive: true, force: true })
})

describe("floods without a newline", () => {
  test("400 MB on a plugin's stdout and 400 MB on another's stderr: read to the end, the operator under 150 MB", async () => {
    const done = (plugin: string) => operator.logs.some((l) => l.includes(`plugin=${plugin}`) && l.includes("flood done"))
    expect(await eventually(() => done("flood-stdout.js") && done("flood-stderr.js"), 180_000, 250)).toBe(true)
    const peak = peakRssMb(operator.proc.pid)
    console.log(`operator VmHWM after 2 × 400 MB of plugin output without a newline: ${peak.toFixed(0)} MB`)
    expect(peak).toBeLessThan(150)
  }, 200_000)
})

describe("a plugin that hangs in BuildDependents but answers health checks", () => {
  test(
    "the well-behaved plugin's Capabilities reach Ready meanwhile; the hung one's report PluginUnavailable; the breaker trips",
    async () => {
      for (let i = 0; i < 4; i++) expect((await capability(`stalled-${i}`, "stall")).status).toBe(201)
      for (let i = 0; i < 4; i++) expect((await capability(`good-${i}`, "flaky")).status).toBe(201)
      const allGood = await eventually(
        async () => {
          for (let i = 0; i < 4; i++) if ((await readyReason(`good-${i}`)) !== "True/Ready") return false
          return true
        },
        30_000,
        200
      )
      expect(allGood).toBe(true)
      const stalledReported = await eventually(async () => (await readyReason("stalled-0")) === "Unknown/PluginUnavailable", 30_000, 200)
      expect(stalledReported).toBe(true)
      const tripped = await eventually(
        async () => /halkyon_plugin_breaker_trips_total\{plugin="stall"\} [1-9]/.test(await metrics()),
        30_000,
        250
      )
      expect(tripped).toBe(true)
      expect(operator.logs.some((l) => l.includes("plugin stall stopped: degraded: 3 calls in a row timed out"))).toBe(true)
    },
    90_000
  )
})

describe("a plugin whose category is not a valid name", () => {
  test("is refused at load; the CapabilityInfos of the others are synced, labelled with the namespace served", async () => {
    expect(operator.logs.some((l) => l.includes("plugin badcategory.js is refused: its category") && l.includes("Bad_Category"))).toBe(true)
    const names = async () => {
      const list = await cluster.api("GET", "/apis/halkyon.io/v1beta1/capabilityinfos")
      return ((list.body as { items?: Array<{ metadata: { name: string; labels?: Record<string, string> } }> }).items ?? [])
    }
    expect(await eventually(async () => (await names()).some((i) => i.metadata.name === "test-flaky"), 10_000)).toBe(true)
    const items = await names()
    expect(items.map((i) => i.metadata.name)).not.toContain("bad_category-noisy-badcategory")
    expect(items.find((i) => i.metadata.name === "test-flaky")?.metadata.labels?.["halkyon.io/operator-namespace"]).toBe(ns)
  })

  test("a second operator serving another namespace, stopping with no plugins, deletes none of the first one's", async () => {
    const emptyDir = mkdtempSync(join(tmpdir(), "halkyon-isolation-empty-"))
    try {
      copyFileSync(testPlugin("noisy.js"), join(emptyDir, "other.js"))
      const second = await untilReady(startOperator(cluster, emptyDir, ["--namespace", "elsewhere"]))
      const info = async (name: string) => (await cluster.api("GET", `/apis/halkyon.io/v1beta1/capabilityinfos/${name}`)).status
      expect(await eventually(async () => (await info("test-noisy-ok")) === 200, 10_000)).toBe(true)
      await second.stop()
      // Restarted with nothing to serve: it removes its own, and only its own.
      rmSync(join(emptyDir, "other.js"))
      const again = await untilReady(startOperator(cluster, emptyDir, ["--namespace", "elsewhere"]))
      expect(await eventually(async () => (await info("test-noisy-ok")) === 404, 10_000)).toBe(true)
      expect(await info("test-flaky")).toBe(200)
      expect(await info("test-stall")).toBe(200)
      await again.stop()
    } finally {
      rmSync(emptyDir, { recursive: true, force: true })
    }
  }, 60_000)
})

/**
 * `halkyon run --reattach`: the operator, on the local control plane,
 * provisions a Capability through a plugin an author started by hand
 * (HALKYON_PLUGIN_DEBUG=1) instead of one it launches, and leaves that plugin
 * running when it exits.
 */
import { afterAll, beforeAll, expect, test } from "bun:test"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { type ByHand, startByHand } from "../support/byHand.ts"
import { capabilityPath, type Cluster, readyOf, startCluster, startOperator, untilReady, createNamespace } from "../support/cluster.ts"
import { eventually, root } from "../support/paths.ts"

let cluster: Cluster
let byHand: ByHand
const emptyPlugins = mkdtempSync(join(tmpdir(), "halkyon-reattach-"))
const ns = "dev"

beforeAll(async () => {
  cluster = await startCluster()
  await createNamespace(cluster, ns)
  byHand = await startByHand("postgres")
}, 5 * 60_000)

afterAll(async () => {
  byHand?.plugin.kill("SIGINT")
  await byHand?.plugin.exited
  await cluster?.plane.stop()
  rmSync(emptyPlugins, { recursive: true, force: true })
})

test("the operator provisions through the reattached plugin and leaves it running on exit", async () => {
  const operator = await untilReady(startOperator(cluster, emptyPlugins, ["--reattach", byHand.value]))
  try {
    // samples/postgres.yaml, in namespace dev.
    const created = await cluster.api("POST", capabilityPath(ns), {
      apiVersion: "halkyon.io/v1beta1",
      kind: "Capability",
      metadata: { name: "postgres-db" },
      spec: {
        category: "database",
        type: "postgres",
        version: "16",
        parameters: [{ name: "DB_USER", value: "admin" }]
      }
    })
    expect(created.status).toBe(201)
    // No kubelet runs here: the StatefulSet is applied and never ready, which the plugin's own condition says.
    let last: unknown
    const provisioned = await eventually(
      async () => {
        const c = await cluster.api("GET", capabilityPath(ns, "postgres-db"))
        last = c.body.status
        const ready = readyOf(c)
        return ready?.reason === "DependentsNotReady" && ready.message.startsWith("StatefulSet postgres-db: ")
      },
      30_000,
      100
    )
    if (!provisioned) {
      throw new Error(`the Capability was not provisioned; last status: ${JSON.stringify(last)}\n${operator.logs.join("\n")}`)
    }
    expect((await cluster.api("GET", `/api/v1/namespaces/${ns}/secrets/postgres-db-config`)).status).toBe(200)
    expect(operator.logs.some((l) => l.includes("reattached to plugin postgres"))).toBe(true)
  } finally {
    expect(await operator.stop()).toBe(0)
  }
  // The operator is gone; the plugin it did not start still serves.
  expect(byHand.plugin.exitCode).toBeNull()
  const render = Bun.spawnSync(
    [join(root, "dist/halkyon"), "plugins", "render", "--reattach", byHand.value, "-f", "samples/postgres.yaml"],
    { cwd: root, stdout: "pipe", stderr: "pipe" }
  )
  expect(render.exitCode).toBe(0)
}, 120_000)

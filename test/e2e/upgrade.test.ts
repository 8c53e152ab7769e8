/**
 * Make-before-break upgrades: a plugin replaced in the plugins folder of a
 * running operator (here by `halkyon plugins install` of a new tag) is
 * started beside the old process, which stops only once the new one has
 * started. A broken release leaves the old version serving, and going back
 * to the old tag replaces the broken file the same way. The Capability's
 * Ready condition is watched on the control plane with kubectl throughout.
 */
import { afterAll, beforeAll, expect, test } from "bun:test"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { goArch, goOs } from "../../src/Version.ts"
import {
  type Cluster,
  capabilityPath,
  dig,
  kubectlWatch,
  markStatefulSetReady,
  readyOf,
  startCluster,
  startOperator,
  untilReady,
  createNamespace
} from "../support/cluster.ts"
import { builtPlugin, eventually, root } from "../support/paths.ts"
import { checksums, makeTestCa, type ReleaseServers, removeCa, startReleaseServers, tarGz, type TestCa } from "../support/releases.ts"

const ns = "upgrades"
const archName = `halkyon_plugin_${goOs}_${goArch}.tar.gz`
const encode = (text: string) => new TextEncoder().encode(text)
let cluster: Cluster
let ca: TestCa
let servers: ReleaseServers
const work = mkdtempSync(join(tmpdir(), "halkyon-upgrade-"))

beforeAll(async () => {
  ca = makeTestCa()
  servers = await startReleaseServers(ca)
  cluster = await startCluster()
  await createNamespace(cluster, ns)
}, 180_000)
afterAll(async () => {
  await cluster?.plane.stop()
  await servers?.close()
  if (ca !== undefined) removeCa(ca)
  rmSync(work, { recursive: true, force: true })
})

const publish = (release: string, body: Uint8Array) => {
  const archive = tarGz([{ path: "postgres.js", body }])
  servers.publish(release, { [archName]: archive, "checksums.txt": encode(checksums({ [archName]: archive })) })
}

/** Installs into the running operator's folder; spawned, not spawnSync: the release server runs in this process. */
const install = async (spec: string, dir: string) => {
  const proc = Bun.spawn(
    [join(root, "dist/halkyon"), "plugins", "install", spec, "--plugins-dir", dir, "--release-base-url", servers.base],
    {
      env: { ...process.env, NODE_EXTRA_CA_CERTS: ca.caFile, GITHUB_TOKEN: "", HALKYON_PLUGINS: "" },
      stdout: "pipe",
      stderr: "pipe"
    }
  )
  const [stderr, code] = await Promise.all([new Response(proc.stderr).text(), proc.exited])
  expect({ spec, code, stderr: code === 0 ? "" : stderr }).toEqual({ spec, code: 0, stderr: "" })
}

const pluginPids = (dir: string) => {
  const found = Bun.spawnSync(["pgrep", "-f", join(dir, "postgres.js")], { stdout: "pipe" }).stdout.toString().trim()
  return found === "" ? [] : found.split("\n").map(Number)
}

test(
  "an upgrade to a broken release leaves the old version serving and the Capability Ready; going back replaces it the same way",
  async () => {
    const bundle = readFileSync(builtPlugin("postgres.js"))
    publish("acme/pg@v1", bundle)
    // A release whose plugin exits before its handshake.
    publish("acme/pg@v2", encode("process.exit(3)\n"))
    const dir = join(work, "plugins")
    await install("acme/pg@v1", dir)
    const operator = startOperator(cluster, dir, ["--namespace", ns])
    try {
      await untilReady(operator)
      const capability = {
        apiVersion: "halkyon.io/v1beta1",
        kind: "Capability",
        metadata: { name: "db", namespace: ns },
        spec: { category: "database", type: "postgres", version: "16" }
      }
      expect((await cluster.api("POST", capabilityPath(ns), capability)).status).toBe(201)
      // No kubelet: the StatefulSet is marked ready by hand, as a cluster's controllers would.
      expect(
        await eventually(async () => (await cluster.api("GET", `/apis/apps/v1/namespaces/${ns}/statefulsets/db`)).status === 200, 30_000)
      ).toBe(true)
      await markStatefulSetReady(cluster, ns, "db")
      expect(await eventually(async () => readyOf(await cluster.api("GET", capabilityPath(ns, "db")))?.status === "True", 30_000)).toBe(
        true
      )

      const watch = await kubectlWatch(cluster, [
        "get",
        "capability/db",
        "-n",
        ns,
        "--watch",
        "--output-watch-events",
        "-o",
        "jsonpath={.type} {.object.status.conditions[?(@.type==\"Ready\")].status} {.object.status.conditions[?(@.type==\"Ready\")].reason}{\"\\n\"}"
      ])
      const before = pluginPids(dir)[0] ?? 0
      expect(before).toBeGreaterThan(0)

      await install("acme/pg@v2", dir)
      expect(await eventually(() => operator.logs.some((l) => l.includes("the previous version keeps serving")), 30_000)).toBe(true)
      // The old process still serves: same pid, and the Capability is reconciled by it (a spec change).
      expect(pluginPids(dir)).toEqual([before])
      expect(
        (await cluster.api(
          "PATCH",
          capabilityPath(ns, "db"),
          { spec: { parameters: [{ name: "DB_NAME", value: "orders" }] } },
          "application/merge-patch+json"
        )).status
      ).toBe(200)
      expect(
        await eventually(async () => {
          const c = await cluster.api("GET", capabilityPath(ns, "db"))
          return dig<number>(c.body, "status", "observedGeneration") === dig<number>(c.body, "metadata", "generation") &&
            readyOf(c)?.status === "True"
        }, 30_000)
      ).toBe(true)

      await install("acme/pg@v1", dir)
      expect(await eventually(() => operator.logs.some((l) => l.includes("the new version serves, the previous one is stopped")), 30_000))
        .toBe(true)
      expect(
        await eventually(() => {
          const now = pluginPids(dir)
          return now.length === 1 && now[0] !== before
        }, 10_000)
      ).toBe(true)

      const events = await watch.stop()
      expect(events.length).toBeGreaterThan(0)
      // Every version of the Capability the watch saw was Ready, from before the upgrade to after going back.
      for (const line of events) expect(line).toMatch(/^(ADDED|MODIFIED) True Ready$/)
    } finally {
      await operator.stop()
    }
  },
  180_000
)

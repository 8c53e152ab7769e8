/**
 * What the operator enforces on a plugin, end to end: the compiled binary
 * against a real kube-apiserver, a hostile plugin (test/fixtures/plugins/
 * hostile) with one Capability per trick, and a well-behaved postgres
 * Capability beside them. Each trick is refused with a reason naming it,
 * nothing outside the Capabilities' namespace changes (read back through the
 * API), an admin's Secret is not taken over, foreign data never reaches the
 * plugin, and postgres still becomes Ready.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { copyFileSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import {
  capabilityPath,
  type Cluster,
  dig,
  eventsAbout,
  markStatefulSetReady,
  type Operator,
  readyOf,
  startCluster,
  startOperator,
  untilReady,
  createNamespace
} from "../support/cluster.ts"
import { builtPlugin, eventually, root, testPlugin } from "../support/paths.ts"

let cluster: Cluster
let operator: Operator
let pluginsDir: string

const ns = "team-a"
/** Foreign data: it must never reach the plugin, hence never its log lines. */
const foreignToken = `kube-system-token-${crypto.randomUUID()}`
const adminPassword = `admin-password-${crypto.randomUUID()}`

const createCapability = (name: string, type: string, parameters: ReadonlyArray<{ name: string; value: string }> = []) =>
  cluster.api("POST", capabilityPath(ns), {
    apiVersion: "halkyon.io/v1beta1",
    kind: "Capability",
    metadata: { name },
    spec: { category: "test", type, parameters }
  })

const capability = (name: string) => cluster.api("GET", capabilityPath(ns, name))

const waitReady = async (name: string, status: string, reason: string, timeoutMs = 30_000) => {
  let last: unknown
  const ok = await eventually(
    async () => {
      const c = await capability(name)
      last = c.body.status
      const ready = readyOf(c)
      return ready?.status === status && ready.reason === reason
    },
    timeoutMs,
    100
  )
  if (!ok) throw new Error(`${name} never reached Ready=${status} (${reason}); last status: ${JSON.stringify(last)}`)
  return readyOf(await capability(name))
}

const exists = async (path: string) => (await cluster.api("GET", path)).status === 200

/** Names and resourceVersions of what `paths` list: equal snapshots mean nothing there was created, changed or deleted. */
const snapshot = async (paths: ReadonlyArray<string>) => {
  const out: Record<string, string> = {}
  for (const path of paths) {
    const list = await cluster.api("GET", path)
    expect(list.status).toBe(200)
    for (const item of dig<Array<{ metadata: { name: string; resourceVersion: string } }>>(list.body, "items") ?? []) {
      out[`${path} ${item.metadata.name}`] = item.metadata.resourceVersion
    }
  }
  return out
}
const outside = [
  "/api/v1/namespaces/kube-system/configmaps",
  "/api/v1/namespaces/kube-system/secrets",
  "/api/v1/namespaces/default/configmaps",
  "/api/v1/namespaces/default/secrets",
  "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
  "/apis/rbac.authorization.k8s.io/v1/clusterroles"
]
let before: Record<string, string>
let adminSecret: { labels: unknown; ownerReferences: unknown; data: unknown; resourceVersion: unknown }

beforeAll(async () => {
  cluster = await startCluster()
  await createNamespace(cluster, ns)
  // A Secret of kube-system that the plugin names, and an admin's Secret in the Capabilities' namespace.
  const token = await cluster.api("POST", "/api/v1/namespaces/kube-system/secrets", {
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name: "peek-target" },
    stringData: { token: foreignToken }
  })
  expect(token.status).toBe(201)
  const admin = await cluster.api("POST", `/api/v1/namespaces/${ns}/secrets`, {
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name: "grab-config", labels: { team: "platform" } },
    stringData: { password: adminPassword }
  })
  expect(admin.status).toBe(201)
  adminSecret = {
    labels: dig(admin.body, "metadata", "labels"),
    ownerReferences: dig(admin.body, "metadata", "ownerReferences"),
    data: dig(admin.body, "data"),
    resourceVersion: dig(admin.body, "metadata", "resourceVersion")
  }
  pluginsDir = mkdtempSync(join(tmpdir(), "halkyon-trust-plugins-"))
  copyFileSync(builtPlugin("postgres.js"), join(pluginsDir, "postgres.js"))
  copyFileSync(testPlugin("hostile.js"), join(pluginsDir, "hostile.js"))
  operator = await untilReady(startOperator(cluster, pluginsDir, process.env.HALKYON_TEST_LOGS === "1" ? ["--log-level", "debug"] : []))
  before = await snapshot(outside)
}, 30 * 60_000)

afterAll(async () => {
  await operator?.stop()
  await cluster?.plane.stop()
  if (pluginsDir !== undefined) rmSync(pluginsDir, { recursive: true, force: true })
})

describe("a hostile plugin", () => {
  test(
    "every object it returns is checked before any write: each trick is refused as a PluginViolation naming rule and object",
    async () => {
      const tricks: ReadonlyArray<[string, string, ReadonlyArray<{ name: string; value: string }>, string, string]> = [
        ["admin", "clusteradmin", [], "namespaced", "ClusterRoleBinding hostile-admin (id binding) is of a cluster-scoped kind"],
        ["ks", "kubesystem", [], "namespace", "ConfigMap kube-system/ks (id config) is not in the Capability's namespace team-a"],
        ["ghost", "undeclared", [], "declared", "ConfigMap team-a/ghost (id ghost) has an id the plugin did not declare"],
        ["peek", "peek", [{ name: "TARGET", value: "peek-target" }], "namespace", "Secret kube-system/peek-target (id secret)"],
        ["many", "many", [], "count", "the plugin returned 65 dependents, over the limit of 64"],
        ["huge", "huge", [], "size", "ConfigMap team-a/huge (id config) is 2097"]
      ]
      for (const [name, type, parameters] of tricks) expect((await createCapability(name, type, parameters)).status).toBe(201)
      for (const [name, , , rule, fragment] of tricks) {
        const ready = await waitReady(name, "False", "PluginViolation")
        expect(ready?.message).toContain(`plugin hostile.js broke rule "${rule}"`)
        expect(ready?.message).toContain(fragment)
        expect(ready?.message).toContain("nothing was written")
      }
      // Nothing of those reconciles was written, in the namespace either.
      for (const path of [
        "configmaps/ks",
        "configmaps/ghost",
        "configmaps/huge",
        "configmaps/many-0",
        "configmaps/many-63",
        "secrets/peek-target"
      ]) {
        expect(await exists(`/api/v1/namespaces/${ns}/${path}`)).toBe(false)
      }
      expect(await exists("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/hostile-admin")).toBe(false)
      expect(await exists("/api/v1/namespaces/kube-system/configmaps/ks")).toBe(false)
      expect(await eventsAbout(cluster, ns, "admin")).toContain("Warning/PluginViolation")
    },
    120_000
  )

  test("an update that moves its object to another namespace, or renames it, is refused; the object stays as it was", async () => {
    for (const [name, type] of [["redirect", "redirect"], ["rename", "rename"]] as const) {
      expect((await createCapability(name, type)).status).toBe(201)
      await waitReady(name, "True", "Ready")
    }
    const original = await cluster.api("GET", `/api/v1/namespaces/${ns}/configmaps/redirect`)
    // A new generation makes the operator ask the plugin to update its objects.
    for (const name of ["redirect", "rename"]) {
      const patched = await cluster.api(
        "PATCH",
        capabilityPath(ns, name),
        { spec: { parameters: [{ name: "TARGET", value: "again" }] } },
        "application/merge-patch+json"
      )
      expect(patched.status).toBe(200)
    }
    const redirected = await waitReady("redirect", "False", "PluginViolation")
    expect(redirected?.message).toContain(
      "broke rule \"namespace\": ConfigMap kube-system/redirect (id config) is not in the Capability's namespace team-a"
    )
    const renamed = await waitReady("rename", "False", "PluginViolation")
    expect(renamed?.message).toContain(
      "broke rule \"identity\": the update of ConfigMap team-a/rename (id config) returned ConfigMap team-a/rename-renamed (id config)"
    )
    expect(await exists("/api/v1/namespaces/kube-system/configmaps/redirect")).toBe(false)
    expect(await exists(`/api/v1/namespaces/${ns}/configmaps/rename-renamed`)).toBe(false)
    const after = await cluster.api("GET", `/api/v1/namespaces/${ns}/configmaps/redirect`)
    expect(dig(after.body, "metadata", "resourceVersion")).toBe(dig(original.body, "metadata", "resourceVersion"))
  }, 120_000)

  test("an admin's <name>-config Secret is not taken over: Conflict naming it and its managers; labels, owners and data kept", async () => {
    expect((await createCapability("grab", "takeover")).status).toBe(201)
    const ready = await waitReady("grab", "False", "Conflict")
    expect(ready?.message).toContain(
      "Secret team-a/grab-config (id secret) already exists and is not controlled by this Capability (no owner reference; managed by "
    )
    const secret = await cluster.api("GET", `/api/v1/namespaces/${ns}/secrets/grab-config`)
    expect(dig(secret.body, "metadata", "labels")).toEqual(adminSecret.labels as Record<string, string>)
    expect(dig(secret.body, "metadata", "ownerReferences")).toEqual(adminSecret.ownerReferences as undefined)
    expect(dig(secret.body, "data")).toEqual(adminSecret.data as Record<string, string>)
    expect(dig(secret.body, "metadata", "resourceVersion")).toBe(adminSecret.resourceVersion as string)
    const managers = (dig<Array<{ manager: string }>>(secret.body, "metadata", "managedFields") ?? []).map((m) => m.manager)
    expect(managers).not.toContain("halkyon")
  }, 60_000)

  test("it is shown only its own objects: no foreign Secret's data ever reaches it", () => {
    const log = operator.logs.join("\n")
    // The plugin logs whatever it is shown: its own ConfigMaps were.
    expect(log).toContain("hostile saw config")
    for (const secret of [foreignToken, adminPassword]) {
      expect(log).not.toContain(secret)
      expect(log).not.toContain(Buffer.from(secret).toString("base64"))
    }
    expect(log).not.toContain("hostile saw secret")
  })

  test("a well-behaved postgres Capability beside it becomes Ready", async () => {
    const created = await cluster.api("POST", capabilityPath(ns), {
      apiVersion: "halkyon.io/v1beta1",
      kind: "Capability",
      metadata: { name: "orders" },
      spec: { category: "database", type: "postgres", version: "16", parameters: [{ name: "DB_USER", value: "admin" }] }
    })
    expect(created.status).toBe(201)
    await waitReady("orders", "False", "DependentsNotReady")
    // The fake kubelet runs its pod; the StatefulSet controller reports it ready.
    await markStatefulSetReady(cluster, ns, "orders")
    await waitReady("orders", "True", "Ready")
  }, 60_000)

  test("nothing outside the Capabilities' namespace changed", async () => {
    expect(await snapshot(outside)).toEqual(before)
    const token = await cluster.api("GET", "/api/v1/namespaces/kube-system/secrets/peek-target")
    expect(Buffer.from(dig<string>(token.body, "data", "token") ?? "", "base64").toString()).toBe(foreignToken)
  })

  test("violations are counted per plugin and rule in /metrics", async () => {
    const text = await (await fetch(`${operator.endpoint("metrics")}/metrics`)).text()
    const count = (rule: string) =>
      Number(new RegExp(`^halkyon_plugin_violations_total\\{plugin="hostile.js",rule="${rule}"\\} (\\d+)$`, "m").exec(text)?.[1] ?? 0)
    for (const rule of ["namespaced", "namespace", "declared", "count", "size", "identity"]) expect(count(rule)).toBeGreaterThan(0)
    expect(text).not.toContain("halkyon_plugin_violations_total{plugin=\"postgres.js\"")
  })

  test("plugins list --operator shows each plugin's violation count, in the table and as JSON", () => {
    const list = (...extra: ReadonlyArray<string>) => {
      const result = Bun.spawnSync([
        join(root, "dist/halkyon"),
        "plugins",
        "list",
        "--plugins-dir",
        pluginsDir,
        "--operator",
        operator.endpoint("metrics") ?? "",
        ...extra
      ])
      expect({ code: result.exitCode, stderr: result.exitCode === 0 ? "" : result.stderr.toString() }).toEqual({ code: 0, stderr: "" })
      return result.stdout.toString()
    }
    const rows = JSON.parse(list("-o", "json")) as Array<{ name: string; violations: number }>
    const counts = Object.fromEntries(rows.map((r) => [r.name, r.violations]))
    expect(counts["hostile.js"]).toBeGreaterThanOrEqual(8)
    expect(counts["postgres.js"]).toBe(0)
    const lines = list().trim().split("\n")
    expect(lines[0]).toMatch(/^NAME\s+FORM\s+CATEGORY\s+TYPES\s+PROTOCOL\s+START\(MS\)\s+STATE\s+VIOLATIONS$/)
    expect(lines.find((l) => l.startsWith("hostile.js"))).toMatch(new RegExp(`running\\s+${counts["hostile.js"]}$`))
    expect(lines.find((l) => l.startsWith("postgres.js"))).toMatch(/running\s+0$/)
  }, 60_000)
})

/**
 * The ClusterRole that `halkyon manifests` prints is enough, and no more:
 * the compiled operator runs with the token of the ServiceAccount it binds,
 * and provisions a Capability end to end.
 */
import { afterAll, beforeAll, expect, test } from "bun:test"
import { copyFileSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { type Manifest, manifests } from "../../src/api/Manifests.ts"
import { capabilityPath, type Cluster, dig, kubeconfigWithToken, type Operator, readyOf, startCluster, startOperator, untilReady } from "../support/cluster.ts"
import { builtPlugin, eventually, testPlugin } from "../support/paths.ts"

let cluster: Cluster
let operator: Operator | undefined
let pluginsDir: string
let kubeconfig: { path: string; cleanup: () => void }
let token: string

const apply = (object: Manifest, path: string) =>
  cluster.api("PATCH", `${path}/${object.metadata?.name}?fieldManager=test&force=true`, object, "application/apply-patch+yaml")

beforeAll(async () => {
  cluster = await startCluster()
  const paths: Record<string, (ns: string | undefined) => string> = {
    Namespace: () => "/api/v1/namespaces",
    ServiceAccount: (ns) => `/api/v1/namespaces/${ns}/serviceaccounts`,
    ClusterRole: () => "/apis/rbac.authorization.k8s.io/v1/clusterroles",
    ClusterRoleBinding: () => "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings"
  }
  // The CRDs are in already; the Deployment needs a kubelet, so it is left out.
  for (const object of manifests({ namespace: "halkyon-system" })) {
    const path = paths[object.kind ?? ""]
    if (path === undefined) continue
    const applied = await apply(object, path(object.metadata?.namespace))
    expect(applied.status).toBeLessThan(300)
  }
  const requested = await cluster.api("POST", "/api/v1/namespaces/halkyon-system/serviceaccounts/halkyon/token", {
    apiVersion: "authentication.k8s.io/v1",
    kind: "TokenRequest",
    spec: { expirationSeconds: 3600 }
  })
  expect(requested.status).toBe(201)
  token = dig<string>(requested.body, "status", "token") ?? ""
  kubeconfig = kubeconfigWithToken(cluster, token)
  pluginsDir = mkdtempSync(join(tmpdir(), "halkyon-rbac-plugins-"))
  copyFileSync(builtPlugin("postgres.js"), join(pluginsDir, "postgres.js"))
  copyFileSync(testPlugin("flaky.js"), join(pluginsDir, "flaky.js"))
  expect((await cluster.api("POST", "/api/v1/namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name: "apps" } })).status).toBe(201)
}, 30 * 60_000)

afterAll(async () => {
  await operator?.stop()
  await cluster?.plane.stop()
  kubeconfig?.cleanup()
  if (pluginsDir !== undefined) rmSync(pluginsDir, { recursive: true, force: true })
})

test("the ServiceAccount's token can do what the operator needs and no more", async () => {
  const as = (path: string) =>
    fetch(`${cluster.plane.server}${path}`, { headers: { authorization: `Bearer ${token}` }, tls: { ca: cluster.plane.caCertPem }, keepalive: false })
  expect((await as("/apis/halkyon.io/v1beta1/capabilities")).status).toBe(200)
  expect((await as("/api/v1/namespaces/apps/secrets")).status).toBe(200)
  // Least privilege: no pods, no nodes, no RBAC changes.
  expect((await as("/api/v1/pods")).status).toBe(403)
  expect((await as("/api/v1/nodes")).status).toBe(403)
  expect((await as("/apis/rbac.authorization.k8s.io/v1/clusterroles")).status).toBe(403)
})

test("the operator, as that ServiceAccount, provisions a Capability end to end", async () => {
  operator = startOperator(cluster, pluginsDir, [], kubeconfig.path)
  await untilReady(operator)
  const created = await cluster.api("POST", capabilityPath("apps"), {
    apiVersion: "halkyon.io/v1beta1",
    kind: "Capability",
    metadata: { name: "db" },
    spec: { category: "database", type: "postgres", version: "17" }
  })
  expect(created.status).toBe(201)
  expect(await eventually(async () => readyOf(await cluster.api("GET", capabilityPath("apps", "db")))?.reason === "DependentsNotReady", 20_000)).toBe(true)
  const sts = await cluster.api("GET", "/apis/apps/v1/namespaces/apps/statefulsets/db")
  const generation = dig<number>(sts.body, "metadata", "generation")
  await cluster.api("PATCH", "/apis/apps/v1/namespaces/apps/statefulsets/db/status", { status: { replicas: 1, readyReplicas: 1, observedGeneration: generation } }, "application/merge-patch+json")
  expect(await eventually(async () => readyOf(await cluster.api("GET", capabilityPath("apps", "db")))?.status === "True", 20_000)).toBe(true)
  // CapabilityInfos and Events were written with the same identity.
  const infos = await cluster.api("GET", "/apis/halkyon.io/v1beta1/capabilityinfos")
  expect((dig<Array<{ metadata: { name: string } }>>(infos.body, "items") ?? []).map((i) => i.metadata.name).sort()).toEqual(["database-postgres", "test-flaky"])
  // The Ready Event is recorded just after the status is written: wait for it rather than race it.
  const events = async () => (dig<Array<unknown>>((await cluster.api("GET", "/api/v1/namespaces/apps/events")).body, "items") ?? []).length
  expect(await eventually(async () => (await events()) > 0, 10_000)).toBe(true)
  // "HTTP 403", as the API errors read: a bare "403" also matches log timestamps (12:00:00.403Z).
  expect(operator.logs.filter((l) => l.includes("HTTP 403") || l.includes("Forbidden"))).toEqual([])
}, 60_000)

test("a plugin removed from the folder takes its CapabilityInfo with it", async () => {
  rmSync(join(pluginsDir, "flaky.js"))
  expect(await eventually(async () => (await cluster.api("GET", "/apis/halkyon.io/v1beta1/capabilityinfos/test-flaky")).status === 404, 15_000)).toBe(true)
  expect((await cluster.api("GET", "/apis/halkyon.io/v1beta1/capabilityinfos/database-postgres")).status).toBe(200)
}, 30_000)

// End-to-end check of the local control plane: real etcd + kube-apiserver + kube-controller-manager,
// spoken to over HTTPS with the admin client certificate, exactly as the operator's tests will use it.

import { afterAll, beforeAll, expect, test } from "bun:test"
import { existsSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { startControlPlane, type ControlPlane } from "../support/control-plane/start.ts"
import { eventually, root } from "../support/paths.ts"

// The first run builds kube-apiserver, etcd and kube-controller-manager from source: many minutes on a small machine.
const FIRST_BUILD_TIMEOUT_MS = 30 * 60 * 1000

let plane: ControlPlane | undefined

function controlPlane(): ControlPlane {
  if (plane === undefined) throw new Error("control plane did not start")
  return plane
}

/** Calls the API server as admin (client certificate in group system:masters). */
async function kube(path: string, init: { method?: string; body?: unknown } = {}): Promise<Response> {
  const { server, caCertPem, adminCertPem, adminKeyPem } = controlPlane()
  return fetch(`${server}${path}`, {
    method: init.method ?? "GET",
    headers: { "content-type": "application/json", accept: "application/json" },
    body: init.body === undefined ? null : JSON.stringify(init.body),
    tls: { ca: caCertPem, cert: adminCertPem, key: adminKeyPem }
  })
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

interface NamedList {
  items: { metadata: { name: string } }[]
}

interface ConfigMap {
  metadata: { name: string; namespace?: string }
  data?: Record<string, string>
}

const CONFIG_MAP_PATH = "/api/v1/namespaces/default/configmaps"
const CONFIG_MAP_NAME = "halkyon-control-plane-test"

beforeAll(async () => {
  plane = await startControlPlane()
}, FIRST_BUILD_TIMEOUT_MS)

afterAll(async () => {
  if (plane === undefined) return
  const { dir } = plane
  const pids = plane.pids()
  await plane.stop()
  await plane.stop() // idempotent
  expect(existsSync(dir)).toBe(false)
  for (const pid of [pids.apiserver, pids.etcd, pids.controllerManager]) {
    expect(pid).toBeNumber()
    if (pid !== undefined) expect(isAlive(pid)).toBe(false)
  }
  expect(plane.pids()).toEqual({ apiserver: undefined, etcd: undefined, controllerManager: undefined })
}, 60_000)

test("lists namespaces, eventually including default", async () => {
  // The API server creates `default` from a bootstrap controller shortly after becoming ready.
  let names: string[] = []
  for (let attempt = 0; attempt < 100 && !names.includes("default"); attempt++) {
    if (attempt > 0) await Bun.sleep(200)
    const res = await kube("/api/v1/namespaces")
    expect(res.status).toBe(200)
    names = ((await res.json()) as NamedList).items.map((ns) => ns.metadata.name)
  }
  expect(names).toContain("default")
})

test("creates a ConfigMap and reads it back", async () => {
  const created = await kube(CONFIG_MAP_PATH, {
    method: "POST",
    body: { apiVersion: "v1", kind: "ConfigMap", metadata: { name: CONFIG_MAP_NAME }, data: { greeting: "hello" } }
  })
  expect(created.status).toBe(201)

  const read = await kube(`${CONFIG_MAP_PATH}/${CONFIG_MAP_NAME}`)
  expect(read.status).toBe(200)
  const configMap = (await read.json()) as ConfigMap
  expect(configMap.metadata.namespace).toBe("default")
  expect(configMap.data).toEqual({ greeting: "hello" })
})

test("refuses requests without a client certificate", async () => {
  const { server, caCertPem } = controlPlane()
  // Trusting the CA but presenting no certificate: anonymous (403) or unauthenticated (401).
  const res = await fetch(`${server}/api/v1/namespaces`, { tls: { ca: caCertPem } })
  expect([401, 403]).toContain(res.status)
})

test("data survives an API server restart", async () => {
  const before = controlPlane().pids()
  await controlPlane().restartApiServer()
  const after = controlPlane().pids()
  expect(after.apiserver).toBeNumber()
  expect(after.apiserver).not.toBe(before.apiserver)
  expect(after.etcd).toBe(before.etcd)
  if (before.apiserver !== undefined) expect(isAlive(before.apiserver)).toBe(false)

  const read = await kube(`${CONFIG_MAP_PATH}/${CONFIG_MAP_NAME}`)
  expect(read.status).toBe(200)
  expect(((await read.json()) as ConfigMap).data).toEqual({ greeting: "hello" })
}, 180_000)

const json = async <T>(res: Response): Promise<T> => (await res.json()) as T

test("the garbage collector deletes an object whose owner is gone", async () => {
  const owner = await kube(CONFIG_MAP_PATH, {
    method: "POST",
    body: { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "gc-owner" } }
  })
  expect(owner.status).toBe(201)
  const { metadata } = await json<{ metadata: { uid: string } }>(owner)
  const owned = await kube(CONFIG_MAP_PATH, {
    method: "POST",
    body: {
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: "gc-owned", ownerReferences: [{ apiVersion: "v1", kind: "ConfigMap", name: "gc-owner", uid: metadata.uid }] }
    }
  })
  expect(owned.status).toBe(201)
  // Deleted in the background, as kubectl delete does: the owner goes at once, the garbage collector takes the rest.
  expect((await kube(`${CONFIG_MAP_PATH}/gc-owner`, { method: "DELETE" })).status).toBe(200)
  expect(await eventually(async () => (await kube(`${CONFIG_MAP_PATH}/gc-owned`)).status === 404, 30_000)).toBe(true)
}, 60_000)

test("a Deployment gets a ReplicaSet and a pod, which the fake kubelet runs until it is available; deleting it deletes them", async () => {
  const labels = { app: "web" }
  const created = await kube("/apis/apps/v1/namespaces/default/deployments", {
    method: "POST",
    body: {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: "web" },
      spec: {
        selector: { matchLabels: labels },
        template: { metadata: { labels }, spec: { containers: [{ name: "app", image: "example.com/app:1" }] } }
      }
    }
  })
  expect(created.status).toBe(201)
  interface Owned {
    items: Array<{ metadata: { name: string; ownerReferences?: Array<{ kind: string; name: string }> }; spec?: { nodeName?: string } }>
  }
  let replicaSets: Owned["items"] = []
  expect(
    await eventually(async () => {
      replicaSets = (await json<Owned>(await kube("/apis/apps/v1/namespaces/default/replicasets?labelSelector=app%3Dweb"))).items
      return replicaSets.length === 1
    }, 30_000)
  ).toBe(true)
  expect(replicaSets[0]?.metadata.ownerReferences?.map((o) => `${o.kind}/${o.name}`)).toEqual(["Deployment/web"])

  await controlPlane().rollOut("deployments", "default", "web")
  const deployment = await json<{ status: { readyReplicas?: number; availableReplicas?: number } }>(
    await kube("/apis/apps/v1/namespaces/default/deployments/web")
  )
  expect(deployment.status).toMatchObject({ readyReplicas: 1, availableReplicas: 1 })
  const pods = (await json<Owned>(await kube("/api/v1/namespaces/default/pods?labelSelector=app%3Dweb"))).items
  expect(pods.map((p) => p.spec?.nodeName)).toEqual(["halkyon-node"])
  expect(pods[0]?.metadata.ownerReferences?.[0]?.name).toBe(replicaSets[0]?.metadata.name)

  // Deleted in the foreground: the Deployment goes only once the garbage collector deleted its ReplicaSet,
  // whose pod goes once the fake kubelet reports its containers stopped.
  const deleted = await kube("/apis/apps/v1/namespaces/default/deployments/web", {
    method: "DELETE",
    body: { apiVersion: "v1", kind: "DeleteOptions", propagationPolicy: "Foreground" }
  })
  expect(deleted.status).toBe(200)
  expect(
    await eventually(async () => (await kube("/apis/apps/v1/namespaces/default/deployments/web")).status === 404, 30_000)
  ).toBe(true)
  expect((await json<Owned>(await kube("/apis/apps/v1/namespaces/default/replicasets?labelSelector=app%3Dweb"))).items).toEqual([])
  expect((await json<Owned>(await kube("/api/v1/namespaces/default/pods?labelSelector=app%3Dweb"))).items).toEqual([])
}, 90_000)

test("a SIGKILLed process leaves no control plane running", async () => {
  // A child process starts its own control plane, prints its pids, and is killed with no chance to clean up.
  const child = Bun.spawn([process.execPath, join(root, "test/support/control-plane/start.ts"), "--print-pids"], {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe"
  })
  const decoder = new TextDecoder()
  let out = ""
  for await (const chunk of child.stdout) {
    out += decoder.decode(chunk)
    if (out.includes("\n{")) break
  }
  const pids = JSON.parse(out.slice(out.indexOf("{")).split("\n")[0] ?? "{}") as Record<string, number>
  expect(Object.keys(pids).sort()).toEqual(["apiserver", "controllerManager", "etcd"])
  for (const pid of Object.values(pids)) expect(isAlive(pid)).toBe(true)
  child.kill("SIGKILL")
  await child.exited
  // Killed, and gone or a zombie not yet reaped by init.
  const gone = (pid: number) => {
    try {
      return /^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"))
    } catch {
      return true // no such process
    }
  }
  expect(await eventually(() => Object.values(pids).every(gone), 10_000)).toBe(true)
}, 180_000)

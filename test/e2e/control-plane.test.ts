// End-to-end check of the local control plane: real etcd + kube-apiserver, spoken to over HTTPS
// with the admin client certificate, exactly as the operator's tests will use it.

import { afterAll, beforeAll, expect, test } from "bun:test"
import { existsSync } from "node:fs"
import { startControlPlane, type ControlPlane } from "../support/control-plane/start.ts"

// The first run builds kube-apiserver and etcd from source: many minutes on a small machine.
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
  for (const pid of [pids.apiserver, pids.etcd]) {
    expect(pid).toBeNumber()
    if (pid !== undefined) expect(isAlive(pid)).toBe(false)
  }
  expect(plane.pids()).toEqual({ apiserver: undefined, etcd: undefined })
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

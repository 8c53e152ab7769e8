/**
 * npm run bench:reconcile: how fast the operator provisions many Capabilities
 * on the local control plane, against the floor that control plane sets.
 *
 * For each N (default 200 and 1000; BENCH_SIZES=50,100 to change):
 * - floor: the same objects (Capability, Secret, StatefulSet, Service, status)
 *   created straight through the API, 16 requests at a time;
 * - operator: N Capabilities created at once; the time until every dependent
 *   is applied and every status written, and the operator's peak RSS.
 * Prints figures; asserts nothing.
 */
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { capabilityCrd, capabilityInfoCrd } from "../src/api/Crds.ts"
import { startControlPlane } from "./control-plane/start.ts"

const root = resolve(import.meta.dir, "..")
const sizes = (process.env.BENCH_SIZES ?? "200,1000").split(",").map(Number)
const concurrency = Number(process.env.BENCH_CONCURRENCY ?? 16)

for (const [file, script, args] of [[join(root, "dist/halkyon"), "build.ts", []], [join(root, "dist/plugins/postgres.js"), "build-plugins.ts", []]] as const) {
  if (!existsSync(file)) Bun.spawnSync([process.execPath, join(root, "scripts", script), ...args], { stdout: "inherit", stderr: "inherit" })
}

const plane = await startControlPlane()
const api = async (method: string, path: string, body?: unknown, contentType = "application/json") => {
  for (let attempt = 0; ; attempt++) {
    const response = await fetch(`${plane.server}${path}`, {
      method,
      headers: { "content-type": contentType },
      body: body === undefined ? null : JSON.stringify(body),
      tls: { ca: plane.caCertPem, cert: plane.adminCertPem, key: plane.adminKeyPem }
    })
    const text = await response.text()
    // The API server sheds load with 429: wait and retry, as clients do.
    if (response.status === 429 && attempt < 20) {
      await Bun.sleep(100)
      continue
    }
    if (response.status >= 300) throw new Error(`${method} ${path}: ${response.status} ${text.slice(0, 300)}`)
    return JSON.parse(text) as Record<string, unknown>
  }
}
const pool = async <T>(items: ReadonlyArray<T>, limit: number, f: (item: T) => Promise<unknown>) => {
  let next = 0
  await Promise.all(Array.from({ length: limit }, async () => {
    while (next < items.length) await f(items[next++] as T)
  }))
}

const capability = (name: string) => ({
  apiVersion: "halkyon.io/v1beta1",
  kind: "Capability",
  metadata: { name },
  spec: { category: "database", type: "postgres", version: "16", parameters: [{ name: "DB_PASSWORD", value: "bench" }] }
})

/** The floor: what the operator writes, written directly. */
const floor = async (ns: string, n: number) => {
  await api("POST", "/api/v1/namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name: ns } })
  const names = Array.from({ length: n }, (_, i) => `db-${i}`)
  const t0 = performance.now()
  await pool(names, concurrency, async (name) => {
    const cap = (await api("POST", `/apis/halkyon.io/v1beta1/namespaces/${ns}/capabilities`, capability(name))) as { metadata: { uid: string } }
    const owner = [{ apiVersion: "halkyon.io/v1beta1", kind: "Capability", name, uid: cap.metadata.uid, controller: true }]
    await api("POST", `/api/v1/namespaces/${ns}/secrets`, { apiVersion: "v1", kind: "Secret", metadata: { name: `${name}-config`, ownerReferences: owner }, stringData: { DB_PASSWORD: "bench" } })
    await api("POST", `/apis/apps/v1/namespaces/${ns}/statefulsets`, {
      apiVersion: "apps/v1",
      kind: "StatefulSet",
      metadata: { name, ownerReferences: owner },
      spec: {
        serviceName: name,
        selector: { matchLabels: { app: name } },
        template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: "postgres", image: "postgres:16" }] } }
      }
    })
    await api("POST", `/api/v1/namespaces/${ns}/services`, { apiVersion: "v1", kind: "Service", metadata: { name, ownerReferences: owner }, spec: { selector: { app: name }, ports: [{ port: 5432 }] } })
    await api("PATCH", `/apis/halkyon.io/v1beta1/namespaces/${ns}/capabilities/${name}/status`, { status: { conditions: [{ type: "Ready", status: "False", reason: "DependentsNotReady", message: "", lastTransitionTime: "2026-01-01T00:00:00Z" }] } }, "application/merge-patch+json")
  })
  return (performance.now() - t0) / 1000
}

/** The operator: N Capabilities at once, until every one has its status. */
const operatorRun = async (ns: string, n: number, operatorPid: number) => {
  const names = Array.from({ length: n }, (_, i) => `db-${i}`)
  const t0 = performance.now()
  await pool(names, concurrency, (name) => api("POST", `/apis/halkyon.io/v1beta1/namespaces/${ns}/capabilities`, capability(name)))
  const created = (performance.now() - t0) / 1000
  for (;;) {
    const list = (await api("GET", `/apis/halkyon.io/v1beta1/namespaces/${ns}/capabilities`)) as {
      items: Array<{ status?: { dependents?: Array<unknown>; conditions?: Array<{ type: string; reason: string }> } }>
    }
    const done = list.items.filter((c) => c.status?.dependents?.length === 3 && c.status.conditions?.some((x) => x.type === "Ready" && x.reason === "DependentsNotReady")).length
    if (done === n) break
    await Bun.sleep(50)
  }
  const total = (performance.now() - t0) / 1000
  const services = (await api("GET", `/api/v1/namespaces/${ns}/services`)) as { items: Array<unknown> }
  if (services.items.length !== n) throw new Error(`expected ${n} Services, found ${services.items.length}`)
  const hwm = Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${operatorPid}/status`, "utf8"))?.[1] ?? NaN) / 1024
  return { created, total, peakRssMb: hwm }
}

const pluginsDir = mkdtempSync(join(tmpdir(), "halkyon-bench-plugins-"))
copyFileSync(join(root, "dist/plugins/postgres.js"), join(pluginsDir, "postgres.js"))
let operator: ReturnType<typeof Bun.spawn> | undefined
try {
  for (const crd of [capabilityCrd(), capabilityInfoCrd()]) await api("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
  for (;;) {
    const ok = await api("GET", "/apis/halkyon.io/v1beta1/capabilities").then(() => true, () => false)
    if (ok) break
    await Bun.sleep(100)
  }
  const operatorConcurrency = process.env.BENCH_OPERATOR_CONCURRENCY ?? "8"
  console.log(`halkyon reconcile benchmark: local kube-apiserver + etcd, ${navigator.hardwareConcurrency} cores; operator --concurrency ${operatorConcurrency}; API clients ${concurrency} at a time\n`)
  console.log("capabilities   floor (direct API)   operator   ratio   operator peak RSS")
  for (const n of sizes) {
    const floorSeconds = await floor(`floor-${n}`, n)
    await api("POST", "/api/v1/namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name: `op-${n}` } })
    // A fresh operator per size, watching only its namespace, ready before the clock starts.
    const ns = `op-${n}`
    const proc = Bun.spawn(
      [join(root, "dist/halkyon"), "run", "--kubeconfig", plane.kubeconfigPath, "--plugins-dir", pluginsDir, "-n", ns,
        "--concurrency", operatorConcurrency, "--log-level", process.env.BENCH_LOG_LEVEL ?? "info"],
      { stdout: "ignore", stderr: "pipe" }
    )
    operator = proc
    const reader = proc.stderr.getReader()
    const log = process.env.BENCH_OPERATOR_LOG === undefined ? undefined : Bun.file(process.env.BENCH_OPERATOR_LOG).writer()
    for (let seen = ""; !seen.includes("operator ready");) {
      const { value, done } = await reader.read()
      if (done) throw new Error(`the operator exited: ${seen}`)
      seen += new TextDecoder().decode(value)
    }
    // Keep draining its log so it never blocks on a full pipe.
    void (async () => {
      for (;;) {
        const { value, done } = await reader.read()
        if (done) break
        log?.write(value)
      }
      await log?.end()
    })()
    const run = await operatorRun(ns, n, operator.pid)
    operator.kill("SIGTERM")
    await operator.exited
    operator = undefined
    console.log(
      `${String(n).padStart(12)}   ${`${floorSeconds.toFixed(2)} s`.padStart(18)}   ${`${run.total.toFixed(2)} s`.padStart(8)}   ${(run.total / floorSeconds).toFixed(2).padStart(5)}   ${run.peakRssMb.toFixed(0)} MB`
    )
  }
} finally {
  operator?.kill("SIGTERM")
  await operator?.exited
  await plane.stop()
  rmSync(pluginsDir, { recursive: true, force: true })
}

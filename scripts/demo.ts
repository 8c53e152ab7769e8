/**
 * npm run demo: halkyon end to end on this machine, in a minute.
 * Builds the operator and the plugins, starts a local control plane
 * (kube-apiserver + etcd + kube-controller-manager), installs the CRDs, runs the operator with the
 * postgres plugin, applies samples/postgres.yaml (a Secret with the password,
 * and the Capability that takes it by reference), and follows it to Ready,
 * then binds it into a sample Deployment (samples/binding.yaml) and prints
 * what the Deployment's container got.
 * Ctrl-C tears everything down (--no-wait: tear down at once, for scripts).
 *
 * There is no kubelet here, so no container ever runs: a fake kubelet
 * reports the StatefulSet's pod ready, as a kubelet would once postgres
 * answered, and the StatefulSet controller reports the StatefulSet ready.
 */
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { dump as dumpYaml, load as loadYaml, loadAll as loadAllYaml } from "js-yaml"
import { capabilityCrd, capabilityInfoCrd, serviceBindingCrd, workloadResourceMappingCrd } from "../src/api/Crds.ts"
import { buildPlugin } from "./build-plugins.ts"
import { buildOperator } from "./build.ts"
import { startControlPlane } from "../test/support/control-plane/start.ts"

const root = resolve(import.meta.dir, "..")
const wait = !process.argv.includes("--no-wait")
const step = (text: string) => console.log(`\n==> ${text}`)
const since = (t0: number) => `${((performance.now() - t0) / 1000).toFixed(1)} s`

const t0 = performance.now()
step("building the operator and the postgres plugin")
const operatorBinary = buildOperator()
const { bundle } = await buildPlugin("postgres", join(root, "plugins/postgres/main.ts"), join(root, "dist/plugins"))

step("starting a local control plane (kube-apiserver, etcd, kube-controller-manager; the first run builds them, which takes many minutes)")
const plane = await startControlPlane()
console.log(`    API server ${plane.server}; to look around: export KUBECONFIG=${plane.kubeconfigPath}`)
const pluginsDir = mkdtempSync(join(tmpdir(), "halkyon-demo-plugins-"))
let operator: ReturnType<typeof Bun.spawn> | undefined
const teardown = async () => {
  operator?.kill("SIGTERM")
  await operator?.exited
  await plane.stop()
  rmSync(pluginsDir, { recursive: true, force: true })
}
process.on("SIGINT", () => void teardown().then(() => process.exit(130)))

const api = async (method: string, path: string, body?: unknown, contentType = "application/json") => {
  const response = await fetch(`${plane.server}${path}`, {
    method,
    headers: { "content-type": contentType },
    body: body === undefined ? null : JSON.stringify(body),
    tls: { ca: plane.caCertPem, cert: plane.adminCertPem, key: plane.adminKeyPem },
    keepalive: false
  })
  // Not JSON while a CRD is not served yet: a 404 answers "404 page not found" as plain text.
  const text = await response.text()
  return {
    status: response.status,
    body: (response.headers.get("content-type")?.includes("json") ? JSON.parse(text) : {}) as Record<string, unknown>
  }
}
const until = async (what: string, check: () => Promise<boolean>, timeoutMs = 60_000) => {
  const end = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await Bun.sleep(100)
  }
}

try {
  step("installing the CRDs (halkyon manifests prints them with RBAC and a Deployment for a real cluster)")
  // The ServiceBinding controller watches ClusterWorkloadResourceMappings too: without their CRD its list fails, retried.
  for (const crd of [capabilityCrd(), capabilityInfoCrd(), serviceBindingCrd(), workloadResourceMappingCrd()]) {
    await api("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
  }
  await until("the CRDs", async () => (await api("GET", "/apis/halkyon.io/v1beta1/capabilities")).status === 200)
  await until("the ServiceBinding CRD", async () => (await api("GET", "/apis/servicebinding.io/v1/servicebindings")).status === 200)
  await until(
    "the ClusterWorkloadResourceMapping CRD",
    async () => (await api("GET", "/apis/servicebinding.io/v1/clusterworkloadresourcemappings")).status === 200
  )

  step(`starting the operator: ${operatorBinary} run --plugins-dir ${pluginsDir}`)
  copyFileSync(bundle, join(pluginsDir, "postgres.js"))
  operator = Bun.spawn([operatorBinary, "run", "--kubeconfig", plane.kubeconfigPath, "--plugins-dir", pluginsDir], {
    stdout: "inherit",
    stderr: "inherit"
  })
  await until(
    "the operator's CapabilityInfo",
    async () => (await api("GET", "/apis/halkyon.io/v1beta1/capabilityinfos/database-postgres")).status === 200
  )

  step("applying samples/postgres.yaml: the Secret with the password, and the Capability, which names it (valueFrom)")
  const [secret, sample] = loadAllYaml(readFileSync(join(root, "samples/postgres.yaml"), "utf8")) as Array<Record<string, unknown>>
  const created = await api("POST", "/api/v1/namespaces/default/secrets", secret)
  if (created.status !== 201) throw new Error(`creating the sample's Secret: HTTP ${created.status}`)
  console.log(`    Secret postgres-db-credentials (key password), then:`)
  console.log(dumpYaml(sample).replace(/^/gm, "    "))
  await api("POST", "/apis/halkyon.io/v1beta1/namespaces/default/capabilities", sample)

  step("its dependents appear, owned by the Capability: the Secret first, then the StatefulSet and the Service together")
  const dependents = [
    ["Secret", "/api/v1/namespaces/default/secrets/postgres-db-config"],
    ["StatefulSet", "/apis/apps/v1/namespaces/default/statefulsets/postgres-db"],
    ["Service", "/api/v1/namespaces/default/services/postgres-db"]
  ] as const
  for (const [kind, path] of dependents) {
    await until(kind, async () => (await api("GET", path)).status === 200)
    const object = (await api("GET", path)).body as { metadata: { name: string; ownerReferences?: Array<{ kind: string; name: string }> } }
    const owner = object.metadata.ownerReferences?.[0]
    console.log(`    ${kind.padEnd(12)} ${object.metadata.name.padEnd(20)} owned by ${owner?.kind}/${owner?.name}`)
  }

  step("running its pod postgres-db-0 (no kubelet runs here: a fake one reports what a kubelet would once postgres answers)")
  await plane.rollOut("statefulsets", "default", "postgres-db")
  const sts = (await api("GET", dependents[1][1])).body as { status: { readyReplicas?: number } }
  console.log(`    the StatefulSet controller reports ${sts.status.readyReplicas ?? 0} ready replica(s)`)

  step("waiting for Ready (kubectl wait --for=condition=Ready capability/postgres-db)")
  await until("Ready", async () => {
    const c = (await api("GET", "/apis/halkyon.io/v1beta1/namespaces/default/capabilities/postgres-db")).body as {
      status?: { conditions?: Array<{ type: string; status: string }> }
    }
    return c.status?.conditions?.some((x) => x.type === "Ready" && x.status === "True") ?? false
  })
  const done = (await api("GET", "/apis/halkyon.io/v1beta1/namespaces/default/capabilities/postgres-db")).body as { status: unknown }
  console.log(dumpYaml({ status: done.status }).replace(/^/gm, "    "))
  console.log(`capability/postgres-db is Ready, ${since(t0)} after the demo started.`)

  step("binding it into a sample Deployment web (containers app and sidecar): samples/binding.yaml")
  const labels = { app: "web" }
  await api("POST", "/apis/apps/v1/namespaces/default/deployments", {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name: "web", labels },
    spec: {
      selector: { matchLabels: labels },
      template: {
        metadata: { labels },
        spec: { containers: [{ name: "app", image: "example.com/app:1" }, { name: "sidecar", image: "example.com/sidecar:1" }] }
      }
    }
  })
  const binding = loadYaml(readFileSync(join(root, "samples/binding.yaml"), "utf8")) as Record<string, unknown>
  console.log(dumpYaml(binding).replace(/^/gm, "    "))
  await api("POST", "/apis/servicebinding.io/v1/namespaces/default/servicebindings", binding)
  await until("the ServiceBinding Ready", async () => {
    const b = (await api("GET", "/apis/servicebinding.io/v1/namespaces/default/servicebindings/db")).body as {
      status?: { conditions?: Array<{ type: string; status: string }> }
    }
    return b.status?.conditions?.some((x) => x.type === "Ready" && x.status === "True") ?? false
  })
  type Container = {
    name: string
    env?: Array<{ name: string; value?: string; valueFrom?: unknown }>
    volumeMounts?: Array<{ mountPath: string }>
  }
  const web = (await api("GET", "/apis/apps/v1/namespaces/default/deployments/web")).body as {
    spec: { template: { spec: { containers: Array<Container> } } }
  }
  for (const c of web.spec.template.spec.containers) {
    console.log(
      `    container ${c.name}: ${
        c.volumeMounts === undefined ? "untouched" : `files at ${c.volumeMounts.map((m) => m.mountPath).join(", ")}`
      }`
    )
    for (const e of c.env ?? []) console.log(`      ${e.name}: ${e.value ?? JSON.stringify(e.valueFrom)}`)
  }
  console.log(`servicebinding/db is Ready: the application reads /bindings/db/uri, or DATABASE_URL (${since(t0)} after the demo started).`)
  if (wait) {
    console.log("\nThe control plane and the operator keep running; Ctrl-C tears everything down.")
    await new Promise(() => {})
  }
} finally {
  if (!wait) await teardown()
}

/**
 * A real API server for a test file, with halkyon's CRDs installed, and the
 * compiled operator run against it as a user would run it.
 */
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { adminRequest, type ApiResponse } from "./control-plane/admin-api.ts"
import { ensureKubectl } from "./control-plane/build.ts"
import { type ControlPlane, type StartOptions, startControlPlane } from "./control-plane/start.ts"
import { capabilityCrd, capabilityInfoCrd, serviceBindingCrd, workloadResourceMappingCrd } from "../../src/api/Crds.ts"
import { addPlugin, builtPlugin, eventually, root } from "./paths.ts"

export type { ApiResponse }

/** Reads a nested field of Kubernetes JSON: dig(obj, "status", "conditions"). */
export const dig = <T>(value: unknown, ...path: ReadonlyArray<string | number>): T | undefined => {
  let current: unknown = value
  for (const key of path) {
    if (current === null || typeof current !== "object") return undefined
    current = (current as Record<string | number, unknown>)[key]
  }
  return current as T | undefined
}

export interface Cluster {
  readonly plane: ControlPlane
  readonly api: (method: string, path: string, body?: unknown, contentType?: string) => Promise<ApiResponse>
}

export const startCluster = async (options: StartOptions = {}): Promise<Cluster> => {
  const plane = await startControlPlane(options)
  const api = (method: string, path: string, body?: unknown, contentType?: string) => adminRequest(plane, method, path, body, contentType)
  for (const crd of [capabilityCrd(), capabilityInfoCrd(), serviceBindingCrd(), workloadResourceMappingCrd()]) {
    const created = await api("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    if (created.status !== 201) throw new Error(`installing a CRD failed: ${JSON.stringify(created.body)}`)
  }
  const established = await eventually(async () => {
    for (
      const name of [
        "capabilities.halkyon.io",
        "capabilityinfos.halkyon.io",
        "servicebindings.servicebinding.io",
        "clusterworkloadresourcemappings.servicebinding.io"
      ]
    ) {
      const crd = await api("GET", `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${name}`)
      const conditions = dig<Array<{ type: string; status: string }>>(crd.body, "status", "conditions") ?? []
      if (!conditions.some((c) => c.type === "Established" && c.status === "True")) return false
    }
    return true
  }, 30_000)
  // Established CRDs still answer 429 until their storage is initialized.
  const served = established &&
    (await eventually(async () => (await api("GET", "/apis/halkyon.io/v1beta1/capabilities")).status === 200, 30_000))
  if (!served) throw new Error("the CRDs were not established and served within 30 s")
  return { plane, api }
}

export interface Operator {
  readonly proc: ReturnType<typeof Bun.spawn>
  /** Every stderr line so far. */
  readonly logs: Array<string>
  readonly stop: (signal?: NodeJS.Signals) => Promise<number>
  /** The base URL of an endpoint ("health" or "metrics"), once the operator logged it. */
  readonly endpoint: (which: "health" | "metrics") => string | undefined
}

/** Runs the compiled operator against the cluster, as `halkyon run`. */
export const startOperator = (
  cluster: Cluster,
  pluginsDir: string,
  args: ReadonlyArray<string> = [],
  kubeconfig = cluster.plane.kubeconfigPath,
  env: Record<string, string> = {},
  /** Words before the binary, e.g. setpriv's, to run it as another user. */
  prefix: ReadonlyArray<string> = []
): Operator => {
  const proc = Bun.spawn(
    [
      ...prefix,
      join(root, "dist/halkyon"),
      "run",
      "--kubeconfig",
      kubeconfig,
      "--plugins-dir",
      pluginsDir,
      ...(args.includes("--call-timeout") ? [] : ["--call-timeout", "3s"]),
      // Free ports, read back from the start-up log (several operators may run at once).
      "--health-addr",
      "127.0.0.1:0",
      "--metrics-addr",
      "127.0.0.1:0",
      ...args
    ],
    { stdout: "pipe", stderr: "pipe", env: { ...process.env, HALKYON_SHUTDOWN_GRACE: "1s", ...env } }
  )
  const logs: Array<string> = []
  void (async () => {
    const decoder = new TextDecoder()
    let rest = ""
    for await (const chunk of proc.stderr) {
      rest += decoder.decode(chunk)
      const lines = rest.split("\n")
      rest = lines.pop() ?? ""
      logs.push(...lines)
      if (process.env.HALKYON_TEST_LOGS === "1") { for (const l of lines) console.error(`[operator] ${l}`) }
    }
  })()
  return {
    proc,
    logs,
    stop: async (signal = "SIGTERM") => {
      proc.kill(signal)
      return proc.exited
    },
    endpoint: (which) => {
      for (const line of logs) {
        const match = new RegExp(`${which} on ([0-9.]+:\\d+)`).exec(line)
        if (match !== null) return `http://${match[1]}`
      }
      return undefined
    }
  }
}

/** Waits for the operator's "operator ready" line; fails with its log when it does not come. */
export const untilReady = async (operator: Operator, timeoutMs = 30_000) => {
  const ready = await eventually(() => operator.logs.some((l) => l.includes("operator ready")), timeoutMs, 50)
  if (!ready) throw new Error(`the operator did not become ready within ${timeoutMs} ms:\n${operator.logs.join("\n")}`)
  return operator
}

/** A kubeconfig file for the same cluster with another user (a bearer token). */
export const kubeconfigWithToken = (cluster: Cluster, token: string) => {
  const dir = mkdtempSync(join(tmpdir(), "halkyon-kubeconfig-"))
  const path = join(dir, "kubeconfig")
  writeFileSync(
    path,
    JSON.stringify({
      apiVersion: "v1",
      kind: "Config",
      clusters: [{
        name: "local",
        cluster: { server: cluster.plane.server, "certificate-authority-data": Buffer.from(cluster.plane.caCertPem).toString("base64") }
      }],
      users: [{ name: "operator", user: { token } }],
      contexts: [{ name: "operator", context: { cluster: "local", user: "operator" } }],
      "current-context": "operator"
    })
  )
  return { path, cleanup: () => rmSync(dir, { recursive: true, force: true }) }
}

/** The Capability's Ready condition, as `kubectl wait --for=condition=Ready` reads it. */
export const readyOf = (capability: ApiResponse) =>
  (dig<Array<{ type: string; status: string; reason: string; message: string; observedGeneration?: number }>>(
    capability.body,
    "status",
    "conditions"
  ) ?? []).find(
    (c) => c.type === "Ready"
  )

/**
 * The Events recorded about the object `name` in `namespace` (of `kind`, when given), each as `type/reason`,
 * as `kubectl describe` lists them.
 */
export const eventsAbout = async (cluster: Cluster, namespace: string, name: string, kind?: string) => {
  const selector = encodeURIComponent(`${kind === undefined ? "" : `involvedObject.kind=${kind},`}involvedObject.name=${name}`)
  const events = await cluster.api("GET", `/api/v1/namespaces/${namespace}/events?fieldSelector=${selector}`)
  return (dig<Array<{ reason: string; type: string }>>(events.body, "items") ?? []).map((e) => `${e.type}/${e.reason}`)
}

export const capabilityPath = (namespace: string, name = "") =>
  `/apis/halkyon.io/v1beta1/namespaces/${namespace}/capabilities${name === "" ? "" : `/${name}`}`

export interface KubectlResult {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

/**
 * Runs kubectl (built once, of the same release as kube-apiserver) against the cluster as its admin,
 * as a user would type it. `stdin` is piped in (for `apply -f -`). Its discovery cache lives in the
 * control plane's folder, and no user kuberc or KUBECONFIG applies.
 */
export const kubectl = async (cluster: Cluster, args: ReadonlyArray<string>, stdin?: string): Promise<KubectlResult> => {
  const binary = await ensureKubectl()
  const { KUBECONFIG: _ignored, ...env } = process.env
  const proc = Bun.spawn(
    [binary, "--kubeconfig", cluster.plane.kubeconfigPath, "--cache-dir", join(cluster.plane.dir, "kubectl-cache"), ...args],
    {
      stdin: stdin === undefined ? "ignore" : new TextEncoder().encode(stdin),
      stdout: "pipe",
      stderr: "pipe",
      env: { ...env, KUBERC: "off" }
    }
  )
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited])
  return { code, stdout, stderr }
}

/** A long-running kubectl (a `--watch`): the lines it printed so far, and how to stop it. */
export const kubectlWatch = async (cluster: Cluster, args: ReadonlyArray<string>) => {
  const binary = await ensureKubectl()
  const { KUBECONFIG: _ignored, ...env } = process.env
  const proc = Bun.spawn(
    [binary, "--kubeconfig", cluster.plane.kubeconfigPath, "--cache-dir", join(cluster.plane.dir, "kubectl-cache"), ...args],
    { stdin: "ignore", stdout: "pipe", stderr: "pipe", env: { ...env, KUBERC: "off" } }
  )
  const lines: Array<string> = []
  const reading = (async () => {
    const decoder = new TextDecoder()
    let rest = ""
    for await (const chunk of proc.stdout) {
      rest += decoder.decode(chunk)
      const parts = rest.split("\n")
      rest = parts.pop() ?? ""
      lines.push(...parts)
    }
  })()
  return {
    lines: () => [...lines],
    stop: async () => {
      proc.kill("SIGTERM")
      await proc.exited
      await reading
      return [...lines]
    }
  }
}

/**
 * Whether object `name` of the collection at `collectionPath` existed at etcd revision `revision` (as a
 * list at that exact revision shows it): places an object in a write order when its own revision is a
 * later write by someone else (a workload's controller writing its status).
 */
export const existedAt = async (cluster: Cluster, collectionPath: string, name: string, revision: number) => {
  const list = await cluster.api(
    "GET",
    `${collectionPath}?fieldSelector=${encodeURIComponent(`metadata.name=${name}`)}&resourceVersion=${revision}&resourceVersionMatch=Exact`
  )
  if (list.status !== 200) {
    throw new Error(`listing ${collectionPath} at revision ${revision}: HTTP ${list.status} ${JSON.stringify(list.body)}`)
  }
  return (dig<Array<unknown>>(list.body, "items") ?? []).length > 0
}

/**
 * No kubelet on the local control plane: a fake one runs the StatefulSet's pods and reports them ready,
 * and the statefulset controller then reports the StatefulSet rolled out, as on a cluster once postgres answered.
 */
/**
 * A watch of one collection from now on: its DELETED events, by name, with
 * the resourceVersion of the deletion (etcd's revision, one order for every kind).
 */
export const watchDeletions = async (cluster: Cluster, collection: string) => {
  const listed = await cluster.api("GET", collection)
  const from = dig<string>(listed.body, "metadata", "resourceVersion") ?? ""
  const deleted = new Map<string, number>()
  const abort = new AbortController()
  const response = await fetch(`${cluster.plane.server}${collection}?watch=true&resourceVersion=${from}`, {
    tls: { ca: cluster.plane.caCertPem, cert: cluster.plane.adminCertPem, key: cluster.plane.adminKeyPem },
    signal: abort.signal
  })
  const reading = (async () => {
    const decoder = new TextDecoder()
    let rest = ""
    try {
      for await (const chunk of response.body ?? []) {
        rest += decoder.decode(chunk)
        const lines = rest.split("\n")
        rest = lines.pop() ?? ""
        for (const line of lines.filter((l) => l.trim() !== "")) {
          const event = JSON.parse(line) as { type: string; object: { metadata: { name: string; resourceVersion: string } } }
          if (event.type === "DELETED") deleted.set(event.object.metadata.name, Number(event.object.metadata.resourceVersion))
        }
      }
    } catch {
      // Aborted.
    }
  })()
  return {
    deleted,
    stop: async () => {
      abort.abort()
      await reading
    }
  }
}

export const markStatefulSetReady = (cluster: Cluster, namespace: string, name: string) =>
  cluster.plane.rollOut("statefulsets", namespace, name)

/** As markStatefulSetReady, for a Deployment: its pods run and the deployment controller reports it available. */
export const markDeploymentReady = (cluster: Cluster, namespace: string, name: string) =>
  cluster.plane.rollOut("deployments", namespace, name)

/** Creates namespace `name`; anything but 201 fails the caller with the API server's answer. */
export const createNamespace = async (cluster: Cluster, name: string) => {
  const created = await cluster.api("POST", "/api/v1/namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name } })
  if (created.status !== 201) throw new Error(`creating namespace ${name} failed: HTTP ${created.status} ${JSON.stringify(created.body)}`)
}

/**
 * A control plane with namespace `ns`, and the compiled operator running
 * with the postgres plugin's bundle in a plugins folder of its own
 * (HALKYON_TEST_LOGS=1 or `debug`: debug logs), beside copies of `plugins`
 * (paths). `stop` undoes all three.
 */
export const startWithPostgres = async (
  ns: string,
  options: { readonly plugins?: ReadonlyArray<string>; readonly debug?: boolean } = {}
) => {
  const cluster = await startCluster()
  await createNamespace(cluster, ns)
  const pluginsDir = mkdtempSync(join(tmpdir(), "halkyon-operator-plugins-"))
  copyFileSync(builtPlugin("postgres.js"), join(pluginsDir, "postgres.js"))
  for (const plugin of options.plugins ?? []) addPlugin(pluginsDir, plugin)
  const debug = options.debug === true || process.env.HALKYON_TEST_LOGS === "1"
  const operator = await untilReady(startOperator(cluster, pluginsDir, debug ? ["--log-level", "debug"] : []))
  const stop = async () => {
    await operator.stop()
    await cluster.plane.stop()
    rmSync(pluginsDir, { recursive: true, force: true })
  }
  return { cluster, operator, pluginsDir, stop }
}

/**
 * npm run bench:reconcile: how fast the operator provisions many Capabilities
 * on the local control plane, against the floor that control plane sets.
 *
 * For each N (default 200 and 1000; BENCH_SIZES=50,100 to change; the
 * postgres plugin's bundle, or its executable with BENCH_PLUGIN=postgres):
 * - floor: the same writes (the Capability, the operator's finalizer on it,
 *   the very Secret, StatefulSet and Service the postgres plugin builds, the
 *   status with its inventory) made straight through the API, 16 requests at
 *   a time, the dependents once created (POST) and once server-side applied
 *   as the operator writes them;
 * Every Capability takes its DB_PASSWORD from one Secret by reference (the
 * admission policy refuses a literal password).
 * - operator: N Capabilities created at once; the time until every dependent
 *   is applied and every status written, and the operator's peak RSS.
 * Each of the three is measured on a fresh control plane, and the trio is
 * repeated BENCH_REPEAT times (default 5; two cores shared by kube-apiserver,
 * etcd, the operator and its plugin make single runs move by 15%, and the
 * machine's speed drifts over minutes), every other trio in reverse order:
 * every run is printed, then the medians. BENCH_ONLY=operator skips the
 * floors (to profile the operator, or compare its CPU seconds between builds).
 * Then, with all N still held by the operator, BENCH_EDITS (default 200)
 * spec edits one at a time, each timed until its status update shows in a
 * watch: p50 and p99 per run, and each size's as a ratio of the smallest
 * size's.
 * BENCH_IMPERSONATE=1 applies the plugin's RBAC from `halkyon manifests
 * --plugins-dir` and runs the operator with --impersonate always, so that
 * dependents are read, watched and written as the plugin's ServiceAccount.
 * Prints figures; asserts nothing. BENCH_MARKDOWN=file also writes the
 * medians, each run, the edits' ratios and the CPU seconds there as markdown
 * (bench:all puts them in docs/performance.md).
 */
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { capabilityCrd, capabilityInfoCrd } from "../src/api/Crds.ts"
import type { KubeObject } from "../src/kube/KubeObject.ts"
import { withOwnership } from "../src/reconciler/DependentRules.ts"
import { nextStatus, rollUp, sameStatus } from "../src/reconciler/Status.ts"
import { type CapabilityStatus, DependentsFinalizer } from "../src/api/Capability.ts"
import { dependencies } from "../src/protocol/DependentGraph.ts"
import { buildDependents, describe as describePlugin, makeContext } from "../src/sdk/CapabilityService.ts"
import { postgres } from "../plugins/postgres/plugin.ts"
import { startControlPlane } from "../test/support/control-plane/start.ts"
import { loadAllYaml } from "@kubernetes/client-node"
import { markdownTable, writeMarkdown } from "./support/markdown.ts"

const collectionOf = (ns: string, kind: string) =>
  ({
    Secret: `/api/v1/namespaces/${ns}/secrets`,
    StatefulSet: `/apis/apps/v1/namespaces/${ns}/statefulsets`,
    Service: `/api/v1/namespaces/${ns}/services`
  })[kind] ?? ""

const root = resolve(import.meta.dir, "..")
const sizes = (process.env.BENCH_SIZES ?? "200,1000").split(",").map(Number)
const concurrency = Number(process.env.BENCH_CONCURRENCY ?? 16)
const repeat = Number(process.env.BENCH_REPEAT ?? 5)
/** The postgres plugin's form: its bundle (default) or, with BENCH_PLUGIN=postgres, its executable. */
const pluginName = process.env.BENCH_PLUGIN === "postgres" ? "postgres" : "postgres.js"
const endBy = process.env.BENCH_END === "watch" ? "watch" : "log"
const operatorOnly = process.env.BENCH_ONLY === "operator"
const median = (values: ReadonlyArray<number>) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? NaN

for (
  const [file, script, args] of [
    [join(root, "dist/halkyon"), "build.ts", []],
    [join(root, "dist/plugins", pluginName), "build-plugins.ts", []]
  ] as const
) {
  if (!existsSync(file)) Bun.spawnSync([process.execPath, join(root, "scripts", script), ...args], { stdout: "inherit", stderr: "inherit" })
}

// Each measurement gets a fresh control plane: etcd's size would otherwise
// favour whatever runs first.
let plane!: Awaited<ReturnType<typeof startControlPlane>>
const api = async (method: string, path: string, body?: unknown, contentType = "application/json") => {
  for (let attempt = 0;; attempt++) {
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

/**
 * The password comes by reference, as samples/postgres.yaml gives it: the
 * admission policy the operator keeps refuses a literal value for a secret
 * parameter. One Secret per namespace, made before the clock starts.
 */
const CredentialsSecret = "bench-credentials"
const parameters = (user = "admin") => [
  { name: "DB_USER", value: user },
  { name: "DB_PASSWORD", valueFrom: { secretKeyRef: { name: CredentialsSecret, key: "password" } } }
]
const capability = (name: string) => ({
  apiVersion: "halkyon.io/v1beta1",
  kind: "Capability",
  metadata: { name },
  spec: { category: "database", type: "postgres", version: "16", parameters: parameters() }
})
/** The spec as the plugin sees it: the reference resolved, as the operator resolves it. */
const resolvedSpec = (name: string) => ({
  ...capability(name).spec,
  parameters: [{ name: "DB_USER", value: "admin" }, { name: "DB_PASSWORD", value: "bench" }]
})
/** The namespace and the Secret its Capabilities' passwords come from. */
const benchNamespace = async (ns: string) => {
  await api("POST", "/api/v1/namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name: ns } })
  await api("POST", `/api/v1/namespaces/${ns}/secrets`, {
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name: CredentialsSecret },
    stringData: { password: "bench" }
  })
}

/**
 * The status the operator writes for a Capability whose dependents are
 * applied and whose StatefulSet has not rolled out (no controller runs here),
 * as test/reconciler.test.ts checks it, built by the operator's own code.
 */
const postgresDependencies = dependencies(describePlugin(postgres).dependents)
const statusOf = (cap: KubeObject, uidOf: (kind: string, name: string) => string) => {
  const name = cap.metadata.name
  // What it applied, in order, with the uid each write answered and the ids each depends on, as the
  // plugin declares them: what pruning and deletion go by.
  const inventory = [
    { id: "config-secret", apiVersion: "v1", kind: "Secret", name: `${name}-config`, uid: uidOf("Secret", `${name}-config`) },
    { id: "statefulset", apiVersion: "apps/v1", kind: "StatefulSet", name, uid: uidOf("StatefulSet", name) },
    { id: "service", apiVersion: "v1", kind: "Service", name, uid: uidOf("Service", name) }
  ].map((e) => {
    const on = postgresDependencies.get(e.id) ?? []
    return on.length === 0 ? e : { ...e, dependsOn: on }
  })
  const rollout = "waiting for the StatefulSet controller to roll out generation 1"
  const dependents = [
    { id: "config-secret", kind: "Secret", name: `${name}-config`, ready: true, reason: "Applied", message: "" },
    { id: "statefulset", kind: "StatefulSet", name, ready: false, reason: "RolloutPending", message: rollout },
    { id: "service", kind: "Service", name, ready: true, reason: "Applied", message: "" }
  ]
  const outcome = {
    ...rollUp(dependents.map((d) => ({ ...d, failed: false }))),
    dependents,
    bindingSecret: `${name}-config`,
    inventory,
    plugin: pluginName,
    version: "16"
  }
  return nextStatus(undefined, outcome, cap.metadata.generation, new Date())
}

/**
 * The floor: what the operator writes, written directly: each Capability,
 * then its Secret, StatefulSet and Service, then its status. `write` is
 * "create" (POST) or "apply" (server-side apply, as the operator writes).
 */
const floor = async (ns: string, n: number, write: "create" | "apply") => {
  await benchNamespace(ns)
  const names = Array.from({ length: n }, (_, i) => `db-${i}`)
  const put = (collection: string, object: KubeObject) =>
    write === "create"
      ? api("POST", collection, object)
      : api("PATCH", `${collection}/${object.metadata.name}?fieldManager=bench&force=true`, object, "application/apply-patch+yaml")
  const before = planeCpu()
  const client = process.cpuUsage()
  const t0 = performance.now()
  await pool(names, concurrency, async (name) => {
    const created = (await api("POST", `/apis/halkyon.io/v1beta1/namespaces/${ns}/capabilities`, capability(name))) as KubeObject
    // The operator's finalizer, as it adds it before its first write for a Capability.
    const cap = (await api(
      "PATCH",
      `/apis/halkyon.io/v1beta1/namespaces/${ns}/capabilities/${name}`,
      { metadata: { finalizers: [DependentsFinalizer], resourceVersion: created.metadata.resourceVersion } },
      "application/merge-patch+json"
    )) as KubeObject
    // Exactly the objects the operator applies: the plugin's own, with our label and owner reference.
    const context = makeContext(postgres, { ...cap, spec: resolvedSpec(name) })
    const uids = new Map<string, string>()
    for (const dependent of buildDependents(postgres, context)) {
      const object = withOwnership(dependent.object as unknown as Record<string, unknown>, cap, undefined)
      const written = (await put(collectionOf(ns, object.kind), object)) as KubeObject
      uids.set(`${object.kind}/${object.metadata.name}`, written.metadata.uid ?? "")
    }
    await api(
      "PATCH",
      `/apis/halkyon.io/v1beta1/namespaces/${ns}/capabilities/${name}/status`,
      { status: statusOf(cap, (kind, n) => uids.get(`${kind}/${n}`) ?? "") },
      "application/merge-patch+json"
    )
  })
  const seconds = (performance.now() - t0) / 1000
  const { user, system } = process.cpuUsage(client)
  return {
    seconds,
    detail: `${n}, floor ${write}: CPU seconds: this client ${((user + system) / 1e6).toFixed(1)}, ${planeCpuSince(before)}`
  }
}

/** Completes when every Capability of the namespace has all three dependents reported in its status. */
const untilAllReported = async (ns: string, n: number) => {
  const response = await fetch(`${plane.server}/apis/halkyon.io/v1beta1/namespaces/${ns}/capabilities?watch=true&resourceVersion=0`, {
    tls: { ca: plane.caCertPem, cert: plane.adminCertPem, key: plane.adminKeyPem }
  })
  const done = new Set<string>()
  const decoder = new TextDecoder()
  let rest = ""
  for await (const chunk of response.body ?? []) {
    rest += decoder.decode(chunk)
    const lines = rest.split("\n")
    rest = lines.pop() ?? ""
    for (const line of lines) {
      const event = JSON.parse(line) as {
        object: {
          metadata: { name: string }
          status?: { dependents?: Array<unknown>; conditions?: Array<{ type: string; reason: string }> }
        }
      }
      const status = event.object.status
      if (status?.dependents?.length === 3 && status.conditions?.some((c) => c.type === "Ready" && c.reason === "DependentsNotReady")) {
        done.add(event.object.metadata.name)
      }
    }
    if (done.size === n) break
  }
  if (done.size !== n) throw new Error(`the watch ended with ${done.size} of ${n} Capabilities reported`)
}

/**
 * Reads the operator's log (which must be drained anyway) and resolves once
 * N Capabilities of `ns` have logged their first Ready condition: the
 * operator logs it right after its status write returns.
 */
const untilLogged = (log: { read(): Promise<{ value?: Uint8Array; done: boolean }> }, ns: string, n: number) => {
  const written = new Set<string>()
  const pattern = new RegExp(`capability ${ns}/([^:]+): Ready=`, "g")
  let resolve!: () => void
  const done = new Promise<void>((r) => (resolve = r))
  const decoder = new TextDecoder()
  let rest = ""
  void (async () => {
    for (;;) {
      const { value, done: ended } = await log.read()
      if (ended) break
      const text = rest + decoder.decode(value, { stream: true })
      const cut = text.lastIndexOf("\n") + 1
      rest = text.slice(cut)
      for (const m of text.slice(0, cut).matchAll(pattern)) written.add(m[1] ?? "")
      if (written.size >= n) resolve()
    }
  })()
  return done
}

/**
 * Every Capability of the namespace, read once: each must have the status the
 * floor writes (but for the time of its transition), or the floor is not the
 * operator's work.
 */
const checkAllReported = async (ns: string, n: number) => {
  const list = (await api("GET", `/apis/halkyon.io/v1beta1/namespaces/${ns}/capabilities`)) as {
    items: Array<KubeObject & { status?: unknown }>
  }
  const timeless = (status: unknown) =>
    JSON.parse(JSON.stringify(status, (key, value: unknown) => (key === "lastTransitionTime" ? undefined : value))) as CapabilityStatus
  const uids = new Map<string, string>()
  for (const kind of ["Secret", "StatefulSet", "Service"]) {
    const objects = (await api("GET", collectionOf(ns, kind))) as { items: Array<KubeObject> }
    for (const o of objects.items) uids.set(`${kind}/${o.metadata.name}`, o.metadata.uid ?? "")
  }
  const uidOf = (kind: string, name: string) => uids.get(`${kind}/${name}`) ?? ""
  const differs = (c: KubeObject & { status?: unknown }) =>
    !sameStatus(timeless(c.status), timeless(statusOf(c, uidOf))) ||
    JSON.stringify(c.metadata.finalizers ?? []) !== JSON.stringify([DependentsFinalizer])
  const other = list.items.filter(differs)
  if (list.items.length !== n || other.length > 0) {
    throw new Error(
      `${list.items.length - other.length} of ${n} Capabilities have the floor's status; one has ${JSON.stringify(other[0]?.status)}`
    )
  }
}

/**
 * The operator: N Capabilities at once, until every one has its status. The
 * end is seen through one watch of the Capabilities (BENCH_END=watch, what a
 * user would see) or, by default, the operator's log line that follows each
 * status write: timed like the floor, by the writer, and without a watch of
 * 2N events loading the two cores the operator shares. Then every status is
 * checked through the API.
 */
const operatorRun = async (ns: string, n: number, operatorPid: number, logged: Promise<void>) => {
  const names = Array.from({ length: n }, (_, i) => `db-${i}`)
  // Polling a list of N objects would itself load the API server and slow what it measures.
  const finished = endBy === "watch" ? untilAllReported(ns, n) : logged
  const t0 = performance.now()
  await pool(names, concurrency, (name) => api("POST", `/apis/halkyon.io/v1beta1/namespaces/${ns}/capabilities`, capability(name)))
  const created = (performance.now() - t0) / 1000
  await finished
  const total = (performance.now() - t0) / 1000
  await checkAllReported(ns, n)
  const services = (await api("GET", `/api/v1/namespaces/${ns}/services`)) as { items: Array<unknown> }
  if (services.items.length !== n) throw new Error(`expected ${n} Services, found ${services.items.length}`)
  const hwm = Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${operatorPid}/status`, "utf8"))?.[1] ?? NaN) / 1024
  return { created, total, peakRssMb: hwm }
}

const edits = Number(process.env.BENCH_EDITS ?? 200)
const percentile = (values: ReadonlyArray<number>, p: number) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN
}

/**
 * Once every status is written: the latency from a spec edit to its status
 * update, as a user sees it. One edit at a time (BENCH_EDITS, default 200,
 * spread over the N Capabilities): a merge patch of the Capability's DB_USER
 * parameter, timed until a watch of the namespace shows that Capability's
 * status with the edit's generation observed. The operator holds all N in its
 * cache and queue meanwhile, which is what the edit pays for at scale.
 */
const editLatencies = async (ns: string, n: number) => {
  const from =
    ((await api("GET", `/apis/halkyon.io/v1beta1/namespaces/${ns}/capabilities?limit=1`)).metadata as { resourceVersion: string })
      .resourceVersion
  const abort = new AbortController()
  const response = await fetch(
    `${plane.server}/apis/halkyon.io/v1beta1/namespaces/${ns}/capabilities?watch=true&resourceVersion=${from}`,
    { tls: { ca: plane.caCertPem, cert: plane.adminCertPem, key: plane.adminKeyPem }, signal: abort.signal }
  )
  let waiting: { name: string; generation: number; done: () => void } | undefined
  // The status may show before the patch's answer is read: what each Capability's status last observed.
  const observed = new Map<string, number>()
  const reading = (async () => {
    const decoder = new TextDecoder()
    let rest = ""
    for await (const chunk of response.body ?? []) {
      rest += decoder.decode(chunk, { stream: true })
      const lines = rest.split("\n")
      rest = lines.pop() ?? ""
      for (const line of lines) {
        const { object } = JSON.parse(line) as { object: { metadata: { name: string }; status?: { observedGeneration?: number } } }
        observed.set(object.metadata.name, object.status?.observedGeneration ?? 0)
        if (
          waiting !== undefined && object.metadata.name === waiting.name && (object.status?.observedGeneration ?? 0) >= waiting.generation
        ) {
          waiting.done()
        }
      }
    }
  })().catch(() => {})
  const times: Array<number> = []
  for (let i = 0; i < edits; i++) {
    const name = `db-${Math.floor((i * n) / edits) % n}`
    const seen = Promise.withResolvers<void>()
    const t0 = performance.now()
    const edited = await api(
      "PATCH",
      `/apis/halkyon.io/v1beta1/namespaces/${ns}/capabilities/${name}`,
      { spec: { parameters: parameters(`edit-${i}`) } },
      "application/merge-patch+json"
    )
    waiting = { name, generation: (edited.metadata as { generation: number }).generation, done: seen.resolve }
    if ((observed.get(name) ?? 0) >= waiting.generation) seen.resolve()
    await seen.promise
    times.push(performance.now() - t0)
    waiting = undefined
  }
  abort.abort()
  await reading
  return times
}

/** A fresh control plane with the CRDs served, for one measurement. */
const freshPlane = async () => {
  // No controllers: a thousand StatefulSets would get a thousand pods, and the figures would time those too.
  plane = await startControlPlane({ controllerManager: false })
  for (const crd of [capabilityCrd(), capabilityInfoCrd()]) {
    await api("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
  }
  while (!(await api("GET", "/apis/halkyon.io/v1beta1/capabilities").then(() => true, () => false))) await Bun.sleep(100)
}

const cpuSeconds = (pid: number | undefined) => {
  if (pid === undefined || Number.isNaN(pid)) return NaN
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? []
  return (Number(fields[11]) + Number(fields[12])) / 100
}
/** The machine's idle and busy CPU seconds so far (/proc/stat: idle and iowait count as idle). */
const machineCpu = () => {
  const fields = (readFileSync("/proc/stat", "utf8").split("\n")[0] ?? "").trim().split(/\s+/).slice(1).map(Number)
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0)
  const all = fields.slice(0, 8).reduce((a, b) => a + b, 0)
  return { idle: idle / 100, busy: (all - idle) / 100 }
}
const planeCpu = () => ({ apiserver: cpuSeconds(plane.pids().apiserver), etcd: cpuSeconds(plane.pids().etcd), machine: machineCpu() })
const planeCpuSince = (before: ReturnType<typeof planeCpu>) => {
  const now = planeCpu()
  const idle = now.machine.idle - before.machine.idle
  const busy = now.machine.busy - before.machine.busy
  return `kube-apiserver ${(now.apiserver - before.apiserver).toFixed(1)}, etcd ${(now.etcd - before.etcd).toFixed(1)}; machine ${
    (100 * idle / (idle + busy)).toFixed(0)
  }% idle`
}

const impersonate = process.env.BENCH_IMPERSONATE === "1"
/** The plugin's ServiceAccount, ClusterRole and binding, as `halkyon manifests --plugins-dir` prints them. */
const pluginRbac = () => {
  const printed = Bun.spawnSync([join(root, "dist/halkyon"), "manifests", "--namespace", "halkyon-system", "--plugins-dir", pluginsDir], {
    stderr: "ignore"
  })
  const objects = loadAllYaml(printed.stdout.toString()) as Array<{ kind: string; metadata: { name: string; namespace?: string } }>
  return objects.filter((o) => o.kind === "Namespace" || o.metadata.name.startsWith("halkyon-plugin-"))
}
const rbacPath = (o: { kind: string; metadata: { namespace?: string } }) =>
  ({
    Namespace: "/api/v1/namespaces",
    ServiceAccount: `/api/v1/namespaces/${o.metadata.namespace}/serviceaccounts`,
    ClusterRole: "/apis/rbac.authorization.k8s.io/v1/clusterroles",
    ClusterRoleBinding: "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings"
  })[o.kind] ?? ""

/** Runs the compiled operator on namespace `ns` and measures N Capabilities through it. */
const measureOperator = async (ns: string, n: number, operatorConcurrency: string) => {
  await benchNamespace(ns)
  if (impersonate) { for (const object of pluginRbac()) await api("POST", rbacPath(object), object) }
  const proc = Bun.spawn(
    [
      ...operatorCommand,
      "run",
      "--kubeconfig",
      plane.kubeconfigPath,
      "--plugins-dir",
      pluginsDir,
      "-n",
      ns,
      "--concurrency",
      operatorConcurrency,
      "--log-level",
      process.env.BENCH_LOG_LEVEL ?? "info",
      "--health-addr",
      "0",
      "--metrics-addr",
      "127.0.0.1:0",
      ...(impersonate ? ["--impersonate", "always", "--operator-namespace", "halkyon-system"] : [])
    ],
    { stdout: "ignore", stderr: "pipe" }
  )
  operator = proc
  try {
    const reader = proc.stderr.getReader()
    let seen = ""
    while (!seen.includes("operator ready")) {
      const { value, done } = await reader.read()
      if (done) throw new Error(`the operator exited: ${seen}`)
      seen += new TextDecoder().decode(value)
    }
    // Draining its log, so that it never blocks on a full pipe, tells when its statuses are written.
    const logged = untilLogged(reader, ns, n)
    const before = planeCpu()
    const metricsUrl = `http://${/metrics on ([0-9.]+:\d+)/.exec(seen)?.[1]}/metrics`
    const run = await operatorRun(ns, n, proc.pid, logged)
    const metrics = await (await fetch(metricsUrl)).text()
    const sum = (pattern: RegExp) => [...metrics.matchAll(pattern)].reduce((total, m) => total + Number(m[1]), 0)
    const reconciles = sum(/^halkyon_reconcile_total\{[^}]*\} (\d+)$/gm)
    const calls = sum(/^halkyon_plugin_call_duration_seconds_count\{[^}]*\} (\d+)$/gm)
    const detail = `${n}: ${reconciles} reconciles, ${calls} plugin calls; CPU seconds: operator ${cpuSeconds(proc.pid).toFixed(1)}, ` +
      `plugin ${cpuSeconds(Number(/pid=(\d+)/.exec(seen)?.[1])).toFixed(1)}, ${planeCpuSince(before)}`
    // After the figures above, so that they count the N Capabilities alone.
    const edited = await editLatencies(ns, n)
    return { ...run, detail, editP50: percentile(edited, 50), editP99: percentile(edited, 99) }
  } finally {
    proc.kill("SIGTERM")
    await proc.exited
    operator = undefined
  }
}

// BENCH_OPERATOR="bun --cpu-prof-md src/main.ts" runs the operator from source, to profile it.
const operatorCommand = process.env.BENCH_OPERATOR?.split(" ") ?? [join(root, "dist/halkyon")]
const pluginsDir = mkdtempSync(join(tmpdir(), "halkyon-bench-plugins-"))
copyFileSync(join(root, "dist/plugins", pluginName), join(pluginsDir, pluginName))
let operator: ReturnType<typeof Bun.spawn> | undefined
try {
  const operatorConcurrency = process.env.BENCH_OPERATOR_CONCURRENCY ?? "8"
  console.log(
    `halkyon reconcile benchmark: local kube-apiserver + etcd, ${navigator.hardwareConcurrency} cores; operator --concurrency ${operatorConcurrency}; API clients ${concurrency} at a time; a fresh control plane per measurement; the end seen by ${
      endBy === "watch" ? "a watch of the Capabilities" : "the operator's log line after each status write, then checked through the API"
    }\n`
  )
  console.log(
    "capabilities   floor: create   floor: apply   operator   ratio to create / apply   operator peak RSS   spec edit to status p50 / p99"
  )
  const details: Array<string> = []
  /** One row's figures, printed and kept for BENCH_MARKDOWN alike; a floor not measured (BENCH_ONLY=operator) is NaN. */
  interface Figures {
    readonly create: number
    readonly apply: number
    readonly total: number
    /** Operator / create floor and / apply floor: a run's, or the median of the runs'. */
    readonly ratios: readonly [number, number]
    /** The operator's peak RSS, MB: a run's, or the largest of the runs'. */
    readonly rss: number
    readonly p50: number
    readonly p99: number
  }
  const seconds = (value: number) => (Number.isNaN(value) ? "–" : `${value.toFixed(2)} s`)
  const ratioText = ([create, apply]: readonly [number, number]) =>
    Number.isNaN(create) ? "–" : `${create.toFixed(2)} / ${apply.toFixed(2)}`
  const editText = (p50: number, p99: number) => `${p50.toFixed(1)} / ${p99.toFixed(1)} ms`
  const cells = (label: string, f: Figures, rssNote = "") => [
    label,
    seconds(f.create),
    seconds(f.apply),
    seconds(f.total),
    ratioText(f.ratios),
    `${f.rss.toFixed(0)} MB${rssNote}`,
    editText(f.p50, f.p99)
  ]
  const widths = [12, 13, 12, 8, 23, 17, 30]
  const printRow = (row: ReadonlyArray<string>) => console.log(row.map((c, i) => c.padStart(widths[i] ?? 0)).join("   "))
  const eachRun: Array<ReadonlyArray<string>> = []
  const medianRows: Array<ReadonlyArray<string>> = []
  const editRows: Array<ReadonlyArray<string>> = []
  const summaries: Array<() => void> = []
  const editsBySize: Array<{ n: number; p50: number; p99: number }> = []
  for (const n of sizes) {
    const runs: Array<Figures> = []
    for (let r = 0; r < repeat; r++) {
      const measureCreate = async () => {
        await freshPlane()
        return floor(`floor-${n}-${r}`, n, "create").finally(() => plane.stop())
      }
      const measureApply = async () => {
        await freshPlane()
        return floor(`floor-apply-${n}-${r}`, n, "apply").finally(() => plane.stop())
      }
      const measureRun = async () => {
        await freshPlane()
        return measureOperator(`op-${n}-${r}`, n, operatorConcurrency).finally(() => plane.stop())
      }
      // The machine's speed drifts over minutes: every other run measures in
      // the reverse order, so that drift does not always favour one side.
      let create, apply, run
      if (operatorOnly) {
        run = await measureRun()
        create = apply = { seconds: NaN, detail: "" }
      } else if (r % 2 === 0) {
        create = await measureCreate()
        apply = await measureApply()
        run = await measureRun()
      } else {
        run = await measureRun()
        apply = await measureApply()
        create = await measureCreate()
      }
      details.push(...[create.detail, apply.detail, run.detail].filter((d) => d !== ""))
      const figures: Figures = {
        create: create.seconds,
        apply: apply.seconds,
        total: run.total,
        ratios: [run.total / create.seconds, run.total / apply.seconds],
        rss: run.peakRssMb,
        p50: run.editP50,
        p99: run.editP99
      }
      runs.push(figures)
      const row = cells(`${n} #${r + 1}`, figures)
      printRow(row)
      eachRun.push(row)
    }
    const medians: Figures = {
      create: median(runs.map((x) => x.create)),
      apply: median(runs.map((x) => x.apply)),
      total: median(runs.map((x) => x.total)),
      ratios: [median(runs.map((x) => x.ratios[0])), median(runs.map((x) => x.ratios[1]))],
      rss: Math.max(...runs.map((x) => x.rss)),
      p50: median(runs.map((x) => x.p50)),
      p99: median(runs.map((x) => x.p99))
    }
    editsBySize.push({ n, p50: medians.p50, p99: medians.p99 })
    summaries.push(() => {
      const row = cells(String(n), medians, " (max)")
      printRow(row)
      medianRows.push(row)
    })
  }
  console.log(`\nmedians over ${repeat} runs (the ratio column: median of the runs' ratios)`)
  for (const summary of summaries) summary()
  const smallest = editsBySize[0]
  if (smallest !== undefined && editsBySize.length > 1) {
    console.log(`\nspec edit to status update (${edits} edits, one at a time), against the same at ${smallest.n} Capabilities:`)
    for (const e of editsBySize.slice(1)) {
      console.log(`${String(e.n).padStart(12)}   p50 ${(e.p50 / smallest.p50).toFixed(2)}x   p99 ${(e.p99 / smallest.p99).toFixed(2)}x`)
      editRows.push([String(e.n), `${(e.p50 / smallest.p50).toFixed(2)}x`, `${(e.p99 / smallest.p99).toFixed(2)}x`])
    }
  }
  console.log(`\n${details.join("\n")}`)
  const header = [
    "Capabilities",
    "floor: create",
    "floor: apply",
    "operator",
    "operator / floor (create / apply)",
    "operator peak RSS",
    "spec edit to status, p50 / p99"
  ]
  writeMarkdown([
    (repeat === 1 ? "**One run** (" : `**Medians of ${repeat} runs** (the ratio: the median of the runs' ratios; peak RSS: the largest; `) +
    `the spec edits: ${edits}, one at a time, once every status is written):`,
    markdownTable(header, medianRows),
    ...(repeat > 1 ? ["**Each run**, in the order measured:", markdownTable(header, eachRun)] : []),
    ...(editRows.length > 0
      ? [
        `**Spec edit to status update against the same at ${smallest?.n} Capabilities** (medians' ratio):`,
        markdownTable(["Capabilities", "p50", "p99"], editRows)
      ]
      : []),
    "**Per measurement**: reconciles, plugin calls and CPU seconds (the floor's own client, the operator, its plugin, " +
    "kube-apiserver, etcd), and how idle the machine was:",
    details.map((d) => `- ${d}`).join("\n")
  ])
} finally {
  operator?.kill("SIGTERM")
  await operator?.exited
  await plane?.stop()
  rmSync(pluginsDir, { recursive: true, force: true })
}

/**
 * What the fault tests share: postgres Capabilities, the check that one is
 * reconciled (its current generation reported, its StatefulSet of its version
 * and owned by this very object), and bounded waits that say what they saw.
 */
import {
  capabilityPath,
  type Cluster,
  createNamespace as createNamespaceIn,
  dig,
  type Operator,
  readyOf,
  startCluster,
  startOperator,
  untilReady
} from "./cluster.ts"
import { type FaultProxy, startFaultProxy } from "./FaultProxy.ts"
import { builtPlugin, eventually, pluginsFolder } from "./paths.ts"

export const FaultNamespace = "faults"

/** Creates the fault tests' namespace (or `name`). */
export const createNamespace = (cluster: Cluster, name = FaultNamespace) => createNamespaceIn(cluster, name)

export const createCapability = async (cluster: Cluster, name: string, version: string, ns = FaultNamespace) => {
  const created = await cluster.api("POST", capabilityPath(ns), {
    apiVersion: "halkyon.io/v1beta1",
    kind: "Capability",
    metadata: { name },
    spec: { category: "database", type: "postgres", version }
  })
  if (created.status !== 201) throw new Error(`creating ${name} failed: ${JSON.stringify(created.body)}`)
  return dig<string>(created.body, "metadata", "uid") ?? ""
}

export const changeVersion = async (cluster: Cluster, name: string, version: string, ns = FaultNamespace) => {
  const patched = await cluster.api("PATCH", capabilityPath(ns, name), { spec: { version } }, "application/merge-patch+json")
  if (patched.status !== 200) throw new Error(`changing ${name} failed: ${JSON.stringify(patched.body)}`)
}

export const deleteCapability = async (cluster: Cluster, name: string, ns = FaultNamespace) => {
  const deleted = await cluster.api("DELETE", capabilityPath(ns, name))
  if (deleted.status !== 200) throw new Error(`deleting ${name} failed: ${JSON.stringify(deleted.body)}`)
}

/** What is wrong with a Capability's reconcile, or undefined once it is reconciled at its current generation and version. */
export const notReconciled = async (cluster: Cluster, name: string, ns = FaultNamespace): Promise<string | undefined> => {
  const capability = await cluster.api("GET", capabilityPath(ns, name))
  if (capability.status !== 200) return `GET ${name}: ${capability.status}`
  const generation = dig<number>(capability.body, "metadata", "generation")
  const ready = readyOf(capability)
  if (ready === undefined || ready.observedGeneration !== generation) {
    return `${name}: Ready ${JSON.stringify(ready)} is not about generation ${generation}`
  }
  const version = dig<string>(capability.body, "spec", "version")
  const uid = dig<string>(capability.body, "metadata", "uid")
  const sts = await cluster.api("GET", `/apis/apps/v1/namespaces/${ns}/statefulsets/${name}`)
  const image = dig<string>(sts.body, "spec", "template", "spec", "containers", 0, "image")
  if (image !== `postgres:${version}`) return `${name}: StatefulSet image ${image}, not postgres:${version}`
  const owner = dig<string>(sts.body, "metadata", "ownerReferences", 0, "uid")
  if (owner !== uid) return `${name}: StatefulSet owned by ${owner}, not by the Capability ${uid}`
  return undefined
}

/** Waits until every named Capability is reconciled; returns performance.now() then, or throws with what was still wrong. */
export const untilReconciled = async (cluster: Cluster, names: ReadonlyArray<string>, timeoutMs: number, ns = FaultNamespace) => {
  let wrong: Array<string> = []
  const ok = await eventually(
    async () => {
      wrong = []
      for (const name of names) {
        const problem = await notReconciled(cluster, name, ns)
        if (problem !== undefined) wrong.push(problem)
      }
      return wrong.length === 0
    },
    timeoutMs,
    100
  )
  if (!ok) throw new Error(`not reconciled within ${timeoutMs} ms: ${wrong.join("; ")}`)
  return performance.now()
}

/** Waits for a condition, or throws naming it. */
/** A Capability's Ready condition as "status/reason", undefined before it has one. */
export const readyReason = async (cluster: Cluster, name: string, ns = FaultNamespace): Promise<string | undefined> => {
  const ready = readyOf(await cluster.api("GET", capabilityPath(ns, name)))
  return ready === undefined ? undefined : `${ready.status}/${ready.reason}`
}

export const until = async (what: string, check: () => boolean | Promise<boolean>, timeoutMs: number, stepMs = 50) => {
  if (!(await eventually(check, timeoutMs, stepMs))) throw new Error(`${what} did not happen within ${timeoutMs} ms`)
  return performance.now()
}

/** Waits until a Capability is gone from the API server (deleted, its finalizers let go); returns performance.now() then. */
export const untilGone = (cluster: Cluster, name: string, timeoutMs: number, ns = FaultNamespace) =>
  until(
    `the deleted Capability ${name} is released`,
    async () => (await cluster.api("GET", capabilityPath(ns, name))).status === 404,
    timeoutMs
  )

/** A counter or gauge from the operator's /metrics, summed over the series whose labels contain `labels`. */
export const metric = async (base: string, name: string, labels = ""): Promise<number> => {
  const text = await (await fetch(`${base}/metrics`)).text()
  let total = 0
  for (const line of text.split("\n")) {
    if (!line.startsWith(name) || (line[name.length] !== " " && line[name.length] !== "{")) continue
    if (labels !== "" && !line.includes(labels)) continue
    total += Number(line.slice(line.lastIndexOf(" ") + 1))
  }
  return total
}

/**
 * Waits until the operator has nothing left to do, so that its writes can be counted: no Capability waiting in its
 * work queue, being reconciled or scheduled to be again (`halkyon_workqueue_pending` 0; `halkyon_workqueue_depth`
 * counts only the first), and it stays so, with no reconcile finished, for `quietMs`: long enough for the watch
 * events of its last writes, already on their way, to start a reconcile if they were to.
 */
export const untilSettled = async (metrics: string, timeoutMs = 15_000, quietMs = 1_000) => {
  const deadline = performance.now() + timeoutMs
  let quietSince: number | undefined
  let reconciles = -1
  let pending = -1
  while (performance.now() < deadline) {
    pending = await metric(metrics, "halkyon_workqueue_pending")
    const finished = await metric(metrics, "halkyon_reconcile_total")
    if (pending !== 0) quietSince = undefined
    else if (quietSince === undefined || finished !== reconciles) quietSince = performance.now()
    else if (performance.now() - quietSince >= quietMs) return performance.now()
    reconciles = finished
    await Bun.sleep(50)
  }
  throw new Error(`the operator did not settle within ${timeoutMs} ms: ${pending} Capabilities pending, ${reconciles} reconciles`)
}

/** The writes the proxy forwarded since index `from`, counted by "METHOD path". */
export const writesSince = (proxy: FaultProxy, from: number) => {
  const counts = new Map<string, number>()
  for (const w of proxy.writes.slice(from)) counts.set(`${w.method} ${w.path}`, (counts.get(`${w.method} ${w.path}`) ?? 0) + 1)
  return counts
}

/** The writes among `counts` about a postgres Capability: to it, its status, or its dependents (`name`, `name-config`). */
export const writesAbout = (counts: ReadonlyMap<string, number>, name: string) =>
  Object.fromEntries([...counts].filter(([k]) => k.endsWith(`/${name}`) || k.endsWith(`/${name}/status`) || k.endsWith(`/${name}-config`)))

/** What deleting a reconciled postgres Capability takes, once each: its three dependents deleted and its finalizer let go. */
export const deletionWrites = (name: string, ns = FaultNamespace) => ({
  [`DELETE /api/v1/namespaces/${ns}/secrets/${name}-config`]: 1,
  [`DELETE /apis/apps/v1/namespaces/${ns}/statefulsets/${name}`]: 1,
  [`DELETE /api/v1/namespaces/${ns}/services/${name}`]: 1,
  [`PATCH /apis/halkyon.io/v1beta1/namespaces/${ns}/capabilities/${name}`]: 1
})

/** A control plane, the fault proxy in front of it, and the operator (postgres bundle) talking through the proxy. */
export interface ProxiedOperator {
  readonly cluster: Cluster
  readonly proxy: FaultProxy
  readonly operator: Operator
  readonly stop: () => Promise<void>
}

export const startProxiedOperator = async (
  options: { readonly apiServerArgs?: ReadonlyArray<string>; readonly operatorArgs?: ReadonlyArray<string> } = {}
): Promise<ProxiedOperator> => {
  const plugins = pluginsFolder(builtPlugin("postgres.js"))
  // No kube-controller-manager: these cases count the operator's writes through the proxy ("nothing written
  // twice"), and the statefulset controller's status writes are changes by another hand that rightly cause more.
  const cluster = await startCluster({
    controllerManager: false,
    ...(options.apiServerArgs === undefined ? {} : { apiServerArgs: [...options.apiServerArgs] })
  })
  await createNamespace(cluster)
  const proxy = startFaultProxy(cluster.plane)
  const operator = await untilReady(startOperator(cluster, plugins.dir, options.operatorArgs ?? [], proxy.kubeconfigPath))
  return {
    cluster,
    proxy,
    operator,
    stop: async () => {
      await operator.stop()
      await proxy.stop()
      await cluster.plane.stop()
      plugins.cleanup()
    }
  }
}

/**
 * `halkyon run` flags of a fast election on Lease `lease` in namespace default (2 s lease unless told,
 * 1.5 s renew deadline), whose loser must be interrupted rather than finish: a graceful shutdown time far
 * beyond the lease. The lease duration less the renew deadline is the margin a leader's last write has to
 * be answered in before another may take over.
 */
export const fastElection = (lease: string, leaseDuration = "2s"): Array<string> => [
  "--leader-elect",
  "--leader-election-namespace",
  "default",
  "--leader-election-id",
  lease,
  "--lease-duration",
  leaseDuration,
  "--renew-deadline",
  "1500ms",
  "--retry-period",
  "250ms",
  // Whatever is in flight when leadership is lost is interrupted; this would otherwise let it finish.
  "--graceful-shutdown-timeout",
  "60s"
]

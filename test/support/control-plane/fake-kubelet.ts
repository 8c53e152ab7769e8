// A stand-in for the one thing the local control plane lacks: a kubelet. It registers a Node and keeps
// its Lease fresh (so kube-controller-manager's node lifecycle controller keeps it Ready and evicts
// nothing), finishes the deletion of its pods (a pod bound to a node stays Terminating until its
// kubelet says its containers stopped, which would hold a StatefulSet's rolling update and a
// foreground deletion forever), and, when asked, binds a workload's pods to that Node and reports them
// Running and Ready, as a kubelet would once their containers answered, from then on (a pod the
// controller replaces in a rolling update runs too). The workload controllers then write the
// StatefulSet's or Deployment's status themselves, as on a cluster.

import { adminRequest, type ApiAccess, type ApiResponse } from "./admin-api.ts"

export type WorkloadResource = "statefulsets" | "deployments"

export const FAKE_NODE_NAME = "halkyon-node"
const LEASE_NAMESPACE = "kube-node-lease"
const LEASE_DURATION_SECONDS = 40
const LEASE_RENEW_MS = 10_000
const POD_POLL_MS = 500
const POLL_MS = 100
const DEFAULT_ROLLOUT_TIMEOUT_MS = 60_000

async function expectStatus(answer: Promise<ApiResponse>, ok: number[], what: string): Promise<ApiResponse> {
  const got = await answer
  if (!ok.includes(got.status)) throw new Error(`${what}: HTTP ${got.status} ${JSON.stringify(got.body)}`)
  return got
}

/** Kubernetes MicroTime (Leases want microseconds). */
const microTime = (date = new Date()): string => date.toISOString().replace(/\.(\d{3})Z$/, ".$1000Z")
const time = (date = new Date()): string => date.toISOString().replace(/\.\d{3}Z$/, "Z")

export interface FakeKubelet {
  readonly nodeName: string
  /** From now on, runs every pod of `namespace` that `selector` (a label selector) matches. Returns at once. */
  run(namespace: string, selector: string): void
  /** Stops renewing the Node's Lease, finishing its pods' deletion and running pods. */
  stop(): void
}

/** Registers the Node (Ready, room for many pods) and renews its Lease every ten seconds until stopped. */
export async function startFakeKubelet(access: ApiAccess): Promise<FakeKubelet> {
  const now = time()
  const ready = {
    type: "Ready",
    status: "True",
    reason: "KubeletReady",
    message: "halkyon fake kubelet",
    lastHeartbeatTime: now,
    lastTransitionTime: now
  }
  const capacity = { cpu: "16", memory: "64Gi", pods: "250" }
  await expectStatus(
    adminRequest(access, "POST", "/api/v1/nodes", {
      apiVersion: "v1",
      kind: "Node",
      metadata: { name: FAKE_NODE_NAME, labels: { "kubernetes.io/hostname": FAKE_NODE_NAME, "kubernetes.io/os": "linux" } },
      status: {
        conditions: [ready],
        capacity,
        allocatable: capacity,
        addresses: [{ type: "InternalIP", address: "127.0.0.1" }, { type: "Hostname", address: FAKE_NODE_NAME }],
        nodeInfo: { kubeletVersion: "halkyon-fake", operatingSystem: "linux", architecture: "amd64" }
      }
    }),
    [201, 409],
    `registering Node ${FAKE_NODE_NAME}`
  )
  const leasePath = `/apis/coordination.k8s.io/v1/namespaces/${LEASE_NAMESPACE}/leases/${FAKE_NODE_NAME}`
  const renew = async (): Promise<void> => {
    const spec = { holderIdentity: FAKE_NODE_NAME, leaseDurationSeconds: LEASE_DURATION_SECONDS, renewTime: microTime() }
    const patched = await adminRequest(access, "PATCH", leasePath, { spec }, "application/merge-patch+json")
    if (patched.status !== 404) return
    await adminRequest(access, "POST", `/apis/coordination.k8s.io/v1/namespaces/${LEASE_NAMESPACE}/leases`, {
      apiVersion: "coordination.k8s.io/v1",
      kind: "Lease",
      metadata: { name: FAKE_NODE_NAME, namespace: LEASE_NAMESPACE },
      spec
    })
  }
  await renew()
  // A missed renewal (an API server restart) is caught up by the next one, long before the Lease expires.
  const leaseTimer = setInterval(() => void renew().catch(() => {}), LEASE_RENEW_MS)
  leaseTimer.unref()
  let stopped = false
  const running = new Map<string, { namespace: string; selector: string }>()
  const loop = async (): Promise<void> => {
    while (!stopped) {
      // Errors (an API server restarting) are retried on the next round.
      await finishDeletions(access).catch(() => {})
      for (const { namespace, selector } of running.values()) await runPods(access, namespace, selector).catch(() => 0)
      await Bun.sleep(POD_POLL_MS)
    }
  }
  void loop()
  return {
    nodeName: FAKE_NODE_NAME,
    run: (namespace, selector) => void running.set(`${namespace}/${selector}`, { namespace, selector }),
    stop: () => {
      stopped = true
      clearInterval(leaseTimer)
    }
  }
}

/** What a kubelet does once a deleted pod's containers stopped: deletes it for good. */
async function finishDeletions(access: ApiAccess): Promise<void> {
  const list = await adminRequest(access, "GET", `/api/v1/pods?fieldSelector=${encodeURIComponent(`spec.nodeName=${FAKE_NODE_NAME}`)}`)
  if (list.status !== 200) return
  for (const pod of (list.body.items ?? []) as Array<Pod & { metadata: { namespace: string; uid: string } }>) {
    if (pod.metadata.deletionTimestamp === undefined) continue
    await adminRequest(access, "DELETE", `/api/v1/namespaces/${pod.metadata.namespace}/pods/${pod.metadata.name}`, {
      apiVersion: "v1",
      kind: "DeleteOptions",
      gracePeriodSeconds: 0,
      preconditions: { uid: pod.metadata.uid }
    })
  }
}

interface Pod {
  metadata: { name: string; deletionTimestamp?: string }
  spec: { nodeName?: string; containers: Array<{ name: string; image?: string }> }
  status?: { conditions?: Array<{ type: string; status: string }> }
}

let podIpCounter = 0

/** Binds each pod matching `selector` to the fake Node and reports it Running and Ready. Returns how many it changed. */
export async function runPods(access: ApiAccess, namespace: string, selector: string): Promise<number> {
  const list = await expectStatus(
    adminRequest(access, "GET", `/api/v1/namespaces/${namespace}/pods?labelSelector=${encodeURIComponent(selector)}`),
    [200],
    `listing pods ${selector} in ${namespace}`
  )
  let changed = 0
  for (const pod of (list.body.items ?? []) as Pod[]) {
    if (pod.metadata.deletionTimestamp !== undefined) continue
    if (pod.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") === true) continue
    const path = `/api/v1/namespaces/${namespace}/pods/${pod.metadata.name}`
    if (pod.spec.nodeName === undefined) {
      // What the scheduler does; 409 when it was bound meanwhile.
      await expectStatus(
        adminRequest(access, "POST", `${path}/binding`, {
          apiVersion: "v1",
          kind: "Binding",
          metadata: { name: pod.metadata.name },
          target: { apiVersion: "v1", kind: "Node", name: FAKE_NODE_NAME }
        }),
        [201, 409],
        `binding pod ${namespace}/${pod.metadata.name}`
      )
    }
    const now = time()
    const podIp = `10.244.${Math.floor(podIpCounter / 250) % 250}.${(podIpCounter++ % 250) + 2}`
    const condition = (type: string) => ({ type, status: "True", lastProbeTime: null, lastTransitionTime: now })
    const patched = await adminRequest(access, "PATCH", `${path}/status`, {
      status: {
        phase: "Running",
        hostIP: "127.0.0.1",
        hostIPs: [{ ip: "127.0.0.1" }],
        podIP: podIp,
        podIPs: [{ ip: podIp }],
        startTime: now,
        conditions: ["PodReadyToStartContainers", "Initialized", "ContainersReady", "PodScheduled", "Ready"].map(condition),
        containerStatuses: pod.spec.containers.map((c) => ({
          name: c.name,
          image: c.image ?? "unknown",
          imageID: "",
          ready: true,
          started: true,
          restartCount: 0,
          state: { running: { startedAt: now } }
        }))
      }
    }, "application/merge-patch+json")
    // 404/409: the controller replaced the pod meanwhile; the next round sees the new one.
    if (patched.status === 200) changed++
    else if (patched.status !== 404 && patched.status !== 409) {
      throw new Error(`reporting pod ${namespace}/${pod.metadata.name} ready: HTTP ${patched.status} ${JSON.stringify(patched.body)}`)
    }
  }
  return changed
}

interface Workload {
  metadata: { generation?: number }
  spec: { replicas?: number; selector: { matchLabels?: Record<string, string> } }
  status?: { observedGeneration?: number; readyReplicas?: number; availableReplicas?: number; updatedReplicas?: number }
}

const selectorOf = (workload: Workload): string =>
  Object.entries(workload.spec.selector.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`).join(",")

const rolledOut = (workload: Workload): boolean => {
  const want = workload.spec.replicas ?? 1
  const status = workload.status ?? {}
  return status.observedGeneration === workload.metadata.generation && (status.readyReplicas ?? 0) === want &&
    (status.availableReplicas ?? 0) === want && (status.updatedReplicas ?? 0) === want
}

/**
 * Has the fake kubelet run a StatefulSet's or Deployment's pods from now on, and waits until its own
 * controller reports every replica ready and available for its current generation (a StatefulSet
 * creates its pods one at a time).
 */
export async function rollOutWithFakeKubelet(
  access: ApiAccess,
  kubelet: FakeKubelet,
  resource: WorkloadResource,
  namespace: string,
  name: string,
  timeoutMs = DEFAULT_ROLLOUT_TIMEOUT_MS
): Promise<void> {
  const path = `/apis/apps/v1/namespaces/${namespace}/${resource}/${name}`
  const deadline = performance.now() + timeoutMs
  let last: Workload | undefined
  while (performance.now() < deadline) {
    const got = await adminRequest(access, "GET", path)
    if (got.status === 200) {
      last = got.body as unknown as Workload
      if (rolledOut(last)) return
      kubelet.run(namespace, selectorOf(last))
      await runPods(access, namespace, selectorOf(last))
    }
    await Bun.sleep(POLL_MS)
  }
  throw new Error(`${resource} ${namespace}/${name} did not roll out within ${timeoutMs / 1000}s: ${JSON.stringify(last?.status)}`)
}

/** Without kube-controller-manager: writes the status its controller would write once the pods ran. */
export async function markRolledOut(access: ApiAccess, resource: WorkloadResource, namespace: string, name: string): Promise<void> {
  const path = `/apis/apps/v1/namespaces/${namespace}/${resource}/${name}`
  const workload = (await expectStatus(adminRequest(access, "GET", path), [200], `reading ${resource} ${namespace}/${name}`))
    .body as unknown as Workload
  const replicas = workload.spec.replicas ?? 1
  await expectStatus(
    adminRequest(access, "PATCH", `${path}/status`, {
      status: {
        observedGeneration: workload.metadata.generation,
        replicas,
        updatedReplicas: replicas,
        readyReplicas: replicas,
        availableReplicas: replicas
      }
    }, "application/merge-patch+json"),
    [200],
    `marking ${resource} ${namespace}/${name} rolled out`
  )
}

/**
 * The operator end to end: the compiled binary against a real kube-apiserver
 * and etcd, with real plugin processes. There is no kubelet nor
 * controller-manager: tests mark workloads ready by patching their status,
 * and check owner references rather than cascading deletion.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { copyFileSync, existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import {
  capabilityPath,
  type Cluster,
  dig,
  eventsAbout,
  existedAt,
  type Operator,
  readyOf,
  markStatefulSetReady as markReady,
  startOperator,
  startWithPostgres,
  untilReady,
  createNamespace
} from "../support/cluster.ts"
import { eventually, processesMatching, testPlugin } from "../support/paths.ts"

let cluster: Cluster
let operator: Operator
let pluginsDir: string

const ns = "shop"

const createCapability = (name: string, spec: Record<string, unknown>) =>
  cluster.api("POST", capabilityPath(ns), { apiVersion: "halkyon.io/v1beta1", kind: "Capability", metadata: { name }, spec })

const capability = (name: string) => cluster.api("GET", capabilityPath(ns, name))

/** Waits until the Capability's Ready condition matches; fails with the last status seen. */
const waitReady = async (name: string, status: string, reason?: string, timeoutMs = 20_000, message?: string) => {
  let last: unknown
  const ok = await eventually(
    async () => {
      const c = await capability(name)
      last = c.body.status
      const ready = readyOf(c)
      return ready?.status === status && (reason === undefined || ready.reason === reason) &&
        (message === undefined || ready.message === message)
    },
    timeoutMs,
    100
  )
  if (!ok) {
    throw new Error(
      `${name} never reached Ready=${status}${reason === undefined ? "" : ` (${reason})`}; last status: ${JSON.stringify(last)}`
    )
  }
  return capability(name)
}

const markStatefulSetReady = (name: string) => markReady(cluster, ns, name)

const exists = async (path: string) => (await cluster.api("GET", path)).status === 200

/** Where the flaky plugin marks the builds it started and answered (its MARKS parameter). */
const marks = mkdtempSync(join(tmpdir(), "halkyon-marks-"))

/** Whether the flaky plugin marked a build of `name` (by any of its processes) as `what`. */
const marked = (name: string, what: "started" | "answered") =>
  existsSync(marks) && readdirSync(marks).some((f) => f.startsWith(`${name}.`) && f.endsWith(`.${what}`))

let stop = async () => {}

beforeAll(async () => {
  ;({ cluster, operator, pluginsDir, stop } = await startWithPostgres(ns))
}, 30 * 60_000)

afterAll(async () => {
  await stop()
  rmSync(marks, { recursive: true, force: true })
})

describe("a postgres Capability", () => {
  test("gets its Secret first, then its StatefulSet and Service, owned by it, and becomes Ready when the StatefulSet is", async () => {
    expect(
      (await createCapability("orders", {
        category: "database",
        type: "postgres",
        version: "16",
        parameters: [{ name: "DB_USER", value: "admin" }]
      })).status
    ).toBe(201)
    // The StatefulSet controller observes the new generation and creates the pod, which no kubelet runs yet.
    const pending = await waitReady("orders", "False", "DependentsNotReady", 20_000, "StatefulSet orders: 0/1 replicas ready")
    expect(dig(pending.body, "status", "bindingSecret")).toBe("orders-config")
    const uid = dig<string>(pending.body, "metadata", "uid")
    const paths = [
      `/api/v1/namespaces/${ns}/secrets/orders-config`,
      `/apis/apps/v1/namespaces/${ns}/statefulsets/orders`,
      `/api/v1/namespaces/${ns}/services/orders`
    ]
    const objects = await Promise.all(paths.map((p) => cluster.api("GET", p)))
    for (const o of objects) {
      expect(o.status).toBe(200)
      expect(dig(o.body, "metadata", "ownerReferences")).toEqual([
        { apiVersion: "halkyon.io/v1beta1", kind: "Capability", name: "orders", uid, controller: true, blockOwnerDeletion: true }
      ])
      expect(dig(o.body, "metadata", "managedFields", 0, "manager")).toBe("halkyon")
    }
    // etcd revisions tell the order the objects were written in: both depend on the Secret alone, so
    // they come after it, in one wave, in either order. The StatefulSet's revision is its controller's
    // latest status write, so it is placed by listing StatefulSets as they were at a revision.
    const [secretRevision = 0, , serviceRevision = 0] = objects.map((o) => Number(dig<string>(o.body, "metadata", "resourceVersion")))
    expect(secretRevision).toBeLessThan(serviceRevision)
    const statefulSets = `/apis/apps/v1/namespaces/${ns}/statefulsets`
    expect(await existedAt(cluster, statefulSets, "orders", secretRevision)).toBe(false)
    const inventory = dig<Array<{ id: string; dependsOn?: Array<string> }>>(pending.body, "status", "inventory") ?? []
    expect(inventory.map((e) => [e.id, e.dependsOn ?? []])).toEqual([
      ["config-secret", []],
      ["statefulset", ["config-secret"]],
      ["service", ["config-secret"]]
    ])
    expect(dig(pending.body, "status", "dependents")).toEqual([
      { id: "config-secret", kind: "Secret", name: "orders-config", ready: true, reason: "Applied", message: "" },
      {
        id: "statefulset",
        kind: "StatefulSet",
        name: "orders",
        ready: false,
        reason: "ReplicasNotReady",
        message: "0/1 replicas ready"
      },
      { id: "service", kind: "Service", name: "orders", ready: true, reason: "Applied", message: "" }
    ])

    await markStatefulSetReady("orders")
    const ready = await waitReady("orders", "True", "Ready")
    // What `kubectl wait --for=condition=Ready` checks, and that it is about this generation.
    expect(readyOf(ready)).toMatchObject({
      status: "True",
      reason: "Ready",
      observedGeneration: dig<number>(ready.body, "metadata", "generation")
    })
    expect(dig(ready.body, "status", "observedGeneration")).toBe(dig<number>(ready.body, "metadata", "generation"))
    expect(await eventsAbout(cluster, ns, "orders", "Capability")).toEqual(["Normal/Ready"])
  })

  test("changed parameters update the dependents", async () => {
    const before = await capability("orders")
    const patched = await cluster.api(
      "PATCH",
      capabilityPath(ns, "orders"),
      { spec: { version: "17", parameters: [{ name: "DB_USER", value: "admin" }, { name: "DB_NAME", value: "orders" }] } },
      "application/merge-patch+json"
    )
    expect(patched.status).toBe(200)
    expect(
      await eventually(async () => {
        const sts = await cluster.api("GET", `/apis/apps/v1/namespaces/${ns}/statefulsets/orders`)
        return dig(sts.body, "spec", "template", "spec", "containers", 0, "image") === "postgres:17"
      }, 15_000)
    ).toBe(true)
    expect(
      await eventually(async () => {
        const secret = await cluster.api("GET", `/api/v1/namespaces/${ns}/secrets/orders-config`)
        return Buffer.from(dig<string>(secret.body, "data", "DB_NAME") ?? "", "base64").toString() === "orders"
      }, 15_000)
    ).toBe(true)
    const generation = dig<number>((await capability("orders")).body, "metadata", "generation") ?? 0
    expect(generation).toBeGreaterThan(dig<number>(before.body, "metadata", "generation") ?? 0)
    expect(await eventually(async () => readyOf(await capability("orders"))?.observedGeneration === generation, 15_000)).toBe(true)
  })

  test("a dependent deleted by hand is recreated", async () => {
    const service = await cluster.api("GET", `/api/v1/namespaces/${ns}/services/orders`)
    expect((await cluster.api("DELETE", `/api/v1/namespaces/${ns}/services/orders`)).status).toBe(200)
    expect(
      await eventually(async () => {
        const again = await cluster.api("GET", `/api/v1/namespaces/${ns}/services/orders`)
        return again.status === 200 && dig(again.body, "metadata", "uid") !== dig(service.body, "metadata", "uid")
      }, 15_000)
    ).toBe(true)
  })

  test("a dependent changed by hand is repaired, and the unchanged status is not rewritten", async () => {
    await markStatefulSetReady("orders")
    await waitReady("orders", "True", "Ready")
    const before = dig<string>((await capability("orders")).body, "metadata", "resourceVersion")
    const changed = await cluster.api(
      "PATCH",
      `/api/v1/namespaces/${ns}/services/orders`,
      { spec: { ports: [{ name: "postgres", port: 6000, targetPort: 6000 }] } },
      "application/merge-patch+json"
    )
    expect(changed.status).toBe(200)
    expect(
      await eventually(async () => {
        const service = await cluster.api("GET", `/api/v1/namespaces/${ns}/services/orders`)
        return dig(service.body, "spec", "ports", 0, "port") === 5432
      }, 15_000)
    ).toBe(true)
    await Bun.sleep(500)
    expect(dig<string>((await capability("orders")).body, "metadata", "resourceVersion")).toBe(before)
  })
})

describe("health and metrics", () => {
  test("/healthz and /readyz answer 200, /metrics counts reconciles and plugin calls", async () => {
    const health = operator.endpoint("health")
    const metrics = operator.endpoint("metrics")
    expect(health).toBeDefined()
    expect((await fetch(`${health}/healthz`)).status).toBe(200)
    expect((await fetch(`${health}/readyz`)).status).toBe(200)
    const response = await fetch(`${metrics}/metrics`)
    expect(response.headers.get("content-type")).toContain("text/plain; version=0.0.4")
    const text = await response.text()
    const success = Number(/^halkyon_reconcile_total\{result="success"\} (\d+)$/m.exec(text)?.[1] ?? 0)
    expect(success).toBeGreaterThan(0)
    expect(text).toMatch(/^halkyon_reconcile_duration_seconds_count \d+$/m)
    expect(text).toMatch(/^halkyon_plugin_call_duration_seconds_count\{plugin="postgres.js",method="BuildDependents"\} \d+$/m)
    expect(text).toMatch(/^halkyon_workqueue_depth \d+$/m)
  })
})

describe("a Capability no plugin serves", () => {
  test("fails saying what is available, then becomes Ready when a plugin for it is dropped in, without a restart", async () => {
    expect((await createCapability("queue", { category: "test", type: "flaky", parameters: [] })).status).toBe(201)
    const failed = await waitReady("queue", "False", "NoPlugin")
    expect(readyOf(failed)?.message).toBe(
      "no plugin serves category \"test\", type \"flaky\"; available: database/postgres (14, 15, 16, 17, 18) from plugin postgres.js"
    )
    expect(await eventsAbout(cluster, ns, "queue")).toContain("Warning/NoPlugin")
    copyFileSync(testPlugin("flaky.js"), join(pluginsDir, "flaky.js"))
    const ready = await waitReady("queue", "True", "Ready")
    expect(dig(ready.body, "status", "plugin")).toBe("flaky.js")
    expect(await exists(`/api/v1/namespaces/${ns}/configmaps/queue`)).toBe(true)
    // Its CapabilityInfo appeared too.
    const info = await cluster.api("GET", "/apis/halkyon.io/v1beta1/capabilityinfos/test-flaky")
    expect(dig(info.body, "spec", "plugin")).toBe("flaky.js")
  })

  test("a spec without a type is refused by the API server", async () => {
    const refused = await createCapability("broken", { category: "database" })
    expect(refused.status).toBe(422)
    expect(JSON.stringify(refused.body)).toContain("spec.type")
  })
})

describe("the echoes of the operator's own writes", () => {
  test("do not make a Capability reconciled again: one reconcile from creation to its status", async () => {
    const reconciles = async () => {
      const text = await (await fetch(`${operator.endpoint("metrics")}/metrics`)).text()
      return [...text.matchAll(/^halkyon_reconcile_total\{[^}]*\} (\d+)$/gm)].reduce((total, m) => total + Number(m[1]), 0)
    }
    const before = await reconciles()
    // Its one dependent is a ConfigMap, which no controller of the cluster writes (a StatefulSet's
    // status, written by its controller, is a change by another hand and so a reason).
    expect((await createCapability("quiet", { category: "test", type: "flaky", parameters: [] })).status).toBe(201)
    await waitReady("quiet", "True", "Ready")
    // The watch events of its dependent and of its status have had time to arrive.
    await Bun.sleep(1_500)
    expect(await reconciles() - before).toBe(1)
    // A change by another hand still is a reason: its ConfigMap, here.
    const changed = await cluster.api(
      "PATCH",
      `/api/v1/namespaces/${ns}/configmaps/quiet`,
      { data: { by: "hand" } },
      "application/merge-patch+json"
    )
    expect(changed.status).toBe(200)
    expect(await eventually(async () => (await reconciles()) - before === 2, 15_000)).toBe(true)
  })
})

describe("an object in the way", () => {
  test("a dependent's name held by an object another owner controls is not taken over", async () => {
    // A real owner: the garbage collector deletes an object whose owner does not exist.
    const someone = await cluster.api("POST", `/api/v1/namespaces/${ns}/configmaps`, {
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: "someone" }
    })
    expect(someone.status).toBe(201)
    const foreign = await cluster.api("POST", `/api/v1/namespaces/${ns}/configmaps`, {
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: {
        name: "taken",
        labels: { "halkyon.io/capability": "taken" },
        ownerReferences: [{
          apiVersion: "v1",
          kind: "ConfigMap",
          name: "someone",
          uid: dig<string>(someone.body, "metadata", "uid"),
          controller: true
        }]
      },
      data: { mine: "yes" }
    })
    expect(foreign.status).toBe(201)
    expect((await createCapability("taken", { category: "test", type: "flaky", parameters: [] })).status).toBe(201)
    const failed = await waitReady("taken", "False", "Conflict")
    expect(readyOf(failed)?.message).toContain(
      "ConfigMap shop/taken (id config) already exists and is not controlled by this Capability (controlled by ConfigMap someone"
    )
    const after = await cluster.api("GET", `/api/v1/namespaces/${ns}/configmaps/taken`)
    expect(dig(after.body, "metadata", "ownerReferences", 0, "name")).toBe("someone")
    expect(dig(after.body, "data")).toEqual({ mine: "yes" })
  })
})

describe("a plugin that crashes mid-reconcile", () => {
  test("shows as PluginUnavailable, then recovers by itself", async () => {
    expect((await createCapability("crashy", { category: "test", type: "flaky", parameters: [{ name: "MODE", value: "crash" }] })).status)
      .toBe(201)
    const down = await waitReady("crashy", "Unknown", "PluginUnavailable")
    expect(readyOf(down)?.message).toContain("plugin flaky.js")
    const fixed = await cluster.api(
      "PATCH",
      capabilityPath(ns, "crashy"),
      { spec: { parameters: [{ name: "MODE", value: "ok" }] } },
      "application/merge-patch+json"
    )
    expect(fixed.status).toBe(200)
    await waitReady("crashy", "True", "Ready", 30_000)
  }, 60_000)
})

describe("the API server restarting", () => {
  test("the operator's watches resume: a Capability created after the restart is reconciled", async () => {
    await cluster.plane.restartApiServer()
    expect((await createCapability("after-restart", { category: "test", type: "flaky", parameters: [] })).status).toBe(201)
    await waitReady("after-restart", "True", "Ready", 30_000)
    expect(operator.proc.exitCode).toBe(null)
  }, 120_000)
})

describe("SIGTERM", () => {
  test("mid-reconcile, the reconcile finishes: dependents and status are written, plugins stopped", async () => {
    expect(
      (await createCapability("slow", {
        category: "test",
        type: "flaky",
        parameters: [{ name: "MODE", value: "slow" }, { name: "MARKS", value: marks }]
      })).status
    ).toBe(201)
    // The plugin takes 2 s to build: stop the operator in the middle of it, once the build has started.
    expect(await eventually(() => marked("slow", "started"), 10_000, 20)).toBe(true)
    expect(marked("slow", "answered")).toBe(false)
    const code = await operator.stop("SIGTERM")
    expect(code).toBe(0)
    expect(await exists(`/api/v1/namespaces/${ns}/configmaps/slow`)).toBe(true)
    expect(readyOf(await capability("slow"))?.status).toBe("True")
    expect(await processesMatching(pluginsDir)).toEqual([])
  }, 60_000)

  test("a reconcile that would outlast --graceful-shutdown-timeout is abandoned, and the operator exits", async () => {
    // A namespace of its own: no start-up reconcile of the other tests' Capabilities takes the flaky
    // plugin's share of the workers while "stuck" starts (a call that waits past its bound is retried later).
    const own = "shop-stuck"
    await createNamespace(cluster, own)
    const later = startOperator(cluster, pluginsDir, ["--call-timeout", "60s", "--graceful-shutdown-timeout", "1s", "--namespace", own])
    try {
      await untilReady(later)
      const stuck = await cluster.api("POST", capabilityPath(own), {
        apiVersion: "halkyon.io/v1beta1",
        kind: "Capability",
        metadata: { name: "stuck" },
        spec: {
          category: "test",
          type: "flaky",
          parameters: [{ name: "MODE", value: "hang" }, { name: "MARKS", value: marks }]
        }
      })
      expect(stuck.status).toBe(201)
      // Once the build has started, the plugin spins in it for good; the call's deadline is a minute away.
      expect(await eventually(() => marked("stuck", "started"), 10_000, 20)).toBe(true)
      const stopping = performance.now()
      const code = await later.stop("SIGTERM")
      const tookMs = performance.now() - stopping
      // A graceful stop, even one that abandons a reconcile, exits 0.
      expect(code).toBe(0)
      expect(later.logs.join("\n")).toContain(
        "reconcile of capability shop-stuck/stuck did not finish within 1000 ms of shutdown: abandoned"
      )
      // Bounded by the 1 s, then the plugins' stop (grace, SIGTERM, SIGKILL): far from the minute.
      expect(tookMs).toBeLessThan(20_000)
      expect(await processesMatching(pluginsDir)).toEqual([])
    } finally {
      if (later.proc.exitCode === null) await later.stop("SIGKILL")
    }
  }, 60_000)
})

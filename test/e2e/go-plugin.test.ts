/**
 * The Go redis plugin (plugins/redis, built on go-plugin) loaded by the
 * compiled operator exactly as TypeScript plugins are, next to one, against a
 * real kube-apiserver and etcd. No kubelet runs here: the test marks the
 * Deployment available by patching its status, as a Deployment controller would.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { loadYaml } from "@kubernetes/client-node"
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import {
  capabilityPath,
  type Cluster,
  dig,
  existedAt,
  markDeploymentReady,
  type Operator,
  readyOf,
  startCluster,
  startOperator,
  untilReady,
  createNamespace
} from "../support/cluster.ts"
import { builtPlugin, eventually, root } from "../support/paths.ts"

let cluster: Cluster
let operator: Operator
let pluginsDir: string
const ns = "cache"

const capability = (name: string) => cluster.api("GET", capabilityPath(ns, name))

const waitReady = async (name: string, status: string, reason: string, message?: string) => {
  let last: unknown
  const ok = await eventually(
    async () => {
      const c = await capability(name)
      last = c.body.status
      const ready = readyOf(c)
      return ready?.status === status && ready.reason === reason && (message === undefined || ready.message === message)
    },
    20_000,
    100
  )
  if (!ok) throw new Error(`${name} never reached Ready=${status} (${reason} ${message ?? ""}); last status: ${JSON.stringify(last)}`)
  return capability(name)
}

beforeAll(async () => {
  cluster = await startCluster()
  await createNamespace(cluster, ns)
  pluginsDir = mkdtempSync(join(tmpdir(), "halkyon-go-plugins-"))
  copyFileSync(builtPlugin("redis"), join(pluginsDir, "redis"))
  copyFileSync(builtPlugin("postgres.js"), join(pluginsDir, "postgres.js"))
  Bun.spawnSync(["chmod", "+x", join(pluginsDir, "redis")])
  operator = await untilReady(startOperator(cluster, pluginsDir))
}, 30 * 60_000)

afterAll(async () => {
  await operator?.stop()
  await cluster?.plane.stop()
  if (pluginsDir !== undefined) rmSync(pluginsDir, { recursive: true, force: true })
})

describe("a redis Capability served by the Go plugin", () => {
  test("the operator registers the Go plugin beside the TypeScript one", async () => {
    const info = await cluster.api("GET", "/apis/halkyon.io/v1beta1/capabilityinfos/cache-redis")
    expect(info.status).toBe(200)
    expect(dig(info.body, "spec")).toMatchObject({
      category: "cache",
      type: "redis",
      versions: ["7.2", "7.4", "8.0"],
      defaultVersion: "8.0",
      plugin: "redis"
    })
    expect((await cluster.api("GET", "/apis/halkyon.io/v1beta1/capabilityinfos/database-postgres")).status).toBe(200)
  })

  test("gets a Secret, a Deployment and a Service in order, and becomes Ready when the Deployment is available", async () => {
    const created = await cluster.api("POST", capabilityPath(ns), {
      apiVersion: "halkyon.io/v1beta1",
      kind: "Capability",
      metadata: { name: "sessions" },
      // REDIS_PASSWORD is secret, refused as a literal value: the plugin generates one.
      spec: { category: "Cache", type: "Redis", version: "7.4", parameters: [{ name: "REDIS_MAXMEMORY", value: "32mb" }] }
    })
    expect(created.status).toBe(201)
    // The Deployment controller observes the new generation at once; no kubelet runs its pod yet.
    const pending = await waitReady("sessions", "False", "DependentsNotReady", "Deployment sessions: 0/1 replicas available")
    expect(dig(pending.body, "status")).toMatchObject({ bindingSecret: "sessions-config", plugin: "redis", version: "7.4" })
    const uid = dig<string>(pending.body, "metadata", "uid")
    const paths = [
      `/api/v1/namespaces/${ns}/secrets/sessions-config`,
      `/apis/apps/v1/namespaces/${ns}/deployments/sessions`,
      `/api/v1/namespaces/${ns}/services/sessions`
    ]
    const objects = await Promise.all(paths.map((p) => cluster.api("GET", p)))
    for (const o of objects) {
      expect(o.status).toBe(200)
      expect(dig(o.body, "metadata", "ownerReferences")).toEqual([
        { apiVersion: "halkyon.io/v1beta1", kind: "Capability", name: "sessions", uid, controller: true, blockOwnerDeletion: true }
      ])
    }
    // Written in order: the Deployment's own revision is its controller's status write, so it is placed
    // by listing Deployments as they were at a revision.
    const [secretRevision = 0, , serviceRevision = 0] = objects.map((o) => Number(dig<string>(o.body, "metadata", "resourceVersion")))
    expect(secretRevision).toBeLessThan(serviceRevision)
    const deployments = `/apis/apps/v1/namespaces/${ns}/deployments`
    expect(await existedAt(cluster, deployments, "sessions", secretRevision)).toBe(false)
    expect(await existedAt(cluster, deployments, "sessions", serviceRevision - 1)).toBe(true)
    const [secret, deployment, service] = objects
    const data = Object.fromEntries(
      Object.entries(dig<Record<string, string>>(secret?.body, "data") ?? {}).map(([k, v]) => [k, Buffer.from(v, "base64").toString()])
    )
    const password = data.REDIS_PASSWORD ?? ""
    expect(password).toMatch(/^[A-Za-z0-9_-]{24}$/)
    expect(data).toEqual({
      REDIS_HOST: `sessions.${ns}.svc`,
      REDIS_PORT: "6379",
      REDIS_PASSWORD: password,
      REDIS_URL: `redis://:${password}@sessions.${ns}.svc:6379/0`,
      // The Service Binding spec's well-known entries, beside the plugin's own.
      type: "redis",
      provider: "halkyon",
      host: `sessions.${ns}.svc`,
      port: "6379",
      password,
      uri: `redis://:${password}@sessions.${ns}.svc:6379/0`
    })
    expect(dig(deployment?.body, "spec", "template", "spec", "containers", 0, "image")).toBe("redis:7.4")
    expect(dig(service?.body, "spec", "ports", 0, "port")).toBe(6379)

    // The fake kubelet runs its pod; the deployment controller reports it available.
    await markDeploymentReady(cluster, ns, "sessions")
    const ready = await waitReady("sessions", "True", "Ready")
    expect(dig(ready.body, "status", "dependents")).toEqual([
      { id: "config-secret", kind: "Secret", name: "sessions-config", ready: true, reason: "Applied", message: "" },
      {
        id: "deployment",
        kind: "Deployment",
        name: "sessions",
        ready: true,
        reason: "ReplicasAvailable",
        message: "1/1 replicas available"
      },
      { id: "service", kind: "Service", name: "sessions", ready: true, reason: "Applied", message: "" }
    ])
  })

  test("a bad parameter is refused by the API server, with the rule the Go plugin declares", async () => {
    const badPort = {
      apiVersion: "halkyon.io/v1beta1",
      kind: "Capability",
      metadata: { name: "badport" },
      spec: { category: "cache", type: "redis", parameters: [{ name: "REDIS_PORT", value: "none" }] }
    }
    // The operator applies the plugin's policy once it registers, and the API server takes it up a moment later.
    const refused = async () => (await cluster.api("POST", `${capabilityPath(ns)}?dryRun=All`, badPort)).status === 422
    expect(await eventually(refused, 10_000, 100)).toBe(true)
    const created = await cluster.api("POST", capabilityPath(ns), badPort)
    expect(created.status).toBe(422)
    expect(String(dig(created.body, "message"))).toContain("parameter REDIS_PORT must be an integer from 1024 to 65535 (plugin redis)")
  })

  test("samples/redis.yaml applies as it is and provisions a redis cache", async () => {
    const sample = loadYaml<Record<string, unknown>>(readFileSync(join(root, "samples/redis.yaml"), "utf8"))
    expect((await cluster.api("POST", capabilityPath(ns), sample)).status).toBe(201)
    const pending = await waitReady("redis-cache", "False", "DependentsNotReady")
    expect(dig(pending.body, "status", "bindingSecret")).toBe("redis-cache-config")
    const deployment = await cluster.api("GET", `/apis/apps/v1/namespaces/${ns}/deployments/redis-cache`)
    expect(dig(deployment.body, "spec", "template", "spec", "containers", 0, "image")).toBe("redis:8.0")
  })
})

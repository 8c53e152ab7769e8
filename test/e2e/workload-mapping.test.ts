/**
 * ClusterWorkloadResourceMapping end to end: the compiled operator against a
 * real kube-apiserver. A CRD-defined workload kind, `Batch`, keeps its pod
 * template's parts at paths of its own (workers, a single setup container,
 * disks, podAnnotations); a mapping tells halkyon where, and a ServiceBinding
 * projects a Secret into it. What is checked is the custom object as the API
 * server holds it: the projection where the mapping says, a changed mapping
 * moving it, an invalid one reported, and the unbind giving back exactly the
 * object it found, also when the binding moves to a built-in kind. A kind
 * without a mapping is bound as PodSpec-able.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { type Cluster, dig, kubectl, startWithPostgres } from "../support/cluster.ts"
import { eventually } from "../support/paths.ts"

let cluster: Cluster
let stop = async () => {}
const ns = "mapped"
const group = "example.com"
const bindingsPath = (name = "") => `/apis/servicebinding.io/v1/namespaces/${ns}/servicebindings${name === "" ? "" : `/${name}`}`
const mappingsPath = (name = "") => `/apis/servicebinding.io/v1/clusterworkloadresourcemappings${name === "" ? "" : `/${name}`}`
const objectPath = (plural: string, name = "") => `/apis/${group}/v1/namespaces/${ns}/${plural}${name === "" ? "" : `/${name}`}`

/** A namespaced CRD of the example.com group whose spec holds anything (the workload's shape is the mapping's business). */
const installCrd = async (kind: string, plural: string) => {
  const created = await cluster.api("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", {
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    metadata: { name: `${plural}.${group}` },
    spec: {
      group,
      names: { kind, plural, singular: kind.toLowerCase(), listKind: `${kind}List` },
      scope: "Namespaced",
      versions: [{
        name: "v1",
        served: true,
        storage: true,
        schema: {
          openAPIV3Schema: {
            type: "object",
            properties: { spec: { type: "object", "x-kubernetes-preserve-unknown-fields": true } }
          }
        }
      }]
    }
  })
  expect(created.status).toBe(201)
  // Until the kind is served the answer is a plain-text 404, which api() cannot parse: not yet.
  const served = async () => {
    try {
      return (await cluster.api("GET", objectPath(plural))).status === 200
    } catch {
      return false
    }
  }
  expect(await eventually(served, 30_000, 100)).toBe(true)
}

const batchSpec = {
  schedule: "0 3 * * *",
  runner: {
    podAnnotations: { team: "data" },
    workers: [
      { name: "app", image: "example.com/app:1", env: [{ name: "LOG_LEVEL", value: "info" }] },
      { name: "sidecar", image: "example.com/sidecar:1" }
    ],
    setup: { title: "migrate", image: "example.com/migrate:1" },
    disks: [{ name: "scratch", emptyDir: {} }]
  }
}

const batchMapping = {
  version: "*",
  annotations: ".spec.runner.podAnnotations",
  containers: [
    { path: ".spec.runner.workers[*]", name: ".name" },
    { path: ".spec.runner.setup", name: ".title", env: ".environment", volumeMounts: ".mounts" }
  ],
  volumes: ".spec.runner.disks"
}

const putMapping = async (versions: ReadonlyArray<Record<string, unknown>>) => {
  const existing = await cluster.api("GET", mappingsPath(`batches.${group}`))
  const body = {
    apiVersion: "servicebinding.io/v1",
    kind: "ClusterWorkloadResourceMapping",
    metadata: {
      name: `batches.${group}`,
      ...(existing.status === 200 ? { resourceVersion: dig<string>(existing.body, "metadata", "resourceVersion") } : {})
    },
    spec: { versions }
  }
  const written = existing.status === 200
    ? await cluster.api("PUT", mappingsPath(`batches.${group}`), body)
    : await cluster.api("POST", mappingsPath(), body)
  expect([200, 201]).toContain(written.status)
}

const readyOfBinding = async (name: string) => {
  const b = await cluster.api("GET", bindingsPath(name))
  return dig<Array<{ type: string; status: string; reason: string; message: string }>>(b.body, "status", "conditions")?.find((c) =>
    c.type === "Ready"
  )
}
const waitBinding = async (name: string, status: string, reason: string) => {
  let last: unknown
  const ok = await eventually(
    async () => {
      const ready = await readyOfBinding(name)
      last = ready
      return ready?.status === status && ready.reason === reason
    },
    10_000,
    50
  )
  if (!ok) throw new Error(`ServiceBinding ${name} never reached Ready=${status} (${reason}); last: ${JSON.stringify(last)}`)
}

const specOf = async (plural: string, name: string) => {
  const o = await cluster.api("GET", objectPath(plural, name))
  expect(o.status).toBe(200)
  return {
    spec: dig<{ readonly schedule: string; readonly runner: Record<string, unknown> }>(o.body, "spec")!,
    raw: dig<unknown>(o.body, "spec"),
    annotations: dig<Record<string, string>>(o.body, "metadata", "annotations")
  }
}

const mount = { name: "svcb-cache", mountPath: "/bindings/cache", readOnly: true }
const root = { name: "SERVICE_BINDING_ROOT", value: "/bindings" }
const volume = { name: "svcb-cache", projected: { sources: [{ secret: { name: "cache-config" } }] } }

beforeAll(async () => {
  ;({ cluster, stop } = await startWithPostgres(ns))
  await installCrd("Batch", "batches")
  await installCrd("Runner", "runners")
  const secret = await cluster.api("POST", `/api/v1/namespaces/${ns}/secrets`, {
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name: "cache-config" },
    stringData: { type: "redis", provider: "halkyon", uri: "redis://cache:6379" }
  })
  expect(secret.status).toBe(201)
}, 30 * 60_000)

afterAll(() => stop())

describe("a custom workload kind bound through a ClusterWorkloadResourceMapping", () => {
  test("the projection lands where the mapping says: workers, the setup container by its title, disks, podAnnotations", async () => {
    await putMapping([batchMapping])
    const created = await cluster.api("POST", objectPath("batches"), {
      apiVersion: `${group}/v1`,
      kind: "Batch",
      metadata: { name: "nightly" },
      spec: batchSpec
    })
    expect(created.status).toBe(201)
    const binding = await cluster.api("POST", bindingsPath(), {
      apiVersion: "servicebinding.io/v1",
      kind: "ServiceBinding",
      metadata: { name: "cache" },
      spec: {
        service: { apiVersion: "v1", kind: "Secret", name: "cache-config" },
        workload: { apiVersion: `${group}/v1`, kind: "Batch", name: "nightly", containers: ["app", "migrate"] },
        env: [{ name: "CACHE_URL", key: "uri" }]
      }
    })
    expect(binding.status).toBe(201)
    await waitBinding("cache", "True", "Projected")

    const { spec } = await specOf("batches", "nightly")
    const cacheUrl = { name: "CACHE_URL", valueFrom: { secretKeyRef: { name: "cache-config", key: "uri" } } }
    expect(spec.schedule).toBe(batchSpec.schedule)
    expect(spec.runner.workers).toEqual([
      { ...batchSpec.runner.workers[0], env: [{ name: "LOG_LEVEL", value: "info" }, root, cacheUrl], volumeMounts: [mount] },
      batchSpec.runner.workers[1]
    ])
    expect(spec.runner.setup).toEqual({ ...batchSpec.runner.setup, environment: [root, cacheUrl], mounts: [mount] })
    expect(spec.runner.disks).toEqual([...batchSpec.runner.disks, volume])
    expect(spec.runner.podAnnotations).toEqual({
      team: "data",
      "secret-hash.servicebinding.io/svcb-cache": expect.any(String),
      "root.servicebinding.io/svcb-cache": "app,migrate"
    })
  })

  test("an invalid mapping is reported on the binding (InvalidMapping, naming the field) and leaves the workload alone", async () => {
    const before = await specOf("batches", "nightly")
    await putMapping([{ ...batchMapping, annotations: ".spec.runner.podAnnotations[*]" }])
    await waitBinding("cache", "False", "InvalidMapping")
    const message = (await readyOfBinding("cache"))?.message ?? ""
    expect(message).toContain(`ClusterWorkloadResourceMapping batches.${group} spec.versions[0].annotations`)
    expect(message).toContain("may not")
    expect((await specOf("batches", "nightly")).spec).toEqual(before.spec)
  })

  test("a changed mapping moves the projection: removed where the old one put it, made where the new one says", async () => {
    await putMapping([{ ...batchMapping, volumes: ".spec.runner.extraDisks" }])
    await waitBinding("cache", "True", "Projected")
    const { spec } = await specOf("batches", "nightly")
    expect(spec.runner.disks).toEqual(batchSpec.runner.disks)
    expect(spec.runner.extraDisks).toEqual([volume])
  })

  test("deleting the binding removes exactly the projection: the object is the one it found", async () => {
    expect((await cluster.api("DELETE", bindingsPath("cache"))).status).toBe(200)
    expect(await eventually(async () => (await cluster.api("GET", bindingsPath("cache"))).status === 404, 10_000, 50)).toBe(true)
    const { spec, annotations } = await specOf("batches", "nightly")
    expect(spec).toEqual(batchSpec)
    expect(annotations).toBeUndefined()
  })
})

describe("a binding moved from a mapped kind to a built-in one", () => {
  test("Batch to Deployment: the Batch is the object it found again, the Deployment is projected; deleting the binding unbinds it", async () => {
    const created = await cluster.api("POST", objectPath("batches"), {
      apiVersion: `${group}/v1`,
      kind: "Batch",
      metadata: { name: "moving" },
      spec: batchSpec
    })
    expect(created.status).toBe(201)
    const labels = { app: "after" }
    const deployment = await cluster.api("POST", `/apis/apps/v1/namespaces/${ns}/deployments`, {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: "after", labels },
      spec: {
        selector: { matchLabels: labels },
        template: { metadata: { labels }, spec: { containers: [{ name: "app", image: "example.com/app:1" }] } }
      }
    })
    expect(deployment.status).toBe(201)
    const deploymentTemplate = async () =>
      dig<{ spec: { volumes?: ReadonlyArray<{ name: string }> } }>(
        (await cluster.api("GET", `/apis/apps/v1/namespaces/${ns}/deployments/after`)).body,
        "spec",
        "template"
      )!
    const before = await deploymentTemplate()
    const binding = await cluster.api("POST", bindingsPath(), {
      apiVersion: "servicebinding.io/v1",
      kind: "ServiceBinding",
      metadata: { name: "mover" },
      spec: {
        service: { apiVersion: "v1", kind: "Secret", name: "cache-config" },
        workload: { apiVersion: `${group}/v1`, kind: "Batch", name: "moving" }
      }
    })
    expect(binding.status).toBe(201)
    await waitBinding("mover", "True", "Projected")
    expect((await specOf("batches", "moving")).annotations).toHaveProperty(["mapping.servicebinding.io/svcb-mover"])

    const moved = await cluster.api(
      "PATCH",
      bindingsPath("mover"),
      { spec: { workload: { apiVersion: "apps/v1", kind: "Deployment", name: "after" } } },
      "application/merge-patch+json"
    )
    expect(moved.status).toBe(200)
    expect(await eventually(async () => (await deploymentTemplate()).spec.volumes?.map((v) => v.name).join() === "svcb-mover", 5_000, 50))
      .toBe(true)
    expect(await eventually(async () => (await specOf("batches", "moving")).annotations === undefined, 5_000, 50)).toBe(true)
    expect((await specOf("batches", "moving")).spec).toEqual(batchSpec)
    await waitBinding("mover", "True", "Projected")

    expect((await cluster.api("DELETE", bindingsPath("mover"))).status).toBe(200)
    expect(await eventually(async () => (await cluster.api("GET", bindingsPath("mover"))).status === 404, 10_000, 50)).toBe(true)
    expect(await deploymentTemplate()).toEqual(before)
    expect((await specOf("batches", "moving")).spec).toEqual(batchSpec)
  })
})

describe("a custom workload kind without a mapping", () => {
  test("is treated as PodSpec-able: bound at .spec.template, and unbound exactly", async () => {
    const runnerSpec = { template: { spec: { containers: [{ name: "app", image: "example.com/app:1" }] } } }
    const created = await cluster.api("POST", objectPath("runners"), {
      apiVersion: `${group}/v1`,
      kind: "Runner",
      metadata: { name: "plain" },
      spec: runnerSpec
    })
    expect(created.status).toBe(201)
    const binding = await cluster.api("POST", bindingsPath(), {
      apiVersion: "servicebinding.io/v1",
      kind: "ServiceBinding",
      metadata: { name: "plain" },
      spec: {
        service: { apiVersion: "v1", kind: "Secret", name: "cache-config" },
        workload: { apiVersion: `${group}/v1`, kind: "Runner", name: "plain" }
      }
    })
    expect(binding.status).toBe(201)
    await waitBinding("plain", "True", "Projected")
    const template = dig<Record<string, unknown>>((await specOf("runners", "plain")).raw, "template")
    expect(dig(template, "spec", "containers", 0, "volumeMounts")).toEqual([{
      name: "svcb-plain",
      mountPath: "/bindings/plain",
      readOnly: true
    }])
    expect(dig(template, "spec", "volumes")).toEqual([{
      name: "svcb-plain",
      projected: { sources: [{ secret: { name: "cache-config" } }] }
    }])

    expect((await cluster.api("DELETE", bindingsPath("plain"))).status).toBe(200)
    expect(await eventually(async () => (await cluster.api("GET", bindingsPath("plain"))).status === 404, 10_000, 50)).toBe(true)
    expect((await specOf("runners", "plain")).raw).toEqual(runnerSpec)
  })

  test("a kind the API server does not serve: WorkloadNotFound, saying so", async () => {
    const binding = await cluster.api("POST", bindingsPath(), {
      apiVersion: "servicebinding.io/v1",
      kind: "ServiceBinding",
      metadata: { name: "ghost" },
      spec: {
        service: { apiVersion: "v1", kind: "Secret", name: "cache-config" },
        workload: { apiVersion: `${group}/v1`, kind: "Ghost", name: "none" }
      }
    })
    expect(binding.status).toBe(201)
    await waitBinding("ghost", "False", "WorkloadNotFound")
    expect((await readyOfBinding("ghost"))?.message).toContain("serves no Ghost")
  })
})

describe("the ClusterWorkloadResourceMapping CRD", () => {
  test("kubectl explain documents its fields, down to a container's path", async () => {
    const args = ["explain", "clusterworkloadresourcemapping.spec.versions.containers"]
    let explained = await kubectl(cluster, args)
    expect(await eventually(async () => (explained = await kubectl(cluster, args)).code === 0, 30_000, 500)).toBe(true)
    expect(explained.stdout).toMatch(/^GROUP:\s+servicebinding\.io$/m)
    expect(explained.stdout).toMatch(/^KIND:\s+ClusterWorkloadResourceMapping$/m)
    const fields = [...explained.stdout.matchAll(/^ {2}(\w+)\t<([^>]+)>( -required-)?$/gm)].map((m) => [m[1], m[2], m[3] !== undefined])
    expect(fields).toEqual([
      ["env", "string", false],
      ["name", "string", false],
      ["path", "string", true],
      ["volumeMounts", "string", false]
    ])
    expect(explained.stdout.replace(/\s+/g, " ")).toContain("A JSONPath to the container-like fragments of the workload")
  })
})

/**
 * Service Binding end to end: the compiled operator against a real
 * kube-apiserver, with the postgres plugin. No kubelet runs: what is checked
 * is the Deployment's pod template, as the API server holds it.
 *
 * A Deployment `web` (containers app and sidecar) is bound to a Ready
 * postgres Capability for container app, with DATABASE_URL from `uri`; the
 * projection survives a hand edit, a change of the Secret the password comes
 * from rolls the template once, deleting the Capability waits (InUse) while
 * the binding exists, and deleting the binding removes exactly the
 * projection. What the spec requires and cannot be met (no type entry, a
 * missing env key, a root from valueFrom, someone else's variable, a bad
 * name) is refused before anything is written; each built-in workload kind
 * is bound; a binding moved to another workload kind unbinds the old
 * kind's workload exactly (and, deleted, the new one's); with the controller off, its in-use finalizer does not hold a
 * Capability's deletion.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import {
  type ApiResponse,
  capabilityPath,
  type Cluster,
  dig,
  kubectl,
  markStatefulSetReady as markReady,
  type Operator,
  readyOf,
  startOperator,
  startWithPostgres,
  untilReady
} from "../support/cluster.ts"
import { jobPolicy, jobPolicyBinding } from "../../src/binding/JobPolicy.ts"
import { type Binding, type PodTemplate, project } from "../../src/binding/Projection.ts"
import { eventually } from "../support/paths.ts"

let cluster: Cluster
let operator: Operator
let pluginsDir: string

const ns = "bound"
const bindingsPath = (name = "") => `/apis/servicebinding.io/v1/namespaces/${ns}/servicebindings${name === "" ? "" : `/${name}`}`
const deploymentPath = (name: string) => `/apis/apps/v1/namespaces/${ns}/deployments/${name}`

interface Template {
  metadata?: { annotations?: Record<string, string>; labels?: Record<string, string> }
  spec: {
    containers: Array<{ name: string; env?: Array<Record<string, unknown>>; volumeMounts?: Array<Record<string, unknown>> }>
    volumes?: Array<Record<string, unknown>>
  }
}
const templateOf = async (name: string) => {
  const d = await cluster.api("GET", deploymentPath(name))
  expect(d.status).toBe(200)
  return { template: dig<Template>(d.body, "spec", "template")!, generation: dig<number>(d.body, "metadata", "generation")! }
}
const containerOf = (t: Template, name: string) => t.spec.containers.find((c) => c.name === name)

const createDeployment = async (name: string, containers: ReadonlyArray<string>, env: ReadonlyArray<Record<string, unknown>> = []) => {
  const labels = { app: name }
  const created = await cluster.api("POST", `/apis/apps/v1/namespaces/${ns}/deployments`, {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name, labels },
    spec: {
      selector: { matchLabels: labels },
      template: {
        metadata: { labels },
        spec: {
          containers: containers.map((c) => ({ name: c, image: `example.com/${c}:1`, env: [{ name: "LOG_LEVEL", value: "info" }, ...env] }))
        }
      }
    }
  })
  expect(created.status).toBe(201)
}

const createCapability = async (name: string, parameters: ReadonlyArray<Record<string, unknown>> = []) => {
  const created = await cluster.api("POST", capabilityPath(ns), {
    apiVersion: "halkyon.io/v1beta1",
    kind: "Capability",
    metadata: { name },
    spec: { category: "database", type: "postgres", version: "16", parameters }
  })
  expect(created.status).toBe(201)
}

const waitCapability = async (name: string, test: (c: ApiResponse) => boolean | Promise<boolean>, what: string, timeoutMs = 20_000) => {
  let last: unknown
  const ok = await eventually(
    async () => {
      const c = await cluster.api("GET", capabilityPath(ns, name))
      last = c.body
      return test(c)
    },
    timeoutMs,
    100
  )
  if (!ok) throw new Error(`Capability ${name} never ${what}; last: ${JSON.stringify(last)}`)
}

/** Runs the StatefulSet's pod (fake kubelet) until its controller reports it ready. */
const markStatefulSetReady = (name: string) => markReady(cluster, ns, name)

const readyPostgres = async (name: string, parameters: ReadonlyArray<Record<string, unknown>> = []) => {
  await createCapability(name, parameters)
  await waitCapability(
    name,
    async () => (await cluster.api("GET", `/apis/apps/v1/namespaces/${ns}/statefulsets/${name}`)).status === 200,
    "got its StatefulSet"
  )
  await markStatefulSetReady(name)
  await waitCapability(name, (c) => readyOf(c)?.status === "True", "became Ready")
}

const createBinding = async (name: string, spec: Record<string, unknown>) => {
  const created = await cluster.api("POST", bindingsPath(), {
    apiVersion: "servicebinding.io/v1",
    kind: "ServiceBinding",
    metadata: { name },
    spec
  })
  expect(created.status).toBe(201)
}

const bindingReady = async (name: string) => {
  const b = await cluster.api("GET", bindingsPath(name))
  return dig<Array<{ type: string; status: string; reason: string; message: string }>>(b.body, "status", "conditions")?.find((c) =>
    c.type === "Ready"
  )
}

const createSecret = async (name: string, stringData: Record<string, string>) => {
  const created = await cluster.api("POST", `/api/v1/namespaces/${ns}/secrets`, {
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name },
    stringData
  })
  expect(created.status).toBe(201)
}
const secretData = async (name: string) => {
  const secret = await cluster.api("GET", `/api/v1/namespaces/${ns}/secrets/${name}`)
  return Object.fromEntries(
    Object.entries(dig<Record<string, string>>(secret.body, "data") ?? {}).map(([k, v]) => [k, Buffer.from(v, "base64").toString()])
  )
}

const waitBinding = async (name: string, status: string, reason: string, timeoutMs = 10_000) => {
  let last: unknown
  const ok = await eventually(
    async () => {
      const ready = await bindingReady(name)
      last = ready
      return ready?.status === status && ready.reason === reason
    },
    timeoutMs,
    50
  )
  if (!ok) throw new Error(`ServiceBinding ${name} never reached Ready=${status} (${reason}); last: ${JSON.stringify(last)}`)
}

const dbBinding = {
  name: "db",
  service: { apiVersion: "halkyon.io/v1beta1", kind: "Capability", name: "orders" },
  workload: { apiVersion: "apps/v1", kind: "Deployment", name: "web", containers: ["app"] },
  env: [{ name: "DATABASE_URL", key: "uri" }]
}

let stop = async () => {}

beforeAll(async () => {
  ;({ cluster, operator, pluginsDir, stop } = await startWithPostgres(ns))
}, 30 * 60_000)

afterAll(async () => {
  // The operator a test started in place of the first one, which `stop` does not know of.
  await operator?.stop()
  await stop()
})

describe("a ServiceBinding to a postgres Capability", () => {
  let before: Template

  test("the Capability is a Provisioned Service: status.binding.name, and the spec's well-known entries in its Secret", async () => {
    // As samples/postgres.yaml: the password comes from a Secret of the user's, by reference.
    await createSecret("orders-credentials", { password: "first-pass" })
    await readyPostgres("orders", [{ name: "DB_PASSWORD", valueFrom: { secretKeyRef: { name: "orders-credentials", key: "password" } } }])
    const c = await cluster.api("GET", capabilityPath(ns, "orders"))
    expect(dig(c.body, "status", "binding")).toEqual({ name: "orders-config" })
    expect(dig(c.body, "status", "bindingSecret")).toBe("orders-config")
    const data = await secretData("orders-config")
    expect(data).toMatchObject({
      password: "first-pass",
      type: "postgresql",
      provider: "halkyon",
      host: `orders.${ns}.svc`,
      port: "5432",
      username: "admin",
      database: "sample-db"
    })
    expect(data.uri).toBe(`postgresql://admin:${encodeURIComponent(data.password ?? "")}@orders.${ns}.svc:5432/sample-db`)
  })

  test("is Ready within 5 s and projects into app only: volume, mount, SERVICE_BINDING_ROOT, DATABASE_URL", async () => {
    await createDeployment("web", ["app", "sidecar"])
    before = (await templateOf("web")).template
    const started = performance.now()
    await createBinding("db", dbBinding)
    await waitBinding("db", "True", "Projected", 5_000)
    expect(performance.now() - started).toBeLessThan(5_000)
    const b = await cluster.api("GET", bindingsPath("db"))
    expect(dig(b.body, "status", "binding")).toEqual({ name: "orders-config" })
    expect(dig(b.body, "status", "observedGeneration")).toBe(1)
    expect(dig<Array<Record<string, unknown>>>(b.body, "status", "conditions")?.find((c) => c.type === "ServiceAvailable")).toMatchObject({
      status: "True",
      reason: "ResolvedBindingSecret"
    })

    const { template } = await templateOf("web")
    expect(template.spec.volumes).toEqual([{
      name: "svcb-db",
      projected: { sources: [{ secret: { name: "orders-config" } }], defaultMode: 420 }
    }])
    const app = containerOf(template, "app")
    expect(app?.volumeMounts).toEqual([{ name: "svcb-db", mountPath: "/bindings/db", readOnly: true }])
    expect(app?.env).toEqual([
      { name: "LOG_LEVEL", value: "info" },
      { name: "SERVICE_BINDING_ROOT", value: "/bindings" },
      { name: "DATABASE_URL", valueFrom: { secretKeyRef: { name: "orders-config", key: "uri" } } }
    ])
    expect(containerOf(template, "sidecar")).toEqual(containerOf(before, "sidecar")!)
    // The Secret's hash (a new one rolls the pods), and where this binding added SERVICE_BINDING_ROOT.
    expect(template.metadata?.annotations).toEqual({
      "secret-hash.servicebinding.io/svcb-db": expect.any(String),
      "root.servicebinding.io/svcb-db": "app"
    })
  })

  test("kubectl get servicebinding shows READY, REASON and AGE", async () => {
    const listed = await kubectl(cluster, ["get", "servicebinding", "-n", ns])
    expect(listed.code).toBe(0)
    const [header, row] = listed.stdout.trim().split("\n")
    expect(header?.split(/\s+/)).toEqual(["NAME", "READY", "REASON", "AGE"])
    expect(row?.split(/\s+/).slice(0, 3)).toEqual(["db", "True", "Projected"])
  })

  test("a change of the Secret the password comes from rolls the template exactly once; an env var added to app by hand survives", async () => {
    // By hand: a JSON patch, as another field manager.
    const added = await cluster.api(
      "PATCH",
      `${deploymentPath("web")}?fieldManager=by-hand`,
      [{ op: "add", path: "/spec/template/spec/containers/0/env/-", value: { name: "FEATURE_X", value: "on" } }],
      "application/json-patch+json"
    )
    expect(added.status).toBe(200)
    const { template: edited, generation } = await templateOf("web")
    const hash = edited.metadata?.annotations?.["secret-hash.servicebinding.io/svcb-db"]
    expect(hash).toBeDefined()

    // The user changes their Secret; the Capability is not touched.
    const patched = await cluster.api(
      "PATCH",
      `/api/v1/namespaces/${ns}/secrets/orders-credentials`,
      { stringData: { password: "second-pass" } },
      "application/merge-patch+json"
    )
    expect(patched.status).toBe(200)
    // The binding Secret follows (its password and uri, in one write), and the template's hash with it.
    let rolled: { template: Template; generation: number } | undefined
    const followed = await eventually(
      async () => {
        const data = await secretData("orders-config")
        if (data.password !== "second-pass" || !(data.uri ?? "").includes(":second-pass@")) return false
        rolled = await templateOf("web")
        return rolled.template.metadata?.annotations?.["secret-hash.servicebinding.io/svcb-db"] !== hash
      },
      20_000,
      50
    )
    expect(followed).toBe(true)
    expect(rolled?.generation).toBe(generation + 1)
    await waitCapability("orders", (c) => readyOf(c)?.status === "True", "stayed Ready")

    // Settled: a reconcile of the binding that starts after all of the above (a new generation of its spec, which projects
    // the same: a filter name that matches no container is ignored) reads the final Secret, and rolls nothing more.
    const touched = await cluster.api(
      "PATCH",
      bindingsPath("db"),
      { spec: { workload: { containers: ["app", "absent"] } } },
      "application/merge-patch+json"
    )
    expect(touched.status).toBe(200)
    const reconciled = await eventually(
      async () => {
        const b = await cluster.api("GET", bindingsPath("db"))
        return dig(b.body, "status", "observedGeneration") === 2 && (await bindingReady("db"))?.reason === "Projected"
      },
      10_000,
      50
    )
    expect(reconciled).toBe(true)
    const settled = await templateOf("web")
    expect(settled.generation).toBe(generation + 1)
    expect(settled.template.metadata?.annotations?.["secret-hash.servicebinding.io/svcb-db"]).toBe(
      rolled?.template.metadata?.annotations?.["secret-hash.servicebinding.io/svcb-db"]
    )
    expect(containerOf(settled.template, "app")?.env).toContainEqual({ name: "FEATURE_X", value: "on" })
    // The binding's own DATABASE_URL, projected before, is no collision.
    expect(containerOf(settled.template, "app")?.env).toContainEqual({
      name: "DATABASE_URL",
      valueFrom: { secretKeyRef: { name: "orders-config", key: "uri" } }
    })
  })

  test("deleting the bound Capability waits with Ready=False (InUse) naming the binding", async () => {
    expect((await cluster.api("DELETE", capabilityPath(ns, "orders"))).status).toBe(200)
    await waitCapability("orders", (c) => readyOf(c)?.reason === "InUse", "reported InUse")
    const c = await cluster.api("GET", capabilityPath(ns, "orders"))
    expect(c.status).toBe(200)
    expect(readyOf(c)).toMatchObject({ status: "False", reason: "InUse" })
    expect(readyOf(c)?.message).toContain("ServiceBinding db")
  })

  test("deleting the binding removes exactly the projection, then the Capability's deletion completes", async () => {
    expect((await cluster.api("DELETE", bindingsPath("db"))).status).toBe(200)
    expect(await eventually(async () => (await cluster.api("GET", bindingsPath("db"))).status === 404, 10_000, 50)).toBe(true)
    const { template } = await templateOf("web")
    const app = containerOf(before, "app")!
    // What was there before, and the hand edit: nothing of the binding.
    expect(containerOf(template, "app")).toEqual({ ...app, env: [...(app.env ?? []), { name: "FEATURE_X", value: "on" }] })
    expect(containerOf(template, "sidecar")).toEqual(containerOf(before, "sidecar")!)
    expect(template.spec.volumes).toBeUndefined()
    expect(Object.keys(template.metadata?.annotations ?? {})).toEqual([])
    await waitCapability("orders", (c) => c.status === 404, "was deleted")
  })
})

describe("a ServiceBinding that cannot be projected", () => {
  test("to a Capability that is not Ready: ServiceNotReady, and the workload is left alone", async () => {
    await createCapability("pending-db")
    await createDeployment("other", ["app"])
    const { template, generation } = await templateOf("other")
    await createBinding("pending", {
      ...dbBinding,
      service: { ...dbBinding.service, name: "pending-db" },
      workload: { apiVersion: "apps/v1", kind: "Deployment", name: "other" }
    })
    await waitBinding("pending", "False", "ServiceNotReady")
    expect((await bindingReady("pending"))?.message).toContain("pending-db is not Ready")
    const after = await templateOf("other")
    expect(after.generation).toBe(generation)
    expect(after.template).toEqual(template)
  })

  test("to a workload that does not exist: WorkloadNotFound", async () => {
    await createBinding("nowhere", {
      service: { apiVersion: "v1", kind: "Secret", name: "pending-db-config" },
      workload: { apiVersion: "apps/v1", kind: "Deployment", selector: { matchLabels: { app: "missing" } } }
    })
    await waitBinding("nowhere", "False", "WorkloadNotFound")
    expect((await bindingReady("nowhere"))?.message).toBe("no Deployment matches the selector app=missing")
  })
})

describe("what the spec requires and cannot be met: Ready=False with the reason, and nothing written", () => {
  const cases: ReadonlyArray<{
    readonly name: string
    readonly binding: string
    readonly workloadEnv?: ReadonlyArray<Record<string, unknown>>
    readonly spec: Record<string, unknown>
    readonly reason: string
    readonly says: ReadonlyArray<string>
  }> = [
    {
      name: "a binding Secret without a type entry, and no spec.type",
      binding: "untyped",
      spec: { service: { apiVersion: "v1", kind: "Secret", name: "untyped" } },
      reason: "MissingType",
      says: ["the binding Secret untyped has no type entry", "set spec.type"]
    },
    {
      name: "an env key the binding Secret does not hold",
      binding: "nokey",
      spec: { service: { apiVersion: "v1", kind: "Secret", name: "plain" }, env: [{ name: "DB_HOST", key: "host" }] },
      reason: "MissingKey",
      says: ["spec.env refers to key \"host\"", "it has \"type\", \"uri\""]
    },
    {
      name: "SERVICE_BINDING_ROOT set by valueFrom",
      binding: "rooted",
      workloadEnv: [{ name: "SERVICE_BINDING_ROOT", valueFrom: { configMapKeyRef: { name: "settings", key: "root" } } }],
      spec: { service: { apiVersion: "v1", kind: "Secret", name: "plain" } },
      reason: "UnreadableRoot",
      says: ["Deployment rooted: container app sets SERVICE_BINDING_ROOT with valueFrom"]
    },
    {
      name: "an env var of spec.env's name that the user set",
      binding: "taken",
      workloadEnv: [{ name: "DATABASE_URL", value: "postgresql://mine" }],
      spec: { service: { apiVersion: "v1", kind: "Secret", name: "plain" }, env: [{ name: "DATABASE_URL", key: "uri" }] },
      reason: "EnvCollision",
      says: ["Deployment taken: spec.env would take over DATABASE_URL in container app, set by someone else, not this binding"]
    }
  ]

  beforeAll(async () => {
    await createSecret("plain", { type: "postgresql", uri: "postgresql://plain" })
    await createSecret("untyped", { uri: "postgresql://untyped" })
  })

  for (const c of cases) {
    test(`${c.name}: ${c.reason}`, async () => {
      await createDeployment(c.binding, ["app"], c.workloadEnv ?? [])
      const before = await templateOf(c.binding)
      await createBinding(c.binding, { ...c.spec, workload: { apiVersion: "apps/v1", kind: "Deployment", name: c.binding } })
      await waitBinding(c.binding, "False", c.reason)
      const ready = await bindingReady(c.binding)
      for (const words of c.says) expect(ready?.message).toContain(words)
      const b = await cluster.api("GET", bindingsPath(c.binding))
      expect(dig<Array<Record<string, unknown>>>(b.body, "status", "conditions")?.find((x) => x.type === "ServiceAvailable")?.status)
        .toBe("True")
      const after = await templateOf(c.binding)
      expect(after.generation).toBe(before.generation)
      expect(after.template).toEqual(before.template)
    })
  }

  test("of the workloads a selector matches, one refused does not keep the others from being bound (each as if named alone)", async () => {
    await createDeployment("pick-mine", ["app"], [{ name: "DATABASE_URL", value: "postgresql://mine" }])
    await createDeployment("pick-free", ["app"])
    for (const name of ["pick-mine", "pick-free"]) {
      const labelled = await cluster.api(
        "PATCH",
        deploymentPath(name),
        { metadata: { labels: { pick: "yes" } } },
        "application/merge-patch+json"
      )
      expect(labelled.status).toBe(200)
    }
    const mine = await templateOf("pick-mine")
    await createBinding("pick", {
      service: { apiVersion: "v1", kind: "Secret", name: "plain" },
      workload: { apiVersion: "apps/v1", kind: "Deployment", selector: { matchLabels: { pick: "yes" } } },
      env: [{ name: "DATABASE_URL", key: "uri" }]
    })
    await waitBinding("pick", "False", "EnvCollision")
    expect((await bindingReady("pick"))?.message).toBe(
      "Deployment pick-mine: spec.env would take over DATABASE_URL in container app, set by someone else, not this binding: " +
        "rename the variable in spec.env, or remove it from the workload (projected into the 1 other Deployment)"
    )
    expect(await templateOf("pick-mine")).toEqual(mine)
    expect(containerOf((await templateOf("pick-free")).template, "app")?.env).toContainEqual({
      name: "DATABASE_URL",
      valueFrom: { secretKeyRef: { name: "plain", key: "uri" } }
    })
  })

  test("the Secret given a type entry, the binding that lacked it is projected at once (Secrets are watched)", async () => {
    const patched = await cluster.api(
      "PATCH",
      `/api/v1/namespaces/${ns}/secrets/untyped`,
      { stringData: { type: "postgresql" } },
      "application/merge-patch+json"
    )
    expect(patched.status).toBe(200)
    await waitBinding("untyped", "True", "Projected")
    expect(containerOf((await templateOf("untyped")).template, "app")?.volumeMounts).toEqual([{
      name: "svcb-untyped",
      mountPath: "/bindings/untyped",
      readOnly: true
    }])
  })

  test("a binding name that is no directory name (../etc) is refused by the API server, naming the field", async () => {
    for (const name of ["../etc", "..", "DB"]) {
      const refused = await cluster.api("POST", bindingsPath(), {
        apiVersion: "servicebinding.io/v1",
        kind: "ServiceBinding",
        metadata: { name: "escape" },
        spec: {
          name,
          service: { apiVersion: "v1", kind: "Secret", name: "plain" },
          workload: { apiVersion: "apps/v1", kind: "Deployment", name: "rooted" }
        }
      })
      expect(refused.status).toBe(422)
      expect(dig<string>(refused.body, "message")).toContain("spec.name")
    }
  })
})

describe("each built-in workload kind, bound against the real API server", () => {
  const labels = (name: string) => ({ app: name })
  const template = (name: string, restartPolicy?: string) => ({
    metadata: { labels: labels(name) },
    spec: { ...(restartPolicy === undefined ? {} : { restartPolicy }), containers: [{ name: "app", image: "example.com/app:1" }] }
  })
  const kinds: ReadonlyArray<
    { readonly kind: string; readonly apiVersion: string; readonly plural: string; readonly spec: (n: string) => unknown }
  > = [
    {
      kind: "StatefulSet",
      apiVersion: "apps/v1",
      plural: "statefulsets",
      spec: (n) => ({ serviceName: n, selector: { matchLabels: labels(n) }, template: template(n) })
    },
    {
      kind: "DaemonSet",
      apiVersion: "apps/v1",
      plural: "daemonsets",
      spec: (n) => ({ selector: { matchLabels: labels(n) }, template: template(n) })
    },
    {
      kind: "ReplicaSet",
      apiVersion: "apps/v1",
      plural: "replicasets",
      spec: (n) => ({ selector: { matchLabels: labels(n) }, template: template(n) })
    }
  ]
  const path = (apiVersion: string, plural: string, name = "") =>
    `/apis/${apiVersion}/namespaces/${ns}/${plural}${name === "" ? "" : `/${name}`}`

  for (const k of kinds) {
    test(`${k.kind}: the mount, the root and the env var in its pod template`, async () => {
      const name = `kind-${k.kind.toLowerCase()}`
      const created = await cluster.api("POST", path(k.apiVersion, k.plural), {
        apiVersion: k.apiVersion,
        kind: k.kind,
        metadata: { name },
        spec: k.spec(name)
      })
      expect(created.status).toBe(201)
      await createBinding(name, {
        service: { apiVersion: "v1", kind: "Secret", name: "plain" },
        workload: { apiVersion: k.apiVersion, kind: k.kind, name },
        env: [{ name: "DATABASE_URL", key: "uri" }]
      })
      await waitBinding(name, "True", "Projected")
      const bound = dig<Template>((await cluster.api("GET", path(k.apiVersion, k.plural, name))).body, "spec", "template")!
      expect(containerOf(bound, "app")).toMatchObject({
        volumeMounts: [{ name: `svcb-${name}`, mountPath: `/bindings/${name}`, readOnly: true }],
        env: [
          { name: "SERVICE_BINDING_ROOT", value: "/bindings" },
          { name: "DATABASE_URL", valueFrom: { secretKeyRef: { name: "plain", key: "uri" } } }
        ]
      })
      expect(bound.spec.volumes?.map((v) => v.name)).toEqual([`svcb-${name}`])
    })
  }
})

describe("Jobs: projected as they are created, by a MutatingAdmissionPolicy", () => {
  const jobsPath = (query = "") => `/apis/batch/v1/namespaces/${ns}/jobs${query}`
  const jobPath = (name: string) => `/apis/batch/v1/namespaces/${ns}/jobs/${name}`
  const policiesPath = (name: string) => `/apis/admissionregistration.k8s.io/v1/mutatingadmissionpolicies/${name}`
  const policyBindingsPath = (name: string) => `/apis/admissionregistration.k8s.io/v1/mutatingadmissionpolicybindings/${name}`
  // What the Job controller adds to a Job's template at creation: not the binding's, and different per Job.
  const generated = ["batch.kubernetes.io/controller-uid", "controller-uid", "batch.kubernetes.io/job-name", "job-name"]
  const comparable = (template: PodTemplate | undefined) => {
    const labels = Object.fromEntries(
      Object.entries(template?.metadata?.labels as Record<string, string> ?? {}).filter(([k]) => !generated.includes(k))
    )
    return { ...template, metadata: { ...template?.metadata, labels } }
  }
  const input: PodTemplate = {
    metadata: { labels: { app: "batch" } },
    spec: {
      restartPolicy: "Never",
      containers: [
        {
          name: "app",
          image: "example.com/app:1",
          env: [{ name: "LOG_LEVEL", value: "info" }],
          volumeMounts: [{ name: "cache", mountPath: "/cache" }]
        },
        { name: "sidecar", image: "example.com/sidecar:1" }
      ],
      initContainers: [{ name: "setup", image: "example.com/setup:1", env: [{ name: "SERVICE_BINDING_ROOT", value: "/custom/" }] }],
      volumes: [{ name: "cache", emptyDir: {} }]
    }
  }
  const job = (name: string, labels: Record<string, string>, template: PodTemplate = input) => ({
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: { name, labels },
    spec: { suspend: true, template }
  })
  /** The Job as the API server would create it now: a dry run, through the admission chain. */
  const dryRun = async (j: ReturnType<typeof job>) => {
    const created = await cluster.api("POST", jobsPath("?dryRun=All"), j)
    expect(created.status).toBe(201)
    return dig<PodTemplate>(created.body, "spec", "template")
  }
  // Without a garbage collector a Job's default (orphan) deletion would wait for it.
  const background = { apiVersion: "v1", kind: "DeleteOptions", propagationPolicy: "Background" }
  const bound = (template: PodTemplate | undefined, binding: string) =>
    (template?.spec?.volumes ?? []).some((v) => v.name === `svcb-${binding}`)
  /** Waits until the API server's admission chain projects (or no longer projects) `binding` into such a Job. */
  const untilAdmission = async (j: ReturnType<typeof job>, binding: string, projects: boolean) => {
    expect(await eventually(async () => bound(await dryRun(j), binding) === projects, 10_000, 100)).toBe(true)
  }
  /** What the projector (Projection.ts) gives for the same input, as the API server creates it (a Job no policy matches). */
  const projectorResult = async (template: PodTemplate, binding: Binding) => {
    const data = dig<Record<string, string>>((await cluster.api("GET", `/api/v1/namespaces/${ns}/secrets/plain`)).body, "data") ?? {}
    return dryRun(job("projector-reference", {}, project(template, binding, { name: "plain", data })))
  }

  test("by name: Ready once the policy is in place; `kubectl create` of the Job gives exactly the projector's template; sidecar untouched", async () => {
    await createBinding("job-by-name", {
      service: { apiVersion: "v1", kind: "Secret", name: "plain" },
      workload: { apiVersion: "batch/v1", kind: "Job", name: "migrate", containers: ["app", "setup"] },
      env: [{ name: "DATABASE_URL", key: "uri" }]
    })
    await waitBinding("job-by-name", "True", "Projected")
    expect((await bindingReady("job-by-name"))?.message).toBe(
      "Job migrate is projected as created, by MutatingAdmissionPolicy halkyon-binding.bound.job-by-name"
    )
    const policy = await cluster.api("GET", policiesPath("halkyon-binding.bound.job-by-name"))
    expect(dig(policy.body, "metadata", "labels")).toEqual({
      "app.kubernetes.io/managed-by": "halkyon",
      "app.kubernetes.io/component": "service-binding"
    })
    expect((await cluster.api("GET", policyBindingsPath("halkyon-binding.bound.job-by-name"))).status).toBe(200)
    // The policy takes effect once the API server's admission chain has seen it.
    await untilAdmission(job("migrate", {}), "job-by-name", true)
    // Only the Job of that name.
    expect(bound(await dryRun(job("migrate-too", {})), "job-by-name")).toBe(false)

    const created = await kubectl(cluster, ["create", "-n", ns, "-f", "-", "-o", "json"], JSON.stringify(job("migrate", {})))
    expect(created.code).toBe(0)
    const template = dig<PodTemplate>((await cluster.api("GET", jobPath("migrate"))).body, "spec", "template")
    const expected = await projectorResult(input, {
      name: "job-by-name",
      directory: "job-by-name",
      env: [{ name: "DATABASE_URL", key: "uri" }],
      containers: ["app", "setup"]
    })
    expect(comparable(template)).toEqual(comparable(expected))
    // Spelled out: app and setup (its own root kept) bound, sidecar as it was given.
    const containers = template?.spec?.containers ?? []
    expect(containers.find((c) => c.name === "app")).toMatchObject({
      env: [
        { name: "LOG_LEVEL", value: "info" },
        { name: "SERVICE_BINDING_ROOT", value: "/bindings" },
        { name: "DATABASE_URL", valueFrom: { secretKeyRef: { name: "plain", key: "uri" } } }
      ],
      volumeMounts: [
        { name: "cache", mountPath: "/cache" },
        { name: "svcb-job-by-name", mountPath: "/bindings/job-by-name", readOnly: true }
      ]
    })
    expect(template?.spec?.initContainers?.[0]).toMatchObject({
      env: [
        { name: "SERVICE_BINDING_ROOT", value: "/custom/" },
        { name: "DATABASE_URL", valueFrom: { secretKeyRef: { name: "plain", key: "uri" } } }
      ],
      volumeMounts: [{ name: "svcb-job-by-name", mountPath: "/custom/job-by-name", readOnly: true }]
    })
    const sidecar = containers.find((c) => c.name === "sidecar")
    expect(sidecar?.env).toBeUndefined()
    expect(sidecar?.volumeMounts).toBeUndefined()
    // The Job's creation reconciles the binding (Jobs are watched).
    await eventually(async () => (await bindingReady("job-by-name"))?.message.includes("projected into Job migrate") === true, 10_000)
    expect((await bindingReady("job-by-name"))?.message).toContain("; projected into Job migrate")
  })

  test("by selector, with a type override: each matching Job is projected as the projector would, another is not; one made before, and one setting a variable spec.env projects (left out), are reported, unchanged", async () => {
    const early = await cluster.api("POST", jobsPath(), job("early", { tier: "nightly" }))
    expect(early.status).toBe(201)
    const earlyTemplate = dig<PodTemplate>(early.body, "spec", "template")
    await createBinding("job-by-selector", {
      service: { apiVersion: "v1", kind: "Secret", name: "plain" },
      workload: { apiVersion: "batch/v1", kind: "Job", selector: { matchLabels: { tier: "nightly" } } },
      type: "mysql",
      env: [{ name: "BINDING_TYPE", key: "type" }]
    })
    // The spec: each match as if named alone, partial failures aggregated on Ready.
    await waitBinding("job-by-selector", "False", "ProjectionFailed")
    expect((await bindingReady("job-by-selector"))?.message).toBe(
      "Job early was created before this binding's MutatingAdmissionPolicy took effect, and a Job's pod template cannot change: " +
        "delete it and create it again to have it bound"
    )
    expect(dig<PodTemplate>((await cluster.api("GET", jobPath("early"))).body, "spec", "template")).toEqual(earlyTemplate)

    await untilAdmission(job("nightly-1", { tier: "nightly" }), "job-by-selector", true)
    const created = await cluster.api("POST", jobsPath(), job("nightly-1", { tier: "nightly" }))
    expect(created.status).toBe(201)
    const expected = await projectorResult(input, {
      name: "job-by-selector",
      directory: "job-by-selector",
      type: "mysql",
      env: [{ name: "BINDING_TYPE", key: "type" }]
    })
    expect(comparable(dig<PodTemplate>(created.body, "spec", "template"))).toEqual(comparable(expected))
    expect(dig<Record<string, string>>(created.body, "spec", "template", "metadata", "annotations")).toMatchObject({
      "type.servicebinding.io/svcb-job-by-selector": "mysql"
    })
    const other = await cluster.api("POST", jobsPath(), job("daily-1", { tier: "daily" }))
    expect(other.status).toBe(201)
    expect(bound(dig<PodTemplate>(other.body, "spec", "template"), "job-by-selector")).toBe(false)

    // A matching Job that already sets a variable spec.env projects is created as it is (the policy's match conditions
    // leave it out, as refuseTemplate refuses it), and reported.
    const mine: PodTemplate = {
      spec: {
        ...input.spec,
        containers: [{ name: "app", image: "example.com/app:1", env: [{ name: "BINDING_TYPE", value: "mine" }] }]
      }
    }
    const collided = await cluster.api("POST", jobsPath(), job("nightly-mine", { tier: "nightly" }, mine))
    expect(collided.status).toBe(201)
    expect(bound(dig<PodTemplate>(collided.body, "spec", "template"), "job-by-selector")).toBe(false)
    expect((await cluster.api("DELETE", jobPath("early"), background)).status).toBe(200)
    await waitBinding("job-by-selector", "False", "EnvCollision")
    expect((await bindingReady("job-by-selector"))?.message).toBe(
      "Job nightly-mine: spec.env would take over BINDING_TYPE in container app, set by someone else, not this binding: " +
        "rename the variable in spec.env, or remove it from the workload (projected into the 1 other Job)"
    )
    // Once those Jobs are gone, every match is bound.
    expect((await cluster.api("DELETE", jobPath("nightly-mine"), background)).status).toBe(200)
    await waitBinding("job-by-selector", "True", "Projected")
    expect((await bindingReady("job-by-selector"))?.message).toBe(
      "Jobs matching tier=nightly are projected as created, by MutatingAdmissionPolicy halkyon-binding.bound.job-by-selector; " +
        "projected into Job nightly-1"
    )
  })

  test("a binding that no longer names Jobs loses its policy; a deleted binding too, and a Job created afterwards is not projected", async () => {
    const patched = await cluster.api(
      "PATCH",
      bindingsPath("job-by-selector"),
      { spec: { workload: { apiVersion: "apps/v1", kind: "Deployment", name: "nowhere", selector: null } } },
      "application/merge-patch+json"
    )
    expect(patched.status).toBe(200)
    await waitBinding("job-by-selector", "False", "WorkloadNotFound")
    expect(
      await eventually(async () => (await cluster.api("GET", policiesPath("halkyon-binding.bound.job-by-selector"))).status === 404, 10_000)
    )
      .toBe(true)
    expect((await cluster.api("GET", policyBindingsPath("halkyon-binding.bound.job-by-selector"))).status).toBe(404)

    expect((await cluster.api("DELETE", bindingsPath("job-by-name"))).status).toBe(200)
    expect(await eventually(async () => (await cluster.api("GET", bindingsPath("job-by-name"))).status === 404, 10_000)).toBe(true)
    // The finalizer's path removed the policy and its binding before the binding went.
    expect((await cluster.api("GET", policiesPath("halkyon-binding.bound.job-by-name"))).status).toBe(404)
    expect((await cluster.api("GET", policyBindingsPath("halkyon-binding.bound.job-by-name"))).status).toBe(404)
    // What the first Job got at its creation stays: a Job's template cannot change.
    expect(bound(dig<PodTemplate>((await cluster.api("GET", jobPath("migrate"))).body, "spec", "template"), "job-by-name")).toBe(true)
    expect((await cluster.api("DELETE", jobPath("migrate"), background)).status).toBe(200)
    await untilAdmission(job("migrate", {}), "job-by-name", false)
    const again = await cluster.api("POST", jobsPath(), job("migrate", {}))
    expect(again.status).toBe(201)
    expect(comparable(dig<PodTemplate>(again.body, "spec", "template"))).toEqual(comparable(await dryRun(job("unbound-reference", {}))))
  })

  test("a binding removed by hand (its finalizer taken off) while the operator was away: its policy goes when the operator starts", async () => {
    for (const name of ["job-orphan", "job-kept"]) {
      await createBinding(name, {
        service: { apiVersion: "v1", kind: "Secret", name: "plain" },
        workload: { apiVersion: "batch/v1", kind: "Job", name: "orphan" }
      })
      await waitBinding(name, "True", "Projected")
    }
    await operator.stop()
    const unfinalized = await cluster.api(
      "PATCH",
      bindingsPath("job-orphan"),
      { metadata: { finalizers: null } },
      "application/merge-patch+json"
    )
    expect(unfinalized.status).toBe(200)
    expect((await cluster.api("DELETE", bindingsPath("job-orphan"))).status).toBe(200)
    expect((await cluster.api("GET", bindingsPath("job-orphan"))).status).toBe(404)
    expect((await cluster.api("GET", policiesPath("halkyon-binding.bound.job-orphan"))).status).toBe(200)
    operator = await untilReady(startOperator(cluster, pluginsDir, []))
    expect(
      await eventually(async () => (await cluster.api("GET", policiesPath("halkyon-binding.bound.job-orphan"))).status === 404, 10_000)
    )
      .toBe(true)
    expect((await cluster.api("GET", policyBindingsPath("halkyon-binding.bound.job-orphan"))).status).toBe(404)
    // That one only: the policy of a binding that is still there stays. The line is logged once the removal is
    // answered, so it may reach the log just after the policy is gone (CI saw that).
    const removals = () => operator.logs.filter((l) => l.includes("MutatingAdmissionPolicy halkyon-binding.") && l.includes("removed"))
    expect(await eventually(() => removals().length > 0, 10_000)).toBe(true)
    expect(removals()).toEqual([
      expect.stringContaining("servicebinding bound/job-orphan: MutatingAdmissionPolicy halkyon-binding.bound.job-orphan removed")
    ])
    expect((await cluster.api("GET", policiesPath("halkyon-binding.bound.job-kept"))).status).toBe(200)
    expect((await cluster.api("DELETE", bindingsPath("job-kept"))).status).toBe(200)
    expect(await eventually(async () => (await cluster.api("GET", policiesPath("halkyon-binding.bound.job-kept"))).status === 404, 10_000))
      .toBe(true)
  })
})

describe("the Job policy's CEL against the projector, case by case, on the real API server", () => {
  // Each case's policy (JobPolicy.ts, applied here directly, no controller) names one Job; the Job the API server
  // creates through it must equal the projector's output for the same template, as the API server creates that.
  const jobsPath = `/apis/batch/v1/namespaces/${ns}/jobs?dryRun=All`
  const admission = "/apis/admissionregistration.k8s.io/v1"
  const generated = ["batch.kubernetes.io/controller-uid", "controller-uid", "batch.kubernetes.io/job-name", "job-name"]
  const withoutGenerated = (template: PodTemplate | undefined): PodTemplate => {
    const labels = Object.fromEntries(
      Object.entries(template?.metadata?.labels as Record<string, string> | undefined ?? {}).filter(([k]) => !generated.includes(k))
    )
    const { labels: _, ...metadata } = template?.metadata ?? {}
    return { ...template, metadata: { ...metadata, ...(Object.keys(labels).length === 0 ? {} : { labels }) } }
  }
  const dryRun = async (name: string, template: PodTemplate) => {
    const created = await cluster.api("POST", jobsPath, {
      apiVersion: "batch/v1",
      kind: "Job",
      metadata: { name },
      spec: { suspend: true, template }
    })
    expect(created.status, JSON.stringify(created.body)).toBe(201)
    return withoutGenerated(dig<PodTemplate>(created.body, "spec", "template"))
  }
  const c = (name: string, extra: Record<string, unknown> = {}) => ({ name, image: `example.com/${name}:1`, ...extra })
  const root = (value: string) => ({ name: "SERVICE_BINDING_ROOT", value })
  const cases: ReadonlyArray<{ readonly name: string; readonly binding: Omit<Binding, "name">; readonly template: PodTemplate }> = [
    { name: "minimal", binding: { directory: "minimal" }, template: { spec: { restartPolicy: "Never", containers: [c("app")] } } },
    {
      name: "annotated",
      binding: { directory: "annotated", env: [{ name: "DATABASE_URL", key: "uri" }] },
      template: {
        metadata: { annotations: { team: "data" }, labels: { app: "x" } },
        spec: { restartPolicy: "Never", containers: [c("app", { env: [{ name: "A", value: "1" }] }), c("sidecar")] }
      }
    },
    {
      name: "filtered",
      binding: { directory: "filtered", containers: ["app", "setup", "absent"], env: [{ name: "URI", key: "uri" }] },
      template: {
        spec: {
          restartPolicy: "Never",
          containers: [c("app", { env: [root("/custom//")] }), c("sidecar", { env: [{ name: "B", value: "2" }] })],
          initContainers: [c("setup"), c("other")]
        }
      }
    },
    {
      name: "init-only",
      binding: { directory: "init-only", containers: ["setup"] },
      template: { spec: { restartPolicy: "Never", containers: [c("app")], initContainers: [c("setup", { env: [root("/r")] })] } }
    },
    {
      name: "taken-places",
      binding: { directory: "dir" },
      template: {
        spec: {
          restartPolicy: "Never",
          containers: [c("app", { volumeMounts: [{ name: "old", mountPath: "/bindings/dir" }, { name: "cache", mountPath: "/cache" }] })],
          volumes: [{ name: "old", emptyDir: {} }, { name: "svcb-taken-places", emptyDir: {} }, { name: "cache", emptyDir: {} }]
        }
      }
    },
    {
      name: "overrides",
      binding: {
        directory: "overrides",
        type: "mysql",
        provider: "acme",
        env: [{ name: "T", key: "type" }, { name: "P", key: "provider" }, { name: "U", key: "uri" }]
      },
      template: { spec: { restartPolicy: "Never", containers: [c("app"), c("worker", { env: [root("/")] })] } }
    },
    {
      name: "empty-root",
      binding: { directory: "empty-root", env: [{ name: "U", key: "uri" }, { name: "U", key: "type" }] },
      template: { spec: { restartPolicy: "Never", containers: [c("app", { env: [{ name: "SERVICE_BINDING_ROOT", value: "" }] })] } }
    },
    {
      // Strings that would leave a CEL literal were they not escaped (a quote, a backslash, an operator, a newline, a
      // NUL): the policy compiles, and gives the projector's result, no more.
      name: "hostile",
      binding: {
        directory: "hostile",
        containers: ["app", "x\") || true || (\"", "b\\\"s", "line\nbreak", "\u0000"],
        type: "my\"sql\\ \n) || true || (",
        env: [{ name: "W\"E\\IRD) || true || (", key: "uri" }, { name: "T", key: "type" }]
      },
      template: { spec: { restartPolicy: "Never", containers: [c("app"), c("other")] } }
    }
  ]
  const policyName = (name: string) => `halkyon-binding.${ns}.table-${name}`

  test("each case: the API server's result through the policy is the projector's", async () => {
    const data = dig<Record<string, string>>((await cluster.api("GET", `/api/v1/namespaces/${ns}/secrets/plain`)).body, "data") ?? {}
    const secret = { name: "plain", data }
    for (const k of cases) {
      const binding: Binding = { ...k.binding, name: `table-${k.name}` }
      const target = { namespace: ns, name: `table-${k.name}` }
      expect((await cluster.api("POST", `${admission}/mutatingadmissionpolicies`, jobPolicy(binding, secret, target))).status).toBe(201)
      expect((await cluster.api("POST", `${admission}/mutatingadmissionpolicybindings`, jobPolicyBinding(ns, binding.name))).status).toBe(
        201
      )
    }
    for (const k of cases) {
      const binding: Binding = { ...k.binding, name: `table-${k.name}` }
      // The template as the controller would read it from the API server (defaults filled), projected.
      const read = await dryRun(`unmatched-${k.name}`, k.template)
      const expected = await dryRun(`unmatched-${k.name}`, project(read, binding, secret))
      let got: PodTemplate | undefined
      const ok = await eventually(
        async () => {
          got = await dryRun(binding.name, k.template)
          return (got.spec?.volumes ?? []).some((v) => v.name === `svcb-${binding.name}`)
        },
        10_000,
        100
      )
      expect(ok, `case ${k.name}: the policy never took effect`).toBe(true)
      expect({ case: k.name, template: got }).toEqual({ case: k.name, template: expected })
    }
  })

  afterAll(async () => {
    for (const k of cases) {
      await cluster.api("DELETE", `${admission}/mutatingadmissionpolicybindings/${policyName(k.name)}`)
      await cluster.api("DELETE", `${admission}/mutatingadmissionpolicies/${policyName(k.name)}`)
    }
  })
})

describe("other services and workloads", () => {
  test("a Secret bound directly, into CronJobs chosen by label selector, with a type override: at spec.jobTemplate.spec.template", async () => {
    const secret = await cluster.api("POST", `/api/v1/namespaces/${ns}/secrets`, {
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "direct" },
      stringData: { type: "mysql", uri: "mysql://db" }
    })
    expect(secret.status).toBe(201)
    for (const name of ["nightly", "hourly"]) {
      const created = await cluster.api("POST", `/apis/batch/v1/namespaces/${ns}/cronjobs`, {
        apiVersion: "batch/v1",
        kind: "CronJob",
        metadata: { name, labels: { tier: "batch" } },
        spec: {
          schedule: "0 0 * * *",
          jobTemplate: {
            spec: { template: { spec: { restartPolicy: "Never", containers: [{ name: "job", image: "example.com/job:1" }] } } }
          }
        }
      })
      expect(created.status).toBe(201)
    }
    await createBinding("reports", {
      type: "mariadb",
      service: { apiVersion: "v1", kind: "Secret", name: "direct" },
      workload: { apiVersion: "batch/v1", kind: "CronJob", selector: { matchLabels: { tier: "batch" } } },
      env: [{ name: "DB_KIND", key: "type" }]
    })
    await waitBinding("reports", "True", "Projected")
    for (const name of ["nightly", "hourly"]) {
      const cron = await cluster.api("GET", `/apis/batch/v1/namespaces/${ns}/cronjobs/${name}`)
      const template = dig<Template>(cron.body, "spec", "jobTemplate", "spec", "template")!
      expect(template.metadata?.annotations?.["type.servicebinding.io/svcb-reports"]).toBe("mariadb")
      expect(containerOf(template, "job")?.volumeMounts).toEqual([{ name: "svcb-reports", mountPath: "/bindings/reports", readOnly: true }])
      expect(containerOf(template, "job")?.env).toContainEqual({
        name: "DB_KIND",
        valueFrom: { fieldRef: { apiVersion: "v1", fieldPath: "metadata.annotations['type.servicebinding.io/svcb-reports']" } }
      })
      const volume = template.spec.volumes?.find((v) => v.name === "svcb-reports") as {
        projected?: { sources?: Array<Record<string, unknown>> }
      } | undefined
      // The Secret's own type is left out: the override takes its place.
      expect(volume?.projected?.sources?.[0]).toEqual({ secret: { name: "direct", items: [{ key: "uri", path: "uri" }] } })
    }
  })

  test("a workload that comes to match the selector later is bound at once (workloads are watched), not at the next resync", async () => {
    const created = await cluster.api("POST", `/apis/batch/v1/namespaces/${ns}/cronjobs`, {
      apiVersion: "batch/v1",
      kind: "CronJob",
      metadata: { name: "weekly", labels: { tier: "batch" } },
      spec: {
        schedule: "0 0 * * 0",
        jobTemplate: {
          spec: { template: { spec: { restartPolicy: "Never", containers: [{ name: "job", image: "example.com/job:1" }] } } }
        }
      }
    })
    expect(created.status).toBe(201)
    const mounted = async () => {
      const cron = await cluster.api("GET", `/apis/batch/v1/namespaces/${ns}/cronjobs/weekly`)
      return containerOf(dig<Template>(cron.body, "spec", "jobTemplate", "spec", "template")!, "job")?.volumeMounts !== undefined
    }
    // The binding is Ready: its own resync is a minute away.
    expect(await eventually(mounted, 5_000, 50)).toBe(true)
  })
})

describe("a binding that changes its workload", () => {
  test("unbinds the workload it no longer names, exactly, and binds the new one", async () => {
    const secret = await cluster.api("POST", `/api/v1/namespaces/${ns}/secrets`, {
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "moving" },
      stringData: { type: "t", uri: "x://y" }
    })
    expect(secret.status).toBe(201)
    await createDeployment("first", ["app"])
    await createDeployment("second", ["app"])
    const original = (await templateOf("first")).template
    await createBinding("mover", {
      service: { apiVersion: "v1", kind: "Secret", name: "moving" },
      workload: { apiVersion: "apps/v1", kind: "Deployment", name: "first" }
    })
    await waitBinding("mover", "True", "Projected")
    expect(containerOf((await templateOf("first")).template, "app")?.volumeMounts).toEqual([{
      name: "svcb-mover",
      mountPath: "/bindings/mover",
      readOnly: true
    }])

    const moved = await cluster.api(
      "PATCH",
      bindingsPath("mover"),
      { spec: { workload: { name: "second" } } },
      "application/merge-patch+json"
    )
    expect(moved.status).toBe(200)
    expect(await eventually(async () => containerOf((await templateOf("second")).template, "app")?.volumeMounts !== undefined, 10_000, 50))
      .toBe(true)
    expect(await eventually(async () => containerOf((await templateOf("first")).template, "app")?.volumeMounts === undefined, 10_000, 50))
      .toBe(true)
    const first = (await templateOf("first")).template
    expect(containerOf(first, "app")).toEqual(containerOf(original, "app")!)
    expect(first.spec.volumes).toBeUndefined()
  })

  test("to another kind (Deployment x to StatefulSet y): x's template is back to what it was, y is projected; deleting the binding unbinds y", async () => {
    await createSecret("kind-moving", { type: "t", uri: "x://y" })
    await createDeployment("x", ["app"])
    const statefulSetPath = (name = "") => `/apis/apps/v1/namespaces/${ns}/statefulsets${name === "" ? "" : `/${name}`}`
    const created = await cluster.api("POST", statefulSetPath(), {
      apiVersion: "apps/v1",
      kind: "StatefulSet",
      metadata: { name: "y" },
      spec: {
        serviceName: "y",
        selector: { matchLabels: { app: "y" } },
        template: { metadata: { labels: { app: "y" } }, spec: { containers: [{ name: "app", image: "example.com/app:1" }] } }
      }
    })
    expect(created.status).toBe(201)
    const yTemplate = async () => dig<Template>((await cluster.api("GET", statefulSetPath("y"))).body, "spec", "template")!
    const xBefore = (await templateOf("x")).template
    const yBefore = await yTemplate()
    await createBinding("kind-mover", {
      service: { apiVersion: "v1", kind: "Secret", name: "kind-moving" },
      workload: { apiVersion: "apps/v1", kind: "Deployment", name: "x" }
    })
    await waitBinding("kind-mover", "True", "Projected")
    expect((await templateOf("x")).template.spec.volumes?.map((v) => v.name)).toEqual(["svcb-kind-mover"])
    const recorded = async () =>
      dig<string>(
        (await cluster.api("GET", bindingsPath("kind-mover"))).body,
        "metadata",
        "annotations",
        "servicebinding.io/halkyon-projected-kinds"
      )
    expect(await recorded()).toBe("[\"apps/v1/Deployment\"]")

    const moved = await cluster.api(
      "PATCH",
      bindingsPath("kind-mover"),
      { spec: { workload: { kind: "StatefulSet", name: "y" } } },
      "application/merge-patch+json"
    )
    expect(moved.status).toBe(200)
    expect(await eventually(async () => (await yTemplate()).spec.volumes?.map((v) => v.name).join() === "svcb-kind-mover", 5_000, 50))
      .toBe(true)
    expect(containerOf(await yTemplate(), "app")).toMatchObject({
      volumeMounts: [{ name: "svcb-kind-mover", mountPath: "/bindings/kind-mover", readOnly: true }],
      env: [{ name: "SERVICE_BINDING_ROOT", value: "/bindings" }]
    })
    // Exactly what it was, the rollout annotation included (the binding leaves none behind).
    expect(await eventually(async () => Bun.deepEquals((await templateOf("x")).template, xBefore), 5_000, 50)).toBe(true)
    expect((await templateOf("x")).template).toEqual(xBefore)
    await waitBinding("kind-mover", "True", "Projected")
    expect(await recorded()).toBe("[\"apps/v1/StatefulSet\"]")

    expect((await cluster.api("DELETE", bindingsPath("kind-mover"))).status).toBe(200)
    expect(await eventually(async () => (await cluster.api("GET", bindingsPath("kind-mover"))).status === 404, 10_000, 50)).toBe(true)
    expect(await yTemplate()).toEqual(yBefore)
    expect((await templateOf("x")).template).toEqual(xBefore)
  })
})

describe("halkyon run --service-binding=false", () => {
  test("(with the controller on) a bound Capability carries the in-use finalizer", async () => {
    await readyPostgres("held")
    await createDeployment("holder", ["app"])
    await createBinding("holder", {
      service: { apiVersion: "halkyon.io/v1beta1", kind: "Capability", name: "held" },
      workload: { apiVersion: "apps/v1", kind: "Deployment", name: "holder" }
    })
    await waitBinding("holder", "True", "Projected")
    const held = await cluster.api("GET", capabilityPath(ns, "held"))
    expect(dig<Array<string>>(held.body, "metadata", "finalizers")).toContain("servicebinding.io/halkyon-in-use")
  })

  test("leaves ServiceBindings to another implementation: no finalizer, no status, while Capabilities are served", async () => {
    await operator.stop()
    operator = await untilReady(startOperator(cluster, pluginsDir, ["--service-binding=false"]))
    expect(operator.logs.some((l) => l.includes("ServiceBinding controller off (--service-binding=false)"))).toBe(true)
    await createDeployment("elsewhere", ["app"])
    await createBinding("theirs", {
      ...dbBinding,
      service: { apiVersion: "v1", kind: "Secret", name: "pending-db-config" },
      workload: { apiVersion: "apps/v1", kind: "Deployment", name: "elsewhere" }
    })
    // A Capability created after the binding is served: the operator has seen what came before it.
    await createCapability("later")
    await waitCapability("later", (c) => readyOf(c)?.reason === "DependentsNotReady", "was reconciled")
    const theirs = await cluster.api("GET", bindingsPath("theirs"))
    expect(dig(theirs.body, "metadata", "finalizers")).toBeUndefined()
    expect(dig(theirs.body, "status")).toBeUndefined()
    expect((await templateOf("elsewhere")).generation).toBe(1)
  })

  test("a Capability still carrying the in-use finalizer is deleted all the same: the operator removes it, and says so", async () => {
    expect((await cluster.api("DELETE", capabilityPath(ns, "held"))).status).toBe(200)
    await waitCapability("held", (c) => c.status === 404, "was deleted")
    expect(
      operator.logs.some((l) =>
        l.includes("capability bound/held: removed finalizer servicebinding.io/halkyon-in-use") && l.includes("--service-binding=false")
      )
    ).toBe(true)
    // The binding is left to whoever serves ServiceBindings now.
    expect((await cluster.api("GET", bindingsPath("holder"))).status).toBe(200)
  })
})

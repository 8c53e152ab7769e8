/**
 * `halkyon manifests` against a real API server: everything it prints is
 * applied with server-side apply, and the CRDs derived from the Effect
 * Schemas are then checked for what they accept, refuse and serve.
 */
import { afterAll, beforeAll, expect, test } from "bun:test"
import { NodeServices } from "@effect/platform-node"
import {
  type KubernetesObject,
  KubeConfig,
  KubernetesObjectApi,
  PatchStrategy,
  type V1ClusterRole,
  type V1ClusterRoleBinding,
  type V1CustomResourceDefinition,
  type V1Deployment,
  type V1Role,
  type V1ServiceAccount
} from "@kubernetes/client-node"
import { Console, Effect } from "effect"
import { loadAll } from "js-yaml"
import { Command } from "effect/cli"
import { CapabilityInfoResource, CapabilityResource, capabilityCrd, type CustomResourceDefinition } from "../../src/api/Crds.ts"
import { manifests, operatorName, operatorNamespacedRules, operatorRules } from "../../src/api/Manifests.ts"
import { defaultImage, defaultNamespace } from "../../src/api/ManifestDefaults.ts"
import { manifestsCommand } from "../../src/cli/ManifestsCommand.ts"
import { type ControlPlane, startControlPlane } from "../support/control-plane/start.ts"
import { join } from "node:path"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { root } from "../support/paths.ts"

const namespace = "halkyon-test"
const image = "registry.example.com/halkyon:test"
const capabilitiesPath = `/apis/${CapabilityResource.apiVersion}/namespaces/${namespace}/${CapabilityResource.plural}`

let plane: ControlPlane | undefined
let objects: KubernetesObjectApi | undefined

const controlPlane = (): ControlPlane => {
  if (plane === undefined) throw new Error("control plane did not start")
  return plane
}

const objectApi = (): KubernetesObjectApi => {
  if (objects === undefined) throw new Error("no client: the control plane did not start")
  return objects
}

/** A raw call as admin, for what the typed client hides: status codes, messages, discovery. */
const kube = async (path: string, init: { method?: string; body?: unknown; contentType?: string; accept?: string } = {}) => {
  const { server, caCertPem, adminCertPem, adminKeyPem } = controlPlane()
  const res = await fetch(`${server}${path}`, {
    method: init.method ?? "GET",
    headers: { "content-type": init.contentType ?? "application/json", accept: init.accept ?? "application/json" },
    body: init.body === undefined ? null : JSON.stringify(init.body),
    tls: { ca: caCertPem, cert: adminCertPem, key: adminKeyPem }
  })
  const text = await res.text()
  // Most answers are JSON Status or objects; a path the server does not route is plain text.
  const body: Record<string, unknown> = text.startsWith("{") ? JSON.parse(text) : { text }
  return { status: res.status, body }
}

const apply = (object: KubernetesObject) => objectApi().patch(object, undefined, undefined, "halkyon", true, PatchStrategy.ServerSideApply)

/**
 * A CRD applied as it is, as kubectl does: it is plain JSON (`enum`), which
 * client-node's serializer would strip to its model's names (`_enum`).
 */
const applyCrd = async (crd: CustomResourceDefinition) => {
  const path = `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${crd.metadata.name}?fieldManager=halkyon&force=true`
  const applied = await kube(path, { method: "PATCH", body: crd, contentType: "application/apply-patch+yaml" })
  if (applied.status >= 300) throw new Error(`applying ${crd.metadata.name} failed: ${JSON.stringify(applied.body)}`)
}

const establishedWithin = async (name: string, timeoutMs: number) => {
  const deadline = performance.now() + timeoutMs
  while (performance.now() < deadline) {
    const crd = await objectApi().read<V1CustomResourceDefinition>({
      apiVersion: "apiextensions.k8s.io/v1",
      kind: "CustomResourceDefinition",
      metadata: { name }
    })
    if (crd.status?.conditions?.some((c) => c.type === "Established" && c.status === "True")) return crd
    await Bun.sleep(100)
  }
  throw new Error(`CRD ${name} not Established within ${timeoutMs} ms`)
}

const capability = (name: string, spec: Record<string, unknown>) => ({
  apiVersion: CapabilityResource.apiVersion,
  kind: CapabilityResource.kind,
  metadata: { name, namespace },
  spec
})

/** The original Halkyon's example Capability. */
const postgres = {
  category: "database",
  type: "postgres",
  version: "10",
  parameters: [
    { name: "DB_USER", value: "admin" },
    { name: "DB_PASSWORD", value: "admin" }
  ]
}

/** Runs `halkyon manifests ARGS` in this process and returns what it printed on stdout. */
const runManifestsCommand = async (args: ReadonlyArray<string>): Promise<string> => {
  const printed: Array<string> = []
  const testConsole: Console.Console = Object.assign(Object.create(console), {
    log: (...items: ReadonlyArray<unknown>) => printed.push(items.map(String).join(" "))
  })
  await Command.runWith(manifestsCommand, { version: "test" })(args).pipe(
    Effect.provideService(Console.Console, testConsole),
    Effect.provide(NodeServices.layer),
    Effect.runPromise
  )
  return printed.join("\n")
}

beforeAll(async () => {
  plane = await startControlPlane()
  const kc = new KubeConfig()
  kc.loadFromFile(plane.kubeconfigPath)
  objects = KubernetesObjectApi.makeApiClient(kc)
  const all = manifests({ namespace, image })
  const crds = all.filter((o): o is CustomResourceDefinition => o.kind === "CustomResourceDefinition")
  for (const crd of crds) await applyCrd(crd)
  for (const crd of crds) await establishedWithin(crd.metadata?.name ?? "", 30_000)
  for (const object of all.filter((o) => o.kind !== "CustomResourceDefinition")) await apply(object)
}, 30 * 60_000)

afterAll(async () => {
  await plane?.stop()
}, 60_000)

test("manifests lists the CRDs first and a namespace only when it is not default", () => {
  expect(manifests({ namespace, serviceBinding: false }).map((o) => o.kind)).toEqual([
    "CustomResourceDefinition",
    "CustomResourceDefinition",
    "Namespace",
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Deployment"
  ])
  expect(manifests({ namespace: "default" }).map((o) => o.kind)).not.toContain("Namespace")
})

test("manifests serve ServiceBindings by default: their CRDs (and ClusterWorkloadResourceMapping's), and the binding controller's own identity", () => {
  const objects = manifests({ namespace })
  expect(objects.map((o) => `${o.kind} ${o.metadata?.name}`)).toEqual([
    "CustomResourceDefinition capabilities.halkyon.io",
    "CustomResourceDefinition capabilityinfos.halkyon.io",
    "CustomResourceDefinition servicebindings.servicebinding.io",
    "CustomResourceDefinition clusterworkloadresourcemappings.servicebinding.io",
    `Namespace ${namespace}`,
    "ServiceAccount halkyon",
    "ClusterRole halkyon",
    "ClusterRoleBinding halkyon",
    "Role halkyon",
    "RoleBinding halkyon",
    "ServiceAccount halkyon-service-binding",
    "ClusterRole halkyon-service-binding",
    "ClusterRole halkyon-service-binding-core",
    "ClusterRoleBinding halkyon-service-binding",
    "ClusterRoleBinding halkyon-service-binding-core",
    "ServiceAccount halkyon-parameter-references",
    "ClusterRole halkyon-parameter-references",
    "ClusterRoleBinding halkyon-parameter-references",
    "Deployment halkyon"
  ])
  const off = manifests({ namespace, serviceBinding: false })
  const args = (m: ReadonlyArray<(typeof objects)[number]>) =>
    (m.find((o) => o.kind === "Deployment") as
      | { spec?: { template?: { spec?: { containers?: Array<{ args?: Array<string> }> } } } }
      | undefined)
      ?.spec?.template?.spec?.containers?.[0]?.args ?? []
  expect(args(off)).toContain("--service-binding=false")
  expect(args(objects)).not.toContain("--service-binding=false")
})

test("a valid Capability (the original's example) is created", async () => {
  const created = await kube(capabilitiesPath, { method: "POST", body: capability("postgres-db", postgres) })
  expect(created.status).toBe(201)
  const read = await kube(`${capabilitiesPath}/postgres-db`)
  expect(read.status).toBe(200)
  expect(read.body.spec).toEqual(postgres)
})

test("the API server refuses a Capability without category, without type or with an empty type", async () => {
  const { category: _category, ...noCategory } = postgres
  const { type: _type, ...noType } = postgres
  const cases = [
    { name: "no-category", spec: noCategory, field: "spec.category", says: "Required value" },
    { name: "no-type", spec: noType, field: "spec.type", says: "Required value" },
    { name: "empty-type", spec: { ...postgres, type: "" }, field: "spec.type", says: "at least 1 chars long" }
  ]
  for (const c of cases) {
    const res = await kube(capabilitiesPath, { method: "POST", body: capability(c.name, c.spec) })
    expect({ name: c.name, status: res.status, reason: res.body.reason }).toEqual({ name: c.name, status: 422, reason: "Invalid" })
    expect(String(res.body.message)).toContain(c.field)
    expect(String(res.body.message)).toContain(c.says)
    expect((await kube(`${capabilitiesPath}/${c.name}`)).status).toBe(404)
  }
})

test("status is a subresource: ignored through the resource, kept through /status, validated by the schema", async () => {
  const name = "status-check"
  expect((await kube(capabilitiesPath, { method: "POST", body: capability(name, postgres) })).status).toBe(201)
  const status = {
    observedGeneration: 1,
    conditions: [
      { type: "Ready", status: "True", reason: "Ready", message: "all dependents ready", lastTransitionTime: "2025-01-01T00:00:00Z" }
    ],
    plugin: "postgres",
    version: "10"
  }
  const merge = "application/merge-patch+json"

  const throughResource = await kube(`${capabilitiesPath}/${name}`, { method: "PATCH", body: { status }, contentType: merge })
  expect(throughResource.status).toBe(200)
  expect((await kube(`${capabilitiesPath}/${name}`)).body.status).toBeUndefined()

  const throughStatus = await kube(`${capabilitiesPath}/${name}/status`, { method: "PATCH", body: { status }, contentType: merge })
  expect(throughStatus.status).toBe(200)
  expect((await kube(`${capabilitiesPath}/${name}`)).body.status).toEqual(status)

  // The condition status is a derived enum (True, False, Unknown).
  const bad = { ...status, conditions: [{ ...status.conditions[0], status: "Maybe" }] }
  const refused = await kube(`${capabilitiesPath}/${name}/status`, { method: "PATCH", body: { status: bad }, contentType: merge })
  expect(refused.status).toBe(422)
  expect(String(refused.body.message)).toContain("status.conditions[0].status")
})

test("the CRDs as served carry the derived schema and the printer columns", async () => {
  // Read raw: client-node's model would rename the schema's keywords (`_enum`).
  const read = async (name: string) =>
    (await kube(`/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${name}`)).body as unknown as CustomResourceDefinition
  const capabilityServed = (await read(CapabilityResource.crdName)).spec.versions[0]
  const infoServed = (await read(CapabilityInfoResource.crdName)).spec.versions[0]
  const columns = (v: typeof capabilityServed) => v?.additionalPrinterColumns?.map((c) => [c.name, c.type, c.jsonPath])
  expect(columns(capabilityServed)).toEqual([
    ["Category", "string", ".spec.category"],
    ["Type", "string", ".spec.type"],
    ["Version", "string", ".spec.version"],
    ["Ready", "string", `.status.conditions[?(@.type=="Ready")].status`],
    ["Reason", "string", `.status.conditions[?(@.type=="Ready")].reason`],
    ["Age", "date", ".metadata.creationTimestamp"]
  ])
  expect(columns(infoServed)).toEqual([
    ["Category", "string", ".spec.category"],
    ["Type", "string", ".spec.type"],
    ["Versions", "string", ".spec.versions"],
    ["Plugin", "string", ".spec.plugin"],
    ["Age", "date", ".metadata.creationTimestamp"]
  ])
  expect(capabilityServed?.subresources?.status).toEqual({})
  expect(infoServed?.subresources).toBeUndefined()
  // Nothing was lost on the way (enum, minLength, required), and nothing was added.
  expect(capabilityServed?.schema?.openAPIV3Schema).toEqual(capabilityCrd().spec.versions[0]?.schema?.openAPIV3Schema)

  // And the server prints them: kubectl's table view of the example Capability.
  const table = await kube(`${capabilitiesPath}/postgres-db`, { accept: "application/json;as=Table;v=v1;g=meta.k8s.io" })
  expect(table.status).toBe(200)
  const definitions = table.body.columnDefinitions as ReadonlyArray<{ name: string }>
  const rows = table.body.rows as ReadonlyArray<{ cells: ReadonlyArray<unknown> }>
  expect(definitions.map((d) => d.name)).toEqual(["Name", "Category", "Type", "Version", "Ready", "Reason", "Age"])
  expect(rows[0]?.cells.slice(0, 4)).toEqual(["postgres-db", "database", "postgres", "10"])
})

test("discovery serves both kinds with their short names and scopes", async () => {
  const res = await kube(`/apis/${CapabilityResource.apiVersion}`)
  expect(res.status).toBe(200)
  const resources = res.body.resources as ReadonlyArray<
    { name: string; kind: string; namespaced: boolean; shortNames?: ReadonlyArray<string> }
  >
  const byName = new Map(resources.map((r) => [r.name, r]))
  expect(byName.get("capabilities")).toMatchObject({ kind: "Capability", namespaced: true, shortNames: ["cap"] })
  expect(byName.get("capabilityinfos")).toMatchObject({ kind: "CapabilityInfo", namespaced: false, shortNames: ["capinfo"] })
  expect(byName.has("capabilities/status")).toBe(true)
})

test("a CapabilityInfo is created cluster-scoped", async () => {
  const info = {
    apiVersion: CapabilityInfoResource.apiVersion,
    kind: CapabilityInfoResource.kind,
    metadata: { name: "database-postgres" },
    spec: {
      category: "database",
      type: "postgres",
      versions: ["16", "17"],
      defaultVersion: "17",
      plugin: "postgres",
      parameters: [{ name: "DB_PASSWORD", required: true, secret: true }]
    }
  }
  const path = `/apis/${CapabilityInfoResource.apiVersion}/${CapabilityInfoResource.plural}`
  const created = await kube(path, { method: "POST", body: info })
  expect(created.status).toBe(201)
  const read = await kube(`${path}/database-postgres`)
  expect(read.body.spec).toEqual(info.spec)
  expect((read.body.metadata as { namespace?: string }).namespace).toBeUndefined()
  // There is no namespaced form of it.
  expect((await kube(`/apis/${CapabilityInfoResource.apiVersion}/namespaces/${namespace}/${CapabilityInfoResource.plural}`)).status).toBe(
    404
  )
  // A CapabilityInfo without its versions is refused: the whole spec is required.
  const { versions: _versions, ...noVersions } = info.spec
  const refused = await kube(path, { method: "POST", body: { ...info, metadata: { name: "bad" }, spec: noVersions } })
  expect(refused.status).toBe(422)
  expect(String(refused.body.message)).toContain("spec.versions")
})

test("the ServiceAccount, RBAC and Deployment were accepted as written", async () => {
  const api = objectApi()
  const account = await api.read<V1ServiceAccount>({
    apiVersion: "v1",
    kind: "ServiceAccount",
    metadata: { name: operatorName, namespace }
  })
  expect(account.metadata?.namespace).toBe(namespace)

  const role = await api.read<V1ClusterRole>({
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "ClusterRole",
    metadata: { name: operatorName }
  })
  expect(role.rules).toEqual([...operatorRules])
  // Without plugins known, nothing to impersonate: the Role holds the Lease only, in the operator's namespace.
  const own = await api.read<V1Role>({
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "Role",
    metadata: { name: operatorName, namespace }
  })
  expect(own.rules).toEqual([...operatorNamespacedRules([])])

  const binding = await api.read<V1ClusterRoleBinding>({
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "ClusterRoleBinding",
    metadata: { name: operatorName }
  })
  expect(binding.roleRef).toEqual({ apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: operatorName })
  expect(binding.subjects).toEqual([{ kind: "ServiceAccount", name: operatorName, namespace }])

  const deployment = await api.read<V1Deployment>({
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name: operatorName, namespace }
  })
  const pod = deployment.spec?.template.spec
  const container = pod?.containers[0]
  expect(pod?.serviceAccountName).toBe(operatorName)
  expect(container?.image).toBe(image)
  expect(container?.args).toEqual([
    "run",
    "--leader-elect",
    "--plugins-dir",
    "/plugins",
    "--plugin-runner",
    "/run/halkyon/runner.sock",
    "--impersonate",
    "always",
    "--health-addr",
    ":8081",
    "--metrics-addr",
    ":8080"
  ])
  expect(container?.ports?.map((p) => [p.name, p.containerPort])).toEqual([["health", 8081], ["metrics", 8080]])
  expect(container?.livenessProbe?.httpGet).toMatchObject({ path: "/healthz", port: 8081 })
  expect(container?.readinessProbe?.httpGet).toMatchObject({ path: "/readyz", port: 8081 })
  const confined = (uid: number) => ({
    runAsNonRoot: true,
    runAsUser: uid,
    runAsGroup: 65532,
    readOnlyRootFilesystem: true,
    allowPrivilegeEscalation: false,
    capabilities: { drop: ["ALL"] },
    seccompProfile: { type: "RuntimeDefault" }
  })
  expect(container?.securityContext).toEqual(confined(65532))
  expect(container?.volumeMounts?.map((m) => m.mountPath)).toEqual([
    "/plugins",
    "/tmp",
    "/run/halkyon",
    "/var/run/secrets/kubernetes.io/serviceaccount"
  ])
  expect(pod?.volumes?.map((v) => v.name)).toEqual(["plugins", "tmp", "runner", "runner-tmp", "kube-api-access"])
  // Plugins run in the runner sidecar: another uid, the plugins read-only, no token (none is automounted).
  expect(pod?.automountServiceAccountToken).toBe(false)
  const runner = pod?.initContainers?.[0]
  expect(runner?.restartPolicy).toBe("Always")
  expect(runner?.image).toBe(image)
  expect(runner?.args).toEqual(["plugin-runner", "--socket", "/run/halkyon/runner.sock", "--plugins-dir", "/plugins"])
  expect(runner?.securityContext).toEqual(confined(65533))
  expect(runner?.volumeMounts?.map((m) => [m.mountPath, m.readOnly ?? false])).toEqual([
    ["/plugins", true],
    ["/run/halkyon", false],
    ["/tmp", false]
  ])
  expect(runner?.resources?.limits).toEqual({ memory: "1Gi" })
  expect(container?.env).toEqual([{
    name: "POD_NAMESPACE",
    valueFrom: { fieldRef: { apiVersion: "v1", fieldPath: "metadata.namespace" } }
  }])
  expect(container?.resources?.requests).toEqual({ cpu: "100m", memory: "128Mi" })
})

test("the YAML the command prints parses back into the same objects", async () => {
  const printed = await runManifestsCommand(["--namespace", namespace, "--image", image])
  expect(printed.split("\n").filter((line) => line === "---")).toHaveLength(manifests({ namespace }).length - 1)
  expect(loadAll(printed)).toEqual([...manifests({ namespace, image })])

  const defaults = await runManifestsCommand([])
  expect(loadAll(defaults)).toEqual([...manifests({ namespace: defaultNamespace, image: defaultImage })])
  expect(defaults).toContain(`namespace: ${defaultNamespace}`)
  expect(defaults).toContain(`image: ${defaultImage}`)
})

test("--plugins sets HALKYON_PLUGINS on the operator, normalized; a bad entry is refused with the expected form", async () => {
  const deployment = manifests({ plugins: "acme/redis@v2.1.0,acme/kafka@v1" }).find((m) => m.kind === "Deployment") as V1Deployment
  expect(deployment.spec?.template.spec?.containers[0]?.env).toContainEqual({
    name: "HALKYON_PLUGINS",
    value: "acme/redis@v2.1.0,acme/kafka@v1"
  })
  // The command reads what each named plugin declares from the folder it is installed in: without one it warns; not installed there is refused.
  const halkyon = (...args: Array<string>) =>
    Bun.spawnSync([join(root, "dist/halkyon"), "manifests", ...args], { stdout: "pipe", stderr: "pipe" })
  const noDir = halkyon("--plugins", "acme/redis@v2.1.0")
  expect(noDir.exitCode).toBe(0)
  expect(noDir.stderr.toString()).toContain("warning: no roles for acme/redis@v2.1.0 in this output")
  expect(noDir.stdout.toString()).not.toContain("halkyon-plugin-")
  const empty = mkdtempSync(join(tmpdir(), "halkyon-manifests-"))
  try {
    const notInstalled = halkyon("--plugins", " acme/redis@v2.1.0, ,acme/kafka@v1", "--plugins-dir", empty)
    expect(notInstalled.exitCode).not.toBe(0)
    expect(notInstalled.stderr.toString()).toContain(`acme/redis@v2.1.0, acme/kafka@v1 not installed in ${empty}: install first`)
  } finally {
    rmSync(empty, { recursive: true, force: true })
  }
  const without = loadAll(await runManifestsCommand([])).find((m) => (m as { kind?: string }).kind === "Deployment") as V1Deployment
  expect(without.spec?.template.spec?.containers[0]?.env?.map((e) => e.name)).toEqual(["POD_NAMESPACE"])

  const bad = Bun.spawnSync([join(root, "dist/halkyon"), "manifests", "--plugins", "nonsense"], { stdout: "pipe", stderr: "pipe" })
  expect(bad.exitCode).not.toBe(0)
  expect(bad.stderr.toString()).toContain("invalid plugin \"nonsense\": no @tag; expected org/repo@tag")
})

test("--bind-jobs adds the MutatingAdmissionPolicy rule as a role of its own, bound cluster-wide, which the API server accepts; the rest unchanged", async () => {
  const named = (objects: ReadonlyArray<unknown>) =>
    objects.map((o) => `${(o as KubernetesObject).kind} ${(o as KubernetesObject).metadata?.name}`)
  const defaults = loadAll(await runManifestsCommand(["--namespace", namespace, "--image", image]))
  const withJobs = loadAll(await runManifestsCommand(["--namespace", namespace, "--image", image, "--bind-jobs"]))
  expect(withJobs).toEqual([...manifests({ namespace, image, bindJobs: true })])
  expect(JSON.stringify(defaults)).not.toContain("mutatingadmissionpolicies")
  // Only two objects more, after the binding identity's own; the Deployment is the same (the operator tries, a 403 says what to do).
  expect(withJobs.filter((o) => !named(defaults).includes(named([o])[0]!))).toEqual([
    {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "ClusterRole",
      metadata: {
        name: "halkyon-service-binding-jobs",
        labels: { "app.kubernetes.io/name": "halkyon", "app.kubernetes.io/component": "service-binding" }
      },
      rules: [{
        apiGroups: ["admissionregistration.k8s.io"],
        resources: ["mutatingadmissionpolicies", "mutatingadmissionpolicybindings"],
        verbs: ["list", "create", "patch", "delete"]
      }]
    },
    {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "ClusterRoleBinding",
      metadata: {
        name: "halkyon-service-binding-jobs",
        labels: { "app.kubernetes.io/name": "halkyon", "app.kubernetes.io/component": "service-binding" }
      },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "halkyon-service-binding-jobs" },
      subjects: [{ kind: "ServiceAccount", name: "halkyon-service-binding", namespace }]
    }
  ])
  expect(named(withJobs).filter((n) => !n.endsWith("-jobs"))).toEqual(named(defaults))
  expect(withJobs.filter((o) => !named([o])[0]!.endsWith("-jobs"))).toEqual(defaults)
  // With one served namespace, still a ClusterRoleBinding: a RoleBinding would grant nothing on cluster-scoped policies.
  const served = manifests({ namespace, servedNamespace: "shop", bindJobs: true }).filter((o) =>
    o.metadata?.name === "halkyon-service-binding-jobs"
  )
  expect(served.map((o) => o.kind)).toEqual(["ClusterRole", "ClusterRoleBinding"])
  for (const object of withJobs.filter((o) => named([o])[0]!.endsWith("-jobs"))) await apply(object as KubernetesObject)
  const read = await objectApi().read<V1ClusterRole>({
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "ClusterRole",
    metadata: { name: "halkyon-service-binding-jobs" }
  })
  expect(read.rules?.flatMap((r) => r.resources ?? [])).toEqual(["mutatingadmissionpolicies", "mutatingadmissionpolicybindings"])
  // Nothing to grant it to without the binding controller: refused, saying so.
  const both = Bun.spawnSync([join(root, "dist/halkyon"), "manifests", "--bind-jobs", "--service-binding=false"], {
    stdout: "pipe",
    stderr: "pipe"
  })
  expect(both.exitCode).not.toBe(0)
  expect(both.stderr.toString()).toContain(
    "--bind-jobs grants the ServiceBinding controller's identity a rule, and --service-binding=false prints none"
  )
  expect(both.stdout.toString()).toBe("")
})

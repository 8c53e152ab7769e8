/**
 * Typed parameters enforced by the API server itself: the operator, with the
 * pgfix fixture plugin (go/sdk/testdata/validity.json's typed plugin), keeps
 * a ValidatingAdmissionPolicy for database/postgres, and kube-apiserver
 * refuses each wrong Capability, on `kubectl apply --dry-run=server` and for
 * real, with the sentence the SDKs say. A valid one is accepted, one of a
 * type no plugin serves waits with NoPlugin, and the policy goes within 5 s
 * of the plugin.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { rmSync } from "node:fs"
import { join } from "node:path"
import {
  capabilityPath,
  type Cluster,
  dig,
  kubectl,
  type Operator,
  readyOf,
  startCluster,
  startOperator,
  untilReady,
  createNamespace
} from "../support/cluster.ts"
import { eventually, pluginsFolder, testPlugin } from "../support/paths.ts"
import { TypedParameterSchema } from "../support/typed-schema.ts"

let cluster: Cluster
let operator: Operator
let plugins: ReturnType<typeof pluginsFolder>
const ns = "shop"
const policyPath = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies/halkyon-database-postgres"
const bindingPath = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings/halkyon-database-postgres"

const capability = (name: string, spec: Record<string, unknown>) => ({
  apiVersion: "halkyon.io/v1beta1",
  kind: "Capability",
  metadata: { name, namespace: ns },
  spec: { category: "database", type: "postgres", ...spec }
})
const params = (...pairs: ReadonlyArray<readonly [string, string]>) => ({ parameters: pairs.map(([name, value]) => ({ name, value })) })

const declared = "DB_PORT, TIER, DB_NAME, DB_PASSWORD, DEBUG, REPLICAS, SHARDS, COUNT"
const port = "parameter DB_PORT must be an integer from 1024 to 65535 (plugin pgfix)"
const refused: ReadonlyArray<{ readonly name: string; readonly spec: Record<string, unknown>; readonly message: string }> = [
  { name: "port-abc", spec: params(["DB_PORT", "abc"]), message: port },
  { name: "port-80", spec: params(["DB_PORT", "80"]), message: port },
  { name: "tier-staging", spec: params(["TIER", "staging"]), message: "parameter TIER must be one of dev, prod (plugin pgfix)" },
  {
    name: "unknown-foo",
    spec: params(["FOO", "x"]),
    message: `parameter FOO is not declared by plugin pgfix; declared parameters: ${declared}`
  },
  {
    name: "version-9",
    spec: { version: "9" },
    message: "version \"9\" of postgres is not supported by plugin pgfix; supported versions: 16, 17"
  },
  {
    name: "literal-password",
    spec: params(["DB_PASSWORD", "s3cret"]),
    message: "parameter DB_PASSWORD of plugin pgfix is secret: give it with valueFrom (a Secret's key), not value"
  },
  {
    name: "bad-name",
    spec: { category: "DataBase", type: "POSTGRES", ...params(["DB_NAME", "Shop"]) },
    message: "parameter DB_NAME must be a string matching ^[a-z][a-z0-9_]*$ (plugin pgfix)"
  }
]

/** `kubectl apply` of one object, on stdin as JSON. */
const apply = (object: unknown, ...flags: ReadonlyArray<string>) => kubectl(cluster, ["apply", ...flags, "-f", "-"], JSON.stringify(object))

beforeAll(async () => {
  cluster = await startCluster()
  await createNamespace(cluster, ns)
  plugins = pluginsFolder(testPlugin("pgfix.js"))
  operator = await untilReady(startOperator(cluster, plugins.dir))
  // The API server loads a new policy asynchronously: wait until it refuses.
  const enforced = await eventually(
    async () =>
      (await cluster.api("POST", `${capabilityPath(ns)}?dryRun=All`, capability("probe", params(["DB_PORT", "abc"])))).status === 422,
    30_000,
    100
  )
  if (!enforced) throw new Error(`the admission policy was never enforced:\n${operator.logs.join("\n")}`)
}, 120_000)

afterAll(async () => {
  if (operator !== undefined) await operator.stop()
  plugins?.cleanup()
  await cluster?.plane.stop()
})

describe("a plugin's declared parameters, enforced by the API server", () => {
  test("the policy and its binding are the operator's, derived from the plugin", async () => {
    const policy = await cluster.api("GET", policyPath)
    expect(policy.status).toBe(200)
    expect(dig(policy.body, "metadata", "labels")).toEqual({ "app.kubernetes.io/managed-by": "halkyon" })
    expect(dig(policy.body, "metadata", "annotations")).toEqual({ "halkyon.io/plugin": "pgfix" })
    expect(dig<ReadonlyArray<unknown>>(policy.body, "spec", "validations")).toHaveLength(10)
    const binding = await cluster.api("GET", bindingPath)
    expect(binding.body.spec).toMatchObject({ policyName: "halkyon-database-postgres", validationActions: ["Deny"] })
    const info = await cluster.api("GET", "/apis/halkyon.io/v1beta1/capabilityinfos/database-postgres")
    expect(dig(info.body, "spec", "refuseUnknownParameters")).toBe(true)
    // Every parameter's whole schema, as the API server stored it (TIER's values, DB_NAME's pattern, DB_PASSWORD secret…).
    expect(dig(info.body, "spec", "parameters")).toEqual(TypedParameterSchema)
  })

  for (const c of refused) {
    test(`refuses ${c.name} on a server dry run and for real, saying what is allowed and which plugin`, async () => {
      const dry = await apply(capability(c.name, c.spec), "--dry-run=server")
      expect(dry.code).not.toBe(0)
      expect(dry.stderr).toContain(c.message)
      const real = await apply(capability(c.name, c.spec))
      expect(real.code).not.toBe(0)
      expect(real.stderr).toContain(c.message)
      expect((await cluster.api("GET", capabilityPath(ns, c.name))).status).toBe(404)
    })
  }

  test("accepts a valid Capability, which the plugin provisions", async () => {
    const valid = capability("orders", {
      version: "17",
      ...params(["DB_PORT", "6543"], ["TIER", "prod"], ["DB_NAME", "orders"], ["DEBUG", "false"], ["DB_PASSWORD", ""])
    })
    const dry = await apply(valid, "--dry-run=server")
    expect({ code: dry.code, stderr: dry.stderr }).toEqual({ code: 0, stderr: "" })
    const real = await apply(valid)
    expect({ code: real.code, stderr: real.stderr }).toEqual({ code: 0, stderr: "" })
    const ready = await eventually(
      async () => readyOf(await cluster.api("GET", capabilityPath(ns, "orders")))?.status === "True",
      20_000,
      100
    )
    expect(ready).toBe(true)
    const settings = await cluster.api("GET", `/api/v1/namespaces/${ns}/configmaps/orders-settings`)
    expect(settings.body.data).toEqual({ DB_PORT: "6543", TIER: "prod", DB_NAME: "orders" })
  })

  test("an update that breaks a rule is refused; one that leaves the spec alone is not checked", async () => {
    const patched = await cluster.api(
      "PATCH",
      capabilityPath(ns, "orders"),
      { spec: params(["TIER", "staging"]) },
      "application/merge-patch+json"
    )
    expect(patched.status).toBe(422)
    expect(String(patched.body.message)).toContain("parameter TIER must be one of dev, prod (plugin pgfix)")
    const labelled = await cluster.api(
      "PATCH",
      capabilityPath(ns, "orders"),
      { metadata: { labels: { team: "a" } } },
      "application/merge-patch+json"
    )
    expect(labelled.status).toBe(200)
  })

  test("a Capability of a type no plugin serves is accepted and waits with NoPlugin", async () => {
    const other = { ...capability("mysql", { type: "mysql", ...params(["DB_PORT", "abc"]) }) }
    const created = await apply(other)
    expect({ code: created.code, stderr: created.stderr }).toEqual({ code: 0, stderr: "" })
    const waiting = await eventually(
      async () => readyOf(await cluster.api("GET", capabilityPath(ns, "mysql")))?.reason === "NoPlugin",
      20_000,
      100
    )
    expect(waiting).toBe(true)
  })

  test("removing the plugin removes its policy and binding within 5 s, and the API server accepts again", async () => {
    rmSync(join(plugins.dir, "pgfix.js"))
    const started = performance.now()
    const gone = await eventually(
      async () => (await cluster.api("GET", policyPath)).status === 404 && (await cluster.api("GET", bindingPath)).status === 404,
      5_000,
      50
    )
    const elapsed = Math.round(performance.now() - started)
    expect({ gone, within5s: elapsed <= 5_000 }).toEqual({ gone: true, within5s: true })
    console.log(`policy removed ${elapsed} ms after the plugin file`)
    expect(operator.logs.some((l) => l.includes("admission policy halkyon-database-postgres removed"))).toBe(true)
    // Once the API server drops the policy, such a Capability is accepted (and waits for a plugin).
    const accepted = await eventually(
      async () =>
        (await cluster.api("POST", `${capabilityPath(ns)}?dryRun=All`, capability("later", params(["DB_PORT", "abc"])))).status === 201,
      10_000,
      100
    )
    expect(accepted).toBe(true)
  })
})

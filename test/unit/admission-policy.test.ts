/**
 * The admission policy derived from Describe: its CEL, its sentences (the
 * SDKs' own, checked against go/sdk/testdata/validity.json's typed cases),
 * and its sync against an in-memory API: applied per served type, removed
 * with the plugin, and a forbidden API said once. The API server running the
 * CEL is test/e2e/admission-policy.test.ts.
 */
import { describe as group, expect, test } from "bun:test"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { Effect, Layer, Logger } from "effect"
import { admissionPolicy, admissionPolicyBinding, celString, celValueCheck, validations } from "../../src/api/AdmissionPolicy.ts"
import type { PluginDescription } from "../../src/gen/halkyon/capability/v1/capability.ts"
import { KubeApiError } from "../../src/kube/Errors.ts"
import { KubeClient } from "../../src/kube/KubeClient.ts"
import type { KubeObject } from "../../src/kube/KubeObject.ts"
import type { PluginConnection } from "../../src/plugin-client/PluginClient.ts"
import { makeAdmissionPolicySync } from "../../src/reconciler/AdmissionPolicySync.ts"
import { PluginRegistry } from "../../src/registry/PluginRegistry.ts"
import { describe } from "../../src/sdk/CapabilityService.ts"
import { definePlugin, type PluginDefinition } from "../../src/sdk/Plugin.ts"

interface Typed {
  readonly plugin: Omit<PluginDefinition, "dependents">
  readonly cases: ReadonlyArray<{ readonly name: string; readonly errors: ReadonlyArray<string> }>
}
const typed = (JSON.parse(readFileSync(join(import.meta.dir, "../../go/sdk/testdata/validity.json"), "utf8")) as { typed: Typed }).typed
const description: PluginDescription = describe(definePlugin({ ...typed.plugin, dependents: [] }))
const [postgres] = description.types
if (postgres === undefined) throw new Error("the fixture declares no type")
const id = { name: "halkyon-database-postgres", labels: { "app.kubernetes.io/managed-by": "halkyon" }, namespace: undefined }

group("the policy's CEL", () => {
  test("matches its category and type case-insensitively, on create and on updates that change the spec", () => {
    const policy = admissionPolicy(description, postgres, id)
    expect(policy.spec.matchConditions).toEqual([
      {
        name: "category-and-type",
        expression: "object.spec.category.lowerAscii() == \"database\" && object.spec.type.lowerAscii() == \"postgres\""
      },
      { name: "spec-changed", expression: "request.operation == \"CREATE\" || oldObject.spec != object.spec" }
    ])
    expect(policy.spec.matchConstraints.resourceRules).toEqual([
      { apiGroups: ["halkyon.io"], apiVersions: ["*"], operations: ["CREATE", "UPDATE"], resources: ["capabilities"] }
    ])
    expect(policy.spec.failurePolicy).toBe("Fail")
  })

  test("checks an integer's digits before its bounds, so int() never fails", () => {
    expect(celValueCheck({ type: "integer", minimum: 1024, maximum: 65535 }, "p.value")).toBe(
      "p.value.matches(\"^-?[0-9]{1,18}$\") && int(p.value) >= 1024 && int(p.value) <= 65535"
    )
    expect(celValueCheck({ type: "integer" }, "v")).toBe("v.matches(\"^-?[0-9]{1,18}$\")")
    expect(celValueCheck({ type: "boolean" }, "v")).toBe("v in [\"true\", \"false\"]")
    expect(celValueCheck({ type: "enum", values: ["dev", "prod"] }, "v")).toBe("v in [\"dev\", \"prod\"]")
    expect(celValueCheck({ type: "string", pattern: "" }, "v")).toBeUndefined()
    expect(celValueCheck({}, "v")).toBeUndefined()
  })

  test("quotes a pattern as a CEL string, backslashes and quotes escaped", () => {
    expect(celValueCheck({ pattern: "^a\\.b\"c'$" }, "v")).toBe("v.matches(\"^a\\\\.b\\\"c'$\")")
    expect(celString("é\n")).toBe("\"é\\n\"")
  })

  test("one validation per rule, in order: version, values, secrets, unknown names", () => {
    const all = validations(description, postgres)
    expect(all.map((v) => v.message)).toEqual([
      "version of postgres is not supported by plugin pgfix; supported versions: 16, 17",
      "parameter DB_PORT must be an integer from 1024 to 65535 (plugin pgfix)",
      "parameter TIER must be one of dev, prod (plugin pgfix)",
      "parameter DB_NAME must be a string matching ^[a-z][a-z0-9_]*$ (plugin pgfix)",
      "parameter DEBUG must be true or false (plugin pgfix)",
      "parameter REPLICAS must be an integer of at least 1 (plugin pgfix)",
      "parameter SHARDS must be an integer of at most 8 (plugin pgfix)",
      "parameter COUNT must be an integer (plugin pgfix)",
      "parameter DB_PASSWORD of plugin pgfix is secret: give it with valueFrom (a Secret's key), not value",
      "parameter a given parameter is not declared by plugin pgfix; declared parameters: DB_PORT, TIER, DB_NAME, DB_PASSWORD, DEBUG, REPLICAS, SHARDS, COUNT"
    ])
    expect(all[1]?.expression).toBe(
      "!has(object.spec.parameters) || object.spec.parameters.all(p, p.name != \"DB_PORT\" || !(has(p.value) && p.value != \"\") || (p.value.matches(\"^-?[0-9]{1,18}$\") && int(p.value) >= 1024 && int(p.value) <= 65535))"
    )
    expect(all[8]?.expression).toBe(
      "!has(object.spec.parameters) || object.spec.parameters.all(p, p.name != \"DB_PASSWORD\" || !(has(p.value) && p.value != \"\"))"
    )
    expect(all[0]?.messageExpression).toBe(
      "\"version \\\"\" + object.spec.version + \"\\\" of postgres is not supported by plugin pgfix; supported versions: 16, 17\""
    )
    expect(all[9]?.messageExpression).toBe(
      "\"parameter \" + object.spec.parameters.filter(p, !(p.name in [\"DB_PORT\", \"TIER\", \"DB_NAME\", \"DB_PASSWORD\", \"DEBUG\", \"REPLICAS\", \"SHARDS\", \"COUNT\"]))[0].name + \" is not declared by plugin pgfix; declared parameters: DB_PORT, TIER, DB_NAME, DB_PASSWORD, DEBUG, REPLICAS, SHARDS, COUNT\""
    )
  })

  test("says, for each wrong value, exactly what the SDKs' CheckValidity says", () => {
    const messages = new Set(validations(description, postgres).map((v) => v.message))
    const single = typed.cases.filter((c) =>
      c.errors.length === 1 && c.errors[0]?.startsWith("parameter") && !c.errors[0].includes("not declared")
    )
    expect(single.length).toBeGreaterThan(6)
    for (const c of single) expect(messages).toContain(c.errors[0] ?? "")
  })

  test("an old plugin's parameters (no type) are any string, a secret one given literally included: only the version and required ones are checked", () => {
    const old: PluginDescription = {
      ...description,
      refuseUnknownParameters: false,
      parameters: description.parameters.map((p) => ({
        ...p,
        type: 0,
        pattern: "",
        allowedValues: [],
        required: p.name === "DB_NAME"
      }))
        .map(({ minimum: _min, maximum: _max, ...p }) => p)
    }
    expect(validations(old, postgres).map((v) => v.message)).toEqual([
      "version of postgres is not supported by plugin pgfix; supported versions: 16, 17",
      "parameter DB_NAME is required"
    ])
  })

  test("the binding denies, in the served namespace only when there is one", () => {
    expect(admissionPolicyBinding(id).spec).toEqual({ policyName: "halkyon-database-postgres", validationActions: ["Deny"] })
    expect(admissionPolicyBinding({ ...id, namespace: "shop" }).spec).toEqual({
      policyName: "halkyon-database-postgres",
      validationActions: ["Deny"],
      matchResources: { namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "shop" } } }
    })
  })
})

/**
 * An API holding objects by kind and name. `refusing` says how every call is
 * refused, if it is: 403, as RBAC without the rules; 404, as an API server
 * that does not serve admissionregistration.k8s.io/v1 (KubeClient's discovery
 * answers so before any request).
 */
const fakeApi = (store: Map<string, KubeObject>, refusing: () => 403 | 404 | undefined) => {
  const unused = () => Effect.die(new Error("not used by the sync"))
  const refusal = (request: string) =>
    refusing() === 404
      ? new KubeApiError({
        code: 404,
        reason: "NotFound",
        detail: "the server has no kind ValidatingAdmissionPolicy in admissionregistration.k8s.io/v1 (is its CRD installed?)",
        request: "discover admissionregistration.k8s.io/v1"
      })
      : new KubeApiError({ code: 403, reason: "Forbidden", detail: "User \"op\" cannot list resource", request })
  const forbidden = () => refusing() !== undefined
  const api: KubeClient["Service"] = KubeClient.of({
    namespaced: unused,
    impersonating: () => api,
    actingAs: undefined,
    get: unused,
    plural: unused,
    watch: () => unused() as never,
    mergePatch: unused,
    patchStatus: unused,
    create: unused,
    server: "memory",
    apply: (object) => {
      if (forbidden()) return Effect.fail(refusal("apply"))
      store.set(`${object.kind}/${object.metadata.name}`, object)
      return Effect.succeed(object)
    },
    list: (_apiVersion, kind) =>
      forbidden()
        ? Effect.fail(refusal("list"))
        : Effect.succeed({ items: [...store.values()].filter((o) => o.kind === kind), resourceVersion: "1" }),
    delete: (ref) => Effect.sync(() => void store.delete(`${ref.kind}/${ref.name}`))
  })
  return Layer.succeed(KubeClient, api)
}

const plugin = (name: string, category: string, type: string): PluginDescription => ({
  ...description,
  name,
  category,
  types: [{ ...postgres, type }]
})

group("the policy sync", () => {
  test("one policy and binding per served type, removed with its plugin; a forbidden API is said once", async () => {
    const store = new Map<string, KubeObject>()
    let refusing: 403 | undefined
    const logged: Array<string> = []
    const logger = Logger.make(({ message }) => void logged.push(String(Array.isArray(message) ? message[0] : message)))
    await Effect.runPromise(
      Effect.gen(function*() {
        const registry = yield* PluginRegistry
        const sync = makeAdmissionPolicySync(undefined)
        yield* registry.register("pgfix", plugin("pgfix", "database", "postgres"), {} as PluginConnection)
        yield* registry.register("kv", plugin("kv", "cache", "redis"), {} as PluginConnection)
        yield* sync
        expect([...store.keys()].sort()).toEqual([
          "ValidatingAdmissionPolicy/halkyon-cache-redis",
          "ValidatingAdmissionPolicy/halkyon-database-postgres",
          "ValidatingAdmissionPolicyBinding/halkyon-cache-redis",
          "ValidatingAdmissionPolicyBinding/halkyon-database-postgres"
        ])
        expect(store.get("ValidatingAdmissionPolicy/halkyon-cache-redis")?.metadata.annotations).toEqual({ "halkyon.io/plugin": "kv" })
        yield* registry.unregister("kv")
        yield* sync
        expect([...store.keys()].sort()).toEqual([
          "ValidatingAdmissionPolicy/halkyon-database-postgres",
          "ValidatingAdmissionPolicyBinding/halkyon-database-postgres"
        ])
        refusing = 403
        yield* sync
        yield* sync
        expect(logged.filter((l) => l.includes("may not manage ValidatingAdmissionPolicies"))).toHaveLength(1)
        expect(logged.find((l) => l.includes("may not manage"))).toContain("grant it the rules `halkyon manifests` prints")
      }).pipe(Effect.provide(Layer.mergeAll(PluginRegistry.layer, fakeApi(store, () => refusing))), Effect.provide(Logger.layer([logger])))
    )
  })

  test("an API server that does not serve admissionregistration.k8s.io/v1 (404): said once, with what to do; then it recovers", async () => {
    const store = new Map<string, KubeObject>()
    let refusing: 404 | undefined = 404
    const logged: Array<string> = []
    const logger = Logger.make(({ message }) => void logged.push(String(Array.isArray(message) ? message[0] : message)))
    await Effect.runPromise(
      Effect.gen(function*() {
        const registry = yield* PluginRegistry
        const sync = makeAdmissionPolicySync(undefined)
        yield* registry.register("pgfix", plugin("pgfix", "database", "postgres"), {} as PluginConnection)
        // Not a failure: the plugins' own checks stand in, and the sync completes.
        yield* sync
        yield* sync
        const said = logged.filter((l) => l.includes("ValidatingAdmissionPolic"))
        expect(said).toEqual([
          "the API server does not serve ValidatingAdmissionPolicy in admissionregistration.k8s.io/v1 " +
          "(HTTP 404 on discover admissionregistration.k8s.io/v1): Capability parameters are checked by the plugins only, " +
          "after creation; to have the API server refuse them, run Kubernetes 1.30 or later, which serves " +
          "admissionregistration.k8s.io/v1 unless its --runtime-config turns it off; the operator tries again at each plugin change"
        ])
        // Not RBAC's advice, nor the discovery's guess about a CRD.
        expect(said[0]).not.toContain("grant")
        expect(said[0]).not.toContain("CRD")
        expect(store.size).toBe(0)
        // The API server is upgraded: the next sync applies the policy, and a later loss is said again.
        refusing = undefined
        yield* sync
        expect([...store.keys()].sort()).toEqual([
          "ValidatingAdmissionPolicy/halkyon-database-postgres",
          "ValidatingAdmissionPolicyBinding/halkyon-database-postgres"
        ])
        refusing = 404
        yield* sync
        expect(logged.filter((l) => l.includes("does not serve"))).toHaveLength(2)
      }).pipe(Effect.provide(Layer.mergeAll(PluginRegistry.layer, fakeApi(store, () => refusing))), Effect.provide(Logger.layer([logger])))
    )
  })
})

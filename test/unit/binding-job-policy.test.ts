/**
 * The MutatingAdmissionPolicy that projects a ServiceBinding into Jobs as
 * they are created (src/binding/JobPolicy.ts), built from bindings case by
 * case: which Jobs it matches (the namespace, the name or the selector, on
 * CREATE only), which it leaves out (what refuseTemplate refuses), the
 * projection it carries (the Secret, the containers filter, env entries,
 * overrides, the content hash), and its bounded name. What its CEL gives on
 * a real API server, compared with the projector's, is
 * test/e2e/service-binding.test.ts's.
 */
import { describe, expect, test } from "bun:test"
import { jobPolicy, jobPolicyBinding, jobPolicyName, jsonPatch, projectedInto } from "../../src/binding/JobPolicy.ts"
import { annotationKeys, type Binding, type BoundSecret, secretHash } from "../../src/binding/Projection.ts"

const b64 = (s: string) => Buffer.from(s).toString("base64")
const secret: BoundSecret = { name: "db-config", data: { type: b64("postgresql"), provider: b64("halkyon"), uri: b64("postgresql://db") } }
const binding: Binding = { name: "db", directory: "db" }
type Policy = ReturnType<typeof jobPolicy>
const expression = (p: Policy) => p.spec.mutations[0]?.jsonPatch.expression ?? ""
const condition = (p: Policy, name: string) => p.spec.matchConditions.find((c) => c.name === name)?.expression

describe("a Job binding's MutatingAdmissionPolicy", () => {
  const cases: ReadonlyArray<{
    readonly name: string
    readonly binding: Binding
    readonly target: Parameters<typeof jobPolicy>[2]
    readonly check: (p: Policy) => void
  }> = [
    {
      name: "by name: Jobs created in the binding's namespace, of that name only; the API server refuses what it cannot project",
      binding,
      target: { namespace: "shop", name: "migrate" },
      check: (p) => {
        expect(p.metadata).toEqual({
          name: "halkyon-binding.shop.db",
          labels: { "app.kubernetes.io/managed-by": "halkyon", "app.kubernetes.io/component": "service-binding" },
          annotations: { "servicebinding.io/binding": "shop/db" }
        })
        expect(p.spec.matchConstraints).toEqual({
          resourceRules: [{ apiGroups: ["batch"], apiVersions: ["v1"], operations: ["CREATE"], resources: ["jobs"] }],
          namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "shop" } }
        })
        expect(condition(p, "workload-name")).toBe("object.metadata.name == \"migrate\"")
        expect(p.spec.failurePolicy).toBe("Fail")
        expect(p.spec.reinvocationPolicy).toBe("Never")
        expect(p.spec.mutations.map((m) => m.patchType)).toEqual(["JSONPatch"])
      }
    },
    {
      name: "by selector: the selector as the policy's objectSelector, matchExpressions included; no name condition",
      binding,
      target: {
        namespace: "shop",
        selector: { matchLabels: { tier: "batch" }, matchExpressions: [{ key: "env", operator: "In", values: ["prod"] }] }
      },
      check: (p) => {
        expect(p.spec.matchConstraints.objectSelector).toEqual({
          matchLabels: { tier: "batch" },
          matchExpressions: [{ key: "env", operator: "In", values: ["prod"] }]
        })
        expect(condition(p, "workload-name")).toBeUndefined()
      }
    },
    {
      name: "every container without a filter; a Job whose container sets the root by valueFrom is left out (UnreadableRoot)",
      binding,
      target: { namespace: "shop", name: "migrate" },
      check: (p) => {
        expect(expression(p)).toContain("filter(c, true)")
        expect(condition(p, "root-readable")).toContain("e.name == \"SERVICE_BINDING_ROOT\" && !has(e.value) && has(e.valueFrom)")
        // Nothing projected as env, nothing to collide with.
        expect(condition(p, "no-env-collision")).toBeUndefined()
      }
    },
    {
      name:
        "the containers filter, in the projection and the conditions; env entries as secretKeyRef, a Job holding one of their names left out (EnvCollision)",
      binding: { ...binding, containers: ["app"], env: [{ name: "DATABASE_URL", key: "uri" }] },
      target: { namespace: "shop", name: "migrate" },
      check: (p) => {
        expect(expression(p)).toContain("c.name in [\"app\"]")
        expect(expression(p)).not.toContain("filter(c, true)")
        expect(condition(p, "root-readable")).toContain("c.name in [\"app\"]")
        expect(condition(p, "no-env-collision")).toContain("e.name in [\"DATABASE_URL\"]")
        expect(expression(p)).toContain(
          "{\"name\": dyn(\"DATABASE_URL\"), \"valueFrom\": dyn({\"secretKeyRef\": dyn({\"name\": dyn(\"db-config\"), \"key\": dyn(\"uri\")})})}"
        )
        // Init containers too.
        expect(expression(p)).toContain("\"/spec/template/spec/initContainers/\" + string(i) + \"/env/-\"")
      }
    },
    {
      name: "a type override: the Secret's other entries listed, type from the annotation, the env entry a fieldRef",
      binding: { ...binding, type: "mysql", env: [{ name: "KIND", key: "type" }] },
      target: { namespace: "shop", name: "migrate" },
      check: (p) => {
        const keys = annotationKeys("db")
        const e = expression(p)
        expect(e).toContain(`${JSON.stringify(`/spec/template/metadata/annotations/${keys.type.replace("/", "~1")}`)}, value: "mysql"`)
        expect(e).toContain("{\"key\": dyn(\"provider\"), \"path\": dyn(\"provider\")}, {\"key\": dyn(\"uri\"), \"path\": dyn(\"uri\")}")
        expect(e).not.toContain("{\"key\": dyn(\"type\")")
        expect(e).toContain(`"fieldRef": dyn({"fieldPath": dyn("metadata.annotations['${keys.type}']")})`)
        expect(e).not.toContain("secretKeyRef")
      }
    },
    {
      name: "the Secret's content hash, as the projector's annotation; the mount under the root's directory, spec.name",
      binding: { ...binding, directory: "orders" },
      target: { namespace: "shop", name: "migrate" },
      check: (p) => {
        expect(expression(p)).toContain(`value: "${secretHash(secret.data)}"`)
        expect(expression(p)).toContain(".find(\"(?s)^.*[^/]\") + \"/orders\"")
      }
    }
  ]
  for (const c of cases) test(c.name, () => c.check(jobPolicy(c.binding, secret, c.target)))

  test("a new Secret content (or name) changes the policy; the same input gives the same policy", () => {
    const again = jobPolicy(binding, secret, { namespace: "shop", name: "migrate" })
    expect(jobPolicy(binding, secret, { namespace: "shop", name: "migrate" })).toEqual(again)
    expect(jsonPatch(binding, { ...secret, data: { ...secret.data, uri: b64("postgresql://other") } })).not.toBe(jsonPatch(binding, secret))
    expect(jsonPatch(binding, { ...secret, name: "other" })).toContain("\"other\"")
  })

  test("300 env entries, with both overrides, fit the API server's limit on an expression (100,000 characters)", () => {
    const data: Record<string, string> = { type: b64("postgresql") }
    for (let i = 0; i < 300; i++) data[`key-${i}`] = b64("value")
    const env = Array.from({ length: 300 }, (_, i) => ({ name: `VARIABLE_${i}`, key: `key-${i}` }))
    const many = jsonPatch({ ...binding, type: "mysql", provider: "acme", env }, { name: "db-config", data })
    expect(many.length).toBeLessThan(100_000)
  })

  test("its binding names the policy, labelled and annotated alike", () => {
    expect(jobPolicyBinding("shop", "db")).toEqual({
      apiVersion: "admissionregistration.k8s.io/v1",
      kind: "MutatingAdmissionPolicyBinding",
      metadata: {
        name: "halkyon-binding.shop.db",
        labels: { "app.kubernetes.io/managed-by": "halkyon", "app.kubernetes.io/component": "service-binding" },
        annotations: { "servicebinding.io/binding": "shop/db" }
      },
      spec: { policyName: "halkyon-binding.shop.db" }
    })
  })

  test("names: one per namespace and binding, at most 253 characters, a hash keeping long ones apart", () => {
    expect(jobPolicyName("a", "b.c")).not.toBe(jobPolicyName("a-b", "c"))
    const long = "x".repeat(253)
    expect(jobPolicyName("shop", long).length).toBeLessThanOrEqual(253)
    expect(jobPolicyName("shop", long)).not.toBe(jobPolicyName("shop", `${long.slice(1)}y`))
    expect(jobPolicyName("shop", long)).toBe(jobPolicyName("shop", long))
    expect(jobPolicyName("shop", long)).toMatch(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/)
  })

  test("a Job counts as projected when its template holds the binding's volume", () => {
    const job = (volumes: ReadonlyArray<{ name: string }>) => ({ spec: { template: { spec: { volumes } } } })
    expect(projectedInto(job([{ name: "cache" }, { name: "svcb-db" }]), "db")).toBe(true)
    expect(projectedInto(job([{ name: "svcb-other" }]), "db")).toBe(false)
    expect(projectedInto({ spec: {} }, "db")).toBe(false)
  })
})

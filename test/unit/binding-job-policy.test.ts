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
import { jobPolicy, jobPolicyBinding, jobPolicyName, jsonPatch, noPolicyAdvice, projectedInto } from "../../src/binding/JobPolicy.ts"
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

  test("no policy kept: a 403 says to apply `halkyon manifests --bind-jobs` or the rule, once per operator; a 404 that the API is not served", () => {
    const forbidden = noPolicyAdvice(403)
    expect(forbidden).toContain("once per operator (not per binding), add --bind-jobs to the `halkyon manifests` command")
    expect(forbidden).toContain(
      "bind the ServiceAccount halkyon-service-binding cluster-wide to a ClusterRole with the rule apiGroups [admissionregistration.k8s.io], " +
        "resources [mutatingadmissionpolicies, mutatingadmissionpolicybindings], verbs [list, create, patch, delete]"
    )
    expect(forbidden).toContain("mutate any object as it is created")
    expect(noPolicyAdvice(404)).toContain("the API server serves no admissionregistration.k8s.io/v1 MutatingAdmissionPolicy")
  })
})

/**
 * CEL's double-quoted string literals (cel-spec's lexer: no raw newline, the
 * escapes below), decoded, and the code around them with each literal as "".
 */
const celLiterals = (expression: string) => {
  const escapes: Record<string, string> = {
    n: "\n",
    r: "\r",
    t: "\t",
    b: "\b",
    f: "\f",
    v: "\v",
    a: "\x07",
    "\\": "\\",
    "\"": "\"",
    "'": "'",
    "`": "`",
    "?": "?"
  }
  let code = ""
  const literals: Array<string> = []
  let i = 0
  while (i < expression.length) {
    const ch = expression[i]!
    if (ch !== "\"") {
      // A single-quoted literal, or a raw (r"") or bytes (b"") prefix, would read the next quote otherwise.
      expect(ch).not.toBe("'")
      code += ch
      i++
      continue
    }
    expect(code.slice(-1)).not.toMatch(/[A-Za-z0-9_]/)
    expect(expression.slice(i, i + 3)).not.toBe("\"\"\"")
    let j = i + 1
    let value = ""
    for (;;) {
      const c = expression[j]
      if (c === undefined || c === "\n" || c === "\r") throw new Error(`a literal left open at ${i}`)
      if (c === "\"") break
      if (c === "\\") {
        const e = expression[j + 1] ?? ""
        if (e === "u") {
          value += String.fromCharCode(Number.parseInt(expression.slice(j + 2, j + 6), 16))
          j += 6
          continue
        }
        const decoded = escapes[e]
        if (decoded === undefined) throw new Error(`no such escape \\${e} at ${j}`)
        value += decoded
        j += 2
        continue
      }
      value += c
      j++
    }
    literals.push(value)
    code += "\"\""
    i = j + 1
  }
  return { code, literals }
}

describe("strings from a ServiceBinding or its Secret in the policy's CEL", () => {
  // Each a would-be escape from its literal: a quote, a backslash, a CEL operator, a newline, control characters, a
  // lone surrogate (JSON.stringify writes \ud800, which CEL refuses as a code point: the API server refuses the policy,
  // reported as ProjectionFailed; the API server's JSON decoding makes one U+FFFD before it reaches halkyon anyway).
  const hostile = [
    "app\", \"x",
    "a\\\" || true || \"",
    ") || true || (",
    "line\nbreak",
    "\u0000nul\u001f\u007f",
    "\ud800",
    "sep\u2028\u2029",
    "'single' `back` ?",
    "X\") || true || (\"",
    "k\\\"\n",
    "post\"gres\n",
    "d\") + (\"",
    "migrate\") || true || (\""
  ]
  const make = (s: (i: number) => string) => {
    const withKeys: BoundSecret = {
      name: "db-config",
      data: { type: b64("postgresql"), provider: b64("p"), [s(9)]: b64("v"), uri: b64("u") }
    }
    const hostileBinding: Binding = {
      name: "db",
      directory: s(11),
      type: s(10),
      provider: s(7),
      containers: [s(0), s(1), s(2), s(3), s(4), s(5), s(6)],
      env: [{ name: s(8), key: s(9) }, { name: "TYPE", key: "type" }]
    }
    return jobPolicy(hostileBinding, withKeys, { namespace: "shop", name: s(12) })
  }
  const hostilePolicy = make((i) => hostile[i]!)
  // The same binding with tame strings: the code around the literals must not change.
  const tamePolicy = make((i) => `tame${i}`)
  const expressions = (p: Policy) => [expression(p), ...p.spec.matchConditions.map((c) => c.expression)]

  test("each is one escaped literal: the code around the literals is the tame binding's, the literals decode to the strings", () => {
    const hostileParts = expressions(hostilePolicy).map(celLiterals)
    const tameParts = expressions(tamePolicy).map(celLiterals)
    expect(hostileParts.map((p) => p.code)).toEqual(tameParts.map((p) => p.code))
    const literals = new Set(hostileParts.flatMap((p) => p.literals))
    for (const s of hostile.filter((h) => h !== "d\") + (\"")) expect(literals.has(s)).toBe(true)
    // The directory is a path: `/d") + ("`, one literal too.
    expect(literals.has("/d\") + (\"")).toBe(true)
    // The Job's name is compared, not evaluated.
    expect(hostilePolicy.spec.matchConditions.find((c) => c.name === "workload-name")?.expression).toBe(
      `object.metadata.name == ${JSON.stringify(hostile[12])}`
    )
  })

  test("no control character, line break or lone surrogate is written raw", () => {
    for (const e of expressions(hostilePolicy)) {
      expect(e).not.toMatch(/[\u0000-\u001f]/)
      expect(e).not.toMatch(/[\ud800-\udfff]/)
    }
    expect(expression(hostilePolicy)).toContain("\"\\ud800\"")
  })
})

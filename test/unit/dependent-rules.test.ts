/**
 * What a plugin may hand back for the operator to write, by table: each rule
 * of src/reconciler/DependentRules.ts refused and let through, for built and
 * updated objects.
 */
import { describe, expect, test } from "bun:test"
import { DeletionPolicy, type DependentInfo } from "../../src/gen/halkyon/capability/v1/capability.ts"
import {
  checkBuilt,
  checkUpdated,
  MaxDependents,
  MaxObjectBytes,
  nameProblem,
  type Returned,
  type Rule,
  withOwnership
} from "../../src/reconciler/DependentRules.ts"

const info = (id: string, apiVersion: string, kind: string): DependentInfo => ({
  id,
  apiVersion,
  kind,
  watched: true,
  owned: true,
  created: true,
  updated: true,
  checkedForReadiness: false,
  binding: false,
  dependsOn: [],
  waitForReady: false,
  deletionPolicy: DeletionPolicy.DELETION_POLICY_DELETE
})
const declared = [
  info("config", "v1", "ConfigMap"),
  info("service", "v1", "Service"),
  info("binding", "rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
  info("widget", "example.com/v1", "Widget")
]
const clusterScoped = new Set(["rbac.authorization.k8s.io/v1/ClusterRoleBinding"])
const known = new Set(["v1/ConfigMap", "v1/Service", "rbac.authorization.k8s.io/v1/ClusterRoleBinding"])
const scopes = (apiVersion: string, kind: string) => {
  const key = `${apiVersion}/${kind}`
  return known.has(key) ? !clusterScoped.has(key) : undefined
}
const object = (apiVersion: string, kind: string, name: string, namespace?: string, extra: Record<string, unknown> = {}) => ({
  apiVersion,
  kind,
  metadata: namespace === undefined ? { name } : { name, namespace },
  ...extra
})
const returned = (id: string, o: Record<string, unknown>, bytes = 200): Returned => ({ id, object: o, bytes })
const config = (name = "db", namespace: string | undefined = "team-a") => returned("config", object("v1", "ConfigMap", name, namespace))

describe("checkBuilt", () => {
  const cases: ReadonlyArray<[string, ReadonlyArray<Returned>, Rule | undefined, string?]> = [
    ["a declared ConfigMap in the Capability's namespace", [config()], undefined],
    ["no namespace: the Capability's", [config("db", undefined)], undefined],
    ["nothing at all", [], undefined],
    [
      "a kind the server does not know yet (the apply says so)",
      [returned("widget", object("example.com/v1", "Widget", "w", "team-a"))],
      undefined
    ],
    ["exactly the limit of dependents", Array.from({ length: MaxDependents }, (_, i) => config(`db-${i}`)), undefined],
    [
      "one dependent over the limit",
      Array.from({ length: MaxDependents + 1 }, (_, i) => config(`db-${i}`)),
      "count",
      `${MaxDependents + 1} dependents`
    ],
    ["an object of exactly 1 MiB", [returned("config", object("v1", "ConfigMap", "db", "team-a"), MaxObjectBytes)], undefined],
    [
      "an object over 1 MiB",
      [returned("config", object("v1", "ConfigMap", "db", "team-a"), MaxObjectBytes + 1)],
      "size",
      "ConfigMap team-a/db (id config)"
    ],
    ["an id not declared", [returned("ghost", object("v1", "ConfigMap", "db", "team-a"))], "declared", "(id ghost)"],
    [
      "another kind than declared",
      [returned("config", object("v1", "Secret", "db", "team-a"))],
      "kind",
      "declared config as a v1 ConfigMap"
    ],
    ["another apiVersion than declared", [returned("config", object("v2", "ConfigMap", "db", "team-a"))], "kind", "v2 ConfigMap"],
    [
      "a cluster-scoped kind, even declared",
      [returned(
        "binding",
        object("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "own-the-cluster", undefined, { roleRef: { name: "cluster-admin" } })
      )],
      "namespaced",
      "ClusterRoleBinding own-the-cluster"
    ],
    [
      "another namespace",
      [config("db", "kube-system")],
      "namespace",
      "ConfigMap kube-system/db (id config) is not in the Capability's namespace team-a"
    ],
    ["an empty namespace", [config("db", "")], "namespace"],
    ["a name with capitals", [config("Db")], "name", "DNS-1123 subdomain"],
    ["a name with a slash", [config("a/b")], "name"],
    ["an empty name", [config("")], "name"],
    ["a name of 254 characters", [config("a".repeat(254))], "name"],
    ["a dotted name for a ConfigMap", [config("db.settings")], undefined],
    ["a dotted name for a Service", [returned("service", object("v1", "Service", "db.x", "team-a"))], "name", "DNS-1035 label"],
    ["a Service name starting with a digit", [returned("service", object("v1", "Service", "1db", "team-a"))], "name"],
    ["a good one, then a bad one: the bad one is named", [config("ok"), config("bad", "default")], "namespace", "ConfigMap default/bad"]
  ]
  for (const [name, built, rule, fragment] of cases) {
    test(`${name}: ${rule ?? "accepted"}`, () => {
      const violation = checkBuilt(built, declared, "team-a", scopes)
      expect(violation?.rule).toBe(rule)
      if (fragment !== undefined) expect(violation?.message).toContain(fragment)
    })
  }
})

describe("checkUpdated", () => {
  const existing = object("v1", "ConfigMap", "db", "team-a")
  const cases: ReadonlyArray<[string, Record<string, unknown>, Rule | undefined, number?]> = [
    ["the same object with new data", object("v1", "ConfigMap", "db", "team-a", { data: { a: "b" } }), undefined],
    ["no namespace: the Capability's, the existing one's", object("v1", "ConfigMap", "db"), undefined],
    ["redirected to another namespace", object("v1", "ConfigMap", "db", "kube-system"), "namespace"],
    ["renamed", object("v1", "ConfigMap", "db-2", "team-a"), "identity"],
    ["another kind", object("v1", "Secret", "db", "team-a"), "kind"],
    ["over 1 MiB", object("v1", "ConfigMap", "db", "team-a"), "size", MaxObjectBytes + 1]
  ]
  for (const [name, updated, rule, bytes] of cases) {
    test(`${name}: ${rule ?? "accepted"}`, () => {
      const violation = checkUpdated({ id: "config", object: updated, bytes: bytes ?? 100 }, existing, declared, "team-a", scopes)
      expect(violation?.rule).toBe(rule)
    })
  }
  test("a rename names the object before and after", () => {
    const violation = checkUpdated(
      { id: "config", object: object("v1", "ConfigMap", "db-2", "team-a"), bytes: 10 },
      existing,
      declared,
      "team-a",
      scopes
    )
    expect(violation?.message).toContain("ConfigMap team-a/db (id config)")
    expect(violation?.message).toContain("ConfigMap team-a/db-2 (id config)")
  })
})

describe("nameProblem", () => {
  test("subdomains for most kinds, DNS-1035 labels for Services", () => {
    expect(nameProblem("v1", "Secret", "db-config")).toBeUndefined()
    expect(nameProblem("apps/v1", "StatefulSet", "db.primary")).toBeUndefined()
    expect(nameProblem("v1", "Secret", "-db")).toContain("DNS-1123")
    expect(nameProblem("v1", "Service", "db")).toBeUndefined()
    expect(nameProblem("v1", "Service", "d".repeat(64))).toContain("DNS-1035")
  })
})

describe("withOwnership", () => {
  const capability = { apiVersion: "halkyon.io/v1beta1", kind: "Capability", metadata: { name: "db", namespace: "team-a", uid: "u-1" } }
  test("the Capability's namespace and controller reference replace whatever the plugin set", () => {
    const built = object("v1", "ConfigMap", "db", undefined, {})
    const foreignOwner = { apiVersion: "v1", kind: "Namespace", name: "kube-system", uid: "x", controller: true }
    const withOwner = { ...built, metadata: { ...built.metadata, ownerReferences: [foreignOwner] } }
    const result = withOwnership(withOwner, capability, declared[0])
    expect(result.metadata.namespace).toBe("team-a")
    expect(result.metadata.ownerReferences).toEqual([
      { apiVersion: "halkyon.io/v1beta1", kind: "Capability", name: "db", uid: "u-1", controller: true, blockOwnerDeletion: true }
    ])
    const unowned = withOwnership(withOwner, capability, { ...info("config", "v1", "ConfigMap"), owned: false })
    expect(unowned.metadata.ownerReferences).toBeUndefined()
  })
})

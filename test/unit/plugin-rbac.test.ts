/**
 * The RBAC of a plugin's own identity, derived without a cluster: resource
 * names, verbs per declared dependent, the rules of a plugin's ClusterRole,
 * the operator's own rules, and the permission a Forbidden answer names.
 */
import { describe, expect, test } from "bun:test"
import { manifests, operatorNamespacedRules, operatorRules } from "../../src/api/Manifests.ts"
import {
  type DeclaredDependent,
  dependentVerbs,
  groupOf,
  missingPermission,
  pluginRules,
  pluginServiceAccountName,
  pluginUser,
  resourceOf
} from "../../src/api/PluginRbac.ts"
import { describeForbidden } from "../../src/reconciler/PluginIdentity.ts"

const dependent = (apiVersion: string, kind: string, flags: Partial<DeclaredDependent> = {}): DeclaredDependent => ({
  apiVersion,
  kind,
  watched: false,
  created: false,
  updated: false,
  owned: false,
  ...flags
})

/** What the postgres plugin declares (plugins/postgres). */
const postgres: ReadonlyArray<DeclaredDependent> = [
  dependent("v1", "Secret", { created: true, owned: true, watched: true }),
  dependent("v1", "Service", { created: true, updated: true, owned: true, watched: true }),
  dependent("apps/v1", "StatefulSet", { created: true, updated: true, owned: true, watched: true })
]

describe("resource names without discovery", () => {
  test.each([
    ["Secret", "secrets"],
    ["ConfigMap", "configmaps"],
    ["StatefulSet", "statefulsets"],
    ["Ingress", "ingresses"],
    ["NetworkPolicy", "networkpolicies"],
    ["Gateway", "gateways"],
    ["Box", "boxes"],
    ["Batch", "batches"],
    ["Mesh", "meshes"],
    ["Endpoints", "endpoints"],
    ["PodMetrics", "pods"]
  ])("%s is %s", (kind, resource) => {
    expect(resourceOf(kind)).toBe(resource)
  })

  test("the group of an apiVersion; the core group is empty", () => {
    expect(groupOf("v1")).toBe("")
    expect(groupOf("apps/v1")).toBe("apps")
    expect(groupOf("postgresql.cnpg.io/v1")).toBe("postgresql.cnpg.io")
  })
})

describe("verbs per dependent: exactly what the operator uses", () => {
  test("read only (neither created, updated nor watched): get", () => {
    expect(dependentVerbs(dependent("v1", "Secret"))).toEqual(["get"])
  })
  test("watched: get, list, watch", () => {
    expect(dependentVerbs(dependent("v1", "Secret", { watched: true }))).toEqual(["get", "list", "watch"])
  })
  test("created: server-side apply, authorized as patch and create; delete, to prune it and remove it with its Capability", () => {
    expect(dependentVerbs(dependent("v1", "Secret", { created: true }))).toEqual(["get", "create", "patch", "delete"])
  })
  test("updated: patch (apply or merge patch), never update; delete only what it creates", () => {
    expect(dependentVerbs(dependent("v1", "Secret", { updated: true }))).toEqual(["get", "patch"])
    const all = dependentVerbs(dependent("v1", "Secret", { watched: true, created: true, updated: true }))
    expect(all).toEqual(["get", "list", "watch", "create", "patch", "delete"])
    expect(all).not.toContain("update")
  })
})

describe("a plugin's ClusterRole", () => {
  test("the postgres plugin: its three kinds, and the finalizers its owner references need", () => {
    expect(pluginRules(postgres)).toEqual([
      { apiGroups: [""], resources: ["secrets"], verbs: ["get", "list", "watch", "create", "patch", "delete"] },
      { apiGroups: [""], resources: ["services"], verbs: ["get", "list", "watch", "create", "patch", "delete"] },
      { apiGroups: ["apps"], resources: ["statefulsets"], verbs: ["get", "list", "watch", "create", "patch", "delete"] },
      { apiGroups: ["halkyon.io"], resources: ["capabilities/finalizers"], verbs: ["update"] }
    ])
  })

  test("two dependents of one kind share a rule with the union of their verbs", () => {
    expect(pluginRules([dependent("v1", "Secret", { watched: true }), dependent("v1", "Secret", { updated: true })])).toEqual([
      { apiGroups: [""], resources: ["secrets"], verbs: ["get", "list", "watch", "patch"] }
    ])
  })

  test("no dependents, no rules; no owned dependent, no finalizers", () => {
    expect(pluginRules([])).toEqual([])
    expect(pluginRules([dependent("v1", "ConfigMap", { created: true })])).toEqual([
      { apiGroups: [""], resources: ["configmaps"], verbs: ["get", "create", "patch", "delete"] }
    ])
  })

  test("the ServiceAccount's name and user are DNS-safe and in the operator's namespace", () => {
    expect(pluginServiceAccountName("postgres")).toBe("halkyon-plugin-postgres")
    expect(pluginServiceAccountName("My_Plugin.v2")).toBe("halkyon-plugin-my-plugin-v2")
    expect(pluginUser("halkyon-system", "postgres")).toBe("system:serviceaccount:halkyon-system:halkyon-plugin-postgres")
  })
})

describe("the operator's own role", () => {
  test("grants no dependent kind, and no verb it never uses", () => {
    const resources = operatorRules.flatMap((r) => r.resources ?? [])
    for (const kind of ["secrets", "statefulsets", "deployments", "services", "configmaps", "leases"]) expect(resources).not.toContain(kind)
    const verbs = operatorRules.flatMap((r) => r.verbs)
    expect(verbs).not.toContain("update")
    expect(verbs).not.toContain("*")
    // patch: its finalizer, on metadata only.
    expect(operatorRules.find((r) => r.resources?.includes("capabilities"))?.verbs).toEqual(["get", "list", "watch", "patch"])
    expect(operatorRules.find((r) => r.resources?.includes("capabilities/status"))?.verbs).toEqual(["patch"])
  })

  test("admission policies and their bindings: applied, listed and deleted, nothing else of admissionregistration", () => {
    expect(operatorRules.filter((r) => r.apiGroups?.includes("admissionregistration.k8s.io"))).toEqual([{
      apiGroups: ["admissionregistration.k8s.io"],
      resources: ["validatingadmissionpolicies", "validatingadmissionpolicybindings"],
      verbs: ["list", "create", "patch", "delete"]
    }])
  })

  test("its namespaced Role: the Lease, and impersonation of exactly the plugins' ServiceAccounts", () => {
    const references = {
      apiGroups: [""],
      resources: ["serviceaccounts"],
      verbs: ["impersonate"],
      resourceNames: ["halkyon-parameter-references"]
    }
    // Always: the identity that reads what parameters reference (valueFrom).
    expect(operatorNamespacedRules([], false)).toEqual([{
      apiGroups: ["coordination.k8s.io"],
      resources: ["leases"],
      verbs: ["get", "create", "update"]
    }, references])
    // With the ServiceBinding controller (the default): its ServiceAccount too, and no other.
    expect(operatorNamespacedRules([]).slice(1)).toEqual([
      { apiGroups: [""], resources: ["serviceaccounts"], verbs: ["impersonate"], resourceNames: ["halkyon-service-binding"] },
      references
    ])
    expect(operatorNamespacedRules(["redis", "postgres"])[1]).toEqual({
      apiGroups: [""],
      resources: ["serviceaccounts"],
      verbs: ["impersonate"],
      resourceNames: ["halkyon-plugin-postgres", "halkyon-plugin-redis"]
    })
  })

  test("the parameter references' identity reads Secrets and ConfigMaps, nothing else, bound everywhere or in the served namespace", () => {
    const everywhere = manifests({ namespace: "ops" }).filter((m) => m.metadata?.name === "halkyon-parameter-references")
    expect(everywhere.map((m) => m.kind)).toEqual(["ServiceAccount", "ClusterRole", "ClusterRoleBinding"])
    expect((everywhere[1] as { rules?: unknown }).rules).toEqual([
      { apiGroups: [""], resources: ["secrets", "configmaps"], verbs: ["get", "list", "watch"] }
    ])
    const served = manifests({ namespace: "ops", servedNamespace: "shop" }).filter((m) =>
      m.metadata?.name === "halkyon-parameter-references"
    )
    expect(served.map((m) => `${m.kind} ${m.metadata?.namespace ?? ""}`)).toEqual([
      "ServiceAccount ops",
      "ClusterRole ",
      "RoleBinding shop"
    ])
    // The operator's own role still names no Secret or ConfigMap.
    expect(operatorRules.flatMap((r) => r.resources ?? [])).not.toContain("secrets")
    expect(operatorRules.flatMap((r) => r.resources ?? [])).not.toContain("configmaps")
  })

  test("binding Jobs is opt-in: no mutating admission policy rule by default; --bind-jobs adds a role of its own, bound cluster-wide", () => {
    type Rules = {
      rules?: ReadonlyArray<{ apiGroups?: ReadonlyArray<string>; resources?: ReadonlyArray<string>; verbs?: ReadonlyArray<string> }>
    }
    const admission = (objects: ReadonlyArray<{ metadata?: { name?: string } }>) =>
      objects.flatMap((m) =>
        ((m as Rules).rules ?? []).filter((r) => r.apiGroups?.includes("admissionregistration.k8s.io")).map((r) => ({
          name: m.metadata?.name,
          ...r
        }))
      )
    expect(admission(manifests({ namespace: "ops" })).filter((r) => r.name !== "halkyon")).toEqual([])
    expect(JSON.stringify(manifests({ namespace: "ops" }))).not.toContain("mutatingadmissionpolicies")
    const rule = {
      apiGroups: ["admissionregistration.k8s.io"],
      resources: ["mutatingadmissionpolicies", "mutatingadmissionpolicybindings"],
      verbs: ["list", "create", "patch", "delete"]
    }
    for (const servedNamespace of [undefined, "shop"]) {
      const objects = manifests({ namespace: "ops", bindJobs: true, ...(servedNamespace === undefined ? {} : { servedNamespace }) })
      expect(admission(objects).filter((r) => r.name !== "halkyon")).toEqual([{ name: "halkyon-service-binding-jobs", ...rule }])
      const jobs = objects.filter((m) => m.metadata?.name === "halkyon-service-binding-jobs")
      expect(jobs.map((m) => m.kind)).toEqual(["ClusterRole", "ClusterRoleBinding"])
      // Not aggregated: nothing labelled servicebinding.io/controller carries it.
      expect(jobs[0]?.metadata?.labels?.["servicebinding.io/controller"]).toBeUndefined()
      expect(jobs[1]).toMatchObject({
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "halkyon-service-binding-jobs" },
        subjects: [{ kind: "ServiceAccount", name: "halkyon-service-binding", namespace: "ops" }]
      })
    }
    expect(operatorRules.flatMap((r) => r.resources ?? []).filter((r) => r.startsWith("mutating"))).toEqual([])
    // With the controller off, no one gets them.
    expect(JSON.stringify(manifests({ namespace: "ops", serviceBinding: false, bindJobs: true }))).not.toContain(
      "mutatingadmissionpolicies"
    )
  })

  test("manifests bind a plugin's role everywhere, or in the served namespace only", () => {
    const everywhere = manifests({ namespace: "ops", pluginRoles: [{ name: "postgres", dependents: postgres }] })
    expect(everywhere.filter((m) => m.metadata?.name === "halkyon-plugin-postgres").map((m) => m.kind)).toEqual([
      "ServiceAccount",
      "ClusterRole",
      "ClusterRoleBinding"
    ])
    const served = manifests({ namespace: "ops", servedNamespace: "shop", pluginRoles: [{ name: "postgres", dependents: postgres }] })
    const binding = served.find((m) => m.kind === "RoleBinding" && m.metadata?.name === "halkyon-plugin-postgres")
    expect(binding?.metadata?.namespace).toBe("shop")
    expect(served.filter((m) => m.metadata?.name === "halkyon-plugin-postgres").map((m) => m.kind)).toEqual([
      "ServiceAccount",
      "ClusterRole",
      "RoleBinding"
    ])
  })
})

describe("the permission a Forbidden answer names", () => {
  test("verb, resource, group and namespace, from the API server's message", () => {
    const detail = "configmaps \"db-extra\" is forbidden: User \"system:serviceaccount:halkyon-system:halkyon-plugin-pg\" cannot patch " +
      "resource \"configmaps\" in API group \"\" in the namespace \"apps\""
    expect(missingPermission(detail)).toEqual({
      user: "system:serviceaccount:halkyon-system:halkyon-plugin-pg",
      verb: "patch",
      resource: "configmaps",
      group: "",
      namespace: "apps"
    })
  })
  test("cluster-scoped, and a message of another form", () => {
    expect(missingPermission("User \"u\" cannot list resource \"nodes\" in API group \"\" at the cluster scope")?.namespace).toBeUndefined()
    expect(missingPermission("something else")).toBeUndefined()
  })
})

describe("the Forbidden status message", () => {
  const base = {
    object: "StatefulSet db (statefulset)",
    plugin: "postgres.js",
    actingAs: "system:serviceaccount:halkyon-system:halkyon-plugin-postgres-js",
    regenerate: "halkyon manifests --namespace halkyon-system --plugins-dir /plugins"
  }

  test("a role without the kind: the permission, who lacked it, and the command", () => {
    const detail =
      "statefulsets.apps \"db\" is forbidden: User \"system:serviceaccount:halkyon-system:halkyon-plugin-postgres-js\" cannot patch " +
      "resource \"statefulsets\" in API group \"apps\" in the namespace \"shop\""
    expect(describeForbidden({ ...base, detail })).toBe(
      "StatefulSet db (statefulset): the API server refused system:serviceaccount:halkyon-system:halkyon-plugin-postgres-js patch on resource " +
        "\"statefulsets\" in API group \"apps\" in namespace shop (plugin postgres.js's role lacks this permission, e.g. the plugin declares a kind " +
        "its RBAC was not generated for). Regenerate and apply the RBAC: halkyon manifests --namespace halkyon-system --plugins-dir /plugins | kubectl apply -f -"
    )
  })

  test("a plugin the RBAC was generated without: the operator may not impersonate it", () => {
    const detail =
      "users \"system:serviceaccount:halkyon-system:halkyon-plugin-late-js\" is forbidden: User \"system:serviceaccount:halkyon-system:halkyon\" " +
      "cannot impersonate resource \"serviceaccounts\" in API group \"\" in the namespace \"halkyon-system\""
    const message = describeForbidden({ ...base, plugin: "late.js", detail })
    expect(message).toContain("refused system:serviceaccount:halkyon-system:halkyon impersonate on resource \"serviceaccounts\"")
    expect(message).toContain("the operator may not act as plugin late.js's ServiceAccount: the RBAC was generated without this plugin")
    expect(message).toContain("| kubectl apply -f -")
  })

  test("an answer of another form is quoted whole", () => {
    expect(describeForbidden({ ...base, detail: "denied by a webhook" })).toStartWith(
      "StatefulSet db (statefulset): the API server refused it to system:serviceaccount:halkyon-system:halkyon-plugin-postgres-js: denied by a webhook."
    )
  })
})

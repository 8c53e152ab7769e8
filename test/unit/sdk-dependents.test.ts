/**
 * The SDK's declarative API through `@halkyon/sdk/testing`'s in-process
 * harness, on the bundled postgres plugin: apiVersion and kind come from the
 * declaration, the validity check, updates and conditions.
 */
import { describe, expect, test } from "bun:test"
import { definePlugin, dependent } from "@halkyon/sdk"
import { testPlugin } from "@halkyon/sdk/testing"
import type { StatefulSet } from "kubernetes-types/apps/v1"
import type { ConfigMap } from "kubernetes-types/core/v1"
import { postgres } from "../../plugins/postgres/plugin.ts"

const t = testPlugin(postgres)

describe("dependent()", () => {
  test("fills in the declared apiVersion and kind, first", () => {
    const built = t.build(t.capability({ name: "db", namespace: "apps" }))
    expect(built.map((d) => [d.id, Object.keys(d.object).slice(0, 2), d.object.apiVersion, d.object.kind])).toEqual([
      ["config-secret", ["apiVersion", "kind"], "v1", "Secret"],
      ["statefulset", ["apiVersion", "kind"], "apps/v1", "StatefulSet"],
      ["service", ["apiVersion", "kind"], "v1", "Service"]
    ])
  })

  test("accepts a build that repeats them, and throws naming the dependent when they differ", () => {
    const plugin = (kind: string) =>
      definePlugin({
        name: "p",
        category: "c",
        types: [{ type: "t", versions: ["1"] }],
        dependents: [
          dependent<ConfigMap>({
            id: "settings",
            apiVersion: "v1",
            kind: "ConfigMap",
            build: (ctx) => ({ kind: kind as "ConfigMap", metadata: { name: ctx.name } })
          })
        ]
      })
    const same = testPlugin(plugin("ConfigMap"))
    expect(same.buildOne(same.capability(), "settings")).toEqual({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "test" } })
    const other = testPlugin(plugin("Secret"))
    expect(() => other.build(other.capability())).toThrow("dependent settings is declared as v1 ConfigMap but built a v1 Secret")
  })
})

describe("the postgres plugin in-process", () => {
  test("validates its parameters and the type's versions", () => {
    expect(t.validate(t.capability())).toEqual([])
    expect(t.validate(t.capability({ version: "9", parameters: { DB_PORT: "x" } }))).toEqual([
      "version \"9\" of postgres is not supported by plugin postgres; supported versions: 14, 15, 16, 17, 18",
      "parameter DB_PORT must be an integer from 1024 to 65535 (plugin postgres)"
    ])
    expect(t.validate(t.capability({ parameters: { DB_PORT: "80", DB_NAME: "orders" } }))).toEqual([
      "parameter DB_PORT must be an integer from 1024 to 65535 (plugin postgres)"
    ])
  })

  test("updates the StatefulSet when the version changes, and not otherwise", () => {
    const v16 = t.capability({ version: "16" })
    const existing = t.buildOne<StatefulSet>(v16, "statefulset")
    expect(t.update(v16, "statefulset", existing)).toBeUndefined()
    expect(t.update(t.capability({ version: "17" }), "statefulset", existing)?.spec?.template.spec?.containers[0]?.image).toBe(
      "postgres:17"
    )
  })

  test("is ready when the StatefulSet's replicas are, pending while missing", () => {
    const capability = t.capability()
    const sts = t.buildOne<StatefulSet>(capability, "statefulset")
    expect(t.conditions(capability, { statefulset: { object: { ...sts, status: { replicas: 1, readyReplicas: 1 } } } })).toEqual({
      statefulset: { state: "ready", reason: "ReplicasReady", message: "1/1 replicas ready" }
    })
    expect(t.conditions(capability, { statefulset: { error: { reason: "NotFound", message: "gone" } } }).statefulset?.state).toBe("pending")
  })
})

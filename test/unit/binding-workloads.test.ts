/**
 * Where each workload kind keeps its pod template, the apply body built
 * around it, label selectors as the API's labelSelector query, and which env
 * vars a field manager owns as managedFields record it.
 */
import { describe, expect, test } from "bun:test"
import { at, envOwnedBy, nest, selectorQuery, templatePath } from "../../src/binding/Workloads.ts"

describe("workload kinds", () => {
  const cases: ReadonlyArray<[string, string, ReadonlyArray<string> | undefined]> = [
    ["apps/v1", "Deployment", ["spec", "template"]],
    ["apps/v1", "StatefulSet", ["spec", "template"]],
    ["apps/v1", "DaemonSet", ["spec", "template"]],
    ["apps/v1", "ReplicaSet", ["spec", "template"]],
    ["batch/v1", "Job", ["spec", "template"]],
    ["batch/v1", "CronJob", ["spec", "jobTemplate", "spec", "template"]],
    ["v1", "Pod", undefined],
    ["apps/v1beta1", "Deployment", undefined]
  ]
  for (const [apiVersion, kind, path] of cases) {
    test(`${apiVersion} ${kind}: ${path === undefined ? "not bound" : path.join(".")}`, () =>
      expect(templatePath(apiVersion, kind)).toEqual(path))
  }

  test("nest and at are each other's inverse", () => {
    const body = nest(["spec", "jobTemplate", "spec", "template"], { spec: { containers: [] } })
    expect(body).toEqual({ spec: { jobTemplate: { spec: { template: { spec: { containers: [] } } } } } })
    expect(at(body, ["spec", "jobTemplate", "spec", "template"])).toEqual({ spec: { containers: [] } })
    expect(at(body, ["spec", "template"])).toBeUndefined()
  })
})

describe("selectorQuery", () => {
  const cases: ReadonlyArray<[string, Parameters<typeof selectorQuery>[0], string]> = [
    ["matchLabels", { matchLabels: { app: "web", tier: "front" } }, "app=web,tier=front"],
    ["In and NotIn", {
      matchExpressions: [{ key: "env", operator: "In", values: ["dev", "qa"] }, { key: "zone", operator: "NotIn", values: ["a"] }]
    }, "env in (dev,qa),zone notin (a)"],
    [
      "Exists and DoesNotExist",
      { matchExpressions: [{ key: "canary", operator: "Exists" }, { key: "legacy", operator: "DoesNotExist" }] },
      "canary,!legacy"
    ],
    ["both", { matchLabels: { app: "web" }, matchExpressions: [{ key: "canary", operator: "Exists" }] }, "app=web,canary"],
    ["an empty selector selects everything", {}, ""]
  ]
  for (const [name, selector, query] of cases) test(name, () => expect(selectorQuery(selector)).toBe(query))
})

describe("envOwnedBy", () => {
  const env = (...names: ReadonlyArray<string>) => Object.fromEntries(names.map((n) => [`k:${JSON.stringify({ name: n })}`, { ".": {} }]))
  const workload = {
    metadata: {
      managedFields: [
        {
          manager: "halkyon-binding.db",
          operation: "Apply",
          fieldsV1: {
            "f:spec": {
              "f:template": {
                "f:spec": {
                  "f:containers": { "k:{\"name\":\"app\"}": { "f:env": env("SERVICE_BINDING_ROOT", "DATABASE_URL") } },
                  "f:initContainers": { "k:{\"name\":\"migrate\"}": { "f:env": env("DATABASE_URL") } }
                }
              }
            }
          }
        },
        {
          manager: "kubectl",
          operation: "Update",
          fieldsV1: { "f:spec": { "f:template": { "f:spec": { "f:containers": { "k:{\"name\":\"app\"}": { "f:env": env("LOG") } } } } } }
        }
      ]
    }
  }

  test("the variables of one manager, in containers and init containers", () =>
    expect([...envOwnedBy(workload, "halkyon-binding.db", ["spec", "template"])].sort()).toEqual([
      "app/DATABASE_URL",
      "app/SERVICE_BINDING_ROOT",
      "migrate/DATABASE_URL"
    ]))
  test("another manager's are not its", () => expect([...envOwnedBy(workload, "kubectl", ["spec", "template"])]).toEqual(["app/LOG"]))
  test("at another template path, nothing", () =>
    expect(envOwnedBy(workload, "halkyon-binding.db", ["spec", "jobTemplate", "spec", "template"]).size).toBe(0))
  test("no managedFields, nothing", () => expect(envOwnedBy({ metadata: {} }, "halkyon-binding.db", ["spec", "template"]).size).toBe(0))
})

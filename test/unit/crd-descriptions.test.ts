/**
 * `kubectl explain` documents every field: each node of the CRDs' schemas
 * carries a description, taken from the Effect Schemas the reconciler
 * decodes with. metadata is the API server's (it refuses a description
 * there, and kubectl explain documents it from ObjectMeta).
 */
import { expect, test } from "bun:test"
import { capabilityCrd, capabilityInfoCrd, type OpenApiSchema, serviceBindingCrd, workloadResourceMappingCrd } from "../../src/api/Crds.ts"

/** Paths of schema nodes without a description. */
const undocumented = (node: OpenApiSchema, path: string): ReadonlyArray<string> => [
  ...((node.description === undefined || node.description === "") && !path.endsWith(".metadata") ? [path] : []),
  ...Object.entries(node.properties ?? {}).flatMap(([name, child]) => undocumented(child, `${path}.${name}`)),
  // An array's items are documented by the array itself (kubectl explain shows the field), their fields by their own.
  ...Object.entries(node.items?.properties ?? {}).flatMap(([name, child]) => undocumented(child, `${path}[].${name}`))
]

for (const crd of [capabilityCrd(), capabilityInfoCrd(), serviceBindingCrd(), workloadResourceMappingCrd()]) {
  test(`every field of ${crd.spec.names.kind} has a description`, () => {
    const schema = crd.spec.versions[0]?.schema?.openAPIV3Schema as OpenApiSchema | undefined
    expect(schema).toBeDefined()
    expect(undocumented(schema!, crd.spec.names.kind)).toEqual([])
  })
}

test("status.dependents[] and status.inventory[] carry every field docs/api.md lists, each described", () => {
  const schema = capabilityCrd().spec.versions[0]?.schema?.openAPIV3Schema as OpenApiSchema | undefined
  const status = schema?.properties?.status?.properties
  const fields = (name: string) => Object.keys(status?.[name]?.items?.properties ?? {}).sort()
  expect(fields("dependents")).toEqual(["id", "kind", "message", "name", "ready", "reason", "waitingFor"])
  expect(fields("inventory")).toEqual(["apiVersion", "dependsOn", "id", "kind", "name", "orphan", "uid"])
  const dependents = status?.dependents?.items?.properties
  expect(dependents?.reason?.description).toContain("Waiting (held back by a dependency, see waitingFor)")
  expect(dependents?.waitingFor?.description).toContain("Only with reason Waiting")
})

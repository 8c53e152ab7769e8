/**
 * A binding's name names its directory under $SERVICE_BINDING_ROOT: the
 * spec's `[a-z0-9\-\.]{1,253}`, never `.` or `..`, refused by the CRD (its
 * OpenAPI pattern, which the API server checks with RE2) and by the decoder.
 */
import { describe, expect, test } from "bun:test"
import { Schema } from "effect"
import { serviceBindingCrd } from "../../src/api/Crds.ts"
import { BindingNamePattern, ServiceBinding } from "../../src/api/ServiceBinding.ts"

const decode = Schema.decodeUnknownExit(ServiceBinding)
const withName = (name: string, metadataName = "db") => ({
  metadata: { name: metadataName },
  spec: {
    name,
    service: { apiVersion: "v1", kind: "Secret", name: "s" },
    workload: { apiVersion: "apps/v1", kind: "Deployment", name: "web" }
  }
})

describe("spec.name", () => {
  const cases: ReadonlyArray<[string, boolean]> = [
    ["db", true],
    ["account-db.v2", true],
    ["0", true],
    [".hidden", true],
    ["...", true],
    ["a".repeat(253), true],
    ["a".repeat(254), false],
    ["", false],
    [".", false],
    ["..", false],
    ["../etc", false],
    ["a/b", false],
    ["DB", false],
    ["db_1", false],
    ["db ", false]
  ]
  for (const [name, valid] of cases) {
    test(`${JSON.stringify(name.length > 20 ? `${name.slice(0, 8)}…(${name.length})` : name)}: ${valid ? "valid" : "refused"}`, () => {
      expect(decode(withName(name))._tag).toBe(valid ? "Success" : "Failure")
      expect(BindingNamePattern.test(name)).toBe(valid)
    })
  }

  test("metadata.name, the directory without spec.name, is decoded against it too", () =>
    expect(decode(withName("db", "../etc"))._tag).toBe("Failure"))

  test("the CRD carries the pattern, so the API server refuses what the decoder would", () => {
    const schema = serviceBindingCrd().spec.versions[0]?.schema?.openAPIV3Schema
    const name = schema?.properties?.spec?.properties?.name
    expect(name?.pattern).toBe(BindingNamePattern.source)
    expect(name?.description).toContain("not . or ..")
  })
})

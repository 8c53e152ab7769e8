/**
 * The TypeScript half of the SDK parity check: go/sdk/testdata/validity.json
 * is also run by the Go SDK's test (go/sdk/validity_test.go), so a plugin
 * written with either SDK answers CheckValidity, an unknown dependent and a
 * bad declaration with the same sentences, byte for byte.
 */
import { describe, expect, test } from "bun:test"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { decodeCapabilityJson } from "../../src/api/Capability.ts"
import { findDependent, validate } from "../../src/sdk/CapabilityService.ts"
import { definePlugin, type ParameterDefinition, type PluginDefinition, type TypeDefinition } from "../../src/sdk/Plugin.ts"

interface Declaration {
  readonly name: string
  readonly category: string
  readonly types: ReadonlyArray<TypeDefinition>
  readonly parameters?: ReadonlyArray<ParameterDefinition>
  readonly dependents: ReadonlyArray<string>
  /** Each dependent's dependsOn, by id. */
  readonly graph?: Readonly<Record<string, ReadonlyArray<string>>>
}

interface Fixtures {
  readonly plugin: Declaration
  readonly cases: ReadonlyArray<{ readonly name: string; readonly spec: unknown; readonly errors: ReadonlyArray<string> }>
  readonly unknownDependents: ReadonlyArray<{ readonly id: string; readonly message: string }>
  readonly definitions: ReadonlyArray<{ readonly name: string; readonly plugin: Declaration; readonly error: string }>
}

const fixtures = JSON.parse(readFileSync(join(import.meta.dir, "../../go/sdk/testdata/validity.json"), "utf8")) as Fixtures

const toPlugin = (d: Declaration): PluginDefinition => ({
  ...d,
  dependents: d.dependents.map((id) => ({
    id,
    ...(d.graph?.[id] === undefined ? {} : { dependsOn: d.graph[id] }),
    apiVersion: "v1",
    kind: "ConfigMap",
    build: () => ({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: id } })
  }))
})

/** The Capability the Go test builds around the same spec. */
const capability = (spec: unknown) =>
  decodeCapabilityJson(
    JSON.stringify({ apiVersion: "halkyon.io/v1beta1", kind: "Capability", metadata: { name: "sessions", namespace: "shop" }, spec })
  )

/** The message `f` throws with, exactly. */
const thrown = (f: () => unknown): string => {
  try {
    f()
  } catch (error) {
    return error instanceof Error ? error.message : String(error)
  }
  return "(nothing was thrown)"
}

describe("the TypeScript SDK says what the Go SDK says", () => {
  const plugin = definePlugin(toPlugin(fixtures.plugin))

  for (const c of fixtures.cases) {
    test(`CheckValidity: ${c.name}`, () => {
      expect(validate(plugin, capability(c.spec))).toEqual([...c.errors])
    })
  }

  for (const u of fixtures.unknownDependents) {
    test(`an unknown dependent "${u.id}" is named with the known ones`, () => {
      expect(thrown(() => findDependent(plugin, u.id))).toBe(u.message)
    })
  }

  for (const d of fixtures.definitions) {
    test(`a declaration with mistakes: ${d.name}`, () => {
      expect(thrown(() => definePlugin(toPlugin(d.plugin)))).toBe(d.error)
    })
  }

  test("the fixtures hold cases of each kind", () => {
    expect([fixtures.cases.length > 5, fixtures.unknownDependents.length > 0, fixtures.definitions.length > 0]).toEqual([true, true, true])
  })
})

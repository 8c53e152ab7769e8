/**
 * The TypeScript half of the SDK parity check: go/sdk/testdata/validity.json
 * is also run by the Go SDK's test (go/sdk/validity_test.go), so a plugin
 * written with either SDK answers CheckValidity, an unknown dependent and a
 * bad declaration with the same sentences, byte for byte; and
 * go/sdk/testdata/binding.json (go/sdk/binding_test.go) holds binding Secret
 * entries both SDKs' helpers accept or refuse with the same problems.
 */
import { describe, expect, test } from "bun:test"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { decodeCapabilityJson } from "../../src/api/Capability.ts"
import { bindingEntries, type BindingEntries, checkBindingEntries } from "../../src/sdk/Binding.ts"
import { findDependent, validate } from "../../src/sdk/CapabilityService.ts"
import {
  definePlugin,
  parameterErrors,
  type ParameterDefinition,
  type PluginDefinition,
  type TypeDefinition
} from "../../src/sdk/Plugin.ts"
import { thrownMessage } from "../support/thrown.ts"

interface Declaration {
  readonly name: string
  readonly category: string
  readonly types: ReadonlyArray<TypeDefinition>
  readonly parameters?: ReadonlyArray<ParameterDefinition>
  readonly refuseUnknownParameters?: boolean
  readonly dependents: ReadonlyArray<string>
  /** Each dependent's dependsOn, by id. */
  readonly graph?: Readonly<Record<string, ReadonlyArray<string>>>
}

type Case = { readonly name: string; readonly spec: unknown; readonly errors: ReadonlyArray<string> }

interface Fixtures {
  readonly plugin: Declaration
  readonly cases: ReadonlyArray<Case>
  readonly unknownDependents: ReadonlyArray<{ readonly id: string; readonly message: string }>
  readonly definitions: ReadonlyArray<{ readonly name: string; readonly plugin: Declaration; readonly error: string }>
  /** A plugin with typed parameters, whose sentences the admission policy says too. */
  readonly typed: { readonly plugin: Declaration; readonly cases: ReadonlyArray<Case> }
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

describe("the TypeScript SDK says what the Go SDK says", () => {
  const plugin = definePlugin(toPlugin(fixtures.plugin))

  for (const c of fixtures.cases) {
    test(`CheckValidity: ${c.name}`, () => {
      expect(validate(plugin, capability(c.spec), parameterErrors)).toEqual([...c.errors])
    })
  }

  for (const u of fixtures.unknownDependents) {
    test(`an unknown dependent "${u.id}" is named with the known ones`, () => {
      expect(thrownMessage(() => findDependent(plugin, u.id))).toBe(u.message)
    })
  }

  for (const d of fixtures.definitions) {
    test(`a declaration with mistakes: ${d.name}`, () => {
      expect(thrownMessage(() => definePlugin(toPlugin(d.plugin)))).toBe(d.error)
    })
  }

  const typed = definePlugin(toPlugin(fixtures.typed.plugin))
  for (const c of fixtures.typed.cases) {
    test(`typed parameters: ${c.name}`, () => {
      expect(validate(typed, capability(c.spec), parameterErrors)).toEqual([...c.errors])
    })
  }

  test("the fixtures hold cases of each kind", () => {
    expect([
      fixtures.cases.length > 5,
      fixtures.unknownDependents.length > 0,
      fixtures.definitions.length > 1,
      fixtures.typed.cases.length > 10
    ])
      .toEqual([true, true, true, true])
  })
})

interface BindingFixtures {
  readonly cases: ReadonlyArray<
    { readonly name: string; readonly entries: Readonly<Record<string, string>>; readonly problems: ReadonlyArray<string> }
  >
}

const bindingFixtures = JSON.parse(readFileSync(join(import.meta.dir, "../../go/sdk/testdata/binding.json"), "utf8")) as BindingFixtures

describe("the binding entries helpers agree: checkBindingEntries and Go's CheckBindingEntries", () => {
  for (const c of bindingFixtures.cases) {
    test(c.name, () => {
      expect(checkBindingEntries(c.entries)).toEqual([...c.problems])
      const error = thrownMessage(() => bindingEntries(c.entries as unknown as BindingEntries))
      expect(error).toBe(
        c.problems.length === 0 ? "(nothing was thrown)" : `binding entries break the Service Binding spec: ${c.problems.join("; ")}`
      )
    })
  }

  test("the fixtures hold accepted and refused entries", () => {
    expect([
      bindingFixtures.cases.some((c) => c.problems.length === 0),
      bindingFixtures.cases.filter((c) => c.problems.length > 0).length > 5
    ])
      .toEqual([true, true])
  })
})

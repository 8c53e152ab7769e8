/** Plugin names: what a category or type may be, and a bad one never reaching the registry. */
import { describe, expect, test } from "bun:test"
import { Effect } from "effect"
import type { PluginDescription } from "../../src/gen/halkyon/capability/v1/capability.ts"
import type { PluginConnection } from "../../src/plugin-client/PluginClient.ts"
import { descriptionProblem, isDnsLabel } from "../../src/registry/Names.ts"
import { PluginRegistry } from "../../src/registry/PluginRegistry.ts"

const description = (category: string, ...types: Array<string>): PluginDescription => ({
  name: "p",
  refuseUnknownParameters: false,
  category,
  types: types.map((type) => ({ type, versions: ["1"], defaultVersion: "1" })),
  parameters: [],
  dependents: []
})

describe("DNS-1123 labels", () => {
  const valid = ["database", "postgres", "a", "redis-7", "0x", "a".repeat(63)]
  const invalid = ["", "Database", "post_gres", "-a", "a-", "a.b", "a/b", "ä", "a".repeat(64), "evil/../x", "a b"]
  for (const name of valid) test(`${JSON.stringify(name)} is valid`, () => expect(isDnsLabel(name)).toBe(true))
  for (const name of invalid) test(`${JSON.stringify(name)} is not`, () => expect(isDnsLabel(name)).toBe(false))
})

describe("a plugin's description", () => {
  test("a bad category or any bad type is named", () => {
    expect(descriptionProblem(description("database", "postgres"))).toBeUndefined()
    expect(descriptionProblem(description("Data_Base", "postgres"))).toContain("its category \"Data_Base\" is not a valid name")
    expect(descriptionProblem(description("database", "postgres", "My SQL"))).toContain("its type \"My SQL\" is not a valid name")
    expect(descriptionProblem(description("database"))).toBe("it declares no type")
  })

  test("the registry refuses it, and keeps serving the others", () =>
    Effect.runPromise(
      Effect.gen(function*() {
        const registry = yield* PluginRegistry
        const connection = {} as PluginConnection
        yield* registry.register("good", description("database", "postgres"), connection)
        const refused = yield* Effect.flip(registry.register("evil", description("Bad_Category", "x"), connection))
        expect(refused._tag).toBe("InvalidPluginDescription")
        expect(refused.message).toContain("plugin evil is refused")
        expect((yield* registry.entries).map((e) => e.plugin)).toEqual(["good"])
        expect((yield* registry.resolve("database", "postgres", "")).plugin).toBe("good")
      }).pipe(Effect.provide(PluginRegistry.layer))
    ))
})

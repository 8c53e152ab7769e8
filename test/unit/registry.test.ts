/** The registry's choices: which plugin serves a (category, type, version). */
import { expect, test } from "bun:test"
import { Effect, Logger } from "effect"
import type { PluginDescription } from "../../src/gen/halkyon/capability/v1/capability.ts"
import type { PluginConnection } from "../../src/plugin-client/PluginClient.ts"
import { PluginRegistry } from "../../src/registry/PluginRegistry.ts"

const description = (category: string, type: string, versions: Array<string>, defaultVersion: string): PluginDescription => ({
  name: type,
  refuseUnknownParameters: false,
  category,
  types: [{ type, versions, defaultVersion }],
  parameters: [],
  dependents: []
})
// The registry only hands connections out; it never calls them.
const connection = {} as PluginConnection

const run = <A, E>(body: Effect.Effect<A, E, PluginRegistry>, logs: Array<string> = []) =>
  Effect.runPromise(
    body.pipe(
      Effect.provide(PluginRegistry.layer),
      Effect.provide(Logger.layer([Logger.make((o) => void logs.push(String(o.message)))]))
    )
  )

test("category and type compare case-insensitively; the version is honoured, empty means the default", () =>
  run(Effect.gen(function*() {
    const registry = yield* PluginRegistry
    yield* registry.register("pg", description("database", "postgres", ["15", "16", "17"], "16"), connection)
    expect((yield* registry.resolve("DataBase", "PostgreS", "")).version).toBe("16")
    expect((yield* registry.resolve("database", "postgres", "17")).version).toBe("17")
    const wrongVersion = yield* Effect.flip(registry.resolve("database", "postgres", "9"))
    expect(wrongVersion.message).toBe(
      "no plugin serves category \"database\", type \"postgres\", version \"9\"; available: database/postgres (15, 16, 17) from plugin pg"
    )
    const wrongCategory = yield* Effect.flip(registry.resolve("cache", "postgres", ""))
    expect(wrongCategory._tag).toBe("NoPluginFound")
  })))

test("two plugins claiming one type: the first by name wins, and a warning names both", () => {
  const logs: Array<string> = []
  return run(
    Effect.gen(function*() {
      const registry = yield* PluginRegistry
      yield* registry.register("zeta", description("database", "postgres", ["16"], "16"), connection)
      yield* registry.register("alpha", description("database", "postgres", ["17"], "17"), connection)
      expect((yield* registry.resolve("database", "postgres", "")).plugin).toBe("alpha")
      expect(logs).toContain("plugins alpha and zeta all serve database/postgres; using alpha")
      yield* registry.unregister("alpha")
      expect((yield* registry.resolve("database", "postgres", "")).plugin).toBe("zeta")
    }),
    logs
  )
})

test("an unavailable plugin says so, and why, until it registers again", () =>
  run(Effect.gen(function*() {
    const registry = yield* PluginRegistry
    yield* registry.register("pg", description("database", "postgres", ["16"], "16"), connection)
    yield* registry.markUnavailable("pg", "exited with code 2")
    const error = yield* Effect.flip(registry.resolve("database", "postgres", "16"))
    expect(error.message).toBe("plugin pg is not available right now: exited with code 2")
    yield* registry.register("pg", description("database", "postgres", ["16"], "16"), connection)
    expect((yield* registry.resolve("database", "postgres", "16")).plugin).toBe("pg")
  })))

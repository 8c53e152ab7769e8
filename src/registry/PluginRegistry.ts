/**
 * PluginRegistry: which plugin serves a (category, type, version).
 *
 * Category and type compare case-insensitively, as in the original; the
 * version is honoured: an exact match, or the type's default when the
 * Capability names none. When two plugins claim the same category and type,
 * the first by name wins, deterministically, and a warning names both.
 * Plugins that are restarting stay registered but unavailable, so a look-up
 * says "unavailable" rather than "unknown".
 *
 * A plugin whose category or type is not a valid name (Names.ts) is never
 * registered, so nothing downstream (CapabilityInfos) ever sees it.
 *
 * It does not start plugins: PluginHost registers what it has launched.
 */
import { Context, Effect, Layer, PubSub, Stream } from "effect"
import type { PluginDescription } from "../gen/halkyon/capability/v1/capability.ts"
import type { PluginConnection } from "../plugin-client/PluginClient.ts"
import { InvalidPluginDescription, NoPluginFound, PluginNotAvailable } from "./Errors.ts"
import { descriptionProblem } from "./Names.ts"

export interface RegistryEntry {
  readonly plugin: string
  readonly description: PluginDescription
  readonly connection: PluginConnection
  readonly available: boolean
  /** Why it is unavailable. */
  readonly reason: string
  /** It is unavailable because its memory limit killed it. */
  readonly memoryKilled?: boolean
}

export interface Resolution {
  readonly plugin: string
  readonly description: PluginDescription
  readonly connection: PluginConnection
  /** The version asked for, or the type's default. */
  readonly version: string
}

const key = (category: string, type: string) => `${category.toLowerCase()}/${type.toLowerCase()}`

export class PluginRegistry extends Context.Service<PluginRegistry, {
  /** Registers a plugin (again) as available; refuses one whose category or type is not a valid name. */
  readonly register: (
    plugin: string,
    description: PluginDescription,
    connection: PluginConnection
  ) => Effect.Effect<void, InvalidPluginDescription>
  readonly markUnavailable: (plugin: string, reason: string, memoryKilled?: boolean) => Effect.Effect<void>
  readonly unregister: (plugin: string) => Effect.Effect<void>
  readonly resolve: (category: string, type: string, version: string) => Effect.Effect<Resolution, NoPluginFound | PluginNotAvailable>
  readonly entries: Effect.Effect<ReadonlyArray<RegistryEntry>>
  /** Emits after every change, so that waiting Capabilities can be retried. */
  readonly changes: Stream.Stream<void>
}>()("halkyon/registry/PluginRegistry") {
  static readonly layer = Layer.effect(
    PluginRegistry,
    Effect.gen(function*() {
      const plugins = new Map<string, RegistryEntry>()
      const changed = yield* PubSub.unbounded<void>()
      const publish = PubSub.publish(changed, undefined)

      /** Everything plugins claim, as "category/type (versions)". */
      const available = () =>
        [...plugins.values()].flatMap((e) =>
          e.description.types.map((t) => `${e.description.category}/${t.type} (${t.versions.join(", ")}) from plugin ${e.plugin}`)
        )

      /** Plugins claiming the key, first by name first. */
      const claimants = (k: string) =>
        [...plugins.values()]
          .filter((e) => e.description.types.some((t) => key(e.description.category, t.type) === k))
          .sort((a, b) => a.plugin.localeCompare(b.plugin))

      const warnConflicts = (entry: RegistryEntry) =>
        Effect.forEach(entry.description.types, (t) => {
          const all = claimants(key(entry.description.category, t.type))
          if (all.length < 2) return Effect.void
          return Effect.logWarning(
            `plugins ${all.map((e) => e.plugin).join(" and ")} all serve ${entry.description.category}/${t.type}; using ${all[0]?.plugin}`
          )
        }, { discard: true })

      const register = Effect.fn("PluginRegistry.register")(function*(
        plugin: string,
        description: PluginDescription,
        connection: PluginConnection
      ) {
        const problem = descriptionProblem(description)
        if (problem !== undefined) {
          if (plugins.delete(plugin)) yield* publish
          return yield* new InvalidPluginDescription({ plugin, detail: problem })
        }
        const entry: RegistryEntry = { plugin, description, connection, available: true, reason: "" }
        plugins.set(plugin, entry)
        yield* warnConflicts(entry)
        yield* publish
      })

      const markUnavailable = Effect.fn("PluginRegistry.markUnavailable")(
        function*(plugin: string, reason: string, memoryKilled?: boolean) {
          const entry = plugins.get(plugin)
          if (entry === undefined) return
          plugins.set(plugin, { ...entry, available: false, reason, ...(memoryKilled === true ? { memoryKilled } : {}) })
          yield* publish
        }
      )

      const unregister = Effect.fn("PluginRegistry.unregister")(function*(plugin: string) {
        if (plugins.delete(plugin)) yield* publish
      })

      const resolve = Effect.fn("PluginRegistry.resolve")(function*(category: string, type: string, version: string) {
        // Built only when needed: it lists what is available, and every error captures a stack.
        const notFound = () => new NoPluginFound({ category, type, version, available: available() })
        const entry = claimants(key(category, type))[0]
        if (entry === undefined || entry.description.category.toLowerCase() !== category.toLowerCase()) return yield* notFound()
        const info = entry.description.types.find((t) => t.type.toLowerCase() === type.toLowerCase())
        if (info === undefined) return yield* notFound()
        const chosen = version === "" ? info.defaultVersion : version
        if (!info.versions.includes(chosen)) return yield* notFound()
        if (!entry.available) {
          return yield* new PluginNotAvailable({
            plugin: entry.plugin,
            reason: entry.reason,
            ...(entry.memoryKilled === true ? { memoryKilled: true } : {})
          })
        }
        return { plugin: entry.plugin, description: entry.description, connection: entry.connection, version: chosen }
      })

      return PluginRegistry.of({
        register,
        markUnavailable,
        unregister,
        resolve,
        entries: Effect.sync(() => [...plugins.values()].sort((a, b) => a.plugin.localeCompare(b.plugin))),
        changes: Stream.fromPubSub(changed)
      })
    })
  )
}

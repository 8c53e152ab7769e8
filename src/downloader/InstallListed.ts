/**
 * Installs the plugins that comma-separated lists of specs name (what
 * HALKYON_PLUGINS, --plugins and the arguments of `plugins install` hold),
 * reporting bad entries and failed installs.
 */
import { Effect } from "effect"
import { type InstallOptions, PluginDownloader } from "./PluginDownloader.ts"
import { parsePluginSpecs } from "./PluginSpec.ts"

/**
 * Installs what the lists name, logging bad entries; returns each install's
 * result, the specs it read and the entries it could not.
 */
export const installListed = Effect.fn("PluginDownloader.installListed")(function*(lists: ReadonlyArray<string>, options: InstallOptions) {
  const downloader = yield* PluginDownloader
  const { specs, invalid } = parsePluginSpecs(lists)
  for (const bad of invalid) yield* Effect.logError(bad.message)
  const results = yield* downloader.installAll(specs, options)
  return { results, specs, invalid }
})

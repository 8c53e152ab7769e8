/**
 * This repository's plugin releases: dist/plugin-releases/<name>/, built
 * from dist/plugin-builds/<name>/<os>_<arch>/. The layout and the writing
 * are src/release/PluginRelease.ts's (shared with `halkyon plugins build
 * --release`); this module only names the repository's folders.
 */
import { join, resolve } from "node:path"
import * as release from "../../src/release/PluginRelease.ts"

const root = resolve(import.meta.dir, "../..")

export type { PluginBuild } from "../../src/release/PluginRelease.ts"
export { pluginArchiveName } from "../../src/release/PluginRelease.ts"

export const pluginReleaseDir = (name: string) => join(root, "dist/plugin-releases", name)

/** Where cross builds of a plugin go: dist/plugin-builds/<name>/<os>_<arch>/<name>[.exe]. */
export const pluginBuildsDir = (name: string) => join(root, "dist/plugin-builds", name)

export const pluginBuildsIn = (name: string, dir = pluginBuildsDir(name)) => release.pluginBuildsIn(name, dir)

export const writePluginRelease = (name: string, builds: ReadonlyArray<release.PluginBuild>, outDir = pluginReleaseDir(name)) =>
  release.writePluginRelease(name, builds, outDir)

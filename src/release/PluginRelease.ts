/**
 * A plugin's release: the folder a GitHub release hosts as its assets, laid
 * out as `halkyon plugins install` downloads it:
 *
 *   <out>/halkyon_plugin_<os>_<arch>.tar.gz   one per build
 *   <out>/halkyon_plugin_<os>.tar.gz          the amd64 one again, under its short name
 *   <out>/checksums.txt                       `<sha256>  <file>` (GoReleaser's format)
 *
 * Each archive holds only the plugin executable, at its top level, named
 * `<name>` (`<name>.exe` on windows), mode 0755. Builds can come from any
 * compiler (Bun for TypeScript, `go build`).
 */
import { copyFileSync, existsSync, mkdirSync, readdirSync, rmSync } from "node:fs"
import { join } from "node:path"
import { writeChecksums, writeTarGz } from "./Archive.ts"
import { executableName } from "./Targets.ts"

export interface PluginBuild {
  /** Go's name: linux, darwin, windows */
  readonly os: string
  /** Go's name: amd64, arm64 */
  readonly arch: string
  /** The executable built for that platform. */
  readonly file: string
}

export const pluginArchiveName = (os: string, arch?: string) =>
  arch === undefined ? `halkyon_plugin_${os}.tar.gz` : `halkyon_plugin_${os}_${arch}.tar.gz`

/** The builds found in `dir` laid out as `<os>_<arch>/<name>[.exe]`. */
export const pluginBuildsIn = (name: string, dir: string): Array<PluginBuild> =>
  readdirSync(dir)
    .sort()
    .flatMap((platform) => {
      const match = /^([a-z0-9]+)_([a-z0-9]+)$/.exec(platform)
      if (match === null) return []
      const [, os = "", arch = ""] = match
      const file = join(dir, platform, executableName(name, os))
      return existsSync(file) ? [{ os, arch, file }] : []
    })

/**
 * Writes the release folder of plugin `name` from its builds into `outDir`
 * (replacing what was there) and returns the paths of every file in it,
 * checksums.txt last.
 */
export const writePluginRelease = async (name: string, builds: ReadonlyArray<PluginBuild>, outDir: string) => {
  if (builds.length === 0) throw new Error(`plugin ${name} has no builds to release`)
  rmSync(outDir, { recursive: true, force: true })
  mkdirSync(outDir, { recursive: true })
  const archives: Array<string> = []
  for (const build of builds) {
    const archive = await writeTarGz(join(outDir, pluginArchiveName(build.os, build.arch)), build.file, executableName(name, build.os))
    archives.push(archive)
    // The downloader falls back to the arch-less name, which means amd64 (as go-getter-era releases did).
    if (build.arch === "amd64") {
      const short = join(outDir, pluginArchiveName(build.os))
      copyFileSync(archive, short)
      archives.push(short)
    }
  }
  return [...archives, writeChecksums(outDir, archives)]
}

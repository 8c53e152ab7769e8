/**
 * Where a plugin's release lives: `<base>/<org>/<repo>/releases/download/<tag>/<asset>`,
 * the layout of GitHub release pages and of mirrors that copy them. The
 * archive is named for the platform as Go names it: first
 * `halkyon_plugin_<os>_<arch>.tar.gz`, then the original Halkyon's
 * `halkyon_plugin_<os>.tar.gz`.
 */
import { goArch, goOs } from "../Version.ts"
import type { PluginSpec } from "./PluginSpec.ts"

export const DefaultReleaseBase = "https://github.com"
export const ChecksumsAsset = "checksums.txt"

export interface Platform {
  readonly os: string
  readonly arch: string
}

export const thisPlatform: Platform = { os: goOs, arch: goArch }

/** The archive names to try, most specific first. */
export const archiveNames = (platform: Platform): ReadonlyArray<string> => [
  `halkyon_plugin_${platform.os}_${platform.arch}.tar.gz`,
  `halkyon_plugin_${platform.os}.tar.gz`
]

export const assetUrl = (base: string, spec: PluginSpec, asset: string): URL =>
  new URL(
    [spec.org, spec.repo, "releases", "download", spec.tag, asset].map(encodeURIComponent).join("/"),
    base.endsWith("/") ? base : `${base}/`
  )

/** The platforms release archives are built for, and that `plugins lock` records by default. */
export const ReleasePlatforms: ReadonlyArray<Platform> = [
  { os: "linux", arch: "amd64" },
  { os: "linux", arch: "arm64" },
  { os: "darwin", arch: "amd64" },
  { os: "darwin", arch: "arm64" },
  { os: "windows", arch: "amd64" }
]

/** Reads `<os>_<arch>` (linux_amd64); undefined if it is not of that form. */
export const parsePlatform = (text: string): Platform | undefined => {
  const match = /^([a-z0-9]+)_([a-z0-9]+)$/.exec(text.trim())
  return match === null ? undefined : { os: match[1] ?? "", arch: match[2] ?? "" }
}

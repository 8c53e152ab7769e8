/**
 * Builds Go programs of this repo: Go plugins (a folder with a go.mod), the
 * Go conformance host and the Go test fixtures. Always with CGO off, so the
 * binaries are static and cross-build without a C toolchain.
 *
 * - buildGo: one build for one platform (default: this machine).
 * - crossBuildGoPlugin: a plugin for every release platform, into
 *   dist/plugin-builds/<name>/<os>_<arch>/<name>[.exe]; turning those into
 *   release archives is the release script's job, not this module's.
 *
 * The Go module cache may be cold: modules come from the Go module proxy
 * (GOFLAGS=-mod=mod lets go.sum gain missing lines instead of failing).
 */
import { existsSync, mkdirSync } from "node:fs"
import { join, resolve } from "node:path"
import { goBinary } from "../src/release/PluginBuild.ts"

export { goBinary }

const root = resolve(import.meta.dir, "..")

/** The platforms a plugin is released for, as GOOS/GOARCH. */
export const ReleasePlatforms = [
  { os: "linux", arch: "amd64" },
  { os: "linux", arch: "arm64" },
  { os: "darwin", arch: "amd64" },
  { os: "darwin", arch: "arm64" },
  { os: "windows", arch: "amd64" }
] as const

export interface Platform {
  readonly os: string
  readonly arch: string
}

/** This machine as GOOS/GOARCH. */
export const hostPlatform: Platform = {
  os: process.platform === "win32" ? "windows" : process.platform,
  arch: process.arch === "x64" ? "amd64" : process.arch
}

/** Whether a plugin folder is a Go plugin. */
export const isGoPlugin = (dir: string) => existsSync(join(dir, "go.mod"))

/**
 * Builds the main package in `dir` (a Go module folder, or a package inside
 * one) into `outFile`, for `platform`.
 */
export const buildGo = (dir: string, outFile: string, platform: Platform = hostPlatform) => {
  mkdirSync(resolve(outFile, ".."), { recursive: true })
  const result = Bun.spawnSync([goBinary(), "build", "-trimpath", "-ldflags=-s -w", "-o", outFile, "."], {
    cwd: dir,
    env: {
      ...process.env,
      CGO_ENABLED: "0",
      GOOS: platform.os,
      GOARCH: platform.arch,
      GOFLAGS: process.env.GOFLAGS ?? "-mod=mod",
      // A workspace file elsewhere must not change what is built.
      GOWORK: "off"
    },
    stdout: "pipe",
    stderr: "pipe"
  })
  if (result.exitCode !== 0) {
    process.stderr.write(result.stdout.toString() + result.stderr.toString())
    throw new Error(`go build in ${dir} for ${platform.os}/${platform.arch} failed with exit code ${result.exitCode}`)
  }
  return outFile
}

/** The executable's file name on a platform. */
export const executableName = (name: string, platform: Platform) => (platform.os === "windows" ? `${name}.exe` : name)

/**
 * Cross-builds the Go plugin in `dir` for every release platform into
 * `<outRoot>/<name>/<os>_<arch>/<name>[.exe]`; returns `{ os, arch, file }`
 * for each, ready for the release archives.
 */
export const crossBuildGoPlugin = (
  name: string,
  dir: string,
  outRoot: string = join(root, "dist/plugin-builds"),
  platforms: ReadonlyArray<Platform> = ReleasePlatforms
) =>
  platforms.map((platform) => ({
    os: platform.os,
    arch: platform.arch,
    file: buildGo(dir, join(outRoot, name, `${platform.os}_${platform.arch}`, executableName(name, platform)), platform)
  }))

/**
 * Builds every plugin in plugins/ (and, with --with-test-fixtures, the test
 * plugins in test/fixtures/plugins/) for this machine, in both forms:
 * - dist/plugins/<name>: a native executable (src/release/PluginBuild.ts's
 *   compilePlugin, as `halkyon plugins build` makes it);
 * - dist/plugins/<name>.js: a single-file bundle run by the host's own runtime.
 *   What the SDK loads after the handshake (src/sdk/Services.ts) is bundled
 *   on its own and carried in it as a string (src/release/PluginBuild.ts).
 * With --release (npm run build:plugins), every plugin in plugins/ is also
 * cross-compiled for each release platform into dist/plugin-builds/<name>/
 * and archived into dist/plugin-releases/<name>/, ready to host as a GitHub
 * release's assets (scripts/release/plugin-archives.ts). Go plugins (a
 * folder with a go.mod) get the same, built by scripts/go-plugin-build.ts.
 * A TypeScript plugin is a folder with a main.ts.
 */
import { existsSync, mkdirSync, readdirSync, statSync } from "node:fs"
import { join, resolve } from "node:path"
import { bundlePlugin, compilePlugin } from "../src/release/PluginBuild.ts"
import { type PluginBuild, pluginBuildsDir, writePluginRelease } from "./release/plugin-archives.ts"
import { executableName, releaseTargets } from "../src/release/Targets.ts"

const root = resolve(import.meta.dir, "..")

export interface BuildTarget {
  readonly source: string
  readonly outDir: string
}

/** The TypeScript plugins of `sourceDir` (each a folder with a main.ts), to be built into `outDir`. */
export const targets = (sourceDir: string, outDir: string): Array<BuildTarget & { name: string }> =>
  existsSync(sourceDir)
    ? readdirSync(sourceDir)
      .filter((name) => existsSync(join(sourceDir, name, "main.ts")))
      .map((name) => ({ name, source: join(sourceDir, name, "main.ts"), outDir }))
    : []

/** Builds one plugin in both forms; returns the two paths. The bundle is src/release/PluginBuild.ts's, as `halkyon plugins build` makes it. */
export const buildPlugin = async (name: string, source: string, outDir: string) => {
  mkdirSync(outDir, { recursive: true })
  const executable = await compilePlugin(source, join(outDir, name))
  const bundle = await bundlePlugin(source, join(outDir, `${name}.js`))
  return { executable, bundle }
}

/**
 * Cross-compiles a TypeScript plugin for every release platform into
 * dist/plugin-builds/<name>/<os>_<arch>/ and writes its release folder;
 * returns the release's files.
 */
export const releasePlugin = async (name: string, source = join(root, "plugins", name, "main.ts")) => {
  const builds: Array<PluginBuild> = []
  for (const t of releaseTargets) {
    builds.push({
      os: t.os,
      arch: t.arch,
      file: await compilePlugin(source, join(pluginBuildsDir(name), `${t.os}_${t.arch}`, executableName(name, t.os)), t)
    })
  }
  return writePluginRelease(name, builds)
}

if (import.meta.main) {
  // Go plugins (a folder with a go.mod): built with CGO off into
  // dist/plugins/<name> for this machine, and cross-built for the release
  // platforms into dist/plugin-builds/<name>/<os>_<arch>/ (go-plugin-build.ts).
  // --with-test-fixtures adds the Go fixture plugins and the Go conformance host.
  const go = await import("./go-plugin-build.ts")
  for (const name of readdirSync(join(root, "plugins")).filter((n) => go.isGoPlugin(join(root, "plugins", n)))) {
    const started = performance.now()
    const dir = join(root, "plugins", name)
    go.buildGo(dir, join(root, "dist/plugins", name))
    const builds = go.crossBuildGoPlugin(name, dir)
    console.log(
      `built Go plugin dist/plugins/${name} and ${builds.length} release builds in dist/plugin-builds/${name} in ${
        Math.round(performance.now() - started)
      } ms`
    )
    if (process.argv.includes("--release")) {
      const files = await writePluginRelease(name, builds)
      console.log(`wrote the ${name} release (${files.length} files) in ${join(root, "dist/plugin-releases", name)}`)
    }
  }
  if (process.argv.includes("--with-test-fixtures")) {
    const started = performance.now()
    const fixtures = join(root, "test/fixtures/go-plugins")
    for (const name of readdirSync(fixtures).filter((n) => existsSync(join(fixtures, n, "main.go")))) {
      go.buildGo(join(fixtures, name), join(root, "dist/test-plugins", `go-${name}`))
    }
    go.buildGo(join(root, "test/conformance"), join(root, "dist/conformance/conformance"))
    console.log(`built the Go test fixtures and conformance host in ${Math.round(performance.now() - started)} ms`)
  }
  const all = [
    ...targets(join(root, "plugins"), join(root, "dist/plugins")),
    ...(process.argv.includes("--with-test-fixtures") ? targets(join(root, "test/fixtures/plugins"), join(root, "dist/test-plugins")) : [])
  ]
  for (const t of all) {
    const started = performance.now()
    const { executable, bundle } = await buildPlugin(t.name, t.source, t.outDir)
    console.log(`built ${executable} and ${bundle} in ${Math.round(performance.now() - started)} ms`)
  }
  if (process.argv.includes("--release")) {
    for (const t of targets(join(root, "plugins"), join(root, "dist/plugins"))) {
      const started = performance.now()
      const files = await releasePlugin(t.name, t.source)
      const sizes = files.filter((f) => f.endsWith(".tar.gz")).map((f) => statSync(f).size / 1e6)
      console.log(
        `wrote the ${t.name} release (${files.length} files, archives ${Math.min(...sizes).toFixed(1)}–${
          Math.max(...sizes).toFixed(1)
        } MB) in ${join(root, "dist/plugin-releases", t.name)} in ${Math.round(performance.now() - started)} ms`
      )
    }
  }
}

/**
 * Builds every plugin in plugins/ (and, with --with-test-fixtures, the test
 * plugins in test/fixtures/plugins/) for this machine, in both forms:
 * - dist/plugins/<name>: a native executable (bun build --compile --bytecode);
 * - dist/plugins/<name>.js: a single-file bundle run by the host's own runtime.
 * A plugin is a folder with a main.ts.
 */
import { existsSync, mkdirSync, readdirSync } from "node:fs"
import { join, resolve } from "node:path"

const root = resolve(import.meta.dir, "..")
const bun = process.execPath

export interface BuildTarget {
  readonly source: string
  readonly outDir: string
}

const targets = (sourceDir: string, outDir: string): Array<BuildTarget & { name: string }> =>
  existsSync(sourceDir)
    ? readdirSync(sourceDir)
        .filter((name) => existsSync(join(sourceDir, name, "main.ts")))
        .map((name) => ({ name, source: join(sourceDir, name, "main.ts"), outDir }))
    : []

const run = (args: ReadonlyArray<string>) => {
  const result = Bun.spawnSync([bun, ...args], { cwd: root, stdout: "pipe", stderr: "pipe" })
  if (result.exitCode !== 0) {
    process.stderr.write(result.stdout.toString() + result.stderr.toString())
    throw new Error(`bun ${args.join(" ")} failed with exit code ${result.exitCode}`)
  }
}

/** Builds one plugin in both forms; returns the two paths. */
export const buildPlugin = (name: string, source: string, outDir: string) => {
  mkdirSync(outDir, { recursive: true })
  const executable = join(outDir, name)
  const bundle = join(outDir, `${name}.js`)
  run(["build", "--compile", "--bytecode", "--format=esm", "--minify", source, "--outfile", executable])
  run(["build", "--target=bun", "--format=esm", "--minify", source, "--outfile", bundle])
  return { executable, bundle }
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
    console.log(`built Go plugin dist/plugins/${name} and ${builds.length} release builds in dist/plugin-builds/${name} in ${Math.round(performance.now() - started)} ms`)
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
    const { executable, bundle } = buildPlugin(t.name, t.source, t.outDir)
    console.log(`built ${executable} and ${bundle} in ${Math.round(performance.now() - started)} ms`)
  }
}

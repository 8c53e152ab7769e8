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

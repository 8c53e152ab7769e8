/**
 * Builds dist/halkyon, the operator as one native executable for this
 * machine, with the version and git commit embedded. (Release archives for
 * every OS are issue #5.)
 */
import { mkdirSync } from "node:fs"
import { join, resolve } from "node:path"
import pkg from "../package.json" with { type: "json" }

const root = resolve(import.meta.dir, "..")

const gitCommit = (): string => {
  const result = Bun.spawnSync(["git", "rev-parse", "--short=12", "HEAD"], { cwd: root, stdout: "pipe", stderr: "ignore" })
  return result.exitCode === 0 ? result.stdout.toString().trim() : "unknown"
}

export const buildOperator = (outfile = join(root, "dist/halkyon"), target?: string) => {
  mkdirSync(join(outfile, ".."), { recursive: true })
  const args = [
    "build", "--compile", "--bytecode", "--format=esm", "--minify",
    // An operator must not pick up a .env or bunfig.toml from whatever folder it is started in.
    "--no-compile-autoload-dotenv", "--no-compile-autoload-bunfig",
    // A smaller heap, collected more often: the operator holds a cache of every object it watches.
    "--compile-exec-argv=--smol",
    ...(target === undefined ? [] : [`--target=${target}`]),
    `--define=__HALKYON_VERSION__=${JSON.stringify(pkg.version)}`,
    `--define=__HALKYON_COMMIT__=${JSON.stringify(gitCommit())}`,
    join(root, "src/main.ts"), "--outfile", outfile
  ]
  const result = Bun.spawnSync([process.execPath, ...args], { cwd: root, stdout: "pipe", stderr: "pipe" })
  if (result.exitCode !== 0) {
    process.stderr.write(result.stdout.toString() + result.stderr.toString())
    throw new Error(`building ${outfile} failed with exit code ${result.exitCode}`)
  }
  return outfile
}

if (import.meta.main) {
  const started = performance.now()
  const out = buildOperator()
  console.log(`built ${out} in ${Math.round(performance.now() - started)} ms`)
}

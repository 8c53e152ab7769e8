/**
 * Builds the operator as native executables, with the version and git
 * commit embedded:
 * - `bun scripts/build.ts`: dist/halkyon, for this machine (what tests run);
 * - `bun scripts/build.ts --release` (npm run build): that, plus the release
 *   archives in dist/release/ for every OS and arch we ship, with a
 *   GoReleaser-format checksums.txt.
 */
import { mkdirSync, rmSync, statSync, writeFileSync } from "node:fs"
import { join, resolve } from "node:path"
import pkg from "../package.json" with { type: "json" }
import { writeChecksums, writeTarGz, writeZip } from "../src/release/Archive.ts"
import { buildUnlessFresh, inputsHash } from "./release/stamp.ts"
import { executableName, releaseTargets } from "../src/release/Targets.ts"

const root = resolve(import.meta.dir, "..")

export const releaseDir = join(root, "dist/release")

export const gitCommit = (): string => {
  const result = Bun.spawnSync(["git", "rev-parse", "--short=12", "HEAD"], { cwd: root, stdout: "pipe", stderr: "ignore" })
  return result.exitCode === 0 ? result.stdout.toString().trim() : "unknown"
}

export const buildOperator = (outfile = join(root, "dist/halkyon"), target?: string) => {
  mkdirSync(join(outfile, ".."), { recursive: true })
  const args = [
    "build",
    "--compile",
    "--bytecode",
    "--format=esm",
    "--minify",
    // Each chunk (a command's modules) is loaded when a dynamic import first asks for it, not at every start.
    "--splitting",
    // An operator must not pick up a .env or bunfig.toml from whatever folder it is started in.
    "--no-compile-autoload-dotenv",
    "--no-compile-autoload-bunfig",
    // A smaller heap, collected more often: the operator holds a cache of every object it watches.
    "--compile-exec-argv=--smol",
    ...(target === undefined ? [] : [`--target=${target}`]),
    `--define=__HALKYON_VERSION__=${JSON.stringify(pkg.version)}`,
    `--define=__HALKYON_COMMIT__=${JSON.stringify(gitCommit())}`,
    join(root, "src/main.ts"),
    "--outfile",
    outfile
  ]
  const result = Bun.spawnSync([process.execPath, ...args], { cwd: root, stdout: "pipe", stderr: "pipe" })
  if (result.exitCode !== 0) {
    process.stderr.write(result.stdout.toString() + result.stderr.toString())
    throw new Error(`building ${outfile} failed with exit code ${result.exitCode}`)
  }
  return outfile
}

/** The release archive's file name for a platform, as docs/operations.md documents it. */
export const releaseArchiveName = (os: string, arch: string) =>
  `halkyon_${pkg.version}_${os}_${arch}.${os === "windows" ? "zip" : "tar.gz"}`

/** Every archive of a release, and checksums.txt. */
export const releaseFiles = () => [
  ...releaseTargets.map((t) => join(releaseDir, releaseArchiveName(t.os, t.arch))),
  join(releaseDir, "checksums.txt")
]

/**
 * Cross-compiles the operator for every release target into
 * dist/builds/<os>_<arch>/, archives each into dist/release/, and writes
 * checksums.txt. Returns the archives.
 */
export const buildRelease = async (log: (line: string) => void = () => {}) => {
  rmSync(releaseDir, { recursive: true, force: true })
  mkdirSync(releaseDir, { recursive: true })
  const archives: Array<string> = []
  for (const t of releaseTargets) {
    const started = performance.now()
    const name = executableName("halkyon", t.os)
    const binary = buildOperator(join(root, "dist/builds", `${t.os}_${t.arch}`, name), t.bunTarget)
    const archive = join(releaseDir, releaseArchiveName(t.os, t.arch))
    if (t.os === "windows") writeZip(archive, binary, name)
    else await writeTarGz(archive, binary, name)
    archives.push(archive)
    log(
      `built ${archive} (${mb(statSync(binary).size)} binary, ${mb(statSync(archive).size)} archive) in ${
        Math.round(performance.now() - started)
      } ms`
    )
  }
  writeChecksums(releaseDir, archives)
  return archives
}

/** What a release build depends on: if none of it changed, the archives in dist/release are current. */
const releaseInputs = () =>
  inputsHash(
    ["src", "package.json", "package-lock.json", "scripts/build.ts", "scripts/release"].map((p) => join(root, p)),
    [gitCommit(), Bun.version]
  )

const releaseStamp = join(root, "dist/.release-stamp")

/** Builds the release archives unless those in dist/release were built from the same inputs (tests call this). */
export const ensureRelease = () => buildUnlessFresh(releaseStamp, releaseInputs(), releaseFiles(), () => buildRelease())

const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`

if (import.meta.main) {
  const started = performance.now()
  const out = buildOperator()
  console.log(`built ${out} in ${Math.round(performance.now() - started)} ms`)
  if (process.argv.includes("--release")) {
    await buildRelease(console.log)
    writeFileSync(releaseStamp, releaseInputs())
    console.log(`wrote ${join(releaseDir, "checksums.txt")}`)
  }
}

/**
 * npm run bench:download: figures for `halkyon plugins install`, printed,
 * never asserted. A plugin archive of random bytes (incompressible, so its
 * size on the wire is its size on disk) is served over HTTPS from loopback
 * behind a redirect, as GitHub serves releases; the compiled binary installs
 * it (download, SHA-256, unpack, commit) and `curl -L` fetches the same
 * file to disk in the same run, alternating. Medians of BENCH_RUNS runs.
 * Peak RSS for three archive sizes shows whether memory stays flat (streamed).
 * Beside them, the floor this runtime sets: bench/support/install-floor.ts,
 * compiled, does only the steps an install cannot skip (fetch, SHA-256,
 * gunzip, write, each file's SHA-256), and `halkyon version` times the
 * binary's own start.
 */
import { randomBytes } from "node:crypto"
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { goArch, goOs } from "../src/Version.ts"
import { checksums, makeTestCa, removeCa, startReleaseServers, tarGz } from "../test/support/releases.ts"

const root = resolve(import.meta.dir, "..")
const halkyon = join(root, "dist/halkyon")
const Runs = Number(process.env.BENCH_RUNS ?? 7)
const asset = `halkyon_plugin_${goOs}_${goArch}.tar.gz`

if (!existsSync(halkyon)) Bun.spawnSync([process.execPath, join(root, "scripts/build.ts")], { stdout: "inherit", stderr: "inherit" })
const floorProgram = join(root, "dist/bench/install-floor")
const compiled = Bun.spawnSync(
  [
    process.execPath,
    "build",
    "--compile",
    "--bytecode",
    "--format=esm",
    "--minify",
    join(root, "bench/support/install-floor.ts"),
    "--outfile",
    floorProgram
  ],
  { stdout: "pipe", stderr: "inherit" }
)
if (compiled.exitCode !== 0) throw new Error("building bench/support/install-floor.ts failed")

const median = (values: ReadonlyArray<number>) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)] ?? NaN
}

/** Runs a command under GNU time: wall ms and peak RSS in MB. */
const measure = async (command: ReadonlyArray<string>, env: Record<string, string>) => {
  const started = performance.now()
  const proc = Bun.spawn(["/usr/bin/time", "-f", "%M", ...command], { env: { ...process.env, ...env }, stdout: "ignore", stderr: "pipe" })
  const [stderr, code] = await Promise.all([new Response(proc.stderr).text(), proc.exited])
  const ms = performance.now() - started
  if (code !== 0) throw new Error(`${command.join(" ")} exited with ${code}:\n${stderr}`)
  const kb = Number(stderr.trim().split("\n").pop())
  return { ms, rssMb: kb / 1024 }
}

const ca = makeTestCa()
const servers = await startReleaseServers(ca)
const work = mkdtempSync(join(tmpdir(), "halkyon-bench-download-"))
const env = { NODE_EXTRA_CA_CERTS: ca.caFile, GITHUB_TOKEN: "", HALKYON_PLUGINS: "" }

try {
  console.log(`bench:download: ${Runs} runs per figure, medians; loopback HTTPS with a redirect; ${goOs}/${goArch}`)
  console.log("")
  const starts: Array<number> = []
  for (let i = 0; i < 2 * Runs + 1; i++) starts.push((await measure([halkyon, "version"], env)).ms)
  console.log(`halkyon version (its start-up alone): ${median(starts).toFixed(0)} ms`)
  console.log("")
  console.log("archive   curl -L (ms)   floor (ms)   halkyon install (ms)   ratio   floor ratio   curl RSS (MB)   halkyon peak RSS (MB)")
  for (const megabytes of [5, 50, 200]) {
    const archive = tarGz([{ path: "big-plugin", body: randomBytes(megabytes * 1_000_000), mode: 0o755 }])
    const release = `bench/size-${megabytes}@v1`
    servers.publish(release, { [asset]: archive, "checksums.txt": new TextEncoder().encode(checksums({ [asset]: archive })) })
    const url = `${servers.base}/bench/size-${megabytes}/releases/download/v1/${asset}`
    const curl: Array<{ ms: number; rssMb: number }> = []
    const ours: Array<{ ms: number; rssMb: number }> = []
    const floor: Array<{ ms: number; rssMb: number }> = []
    for (let run = 0; run < Runs; run++) {
      const target = join(work, `run-${megabytes}-${run}`)
      mkdirSync(target)
      curl.push(await measure(["curl", "-sSfL", "--cacert", ca.caFile, "-o", join(target, "archive.tar.gz"), url], env))
      floor.push(await measure([floorProgram, url, join(target, "floor")], env))
      ours.push(
        await measure([
          halkyon,
          "plugins",
          "install",
          release,
          "--plugins-dir",
          join(target, "plugins"),
          "--release-base-url",
          servers.base
        ], env)
      )
      rmSync(target, { recursive: true, force: true })
    }
    const c = median(curl.map((r) => r.ms))
    const h = median(ours.map((r) => r.ms))
    const f = median(floor.map((r) => r.ms))
    console.log(
      `${`${(archive.byteLength / 1_000_000).toFixed(1)} MB`.padEnd(10)}${c.toFixed(0).padStart(12)}   ${f.toFixed(0).padStart(10)}   ${
        h.toFixed(0).padStart(20)
      }   ${(h / c).toFixed(2).padStart(5)}x   ${(f / c).toFixed(2).padStart(10)}x   ` +
        `${median(curl.map((r) => r.rssMb)).toFixed(0).padStart(13)}   ${Math.max(...ours.map((r) => r.rssMb)).toFixed(0).padStart(21)}`
    )
  }
  console.log("")
  console.log(
    "halkyon's figure includes its own start, the checksums.txt fetch, the SHA-256, the unpack and the lock; curl only writes the file."
  )
  console.log(
    "The floor is a compiled Bun program doing only fetch, SHA-256, gunzip, write and each file's SHA-256 (bench/support/install-floor.ts)."
  )
  console.log("Target: install within 1.3x of curl for the 50 MB archive, peak RSS flat in the archive's size.")
} finally {
  await servers.close()
  removeCa(ca)
  rmSync(work, { recursive: true, force: true })
}

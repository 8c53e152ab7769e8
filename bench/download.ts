/**
 * npm run bench:download: `halkyon plugins install` beside what a user
 * would do by hand, printed, never asserted. A plugin archive of random
 * bytes (incompressible, so its size on the wire is its size on disk) is
 * served over HTTPS from loopback behind a redirect, as GitHub serves
 * releases. For each archive size (BENCH_SIZES, MB, default 5,50,200), in
 * the same run and alternating, BENCH_RUNS times (default 7):
 * - plain `curl -L -o` of the archive: the network floor (no check, no unpack);
 * - the hand-made pipeline: `curl` the archive and checksums.txt,
 *   `sha256sum -c`, `tar -xzf` (the anchor);
 * - the compiled binary's `plugins install` (download, SHA-256 against
 *   checksums.txt, safe unpack, plugins.lock);
 * - the floor this runtime sets: bench/support/install-floor.ts, compiled,
 *   does only the steps an install cannot skip (fetch, SHA-256, gunzip,
 *   write, each file's SHA-256).
 * Wall time is the median; peak RSS (GNU time, the largest process of the
 * command) the largest of the runs. Target (issue #20): install at or under
 * 0.6x the pipeline, peak RSS at most 64 MB and flat in the archive's size.
 * `BENCH_MARKDOWN=file` also writes the table there (bench:all puts it in
 * docs/performance.md); `BENCH_BINARY=path` installs with another build.
 */
import { randomBytes } from "node:crypto"
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { goArch, goOs } from "../src/Version.ts"
import { checksums, makeTestCa, removeCa, startReleaseServers, tarGz } from "../test/support/releases.ts"
import { markdownTable, writeMarkdown } from "./support/markdown.ts"

const root = resolve(import.meta.dir, "..")
// BENCH_BINARY: another build to compare (e.g. one of main's).
const halkyon = process.env.BENCH_BINARY ?? join(root, "dist/halkyon")
const Runs = Number(process.env.BENCH_RUNS ?? 7)
const Sizes = (process.env.BENCH_SIZES ?? "5,50,200").split(",").map(Number)
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

interface Sample {
  readonly ms: number
  readonly rssMb: number
}

/** Runs a command under GNU time: wall ms and peak RSS in MB (of its largest process). */
const measure = async (command: ReadonlyArray<string>, env: Record<string, string>, cwd?: string): Promise<Sample> => {
  const started = performance.now()
  const proc = Bun.spawn(["/usr/bin/time", "-f", "%M", ...command], {
    env: { ...process.env, ...env },
    stdout: "ignore",
    stderr: "pipe",
    ...(cwd === undefined ? {} : { cwd })
  })
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

const header = [
  "archive",
  "curl -L (ms)",
  "pipeline (ms)",
  "halkyon install (ms)",
  "halkyon / pipeline",
  "Bun floor (ms)",
  "curl RSS (MB)",
  "pipeline peak RSS (MB)",
  "halkyon peak RSS (MB)",
  "Bun floor RSS (MB)"
]
const rows: Array<ReadonlyArray<string>> = []

try {
  console.log(`bench:download: Bun ${Bun.version}, ${Runs} runs per figure (medians), loopback HTTPS with a redirect, ${goOs}/${goArch}`)
  for (const megabytes of Sizes) {
    const archive = tarGz([{ path: "big-plugin", body: randomBytes(megabytes * 1_000_000), mode: 0o755 }])
    const release = `bench/size-${megabytes}@v1`
    servers.publish(release, { [asset]: archive, "checksums.txt": new TextEncoder().encode(checksums({ [asset]: archive })) })
    const base = `${servers.base}/bench/size-${megabytes}/releases/download/v1`
    const curl: Array<Sample> = []
    const pipeline: Array<Sample> = []
    const ours: Array<Sample> = []
    const floor: Array<Sample> = []
    // What a user types: fetch both, check the archive against its line of checksums.txt, unpack.
    const byHand =
      `curl -fsSL --cacert "$CA" "$BASE/${asset}" -o ${asset} && curl -fsSL --cacert "$CA" "$BASE/checksums.txt" -o checksums.txt` +
      ` && sha256sum --quiet --ignore-missing -c checksums.txt && tar -xzf ${asset}`
    for (let run = 0; run < Runs; run++) {
      const target = join(work, `run-${megabytes}-${run}`)
      mkdirSync(join(target, "by-hand"), { recursive: true })
      curl.push(await measure(["curl", "-sSfL", "--cacert", ca.caFile, "-o", join(target, "archive.tar.gz"), `${base}/${asset}`], env))
      pipeline.push(await measure(["sh", "-c", byHand], { ...env, CA: ca.caFile, BASE: base }, join(target, "by-hand")))
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
      floor.push(await measure([floorProgram, `${base}/${asset}`, join(target, "floor")], env))
      rmSync(target, { recursive: true, force: true })
    }
    const c = median(curl.map((r) => r.ms))
    const p = median(pipeline.map((r) => r.ms))
    const h = median(ours.map((r) => r.ms))
    const row = [
      `${(archive.byteLength / 1_000_000).toFixed(1)} MB`,
      c.toFixed(0),
      p.toFixed(0),
      h.toFixed(0),
      `${(h / p).toFixed(2)}x`,
      median(floor.map((r) => r.ms)).toFixed(0),
      median(curl.map((r) => r.rssMb)).toFixed(0),
      Math.max(...pipeline.map((r) => r.rssMb)).toFixed(0),
      Math.max(...ours.map((r) => r.rssMb)).toFixed(0),
      Math.max(...floor.map((r) => r.rssMb)).toFixed(0)
    ]
    rows.push(row)
    console.log(row.join("  "))
  }
  const table = markdownTable(header, rows)
  console.log(`\n${table}\n`)
  console.log("The pipeline: curl -fsSL the archive and checksums.txt, sha256sum -c, tar -xzf. halkyon's figure includes its")
  console.log("own start, the checksums.txt fetch, the SHA-256, the safe unpack and plugins.lock. The pipeline's peak RSS is")
  console.log("its largest process's. The Bun floor does fetch, SHA-256, gunzip and write only (bench/support/install-floor.ts).")
  console.log("Target: halkyon at or under 0.6x the pipeline, peak RSS at most 64 MB, flat in size.")
  writeMarkdown([table])
} finally {
  await servers.close()
  removeCa(ca)
  rmSync(work, { recursive: true, force: true })
}

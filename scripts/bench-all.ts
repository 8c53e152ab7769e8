/**
 * npm run bench:all: runs the benchmarks one after the other and writes
 * each one's tables into docs/performance.md, between its markers
 * (`<!-- bench:<name> -->` and `<!-- /bench:<name> -->`), under a line with
 * the date, the machine, the Bun version and the settings it ran with: the
 * figures in the docs then come from one run. Each bench makes its own
 * markdown (BENCH_MARKDOWN=file); this only runs them and places it. A bench
 * that fails stops the run; the sections written before it stay written.
 * First it builds dist/halkyon and the TypeScript plugins (this machine's
 * executable and bundle), as the benches would use a stale build that exists.
 *
 *   bun scripts/bench-all.ts                 # all of them, in the order below
 *   bun scripts/bench-all.ts plugins interop # the named ones only
 *   bun scripts/bench-all.ts --list          # the names and what each runs
 *
 * The settings are those of one documented run on a 2-core machine: each
 * bench's defaults, but for startup (its first table only: the others need
 * the release archives and images built, and have tables of their own) and
 * reconcile: BENCH_REPEAT=3, medians of three trios at the default 200 and
 * 1000 Capabilities instead of five. Each trio starts three control planes
 * and makes 200 spec edits, and at 1000 takes 1.5 minutes on idle cores, 3
 * on a loaded machine: three trios (about 6 minutes idle, 12 loaded, against
 * 10 and 20 for five) already give the median that single runs, moving by
 * 15–20%, do not, and leave the machine's drift over the run smaller. A
 * BENCH_ variable set in the environment overrides these for every bench
 * that reads it (BENCH_RUNS is read by startup, download and control-plane
 * alike; BENCH_SIZES means megabytes to download and Capabilities to
 * reconcile), and is named in the stamp. A full run takes about 15 minutes on
 * two idle cores and 25 on a loaded machine, plus whatever is not yet built
 * (the binary and plugins a few minutes, the control plane's binaries half
 * an hour the first time).
 */
import { cpus } from "node:os"
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { buildPlugin, targets } from "./build-plugins.ts"
import { buildOperator } from "./build.ts"

const root = resolve(import.meta.dir, "..")
const doc = join(root, "docs/performance.md")

export interface Bench {
  readonly name: string
  readonly script: string
  /** What bench:all runs it with, unless the environment says otherwise. */
  readonly env: Record<string, string>
  /** What it measures, for --list; and roughly how long it takes on two cores. */
  readonly what: string
  /** Whether it runs dist/halkyon or the TypeScript plugins' builds. */
  readonly builds: boolean
}

/** Each bench, in the order a full run takes them: the long ones last. */
export const benches: ReadonlyArray<Bench> = [
  {
    name: "startup",
    builds: true,
    script: "bench/startup.ts",
    env: { BENCH_COMMANDS_ONLY: "1" },
    what: "every command's start beside a compiled hello-world, 30 runs each (its first table only; about 1–2 min)"
  },
  {
    name: "download",
    builds: true,
    script: "bench/download.ts",
    env: {},
    what: "`plugins install` of 5, 50 and 200 MB archives beside curl, the hand pipeline and the Bun floor, 7 runs (about 3–4 min)"
  },
  {
    name: "plugins",
    builds: true,
    script: "bench/plugins.ts",
    env: {},
    what: "plugin start to handshake, CheckValidity round trips, a plugin's memory, the host with 10 plugins (about 1–2 min)"
  },
  {
    name: "interop",
    builds: true,
    script: "bench/interop.ts",
    env: {},
    what: "the Go and TypeScript plugins under our host and go-plugin's: starts and round trips (about 1–2 min)"
  },
  {
    name: "references",
    builds: false,
    script: "bench/references.ts",
    env: {},
    what: "parameters by reference: heap and resolve time for 10,000 Capabilities in three shapes (under a minute)"
  },
  {
    name: "control-plane",
    builds: false,
    script: "bench/control-plane.ts",
    env: {},
    what: "the local control plane's start to ready, without and with kube-controller-manager, 3 runs (about 1 min)"
  },
  {
    name: "reconcile",
    builds: true,
    script: "bench/reconcile.ts",
    env: { BENCH_REPEAT: "3" },
    what: "the operator against the floor at 200 and 1000 Capabilities, medians of 3, spec edit latency (about 6–12 min)"
  }
]

export const markers = (name: string) => ({ begin: `<!-- bench:${name} -->`, end: `<!-- /bench:${name} -->` })

/** `text` with what lies between the bench's markers replaced by `body` (the markers kept), or undefined without them. */
export const placeBetweenMarkers = (text: string, name: string, body: string): string | undefined => {
  const { begin, end } = markers(name)
  const from = text.indexOf(begin)
  const to = text.indexOf(end, from)
  if (from === -1 || to === -1) return undefined
  return `${text.slice(0, from + begin.length)}\n${body.trimEnd()}\n${text.slice(to)}`
}

/** The BENCH_ settings a bench runs with: its own, then the environment's over them. */
const settingsOf = (bench: Bench) => {
  const fromEnv = Object.entries(process.env).filter((e): e is [string, string] =>
    e[0].startsWith("BENCH_") && e[0] !== "BENCH_MARKDOWN" && e[1] !== undefined
  )
  return { ...bench.env, ...Object.fromEntries(fromEnv) }
}
const commandOf = (bench: Bench) => [...Object.entries(settingsOf(bench)).map(([k, v]) => `${k}=${v}`), "bun", bench.script].join(" ")

const main = async (args: ReadonlyArray<string>) => {
  if (args.includes("--list") || args.includes("--help") || args.includes("-h")) {
    console.log("bun scripts/bench-all.ts [name...]: runs the named benches (all of them by default) and writes their")
    console.log("tables into docs/performance.md. The benches, in the order a full run takes them, and what each runs:\n")
    for (const bench of benches) console.log(`  ${bench.name.padEnd(14)}${bench.what}\n  ${"".padEnd(14)}runs: ${commandOf(bench)}`)
    process.exit(0)
  }
  const unknown = args.filter((name) => !benches.some((b) => b.name === name))
  if (unknown.length > 0) {
    console.error(
      `bench:all: no bench named ${unknown.join(", ")}; the names are ${benches.map((b) => b.name).join(", ")} (--list says more)`
    )
    process.exit(2)
  }
  const chosen = benches.filter((b) => args.length === 0 || args.includes(b.name))

  // Before anything runs: every section it is to write must have its markers, or a long run would be lost.
  const missing = chosen.filter((b) => placeBetweenMarkers(readFileSync(doc, "utf8"), b.name, "") === undefined)
  if (missing.length > 0) {
    console.error(
      `bench:all: docs/performance.md has no ${missing.map((b) => `${markers(b.name).begin} … ${markers(b.name).end}`).join(", ")} ` +
        "section: add the markers where the table belongs"
    )
    process.exit(2)
  }

  if (chosen.some((b) => b.builds)) {
    console.log("# building dist/halkyon and the TypeScript plugins, so that no bench measures a stale build")
    buildOperator()
    for (const t of targets(join(root, "plugins"), join(root, "dist/plugins"))) await buildPlugin(t.name, t.source, t.outDir)
  }

  const machine = `${cpus().length}-core ${cpus()[0]?.model.trim() ?? "unknown CPU"}, ${process.platform}/${process.arch}`
  const work = mkdtempSync(join(tmpdir(), "halkyon-bench-all-"))
  let failed: string | undefined
  try {
    for (const bench of chosen) {
      const table = join(work, `${bench.name}.md`)
      const command = commandOf(bench)
      console.log(`\n# bench:${bench.name}: ${command}\n`)
      const started = performance.now()
      const run = Bun.spawnSync([process.execPath, join(root, bench.script)], {
        cwd: root,
        env: { ...process.env, ...settingsOf(bench), BENCH_MARKDOWN: table },
        stdout: "inherit",
        stderr: "inherit"
      })
      if (run.exitCode !== 0) {
        failed = `bench:${bench.name} failed: \`${command}\` exited with ${
          run.exitCode ?? `signal ${run.signalCode}`
        } (see its output above)`
        break
      }
      if (!existsSync(table)) {
        failed = `bench:${bench.name} wrote no table: ${bench.script} must write its markdown to the file BENCH_MARKDOWN names`
        break
      }
      const stamp = `${
        new Date().toISOString().slice(0, 10)
      }, ${machine}, Bun ${Bun.version} (\`npm run bench:all\`, which ran \`${command}\`):`
      const placed = placeBetweenMarkers(readFileSync(doc, "utf8"), bench.name, `${stamp}\n\n${readFileSync(table, "utf8")}`)
      if (placed === undefined) {
        failed = `docs/performance.md lost its ${markers(bench.name).begin} markers while bench:${bench.name} ran`
        break
      }
      writeFileSync(doc, placed)
      console.log(
        `\nwrote bench:${bench.name}'s tables into docs/performance.md (${((performance.now() - started) / 60_000).toFixed(1)} min)`
      )
    }
  } finally {
    rmSync(work, { recursive: true, force: true })
  }
  if (failed !== undefined) {
    console.error(`\nbench:all stopped: ${failed}`)
    process.exit(1)
  }
}

if (import.meta.main) await main(process.argv.slice(2))

/**
 * npm run bench:all: runs the benchmarks one after the other and writes
 * each one's table into docs/performance.md, between its markers
 * (`<!-- bench:<name> -->` and `<!-- /bench:<name> -->`), under a line with
 * the date, the machine and the Bun version: the figures in the docs then
 * come from one run. Each bench makes its own table (BENCH_MARKDOWN=file);
 * this only runs them and places the tables. `bun scripts/bench-all.ts
 * startup` runs the named ones only.
 */
import { cpus } from "node:os"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"

const root = resolve(import.meta.dir, "..")
const doc = join(root, "docs/performance.md")

/** Each bench, and what it is run with for the docs' table. */
const benches: ReadonlyArray<{ readonly name: string; readonly script: string; readonly env: Record<string, string> }> = [
  { name: "startup", script: "bench/startup.ts", env: { BENCH_COMMANDS_ONLY: "1" } },
  { name: "download", script: "bench/download.ts", env: {} }
]

const chosen = process.argv.slice(2)
const machine = `${cpus().length}-core ${cpus()[0]?.model.trim() ?? "unknown CPU"}, ${process.platform}/${process.arch}`
const work = mkdtempSync(join(tmpdir(), "halkyon-bench-all-"))
try {
  for (const bench of benches.filter((b) => chosen.length === 0 || chosen.includes(b.name))) {
    const table = join(work, `${bench.name}.md`)
    console.log(`\n# bench:${bench.name}\n`)
    const run = Bun.spawnSync([process.execPath, join(root, bench.script)], {
      cwd: root,
      env: { ...process.env, ...bench.env, BENCH_MARKDOWN: table },
      stdout: "inherit",
      stderr: "inherit"
    })
    if (run.exitCode !== 0) throw new Error(`${bench.script} exited with ${run.exitCode}`)
    const begin = `<!-- bench:${bench.name} -->`
    const end = `<!-- /bench:${bench.name} -->`
    const text = readFileSync(doc, "utf8")
    const from = text.indexOf(begin)
    const to = text.indexOf(end)
    if (from === -1 || to < from) throw new Error(`docs/performance.md has no ${begin} … ${end} section`)
    const settings = Object.entries(process.env).filter(([k]) => k.startsWith("BENCH_") && k !== "BENCH_MARKDOWN").map(([k, v]) =>
      `${k}=${v} `
    )
    const stamp = `${new Date().toISOString().slice(0, 10)}, ${machine}, Bun ${Bun.version} (\`${settings.join("")}npm run bench:all\`):`
    const body = `${begin}\n${stamp}\n\n${readFileSync(table, "utf8").trimEnd()}\n${end}`
    writeFileSync(doc, text.slice(0, from) + body + text.slice(to + end.length))
    console.log(`\nwrote bench:${bench.name}'s table into docs/performance.md`)
  }
} finally {
  rmSync(work, { recursive: true, force: true })
}

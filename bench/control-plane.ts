/**
 * npm run bench:control-plane: how long the local control plane takes to start, without and with
 * kube-controller-manager (start to "API server ready", and then to "controllers running": the
 * namespace default's ServiceAccount exists), BENCH_RUNS times each (default 3), alternating, so that
 * both see the same load. Builds the binaries first if they are missing (build.ts prints that time).
 * Prints figures; asserts nothing. BENCH_MARKDOWN=file also writes the table there (bench:all puts it
 * in docs/performance.md).
 */
import { ensureControllerManager, ensureControlPlaneBinaries } from "../test/support/control-plane/build.ts"
import { startControlPlane } from "../test/support/control-plane/start.ts"
import { markdownTable, writeMarkdown } from "./support/markdown.ts"

const runs = Number(process.env.BENCH_RUNS ?? 3)

await ensureControlPlaneBinaries()
await ensureControllerManager()

const times: Record<"without" | "with", Array<number>> = { without: [], with: [] }
for (let i = 0; i < runs; i++) {
  for (const which of ["without", "with"] as const) {
    const t0 = performance.now()
    const plane = await startControlPlane({ controllerManager: which === "with" })
    times[which].push(performance.now() - t0)
    await plane.stop()
  }
}

const median = (xs: Array<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN
const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`
console.log(`\n## local control plane start (${runs} runs each)\n`)
console.log("| kube-controller-manager | median | min | max |")
console.log("|---|---|---|---|")
const rows = (["without", "with"] as const).map((which) => [
  which,
  s(median(times[which])),
  s(Math.min(...times[which])),
  s(Math.max(...times[which]))
])
for (const row of rows) console.log(`| ${row.join(" | ")} |`)
writeMarkdown([
  `Start to ready, ${runs} run${
    runs === 1 ? "" : "s"
  } each, alternating (with kube-controller-manager: until its controllers run, \`default\`'s ServiceAccount made):`,
  markdownTable(["kube-controller-manager", "median", "min", "max"], rows)
])

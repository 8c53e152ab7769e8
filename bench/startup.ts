/**
 * npm run bench:startup: how fast halkyon starts, and how big it is.
 *
 * - `halkyon version`, start to exit: the compiled binary (dist/halkyon)
 *   and `bun src/main.ts`, BENCH_RUNS times each (default 30) after 3 warm-ups;
 * - `halkyon run` to ready (/readyz answers 200 on --health-addr) against the
 *   local control plane, with an empty plugins folder and with the postgres
 *   plugin (executable form), BENCH_READY_RUNS times each (default 5);
 * - sizes: the binary, the release archives, the images (compressed layer and
 *   unpacked), building whatever is missing or stale.
 *
 * Targets (issue #5): `halkyon version` in 60 ms or less; the image at most
 * 60 MB compressed. Prints figures; asserts nothing.
 */
import { copyFileSync, existsSync, mkdtempSync, rmSync, statSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { capabilityCrd, capabilityInfoCrd } from "../src/api/Crds.ts"
import { buildPlugin } from "../scripts/build-plugins.ts"
import { buildOperator, ensureRelease, releaseFiles } from "../scripts/build.ts"
import { type ControlPlane, startControlPlane } from "../test/support/control-plane/start.ts"
import { ensureImages, imageArches, imageSizes } from "../scripts/image.ts"

const root = resolve(import.meta.dir, "..")
const runs = Number(process.env.BENCH_RUNS ?? 30)
const readyRuns = Number(process.env.BENCH_READY_RUNS ?? 5)

const hosts = [
  { name: "compiled binary", command: [join(root, "dist/halkyon")] },
  { name: "bun src/main.ts", command: [process.execPath, join(root, "src/main.ts")] }
] as const

const stats = (samples: ReadonlyArray<number>) => {
  const sorted = [...samples].sort((a, b) => a - b)
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN
  return { median: at(0.5), p90: at(0.9), min: sorted[0] ?? NaN, mean: sorted.reduce((s, x) => s + x, 0) / sorted.length }
}
const ms = (n: number) => `${n.toFixed(1)} ms`
const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`
const row = (cells: ReadonlyArray<string>) => `| ${cells.join(" | ")} |`

const freePort = () =>
  new Promise<number>((resolvePort, reject) => {
    const server = createServer()
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      server.close(() => (typeof address === "object" && address !== null ? resolvePort(address.port) : reject(new Error("no port"))))
    })
  })

/** Start to exit of `halkyon version`, in ms. */
const versionTime = (command: ReadonlyArray<string>) => {
  const started = performance.now()
  const result = Bun.spawnSync([...command, "version"], { stdout: "pipe", stderr: "pipe" })
  const elapsed = performance.now() - started
  if (result.exitCode !== 0) throw new Error(`${command.join(" ")} version failed: ${result.stderr.toString()}`)
  return elapsed
}

/** Start of `halkyon run` to the first 200 from /readyz, in ms; then SIGTERM. */
const readyTime = async (command: ReadonlyArray<string>, plane: ControlPlane, pluginsDir: string) => {
  const port = await freePort()
  const started = performance.now()
  const proc = Bun.spawn(
    [
      ...command,
      "run",
      "--kubeconfig",
      plane.kubeconfigPath,
      "--plugins-dir",
      pluginsDir,
      "--health-addr",
      `127.0.0.1:${port}`,
      "--metrics-addr",
      "0"
    ],
    { stdout: "ignore", stderr: "ignore" }
  )
  try {
    for (;;) {
      const status = await fetch(`http://127.0.0.1:${port}/readyz`).then((r) => r.status, () => 0)
      if (status === 200) return performance.now() - started
      if (proc.exitCode !== null) throw new Error(`${command.join(" ")} run exited with ${proc.exitCode} before it was ready`)
      if (performance.now() - started > 60_000) throw new Error(`${command.join(" ")} run was not ready within 60 s`)
      await Bun.sleep(2)
    }
  } finally {
    proc.kill("SIGTERM")
    await proc.exited
  }
}

console.log(`halkyon start-up benchmark: Bun ${Bun.version}, ${navigator.hardwareConcurrency} cores\n`)
buildOperator()
if (!existsSync(join(root, "dist/plugins/postgres"))) {
  buildPlugin("postgres", join(root, "plugins/postgres/main.ts"), join(root, "dist/plugins"))
}

console.log(`## halkyon version (${runs} runs each, after 3 warm-ups; target: 60 ms or less)\n`)
console.log(row(["host", "median", "p90", "min", "mean"]))
console.log(row(["---", "---", "---", "---", "---"]))
for (const host of hosts) {
  for (let i = 0; i < 3; i++) versionTime(host.command)
  const s = stats(Array.from({ length: runs }, () => versionTime(host.command)))
  console.log(row([host.name, ms(s.median), ms(s.p90), ms(s.min), ms(s.mean)]))
}

console.log(`\n## halkyon run to ready (/readyz 200), local control plane (${readyRuns} runs each)\n`)
// No controllers: nothing here needs them, and their CPU would blur the figures.
const plane = await startControlPlane({ controllerManager: false })
const empty = mkdtempSync(join(tmpdir(), "halkyon-bench-empty-"))
const withPostgres = mkdtempSync(join(tmpdir(), "halkyon-bench-postgres-"))
copyFileSync(join(root, "dist/plugins/postgres"), join(withPostgres, "postgres"))
try {
  const api = (path: string, body: unknown) =>
    fetch(`${plane.server}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      tls: { ca: plane.caCertPem, cert: plane.adminCertPem, key: plane.adminKeyPem }
    })
  for (const crd of [capabilityCrd(), capabilityInfoCrd()]) await api("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
  console.log(row(["host", "plugins", "median", "min", "max"]))
  console.log(row(["---", "---", "---", "---", "---"]))
  for (const host of hosts) {
    // One unmeasured run: the API server's first answers (CRD storage, discovery) are slower.
    await readyTime(host.command, plane, empty)
    for (const [label, dir] of [["none", empty], ["postgres (executable)", withPostgres]] as const) {
      const samples: Array<number> = []
      for (let i = 0; i < readyRuns; i++) samples.push(await readyTime(host.command, plane, dir))
      const s = stats(samples)
      console.log(row([host.name, label, ms(s.median), ms(s.min), ms(Math.max(...samples))]))
    }
  }
} finally {
  await plane.stop()
  rmSync(empty, { recursive: true, force: true })
  rmSync(withPostgres, { recursive: true, force: true })
}

console.log("\n## Sizes\n")
await ensureRelease()
console.log(row(["what", "size"]))
console.log(row(["---", "---"]))
console.log(row(["dist/halkyon (linux/amd64 binary)", mb(statSync(join(root, "dist/halkyon")).size)]))
for (const file of releaseFiles().filter((f) => !f.endsWith("checksums.txt"))) {
  console.log(row([file.slice(root.length + 1), mb(statSync(file).size)]))
}
await ensureImages()
for (const arch of imageArches) {
  const s = imageSizes(arch)
  console.log(row([`image linux/${arch}: compressed layer (target: 60 MB or less)`, mb(s.compressedLayers)]))
  console.log(row([`image linux/${arch}: unpacked`, mb(s.unpacked)]))
}

/**
 * npm run bench:startup: how fast halkyon starts, and how big it is.
 *
 * - every command's start, side by side in one run, alternating: a compiled
 *   hello-world (built with the same Bun and flags: the floor), `halkyon
 *   version`, `--help`, `plugins list` (the postgres plugin), `plugins
 *   install` (a 1 MB release from loopback), `manifests` and `plugins render`, each
 *   with its start-up (the same command with `--help`: the binary, the
 *   command line and the command's flags loaded and parsed, nothing run) and
 *   peak RSS; BENCH_RUNS times each (default 30) after 3 warm-ups. Target
 *   (issue #20): `halkyon version` at most 2x the hello-world;
 * - `halkyon version`, start to exit: the compiled binary (dist/halkyon)
 *   and `bun src/main.ts`, BENCH_RUNS times each (default 30) after 3 warm-ups;
 * - `halkyon run` to ready (/readyz answers 200 on --health-addr) against the
 *   local control plane, with an empty plugins folder and with the postgres
 *   plugin (executable form), BENCH_READY_RUNS times each (default 5);
 * - sizes: the binary, the release archives, the images (compressed layer and
 *   unpacked), building whatever is missing or stale.
 *
 * Targets (issue #5): `halkyon version` in 60 ms or less; the image at most
 * 60 MB compressed. Prints figures; asserts nothing. BENCH_COMMANDS_ONLY=1
 * stops after the first table; BENCH_MARKDOWN=file also writes it there
 * (bench:all puts it in docs/performance.md); BENCH_BINARY=path times another
 * build in the first table, BENCH_BASELINE=path another build beside this one.
 */
import { randomBytes } from "node:crypto"
import { copyFileSync, existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { capabilityCrd, capabilityInfoCrd } from "../src/api/Crds.ts"
import { buildPlugin } from "../scripts/build-plugins.ts"
import { buildOperator, ensureRelease, releaseFiles } from "../scripts/build.ts"
import { type ControlPlane, startControlPlane } from "../test/support/control-plane/start.ts"
import { ensureImages, imageArches, imageSizes } from "../scripts/image.ts"
import { checksums, makeTestCa, removeCa, startReleaseServers, tarGz } from "../test/support/releases.ts"
import { goArch, goOs } from "../src/Version.ts"
import { markdownTable, writeMarkdown } from "./support/markdown.ts"

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
  await buildPlugin("postgres", join(root, "plugins/postgres/main.ts"), join(root, "dist/plugins"))
}

/** Wall ms and peak RSS (MB) of one run, under GNU time; async, as a release server in this process must answer. */
const timed = async (command: ReadonlyArray<string>, env: Record<string, string> = {}) => {
  const started = performance.now()
  const proc = Bun.spawn(["/usr/bin/time", "-f", "%M", ...command], { env: { ...process.env, ...env }, stdout: "ignore", stderr: "pipe" })
  const [stderr, code] = await Promise.all([new Response(proc.stderr).text(), proc.exited])
  const elapsed = performance.now() - started
  if (code !== 0) throw new Error(`${command.join(" ")} exited with ${code}:\n${stderr}`)
  return { ms: elapsed, rssMb: Number(stderr.trim().split("\n").pop()) / 1024 }
}

/** Every command's start beside a compiled hello-world, alternating so that the machine's load falls on all alike. */
const commandStarts = async () => {
  const work = mkdtempSync(join(tmpdir(), "halkyon-bench-commands-"))
  const hello = join(root, "dist/bench/hello")
  writeFileSync(join(work, "hello.ts"), `console.log("hello")\n`)
  const built = Bun.spawnSync([
    process.execPath,
    "build",
    "--compile",
    "--bytecode",
    "--format=esm",
    "--minify",
    join(work, "hello.ts"),
    "--outfile",
    hello
  ], {
    stdout: "pipe",
    stderr: "inherit"
  })
  if (built.exitCode !== 0) throw new Error("building the hello-world failed")
  const ca = makeTestCa()
  const servers = await startReleaseServers(ca)
  const asset = `halkyon_plugin_${goOs}_${goArch}.tar.gz`
  const archive = tarGz([{ path: "small-plugin", body: randomBytes(1_000_000), mode: 0o755 }])
  servers.publish("bench/small@v1", { [asset]: archive, "checksums.txt": new TextEncoder().encode(checksums({ [asset]: archive })) })
  const plugins = mkdtempSync(join(tmpdir(), "halkyon-bench-list-"))
  copyFileSync(join(root, "dist/plugins/postgres"), join(plugins, "postgres"))
  const env = { NODE_EXTRA_CA_CERTS: ca.caFile, GITHUB_TOKEN: "", HALKYON_PLUGINS: "" }
  // BENCH_BINARY: another build to time instead; BENCH_BASELINE: another build (e.g. one of main's) timed beside
  // this one, alternating, its rows marked "(baseline)".
  const current = process.env.BENCH_BINARY ?? join(root, "dist/halkyon")
  const baseline = process.env.BENCH_BASELINE
  let installs = 0
  type Case = { name: string; run: () => ReadonlyArray<string>; start?: ReadonlyArray<string> }
  const halkyonCases = (halkyon: string, mark: string): ReadonlyArray<Case> => [
    { name: `halkyon version${mark}`, run: () => [halkyon, "version"] },
    { name: `halkyon --help${mark}`, run: () => [halkyon, "--help"] },
    {
      name: `halkyon plugins list (postgres)${mark}`,
      run: () => [halkyon, "plugins", "list", "--plugins-dir", plugins],
      start: [halkyon, "plugins", "list", "--help"]
    },
    {
      name: `halkyon plugins install (1 MB, loopback)${mark}`,
      run: () => [
        halkyon,
        "plugins",
        "install",
        "bench/small@v1",
        "--plugins-dir",
        join(work, `installed-${installs++}`),
        "--release-base-url",
        servers.base
      ],
      start: [halkyon, "plugins", "install", "--help"]
    },
    {
      // Reads no kubeconfig: the objects built and printed, client-node not loaded.
      name: `halkyon manifests${mark}`,
      run: () => [halkyon, "manifests"],
      start: [halkyon, "manifests", "--help"]
    },
    {
      name: `halkyon plugins render (postgres)${mark}`,
      run: () => [halkyon, "plugins", "render", join(root, "dist/plugins/postgres"), "-f", join(root, "samples/postgres.yaml")],
      start: [halkyon, "plugins", "render", "--help"]
    }
  ]
  const cases: ReadonlyArray<Case> = [
    { name: "hello-world (same Bun, compiled)", run: () => [hello] },
    ...halkyonCases(current, ""),
    ...(baseline === undefined ? [] : halkyonCases(baseline, " (baseline)"))
  ]
  const samples = cases.map(() => ({ run: [] as Array<number>, start: [] as Array<number>, rss: [] as Array<number> }))
  try {
    for (let i = 0; i < runs + 3; i++) {
      for (const [index, c] of cases.entries()) {
        const whole = await timed(c.run(), env)
        const start = c.start === undefined ? undefined : await timed(c.start, env)
        if (i < 3) continue
        samples[index]?.run.push(whole.ms)
        samples[index]?.rss.push(whole.rssMb)
        if (start !== undefined) samples[index]?.start.push(start.ms)
      }
    }
  } finally {
    await servers.close()
    removeCa(ca)
    rmSync(work, { recursive: true, force: true })
    rmSync(plugins, { recursive: true, force: true })
  }
  const floor = stats(samples[0]?.run ?? []).median
  const header = ["command", "median", "min", "x hello-world", "start-up (its --help)", "start-up share", "peak RSS"]
  const rows: Array<ReadonlyArray<string>> = []
  for (const [index, c] of cases.entries()) {
    const s = samples[index]
    if (s === undefined) continue
    const whole = stats(s.run)
    const start = s.start.length > 0 ? stats(s.start).median : whole.median
    rows.push([
      c.name,
      ms(whole.median),
      ms(whole.min),
      `${(whole.median / floor).toFixed(1)}x`,
      ms(start),
      `${Math.min(100, (100 * start) / whole.median).toFixed(0)}%`,
      `${Math.max(...s.rss).toFixed(0)} MB`
    ])
  }
  return markdownTable(header, rows)
}

console.log(`## Every command's start (${runs} runs each, alternating, after 3 warm-ups; target: version at most 2x hello-world)\n`)
const commandsTable = await commandStarts()
console.log(commandsTable)
writeMarkdown([commandsTable])
if (process.env.BENCH_COMMANDS_ONLY === "1") process.exit(0)

console.log(`\n## halkyon version (${runs} runs each, after 3 warm-ups; target: 60 ms or less)\n`)
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

/**
 * npm run bench:plugins: figures for the plugin runtime, printed, never
 * asserted. Start-to-handshake p50/p95 for each plugin form, with and without
 * AutoMTLS; unary RPC round trip p50/p99; each plugin's memory once ready
 * beside Bun's floor (a compiled program that only listens) and the Go redis
 * plugin, with the round trips it answered meanwhile; the host's RSS with 10
 * plugins.
 * Run `npm run build && npm run build:plugins` first (it does so if needed).
 * BENCH_STARTS (default 40), BENCH_CALLS (3000), BENCH_MEMORY_CALLS (1000);
 * BENCH_ONLY=memory prints only the memory table. BENCH_MARKDOWN=file also
 * writes the tables there (bench:all puts them in docs/performance.md).
 */
import { existsSync, mkdtempSync, copyFileSync, chmodSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { compilePlugin } from "../src/release/PluginBuild.ts"
import { markdownTable, writeMarkdown } from "./support/markdown.ts"
import {
  hostedMemory,
  launchOptions,
  memoryOf,
  percentile,
  pluginFile,
  readyMemory,
  roundTrips,
  startTimes
} from "./support/plugin-timing.ts"

const root = resolve(import.meta.dir, "..")
const plugins = join(root, "dist/plugins")
const Starts = Number(process.env.BENCH_STARTS ?? 40)
const Calls = Number(process.env.BENCH_CALLS ?? 3000)
const MemoryCalls = Number(process.env.BENCH_MEMORY_CALLS ?? 1000)

const ensureBuilt = () => {
  for (const [file, script] of [[join(plugins, "postgres"), "build-plugins.ts"], [join(root, "dist/halkyon"), "build.ts"]] as const) {
    if (!existsSync(file) || (file.endsWith("postgres") && !existsSync(join(plugins, "redis")))) {
      Bun.spawnSync([process.execPath, join(root, "scripts", script)], { stdout: "inherit", stderr: "inherit" })
    }
  }
}

const rssKb = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? NaN)

const hostWithTenPlugins = async () => {
  const dir = mkdtempSync(join(tmpdir(), "halkyon-bench-"))
  for (let i = 0; i < 5; i++) {
    copyFileSync(join(plugins, "postgres"), join(dir, `postgres-${i}`))
    chmodSync(join(dir, `postgres-${i}`), 0o755)
    copyFileSync(join(plugins, "postgres.js"), join(dir, `postgres-${i}.js`))
  }
  const host = Bun.spawn([join(root, "dist/halkyon"), "plugins", "watch", "--plugins-dir", dir], { stdout: "ignore", stderr: "pipe" })
  const reader = host.stderr.getReader()
  let seen = ""
  const decoder = new TextDecoder()
  // Read on after "watching" too: a plugin's start line may come after it.
  let watching: () => void = () => {}
  const started = new Promise<void>((resolve) => (watching = resolve))
  const reading = (async () => {
    for (;;) {
      const { value, done } = await reader.read()
      if (done) break
      seen += decoder.decode(value, { stream: true })
      if (seen.includes("watching")) watching()
    }
    watching()
  })()
  await started
  await Bun.sleep(1_000)
  const pids = [...seen.matchAll(/pid=(\d+)/g)].map((m) => Number(m[1]))
  const hostRss = rssKb(host.pid)
  const pluginRss = pids.map(rssKb)
  host.kill("SIGTERM")
  await host.exited
  await reading
  rmSync(dir, { recursive: true, force: true })
  return { hostRss, pluginRss, running: pids.length }
}

ensureBuilt()
const fmt = (n: number) => n.toFixed(n < 1 ? 3 : 1)
console.log(
  `halkyon plugin runtime benchmark (${Starts} starts, ${Calls} calls per case; ${process.arch}, ${navigator.hardwareConcurrency} cores)\n`
)
// BENCH_ONLY=memory: only the memory table.
const memoryOnly = process.env.BENCH_ONLY === "memory"
/** The same figures for BENCH_MARKDOWN: the starts' and round trips' rows, the memory table's, the host's. */
const speedRows: Array<ReadonlyArray<string>> = []
const memoryRows: Array<ReadonlyArray<string>> = []
if (!memoryOnly) console.log("start to handshake (ms)           p50      p95")
for (
  const [form, path] of memoryOnly
    ? []
    : [["compiled (--bytecode)", join(plugins, "postgres")], ["bundle (.js)", join(plugins, "postgres.js")]] as const
) {
  for (const mtls of [false, true]) {
    const times = await startTimes(pluginFile(path), mtls, Starts)
    speedRows.push([
      `start to handshake, ${form.startsWith("compiled") ? "compiled" : "bundle"} plugin, AutoMTLS ${mtls ? "on" : "off"}`,
      `${fmt(percentile(times, 50))} ms`,
      `${fmt(percentile(times, 95))} ms (p95)`
    ])
    console.log(
      `  ${`${form}, mTLS ${mtls ? "on " : "off"}`.padEnd(30)} ${fmt(percentile(times, 50)).padStart(6)}   ${
        fmt(percentile(times, 95)).padStart(6)
      }`
    )
  }
}
if (!memoryOnly) console.log("\nunary RPC round trip (ms)         p50      p99")
// As the host starts plugins (JIT off), and with --plugin-jit.
for (const [mtls, jit] of memoryOnly ? [] : [[false, false], [true, false], [false, true], [true, true]] as const) {
  const postgres = { metadata: { name: "db", namespace: "default" }, spec: { category: "database", type: "postgres", version: "17" } }
  const times = await roundTrips(pluginFile(join(plugins, "postgres")), mtls, postgres, Calls, jit)
  speedRows.push([
    `unary RPC round trip (CheckValidity, compiled plugin), AutoMTLS ${mtls ? "on" : "off"}${jit ? ", --plugin-jit" : ""}`,
    `${fmt(percentile(times, 50))} ms`,
    `${fmt(percentile(times, 99))} ms (p99)`
  ])
  console.log(
    `  ${`CheckValidity, mTLS ${mtls ? "on " : "off"}${jit ? ", JIT on" : ""}`.padEnd(30)} ${fmt(percentile(times, 50)).padStart(6)}   ${
      fmt(percentile(times, 99)).padStart(6)
    }`
  )
}
/** Bun's floor: the smallest program that listens on a socket, compiled as plugins are. */
const floorMemory = async (...extra: Array<string>) => {
  const floor = await compilePlugin(join(root, "bench/support/listen-floor.ts"), join(root, "dist/bench/listen-floor"))
  const socket = join(tmpdir(), `halkyon-floor-${process.pid}.sock`)
  const child = Bun.spawn([floor, socket, ...extra], { stdout: "pipe", stderr: "ignore" })
  const reader = child.stdout.getReader()
  await reader.read()
  await Bun.sleep(1_000)
  const memory = memoryOf(child.pid)
  child.kill("SIGTERM")
  await child.exited
  rmSync(socket, { force: true })
  return memory
}

const mb = (kb: number) => (kb / 1024).toFixed(1).padStart(6)
const memoryCells = (m: ReturnType<typeof memoryOf>) => `${mb(m.rss)} ${mb(m.anon)} ${mb(m.file)} ${mb(m.pss)}`
console.log(
  `\nmemory (MB): once ready (described, then 1 s), and after ${MemoryCalls} CheckValidity calls (then 1 s), with the calls' times\n` +
    `${"".padEnd(46)}${"once ready".padEnd(28)}${`after ${MemoryCalls} calls`.padEnd(28)}call (ms)\n` +
    `${"".padEnd(46)}${
      "   RSS   anon   file    PSS   ".repeat(2)
    }  p50    p99   plugin CPU s   RSS before any call (1 s after its handshake)`
)
const mdMb = (kb: number) => (kb / 1024).toFixed(1)
const mdCells = (m: ReturnType<typeof memoryOf>) => [mdMb(m.rss), mdMb(m.anon), mdMb(m.file)]
for (
  const [label, markdownLabel, extra] of [
    ["Bun floor (compiled, only listens)", "Bun floor (compiled, only listens)", []],
    ["Bun floor and a node:http2 server", "Bun floor and a `node:http2` server", ["http2"]]
  ] as const
) {
  const floor = await floorMemory(...extra)
  console.log(`  ${label.padEnd(44)}${memoryCells(floor)}`)
  memoryRows.push([markdownLabel, ...mdCells(floor), mdMb(floor.pss), "", "", "", "", "", "", ""])
}
const postgresCapability = {
  metadata: { name: "db", namespace: "default" },
  spec: { category: "database", type: "postgres", version: "17" }
}
const redisCapability = { metadata: { name: "c", namespace: "default" }, spec: { category: "cache", type: "redis", version: "8.0" } }
// BUN_JSC_useJIT=0 is how the host starts a Bun plugin unless --plugin-jit.
const subjects: ReadonlyArray<readonly [string, ReadonlyArray<string>, Record<string, string>, unknown]> = [
  ["TS postgres, compiled, BUN_JSC_useJIT=0", [join(plugins, "postgres")], { BUN_JSC_useJIT: "0" }, postgresCapability],
  ["TS postgres, compiled, JIT on", [join(plugins, "postgres")], {}, postgresCapability],
  ["TS postgres, compiled, BUN_JSC_useDFGJIT=0", [join(plugins, "postgres")], { BUN_JSC_useDFGJIT: "0" }, postgresCapability],
  [
    "TS postgres, bundle (run by dist/halkyon), BUN_JSC_useJIT=0",
    [join(root, "dist/halkyon"), join(plugins, "postgres.js")],
    { BUN_BE_BUN: "1", BUN_JSC_useJIT: "0" },
    postgresCapability
  ],
  [
    "TS postgres, bundle (run by dist/halkyon), JIT on",
    [join(root, "dist/halkyon"), join(plugins, "postgres.js")],
    { BUN_BE_BUN: "1" },
    postgresCapability
  ],
  ["Go redis (go-plugin)", [join(plugins, "redis")], {}, redisCapability]
]
/** One row of the memory table, printed and kept for the markdown; `listening` when measured before any call. */
const memoryRow = (label: string, measured: Awaited<ReturnType<typeof hostedMemory>>, listening?: ReturnType<typeof memoryOf>) => {
  const { ready, afterCalls, times, cpuSeconds } = measured
  console.log(
    `  ${label.padEnd(44)}${memoryCells(ready)}   ${memoryCells(afterCalls)}   ${fmt(percentile(times, 50)).padStart(6)} ${
      fmt(percentile(times, 99)).padStart(6)
    }   ${cpuSeconds.toFixed(2).padStart(6)}${listening === undefined ? "" : `   ${mb(listening.rss)}`}`
  )
  memoryRows.push([
    label.replace(/BUN_JSC_\w+=0/, (option) => `\`${option}\``).replace("dist/halkyon", "`dist/halkyon`"),
    ...mdCells(ready),
    mdMb(ready.pss),
    ...mdCells(afterCalls),
    fmt(percentile(times, 50)),
    fmt(percentile(times, 99)),
    `${cpuSeconds.toFixed(2)} s`,
    listening === undefined ? "" : mdMb(listening.rss)
  ])
}
for (const [label, command, env, capability] of subjects) {
  const { listening, ...measured } = await readyMemory(command, env, capability, MemoryCalls)
  memoryRow(label, measured, listening)
}

// As a host runs them by default: launched and described by PluginProcess, AutoMTLS on, JIT off.
for (const [label, file] of [["TS postgres, compiled", "postgres"], ["TS postgres, bundle", "postgres.js"]] as const) {
  memoryRow(
    `${label}, as the host runs it (AutoMTLS, JIT off)`,
    await hostedMemory(pluginFile(join(plugins, file)), launchOptions(true), postgresCapability, MemoryCalls)
  )
}

const rss = memoryOnly ? undefined : await hostWithTenPlugins()
if (rss !== undefined) {
  console.log(`\nhost (dist/halkyon plugins watch) with ${rss.running} plugins running (5 compiled, 5 bundles):`)
  console.log(
    `  host RSS ${(rss.hostRss / 1024).toFixed(1)} MB; each plugin ${(Math.min(...rss.pluginRss) / 1024).toFixed(1)}–${
      (Math.max(...rss.pluginRss) / 1024).toFixed(1)
    } MB`
  )
}

const memoryHeader = [
  "process",
  "once ready: RSS",
  "anon",
  "file",
  "PSS",
  `after ${MemoryCalls} calls: RSS`,
  "anon",
  "file",
  "call p50 (ms)",
  "call p99 (ms)",
  "plugin CPU",
  "before any call: RSS"
]
writeMarkdown([
  ...(memoryOnly ? [] : [
    `**Start to handshake** (${Starts} starts each) **and unary round trip** (${Calls} calls each, on one compiled postgres plugin):`,
    markdownTable(["measure", "p50", "p95 / p99"], speedRows)
  ]),
  `**A plugin's memory**, MB: once ready (described, then 1 s), after ${MemoryCalls} \`CheckValidity\` calls (then 1 s) with ` +
  "the calls' times and the plugin's CPU seconds for them, and 1 s after its handshake, before any call:",
  markdownTable(memoryHeader, memoryRows),
  ...(rss === undefined ? [] : [
    `**The host with ${rss.running} plugins running** (5 compiled, 5 bundles; \`dist/halkyon plugins watch\`, 1 s after it watches):`,
    markdownTable(
      ["process", "RSS"],
      [
        ["host", `${(rss.hostRss / 1024).toFixed(1)} MB`],
        [
          "each plugin",
          `${(Math.min(...rss.pluginRss) / 1024).toFixed(1)}–${(Math.max(...rss.pluginRss) / 1024).toFixed(1)} MB`
        ]
      ]
    )
  ])
])

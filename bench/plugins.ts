/**
 * npm run bench:plugins: figures for the plugin runtime, printed, never
 * asserted. Start-to-handshake p50/p95 for each plugin form, with and without
 * AutoMTLS; unary RPC round trip p50/p99; the host's RSS with 10 plugins.
 * Run `npm run build && npm run build:plugins` first (it does so if needed).
 */
import { existsSync, mkdtempSync, copyFileSync, chmodSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { percentile, pluginFile, roundTrips, startTimes } from "./support/plugin-timing.ts"

const root = resolve(import.meta.dir, "..")
const plugins = join(root, "dist/plugins")
const Starts = Number(process.env.BENCH_STARTS ?? 40)
const Calls = Number(process.env.BENCH_CALLS ?? 3000)

const ensureBuilt = () => {
  for (const [file, script] of [[join(plugins, "postgres"), "build-plugins.ts"], [join(root, "dist/halkyon"), "build.ts"]] as const) {
    if (!existsSync(file)) Bun.spawnSync([process.execPath, join(root, "scripts", script)], { stdout: "inherit", stderr: "inherit" })
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
  while (!seen.includes("watching")) {
    const { value, done } = await reader.read()
    if (done) break
    seen += new TextDecoder().decode(value)
  }
  await Bun.sleep(1_000)
  const pids = [...seen.matchAll(/pid=(\d+)/g)].map((m) => Number(m[1]))
  const hostRss = rssKb(host.pid)
  const pluginRss = pids.map(rssKb)
  host.kill("SIGTERM")
  await host.exited
  rmSync(dir, { recursive: true, force: true })
  return { hostRss, pluginRss, running: pids.length }
}

ensureBuilt()
const fmt = (n: number) => n.toFixed(n < 1 ? 3 : 1)
console.log(
  `halkyon plugin runtime benchmark (${Starts} starts, ${Calls} calls per case; ${process.arch}, ${navigator.hardwareConcurrency} cores)\n`
)
console.log("start to handshake (ms)           p50      p95")
for (
  const [form, path] of [["compiled (--bytecode)", join(plugins, "postgres")], ["bundle (.js)", join(plugins, "postgres.js")]] as const
) {
  for (const mtls of [false, true]) {
    const times = await startTimes(pluginFile(path), mtls, Starts)
    console.log(
      `  ${`${form}, mTLS ${mtls ? "on " : "off"}`.padEnd(30)} ${fmt(percentile(times, 50)).padStart(6)}   ${
        fmt(percentile(times, 95)).padStart(6)
      }`
    )
  }
}
console.log("\nunary RPC round trip (ms)         p50      p99")
for (const mtls of [false, true]) {
  const postgres = { metadata: { name: "db", namespace: "default" }, spec: { category: "database", type: "postgres", version: "17" } }
  const times = await roundTrips(pluginFile(join(plugins, "postgres")), mtls, postgres, Calls)
  console.log(
    `  ${`CheckValidity, mTLS ${mtls ? "on " : "off"}`.padEnd(30)} ${fmt(percentile(times, 50)).padStart(6)}   ${
      fmt(percentile(times, 99)).padStart(6)
    }`
  )
}
const rss = await hostWithTenPlugins()
console.log(`\nhost (dist/halkyon plugins watch) with ${rss.running} plugins running (5 compiled, 5 bundles):`)
console.log(
  `  host RSS ${(rss.hostRss / 1024).toFixed(1)} MB; each plugin ${(Math.min(...rss.pluginRss) / 1024).toFixed(1)}–${
    (Math.max(...rss.pluginRss) / 1024).toFixed(1)
  } MB`
)

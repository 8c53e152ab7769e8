/**
 * npm run bench:interop: halkyon's plugins against go-plugin's, both ways, in
 * one run; figures printed, never asserted.
 *
 * - Under our host (PluginProcess.launch, as the operator starts plugins): the
 *   Go redis plugin (go-plugin v1.8.0) and the TypeScript postgres plugin as a
 *   compiled executable and as a bundle.
 * - Under a Go go-plugin host (test/conformance -mode bench, go-plugin's own
 *   client): the same three plugins.
 * For each: start to handshake (spawn to the handshake line; for go-plugin's
 * host, read from its log's timestamps) p50/p95, and
 * the CheckValidity round trip p50/p99, AutoMTLS off and on. Each TypeScript
 * figure is also given as a ratio to the Go plugin's under the same host
 * (targets: start-up within 2x, round trips within 1.5x).
 *
 * Builds what it needs first (npm run build:plugins, the conformance host).
 * BENCH_STARTS (default 30) and BENCH_CALLS (2000) per case; BENCH_MARKDOWN=file
 * also writes both tables there (bench:all puts them in docs/performance.md).
 */
import { existsSync } from "node:fs"
import { join, resolve } from "node:path"
import { buildGo } from "../scripts/go-plugin-build.ts"
import { markdownTable, writeMarkdown } from "./support/markdown.ts"
import { percentile, pluginFile, roundTrips, startTimes } from "./support/plugin-timing.ts"

const root = resolve(import.meta.dir, "..")
const plugins = join(root, "dist/plugins")
const conformanceHost = join(root, "dist/conformance/conformance")
const Starts = Number(process.env.BENCH_STARTS ?? 30)
const Calls = Number(process.env.BENCH_CALLS ?? 2000)

const ensureBuilt = () => {
  if (!existsSync(join(plugins, "redis")) || !existsSync(join(plugins, "postgres.js"))) {
    Bun.spawnSync([process.execPath, join(root, "scripts/build-plugins.ts")], { stdout: "inherit", stderr: "inherit" })
  }
  if (!existsSync(conformanceHost)) buildGo(join(root, "test/conformance"), conformanceHost)
}

const capabilities = {
  redis: { metadata: { name: "c", namespace: "default" }, spec: { category: "cache", type: "redis", version: "8.0" } },
  postgres: { metadata: { name: "db", namespace: "default" }, spec: { category: "database", type: "postgres", version: "17" } }
}

interface Subject {
  readonly label: string
  readonly file: string
  readonly capability: unknown
  readonly go: boolean
}
const subjects: ReadonlyArray<Subject> = [
  { label: "Go redis (go-plugin)", file: join(plugins, "redis"), capability: capabilities.redis, go: true },
  { label: "TS postgres, compiled", file: join(plugins, "postgres"), capability: capabilities.postgres, go: false },
  { label: "TS postgres, bundle (.js)", file: join(plugins, "postgres.js"), capability: capabilities.postgres, go: false }
]

interface Figures {
  readonly start: ReadonlyArray<number>
  readonly call: ReadonlyArray<number>
}

/** Under our host: starts, then round trips on one plugin. */
const ourHost = async (subject: Subject, autoMtls: boolean): Promise<Figures> => {
  const file = pluginFile(subject.file)
  return { start: await startTimes(file, autoMtls, Starts), call: await roundTrips(file, autoMtls, subject.capability, Calls) }
}

/** Under go-plugin's own host: the Go conformance program in bench mode. */
const goHost = async (subject: Subject, autoMtls: boolean): Promise<Figures> => {
  const proc = Bun.spawn(
    [
      conformanceHost,
      "-mode",
      "bench",
      "-plugin",
      subject.file,
      "-bun",
      process.execPath,
      `-mtls=${autoMtls}`,
      "-starts",
      String(Starts),
      "-calls",
      String(Calls),
      "-capability",
      JSON.stringify(subject.capability)
    ],
    { stdout: "pipe", stderr: "inherit" }
  )
  const report = JSON.parse(await new Response(proc.stdout).text()) as {
    ok: boolean
    error?: string
    bench?: { startMs: Array<number>; callMs: Array<number> }
  }
  await proc.exited
  if (!report.ok || report.bench === undefined) throw new Error(`the go-plugin host failed on ${subject.label}: ${report.error}`)
  return { start: report.bench.startMs, call: report.bench.callMs }
}

ensureBuilt()
const fmt = (n: number) => n.toFixed(n < 1 ? 3 : 1)
console.log(
  `halkyon interop benchmark (${Starts} starts and ${Calls} CheckValidity calls per case; ${process.arch}, ${navigator.hardwareConcurrency} cores)\n`
)

type Host = "our host" | "go-plugin host"
const results = new Map<string, Figures>()
const key = (host: Host, subject: Subject, mtls: boolean) => `${host}|${subject.label}|${mtls}`
for (const host of ["our host", "go-plugin host"] as const) {
  for (const subject of subjects) {
    for (const mtls of [false, true]) {
      results.set(key(host, subject, mtls), host === "our host" ? await ourHost(subject, mtls) : await goHost(subject, mtls))
    }
  }
}

const goSubject = subjects[0] as Subject
const ratio = (value: number, go: number) => `${(value / go).toFixed(2)}x`
/** Prints one table and returns it as markdown, under a line saying what it is. */
const table = (title: string, pick: (f: Figures) => ReadonlyArray<number>, tail: number, target: number) => {
  console.log(`${title}: p50 (p${tail}) in ms, TypeScript as a ratio of Go's p50 under the same host (target <= ${target}x)`)
  console.log(`  ${"host".padEnd(16)}${"plugin".padEnd(28)}${"AutoMTLS off".padEnd(26)}AutoMTLS on`)
  const rows: Array<ReadonlyArray<string>> = []
  for (const host of ["our host", "go-plugin host"] as const) {
    for (const subject of subjects) {
      const figures = [false, true].map((mtls) => {
        const values = pick(results.get(key(host, subject, mtls)) as Figures)
        const p50 = percentile(values, 50)
        const goP50 = percentile(pick(results.get(key(host, goSubject, mtls)) as Figures), 50)
        const cell = `${fmt(p50)} (${fmt(percentile(values, tail))})`
        return subject.go ? { cell } : { cell, ratio: `${ratio(p50, goP50)}${p50 / goP50 <= target ? "" : " !"}` }
      })
      const cells = figures.map((f) => (f.ratio === undefined ? f.cell : `${f.cell}  ${f.ratio}`))
      console.log(`  ${host.padEnd(16)}${subject.label.padEnd(28)}${(cells[0] ?? "").padEnd(26)}${cells[1] ?? ""}`)
      rows.push([
        host === "our host" ? "ours" : "go-plugin",
        subject.label,
        ...figures.map((f) => (f.ratio === undefined ? f.cell : `${f.cell}, ${f.ratio}`))
      ])
    }
  }
  console.log("")
  return [
    `**${title.charAt(0).toUpperCase()}${
      title.slice(1)
    }**: p50 (p${tail}) in ms; each TypeScript figure's p50 also as a ratio of the Go plugin's under the same host ` +
    `(target ${target}x at most; "!" marks one over it):`,
    markdownTable(["host", "plugin", "AutoMTLS off", "AutoMTLS on"], rows)
  ]
}
const markdown = [
  ...table("start to handshake", (f) => f.start, 95, 2),
  ...table("RPC round trip (CheckValidity)", (f) => f.call, 99, 1.5)
]
writeMarkdown(markdown)
console.log("\"!\" marks a ratio over its target. Both hosts time spawn to handshake line (go-plugin's from its own log's")
console.log("microsecond timestamps, \"starting plugin\" to \"using plugin\"), so neither counts the host's own certificate.")

/**
 * `halkyon plugins list`: starts every plugin of the plugins folder once,
 * prints what each provides and how it started, and stops them. Exits
 * non-zero when any plugin failed, with the reason for each. With
 * `--operator`, each plugin's violation count comes from a running
 * operator's /metrics (this command reconciles nothing, so it has none).
 */
import { Console, Duration, Effect, Layer, Option } from "effect"
import { Command, Flag } from "effect/cli"
import type { PluginStatus } from "../plugin-host/PluginHost.ts"
import { type HostFlagValues, hostFlags, hostSettings } from "./HostFlags.ts"
import { withLogging } from "./Logging.ts"
import { installCommand } from "./InstallCommand.ts"
import { lockCommand } from "./LockCommand.ts"
import { buildCommand } from "./BuildCommand.ts"
import { newCommand } from "./NewCommand.ts"
import { renderCommand } from "./RenderCommand.ts"

/** One row of `plugins list --output json`. */
export interface PluginListing {
  readonly name: string
  readonly form: string
  readonly category: string
  readonly types: ReadonlyArray<{ readonly type: string; readonly versions: ReadonlyArray<string> }>
  readonly protocolVersion: number | null
  readonly startMs: number | null
  readonly state: string
  readonly error?: string
  /** Answers the operator refused (PluginViolation), from its /metrics; only with --operator. */
  readonly violations?: number
}

const toListing = (s: PluginStatus): PluginListing => ({
  name: s.name,
  form: s.form,
  category: s.launched?.description.category ?? "",
  types: s.launched?.description.types.map((t) => ({ type: t.type, versions: [...t.versions] })) ?? [],
  protocolVersion: s.protocolVersion ?? null,
  startMs: s.startMs ?? null,
  state: s.state,
  ...(s.error === undefined ? {} : { error: s.error })
})

/** Renders rows as a kubectl-style table: upper-case headers, columns padded. */
export const renderTable = (rows: ReadonlyArray<PluginListing>, withViolations = false): string => {
  const header = ["NAME", "FORM", "CATEGORY", "TYPES", "PROTOCOL", "START(MS)", "STATE", ...(withViolations ? ["VIOLATIONS"] : [])]
  const cells = rows.map((r) => [
    r.name,
    r.form,
    r.category || "-",
    r.types.map((t) => `${t.type}@${t.versions.join(",")}`).join(" ") || "-",
    r.protocolVersion === null ? "-" : String(r.protocolVersion),
    r.startMs === null ? "-" : String(Math.round(r.startMs)),
    r.state,
    ...(withViolations ? [String(r.violations ?? 0)] : [])
  ])
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => (c[i] ?? "").length)))
  return [header, ...cells].map((row) => row.map((c, i) => c.padEnd(widths[i] ?? 0)).join("   ").trimEnd()).join("\n")
}

const listFlags = {
  ...hostFlags,
  output: Flag.Literals("output", ["table", "json"]).pipe(
    Flag.withAlias("o"),
    Flag.withDescription("output format"),
    Flag.withDefault("table")
  ),
  operator: Flag.String("operator").pipe(
    Flag.withDescription("a running operator's metrics address (e.g. http://127.0.0.1:8080): adds each plugin's count of refused answers"),
    Flag.optional
  )
}

/** halkyon_plugin_violations_total summed per plugin, from a Prometheus text exposition. */
export const violationsByPlugin = (metrics: string): ReadonlyMap<string, number> => {
  const counts = new Map<string, number>()
  for (const m of metrics.matchAll(/^halkyon_plugin_violations_total\{plugin="((?:[^"\\]|\\.)*)",rule="(?:[^"\\]|\\.)*"\} (\d+)$/gm)) {
    const plugin = (m[1] ?? "").replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c))
    counts.set(plugin, (counts.get(plugin) ?? 0) + Number(m[2]))
  }
  return counts
}

const fetchViolations = (address: string) => {
  const url = `${address.replace(/\/+$/, "")}/metrics`
  return Effect.tryPromise({
    try: (signal) => fetch(url, { signal }).then((r) => (r.ok ? r.text() : Promise.reject(new Error(`HTTP ${r.status}`)))),
    catch: (e) => new Error(`cannot read the operator's metrics at ${url}: ${e instanceof Error ? e.message : String(e)}`)
  }).pipe(
    Effect.timeoutOrElse({
      duration: Duration.seconds(5),
      orElse: () => Effect.fail(new Error(`the operator's metrics at ${url} did not answer within 5 s`))
    }),
    Effect.map(violationsByPlugin)
  )
}

/** The plugin host (with its gRPC client and node:http2), loaded when a command starts plugins rather than at every start of the binary. */
const loadPluginHost = Effect.promise(() => Promise.all([import("../plugin-host/PluginHost.ts"), import("../metrics/Metrics.ts")])).pipe(
  Effect.map(([host, metrics]) => ({ PluginHost: host.PluginHost, Metrics: metrics.Metrics }))
)

const listPlugins = Effect.fn("plugins.list")(function*(
  flags: HostFlagValues & { readonly output: "table" | "json"; readonly operator: Option.Option<string> }
) {
  const settings = hostSettings(flags, { watch: false, restart: false })
  const violations = Option.isSome(flags.operator) ? yield* fetchViolations(flags.operator.value) : undefined
  const { Metrics, PluginHost } = yield* loadPluginHost
  const listed = yield* Effect.gen(function*() {
    const host = yield* PluginHost
    yield* host.awaitSettled
    return (yield* host.statuses).map(toListing)
  }).pipe(Effect.provide(PluginHost.layer(settings).pipe(Layer.provide(Metrics.layer))))
  const rows = violations === undefined ? listed : listed.map((r) => ({ ...r, violations: violations.get(r.name) ?? 0 }))
  if (flags.output === "json") yield* Console.log(JSON.stringify(rows, null, 2))
  else if (rows.length === 0) yield* Console.log(`No plugins found in ${settings.pluginsDir}.`)
  else yield* Console.log(renderTable(rows, violations !== undefined))
  const failed = rows.filter((r) => r.state !== "running")
  if (failed.length > 0) {
    // The reasons also went to the log; the table form repeats them under it.
    if (flags.output === "table") {
      yield* Console.error("")
      for (const r of failed) yield* Console.error(`${r.name}: ${r.error ?? r.state}`)
    }
    process.exitCode = 1
  }
})

const list = Command.make("list", listFlags, (flags) => withLogging(listPlugins(flags))).pipe(
  Command.withDescription("Start every plugin of the plugins folder once and list what it provides"),
  Command.withExamples([
    { command: "halkyon plugins list --plugins-dir dist/plugins", description: "List the plugins built by npm run build:plugins" },
    { command: "halkyon plugins list -o json", description: "The same, as JSON" },
    {
      command: "halkyon plugins list --operator http://127.0.0.1:8080",
      description: "With each plugin's refused answers, counted by a running operator"
    }
  ])
)

const watchPlugins = Effect.fn("plugins.watch")(function*(flags: HostFlagValues) {
  const settings = hostSettings(flags)
  const { Metrics, PluginHost } = yield* loadPluginHost
  yield* Effect.gen(function*() {
    const host = yield* PluginHost
    yield* host.awaitSettled
    const statuses = yield* host.statuses
    yield* Effect.logInfo(
      `watching ${settings.pluginsDir}: ${
        statuses.filter((s) => s.state === "running").length
      } of ${statuses.length} plugins running; Ctrl-C stops them`
    )
    return yield* Effect.never
  }).pipe(Effect.provide(PluginHost.layer(settings).pipe(Layer.provide(Metrics.layer))))
})

const watch = Command.make("watch", hostFlags, (flags) => withLogging(watchPlugins(flags))).pipe(
  Command.withDescription(
    "Start the plugins of the plugins folder and supervise them until interrupted, logging what happens: " +
      "plugins added, removed or replaced in the folder are loaded, stopped or restarted (a plugin author's development loop)"
  ),
  Command.withExamples([{
    command: "halkyon plugins watch --plugins-dir dist/plugins --log-level debug",
    description: "Rebuild a plugin and watch it restart"
  }])
)

export const pluginsCommand = Command.make("plugins").pipe(
  Command.withDescription("Manage and inspect capability plugins"),
  Command.withSubcommands([list, watch, installCommand, lockCommand, newCommand, renderCommand, buildCommand])
)

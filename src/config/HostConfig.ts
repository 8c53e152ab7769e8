/**
 * HostConfig: how plugins are found, started, called, supervised and
 * stopped. The CLI builds it from flags, which fall back on HALKYON_*
 * variables and then on these defaults.
 */
import { Context, Layer, Schema } from "effect"

export const HostSettings = Schema.Struct({
  /** The plugins folder. */
  pluginsDir: Schema.String,
  /** Watch the folder and load, stop or restart plugins as files come and go. */
  watch: Schema.Boolean,
  /** Restart a plugin that crashes or stops answering. Off for one-shot commands. */
  restart: Schema.Boolean,
  handshakeTimeoutMs: Schema.Number,
  callTimeoutMs: Schema.Number,
  shutdownGraceMs: Schema.Number,
  autoMtls: Schema.Boolean,
  /** Let a Bun plugin's JavaScriptCore compile hot code; off, a plugin interprets and takes less memory (LaunchOptions.pluginJit). */
  pluginJit: Schema.Boolean,
  healthIntervalMs: Schema.Number,
  /** First restart delay; doubles at each crash in a row. */
  restartBaseMs: Schema.Number,
  /** Longest restart delay. */
  restartMaxMs: Schema.Number,
  protocolVersions: Schema.Array(Schema.Number),
  /** Start only plugin files that an install recorded in the folder's plugins.lock (hand-copied ones are refused). */
  requireLocked: Schema.Boolean,
  /** Plugins started by hand (under a debugger) to connect to rather than launch; never stopped by the host. */
  reattach: Schema.Array(Schema.Struct({ name: Schema.String, network: Schema.Literals(["unix", "tcp"]), address: Schema.String })),
  /** Calls in flight to one plugin at most: its share of the reconcile workers. */
  pluginCallPermits: Schema.Number,
  /** How long a call may wait for one of those before its Capability is retried later. */
  pluginCallWaitMs: Schema.Number,
  /** Calls in a row that time out before a plugin is marked degraded and restarted. */
  breakerThreshold: Schema.Number,
  /** The socket of a `halkyon plugin-runner` that spawns plugins; absent: they are spawned here. */
  pluginRunner: Schema.optionalKey(Schema.String),
  /** Files local plugins must not read (the kubeconfig files), enforced where the kernel offers Landlock. */
  hiddenFromPlugins: Schema.optionalKey(Schema.Array(Schema.String)),
  /** Memory each local plugin process may use (MemoryLimit.ts: a cgroup, else a watchdog); absent: unlimited. */
  pluginMemoryLimitBytes: Schema.optionalKey(Schema.Number)
})
export type HostSettings = typeof HostSettings.Type

export const defaultHostSettings: HostSettings = {
  pluginsDir: "./plugins",
  watch: true,
  restart: true,
  handshakeTimeoutMs: 10_000,
  callTimeoutMs: 10_000,
  shutdownGraceMs: 2_000,
  autoMtls: true,
  pluginJit: false,
  healthIntervalMs: 5_000,
  restartBaseMs: 500,
  restartMaxMs: 60_000,
  protocolVersions: [1],
  requireLocked: false,
  reattach: [],
  pluginCallPermits: 2,
  pluginCallWaitMs: 500,
  breakerThreshold: 3
}

/** A plugin's share of `concurrency` reconcile workers: half, at least one, so that one plugin never holds them all. */
export const pluginCallPermitsFor = (concurrency: number): number => Math.max(1, Math.ceil(concurrency / 2))

/** Reads a kubectl-style duration ("500ms", "10s", "2m") as milliseconds. */
export const parseDurationMs = (text: string): number => {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(text.trim())
  if (match === null) throw new Error(`"${text}" is not a duration: use a number with ms, s, m or h, e.g. 10s`)
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[match[2] as "ms" | "s" | "m" | "h"]
  return Number(match[1]) * unit
}

const memoryUnits: Record<string, number> = {
  "": 1,
  Ki: 1024,
  Mi: 1024 ** 2,
  Gi: 1024 ** 3,
  K: 1000,
  M: 1000 ** 2,
  G: 1000 ** 3
}

/** Reads a Kubernetes memory quantity ("256Mi", "1Gi", "500M", "1048576") as bytes. */
export const parseMemoryQuantity = (text: string): number => {
  const match = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|K|M|G)?$/.exec(text.trim())
  if (match === null) throw new Error(`"${text}" is not a memory quantity: use a number with Ki, Mi or Gi, e.g. 256Mi`)
  const bytes = Math.floor(Number(match[1]) * (memoryUnits[match[2] ?? ""] ?? 1))
  if (bytes < 16 * 1024 ** 2) throw new Error(`${text} is below 16Mi: no plugin runtime starts in that`)
  return bytes
}

export const formatBytes = (bytes: number): string =>
  bytes % 1024 ** 3 === 0 ? `${bytes / 1024 ** 3}Gi` : bytes % 1024 ** 2 === 0 ? `${bytes / 1024 ** 2}Mi` : `${bytes} bytes`

export class HostConfig extends Context.Service<HostConfig, HostSettings>()("halkyon/config/HostConfig") {
  static readonly layer = (settings: HostSettings) => Layer.succeed(HostConfig, HostConfig.of(settings))
}

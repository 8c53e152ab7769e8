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
  healthIntervalMs: Schema.Number,
  /** First restart delay; doubles at each crash in a row. */
  restartBaseMs: Schema.Number,
  /** Longest restart delay. */
  restartMaxMs: Schema.Number,
  protocolVersions: Schema.Array(Schema.Number),
  /** Start only plugin files that an install recorded in the folder's plugins.lock (hand-copied ones are refused). */
  requireLocked: Schema.Boolean,
  /** Calls in flight to one plugin at most: its share of the reconcile workers. */
  pluginCallPermits: Schema.Number,
  /** How long a call may wait for one of those before its Capability is retried later. */
  pluginCallWaitMs: Schema.Number,
  /** Calls in a row that time out before a plugin is marked degraded and restarted. */
  breakerThreshold: Schema.Number,
  /** The socket of a `halkyon plugin-runner` that spawns plugins; absent: they are spawned here. */
  pluginRunner: Schema.optionalKey(Schema.String),
  /** Files local plugins must not read (the kubeconfig files), enforced where the kernel offers Landlock. */
  hiddenFromPlugins: Schema.optionalKey(Schema.Array(Schema.String))
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
  healthIntervalMs: 5_000,
  restartBaseMs: 500,
  restartMaxMs: 60_000,
  protocolVersions: [1],
  requireLocked: false,
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

export class HostConfig extends Context.Service<HostConfig, HostSettings>()("halkyon/config/HostConfig") {
  static readonly layer = (settings: HostSettings) => Layer.succeed(HostConfig, HostConfig.of(settings))
}

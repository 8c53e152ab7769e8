/**
 * The flags every command that starts plugins shares, each with a HALKYON_*
 * variable as fallback, kubectl-style.
 */
import { Config, Option } from "effect"
import { Flag } from "effect/cli"
import { defaultHostSettings, type HostSettings, parseDurationMs } from "../config/HostConfig.ts"
import { parseReattach, type ReattachTarget } from "../protocol/Reattach.ts"

/** A kubectl-style duration flag ("500ms", "10s"), read as milliseconds, with an optional variable as fallback. */
export const durationFlag = (name: string, fallback: number, description: string, env?: string) =>
  Flag.String(name).pipe(
    Flag.withDescription(`${description} (e.g. 500ms, 10s${env === undefined ? "" : `; env ${env}`})`),
    (flag) => (env === undefined ? flag : Flag.withFallbackConfig(flag, Config.String(env))),
    Flag.withDefault(`${fallback}ms`),
    Flag.mapTryCatch(parseDurationMs, (e) => (e instanceof Error ? e.message : String(e)))
  )

export const hostFlags = {
  pluginsDir: Flag.Directory("plugins-dir").pipe(
    Flag.withDescription("folder holding the plugins (env HALKYON_PLUGINS_DIR)"),
    Flag.withFallbackConfig(Config.String("HALKYON_PLUGINS_DIR")),
    Flag.withDefault(defaultHostSettings.pluginsDir)
  ),
  handshakeTimeout: durationFlag(
    "handshake-timeout",
    defaultHostSettings.handshakeTimeoutMs,
    "how long a plugin may take to start",
    "HALKYON_HANDSHAKE_TIMEOUT"
  ),
  callTimeout: durationFlag("call-timeout", defaultHostSettings.callTimeoutMs, "deadline of each call to a plugin", "HALKYON_CALL_TIMEOUT"),
  shutdownGrace: durationFlag(
    "shutdown-grace",
    defaultHostSettings.shutdownGraceMs,
    "time a plugin gets to stop before it is signalled",
    "HALKYON_SHUTDOWN_GRACE"
  ),
  requireLocked: Flag.Boolean("require-locked").pipe(
    Flag.withDescription(
      "start only plugins that an install recorded in the folder's plugins.lock; hand-copied files are refused (env HALKYON_REQUIRE_LOCKED)"
    ),
    Flag.withFallbackConfig(Config.Boolean("HALKYON_REQUIRE_LOCKED")),
    Flag.withDefault(false)
  ),
  autoMtls: Flag.Boolean("auto-mtls").pipe(
    Flag.withDescription(
      "encrypt and authenticate plugin connections with throwaway certificates; --no-auto-mtls turns it off (env HALKYON_AUTO_MTLS)"
    ),
    Flag.withFallbackConfig(Config.Boolean("HALKYON_AUTO_MTLS")),
    Flag.withDefault(true)
  ),
  pluginJit: Flag.Boolean("plugin-jit").pipe(
    Flag.withDescription(
      "let plugins that run on Bun (TypeScript plugins) compile hot code with the JIT: faster calls for a plugin that computes much, " +
        "several MB more memory each; off, they interpret (env HALKYON_PLUGIN_JIT)"
    ),
    Flag.withFallbackConfig(Config.Boolean("HALKYON_PLUGIN_JIT")),
    Flag.withDefault(defaultHostSettings.pluginJit)
  ),
  reattach: Flag.String("reattach").pipe(
    Flag.withDescription(
      "connect to a plugin started by hand (under a debugger) instead of launching one of that name, repeatable; " +
        "NAME=unix:/path/to/socket as the plugin prints when started with HALKYON_PLUGIN_DEBUG=1. It is not stopped on exit"
    ),
    Flag.atLeast(0),
    Flag.mapTryCatch(
      (values) =>
        values.map((value) => {
          const parsed = parseReattach(value)
          if (!parsed.ok) throw new Error(parsed.problem)
          return parsed.target
        }),
      (e) => (e instanceof Error ? e.message : String(e))
    )
  ),
  pluginRunner: Flag.String("plugin-runner").pipe(
    Flag.withDescription(
      "start plugins through the `halkyon plugin-runner` listening on this unix socket, not as children (env HALKYON_PLUGIN_RUNNER)"
    ),
    Flag.withFallbackConfig(Config.String("HALKYON_PLUGIN_RUNNER")),
    Flag.optional
  )
}

export interface HostFlagValues {
  readonly pluginsDir: string
  readonly handshakeTimeout: number
  readonly callTimeout: number
  readonly shutdownGrace: number
  readonly autoMtls: boolean
  readonly pluginJit: boolean
  readonly pluginRunner: Option.Option<string>
  readonly requireLocked: boolean
  readonly reattach: ReadonlyArray<ReattachTarget>
}

export const hostSettings = (flags: HostFlagValues, overrides: Partial<HostSettings> = {}): HostSettings => ({
  ...defaultHostSettings,
  pluginsDir: flags.pluginsDir,
  handshakeTimeoutMs: flags.handshakeTimeout,
  callTimeoutMs: flags.callTimeout,
  shutdownGraceMs: flags.shutdownGrace,
  autoMtls: flags.autoMtls,
  pluginJit: flags.pluginJit,
  ...Option.match(flags.pluginRunner, { onNone: () => ({}), onSome: (pluginRunner) => ({ pluginRunner }) }),
  requireLocked: flags.requireLocked,
  reattach: flags.reattach,
  ...overrides
})

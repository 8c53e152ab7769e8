/**
 * The flags every command that starts plugins shares, each with a HALKYON_*
 * variable as fallback, kubectl-style.
 */
import { Config } from "effect"
import { Flag } from "effect/cli"
import { defaultHostSettings, type HostSettings, parseDurationMs } from "../config/HostConfig.ts"

const duration = (name: string, env: string, fallback: number, description: string) =>
  Flag.String(name).pipe(
    Flag.withDescription(`${description} (e.g. 500ms, 10s; env ${env})`),
    Flag.withFallbackConfig(Config.String(env)),
    Flag.withDefault(`${fallback}ms`),
    Flag.mapTryCatch(parseDurationMs, (e) => (e instanceof Error ? e.message : String(e)))
  )

export const hostFlags = {
  pluginsDir: Flag.Directory("plugins-dir").pipe(
    Flag.withDescription("folder holding the plugins (env HALKYON_PLUGINS_DIR)"),
    Flag.withFallbackConfig(Config.String("HALKYON_PLUGINS_DIR")),
    Flag.withDefault(defaultHostSettings.pluginsDir)
  ),
  handshakeTimeout: duration("handshake-timeout", "HALKYON_HANDSHAKE_TIMEOUT", defaultHostSettings.handshakeTimeoutMs, "how long a plugin may take to start"),
  callTimeout: duration("call-timeout", "HALKYON_CALL_TIMEOUT", defaultHostSettings.callTimeoutMs, "deadline of each call to a plugin"),
  shutdownGrace: duration("shutdown-grace", "HALKYON_SHUTDOWN_GRACE", defaultHostSettings.shutdownGraceMs, "time a plugin gets to stop before it is signalled"),
  autoMtls: Flag.Boolean("auto-mtls").pipe(
    Flag.withDescription("encrypt and authenticate plugin connections with throwaway certificates; --no-auto-mtls turns it off (env HALKYON_AUTO_MTLS)"),
    Flag.withFallbackConfig(Config.Boolean("HALKYON_AUTO_MTLS")),
    Flag.withDefault(true)
  )
}

export interface HostFlagValues {
  readonly pluginsDir: string
  readonly handshakeTimeout: number
  readonly callTimeout: number
  readonly shutdownGrace: number
  readonly autoMtls: boolean
}

export const hostSettings = (flags: HostFlagValues, overrides: Partial<HostSettings> = {}): HostSettings => ({
  ...defaultHostSettings,
  pluginsDir: flags.pluginsDir,
  handshakeTimeoutMs: flags.handshakeTimeout,
  callTimeoutMs: flags.callTimeout,
  shutdownGraceMs: flags.shutdownGrace,
  autoMtls: flags.autoMtls,
  ...overrides
})

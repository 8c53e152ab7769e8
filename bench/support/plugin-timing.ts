/**
 * How the plugin benchmarks time a plugin under our host: starts (spawn to
 * handshake, as PluginProcess.launch measures it) and CheckValidity round
 * trips, with the figures' percentiles. Shared by bench:plugins and
 * bench:interop so that both measure the same way.
 */
import { NodeServices } from "@effect/platform-node"
import { Effect, Layer, Logger } from "effect"
import { PluginClient } from "../../src/plugin-client/PluginClient.ts"
import { Metrics } from "../../src/metrics/Metrics.ts"
import { classify, type PluginFile } from "../../src/plugin-host/PluginFiles.ts"
import { launch, type LaunchOptions } from "../../src/plugin-host/PluginProcess.ts"
import { PluginLauncher } from "../../src/plugin-host/PluginLauncher.ts"

export const percentile = (values: ReadonlyArray<number>, p: number) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN
}

export const launchOptions = (autoMtls: boolean): LaunchOptions => ({
  handshakeTimeoutMs: 10_000,
  callTimeoutMs: 10_000,
  shutdownGraceMs: 2_000,
  autoMtls,
  protocolVersions: [1]
})

const services = Layer.mergeAll(
  PluginClient.layer.pipe(Layer.provide(Metrics.layer)),
  PluginLauncher.local.pipe(Layer.provide(NodeServices.layer)),
  Logger.layer([])
)

export const pluginFile = (path: string) => classify(path) as PluginFile

/** Start-to-handshake times of `starts` starts; two more before them warm the page cache and are dropped. */
export const startTimes = (file: PluginFile, autoMtls: boolean, starts: number) =>
  Effect.runPromise(
    Effect.gen(function*() {
      const times: Array<number> = []
      for (let i = 0; i < starts + 2; i++) {
        const ms = yield* Effect.scoped(Effect.map(launch(file, launchOptions(autoMtls)), (p) => p.startMs))
        if (i >= 2) times.push(ms)
      }
      return times
    }).pipe(Effect.provide(services))
  )

/** CheckValidity round trips on one running plugin; 200 more before them warm it up and are dropped. */
export const roundTrips = (file: PluginFile, autoMtls: boolean, capability: unknown, calls: number) =>
  Effect.runPromise(
    Effect.scoped(Effect.gen(function*() {
      const plugin = yield* launch(file, launchOptions(autoMtls))
      const times: Array<number> = []
      for (let i = 0; i < calls + 200; i++) {
        const t0 = performance.now()
        yield* plugin.connection.checkValidity(capability)
        if (i >= 200) times.push(performance.now() - t0)
      }
      return times
    })).pipe(Effect.provide(services))
  )

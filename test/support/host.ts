/**
 * Runs the real plugin host (real processes, real sockets) inside a test,
 * with settings tuned for tests: short timeouts and backoff.
 */
import { Effect, Layer, Logger } from "effect"
import { defaultHostSettings, HostConfig, type HostSettings } from "../../src/config/HostConfig.ts"
import { Metrics } from "../../src/metrics/Metrics.ts"
import { PluginHost } from "../../src/plugin-host/PluginHost.ts"
import { PluginRegistry } from "../../src/registry/PluginRegistry.ts"

export const testSettings = (pluginsDir: string, overrides: Partial<HostSettings> = {}): HostSettings => ({
  ...defaultHostSettings,
  pluginsDir,
  handshakeTimeoutMs: 5_000,
  callTimeoutMs: 2_000,
  shutdownGraceMs: 1_000,
  healthIntervalMs: 300,
  restartBaseMs: 100,
  restartMaxMs: 1_000,
  ...overrides
})

/** Collected log lines, for tests that check what the operator said. */
export const logLines: Array<string> = []
const collect = Logger.layer([Logger.make((o) => void logLines.push(Logger.formatLogFmt.log(o)))])

export const hostLayer = (settings: HostSettings) =>
  PluginHost.layer(settings).pipe(
    // The same settings again, for tests that read them.
    Layer.provideMerge(HostConfig.layer(settings)),
    Layer.provideMerge(Metrics.layer),
    Layer.provide(collect)
  )

/** Runs `body` with a live host over `settings`; every plugin is stopped afterwards. */
export const withHost = <A, E>(
  settings: HostSettings,
  body: Effect.Effect<A, E, PluginHost | PluginRegistry | HostConfig>
): Promise<A> => Effect.runPromise(body.pipe(Effect.provide(hostLayer(settings)), Effect.provide(collect)))

/** Waits until the named plugin reaches `state`. */
export const awaitState = (name: string, state: string, timeoutMs = 10_000) =>
  Effect.gen(function*() {
    const host = yield* PluginHost
    const end = Date.now() + timeoutMs
    for (;;) {
      const s = (yield* host.statuses).find((p) => p.name === name)
      if (s?.state === state) return s
      if (Date.now() > end) {
        return yield* Effect.die(new Error(`plugin ${name} did not reach ${state}; it is ${s?.state ?? "absent"} (${s?.error ?? ""})`))
      }
      yield* Effect.sleep("20 millis")
    }
  })

/** Launches one real plugin process with the host's PluginProcess, for a test body. */
import { NodeServices } from "@effect/platform-node"
import { Effect, Exit, Layer, Logger } from "effect"
import { PluginClient } from "../../src/plugin-client/PluginClient.ts"
import { Metrics } from "../../src/metrics/Metrics.ts"
import { type LaunchedPlugin, type LaunchOptions, launch } from "../../src/plugin-host/PluginProcess.ts"
import { classify, type PluginFile } from "../../src/plugin-host/PluginFiles.ts"
import { PluginLauncher } from "../../src/plugin-host/PluginLauncher.ts"
import { Redactions } from "../../src/plugin-host/Redactions.ts"

export const launchOptions = (overrides: Partial<LaunchOptions> = {}): LaunchOptions => ({
  handshakeTimeoutMs: 5_000,
  callTimeoutMs: 2_000,
  shutdownGraceMs: 1_000,
  autoMtls: true,
  protocolVersions: [1],
  ...overrides
})

export const pluginFile = (path: string): PluginFile => {
  const file = classify(path)
  if (file === undefined || !("form" in file)) throw new Error(`${path} is not a plugin: ${file?.reason}`)
  return file
}

const quiet = Logger.layer([])

/** Runs `body` with the launched plugin; the plugin is stopped afterwards. */
export const withPlugin = <A>(path: string, options: LaunchOptions, body: (plugin: LaunchedPlugin) => Effect.Effect<A, unknown>) =>
  Effect.runPromise(
    Effect.scoped(Effect.flatMap(launch(pluginFile(path), options), body)).pipe(
      Effect.provide(
        Layer.mergeAll(
          PluginClient.layer.pipe(Layer.provide(Metrics.layer)),
          PluginLauncher.local.pipe(Layer.provide(NodeServices.layer)),
          Redactions.layer,
          quiet
        )
      )
    )
  )

/** Launches and returns the start error's tag and message (the launch must fail). */
export const launchFailure = async (path: string, options: LaunchOptions) => {
  const exit = await Effect.runPromise(
    Effect.scoped(launch(pluginFile(path), options)).pipe(
      Effect.provide(
        Layer.mergeAll(
          PluginClient.layer.pipe(Layer.provide(Metrics.layer)),
          PluginLauncher.local.pipe(Layer.provide(NodeServices.layer)),
          Redactions.layer,
          quiet
        )
      ),
      Effect.exit
    )
  )
  if (Exit.isSuccess(exit)) throw new Error(`${path} started, but it should not have`)
  const error = exit.cause.reasons.find((r) => r._tag === "Fail")
  if (error === undefined || error._tag !== "Fail") throw new Error(`unexpected failure: ${String(exit.cause)}`)
  const e = error.error as { _tag: string; message: string }
  return { tag: e._tag, message: e.message }
}

/**
 * `halkyon plugin-runner`: the process that starts plugins for an operator
 * that runs with --plugin-runner, in a container without its credentials
 * (src/plugin-host/PluginRunner.ts). It serves until SIGTERM, then stops its plugins.
 */
import { Config, Effect, Option } from "effect"
import { Command, Flag } from "effect/cli"
import { withLogging } from "./Logging.ts"

const flags = {
  socket: Flag.String("socket").pipe(
    Flag.withDescription("the unix socket to listen on, in a folder the operator shares (env HALKYON_PLUGIN_RUNNER)"),
    Flag.withFallbackConfig(Config.String("HALKYON_PLUGIN_RUNNER"))
  ),
  pluginsDir: Flag.Directory("plugins-dir").pipe(
    Flag.withDescription("the only folder plugins are run from (env HALKYON_PLUGINS_DIR)"),
    Flag.withFallbackConfig(Config.String("HALKYON_PLUGINS_DIR")),
    Flag.withDefault("/plugins")
  ),
  socketsDir: Flag.Directory("sockets-dir").pipe(
    Flag.withDescription("where plugins' socket folders are made (default: the folder of --socket)"),
    Flag.optional
  )
}

export const pluginRunnerCommand = Command.make("plugin-runner", flags, ({ socket, pluginsDir, socketsDir }) =>
  withLogging(
    Effect.flatMap(Effect.promise(() => import("../plugin-host/PluginRunner.ts")), (runner) =>
      runner.serveRunner({
        socketPath: socket,
        pluginsDir,
        ...Option.match(socketsDir, { onNone: () => ({}), onSome: (dir) => ({ socketsDir: dir }) })
      }).pipe(
        Effect.andThen(Effect.never),
        Effect.scoped
      ))
  )).pipe(
    Command.withDescription("Start, relay and stop plugins for an operator run with --plugin-runner, away from the operator's credentials"),
    Command.withExamples([
      {
        command: "halkyon plugin-runner --socket /run/halkyon/runner.sock --plugins-dir /plugins",
        description: "The runner container of the operator's pod"
      }
    ])
  )

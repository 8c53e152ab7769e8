/**
 * halkyon's command line: the command tree, logging, and the runtime that
 * closes every scope (and so stops every plugin) on exit, SIGINT or SIGTERM.
 */
import { NodeRuntime, NodeServices } from "@effect/platform-node"
import { Effect } from "effect"
import { Command } from "effect/cli"
import { LogFormat } from "./cli/Logging.ts"
import { pluginsCommand } from "./cli/PluginsCommand.ts"
import { versionCommand } from "./cli/VersionCommand.ts"
import { version } from "./Version.ts"

const halkyon = Command.make("halkyon").pipe(
  Command.withGlobalFlags([LogFormat]),
  Command.withDescription("A Kubernetes operator that provisions capabilities (databases, caches, brokers…) through plugins"),
  Command.withSubcommands([versionCommand, pluginsCommand])
)

halkyon.pipe(
  Command.run({ version }),
  Effect.provide(NodeServices.layer),
  NodeRuntime.runMain
)

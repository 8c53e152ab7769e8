/**
 * halkyon's command line: the command tree, logging, and the runtime that
 * closes every scope (and so stops every plugin) on exit, SIGINT or SIGTERM.
 * main.ts loads it for every command but a bare `halkyon version`.
 */
// Deep imports: the package index also loads its HTTP client and server (node:http, an https Agent…).
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeServices from "@effect/platform-node/NodeServices"
import { Cause, Console, Effect, Exit, Runtime } from "effect"
import { CliError, Command } from "effect/cli"
import { LogFormat } from "./Logging.ts"
import { manifestsCommand } from "./ManifestsCommand.ts"
import { pluginRunnerCommand } from "./PluginRunnerCommand.ts"
import { pluginsCommand } from "./PluginsCommand.ts"
import { runCommand } from "./RunCommand.ts"
import { versionCommand } from "./VersionCommand.ts"
import { version } from "../Version.ts"

const halkyon = Command.make("halkyon").pipe(
  Command.withGlobalFlags([LogFormat]),
  Command.withDescription("A Kubernetes operator that provisions capabilities (databases, caches, brokers…) through plugins"),
  Command.withSubcommands([runCommand, manifestsCommand, pluginsCommand, pluginRunnerCommand, versionCommand])
)

/** Our errors carry a message for the user: print it, not a stack trace. */
const reportFailure = (error: unknown) =>
  CliError.isCliError(error)
    ? Effect.fail(error)
    : Console.error(`error: ${error instanceof Error ? error.message : String(error)}`).pipe(
      Effect.andThen(Effect.sync(() => {
        process.exitCode = 1
      }))
    )

/**
 * SIGINT and SIGTERM interrupt the program; once every scope has closed without a failure, that is
 * a clean stop and exits 0 (Kubernetes stops a pod with SIGTERM). A failure while stopping still
 * exits non-zero.
 */
const teardown: Runtime.Teardown = (exit, onExit) =>
  Runtime.defaultTeardown(exit, (code) => onExit(Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause) ? 0 : code))

/** Parses the arguments, runs the command, and exits when it is done. */
export const runCli = (): void =>
  halkyon.pipe(
    Command.run({ version }),
    Effect.catch(reportFailure),
    Effect.provide(NodeServices.layer),
    NodeRuntime.runMain({ teardown })
  )

/**
 * `halkyon plugins lock SPEC... --lock FILE [--platform linux_amd64,...]`:
 * records, for each release, the SHA-256 of its archive for every platform
 * into a lock file to review and keep in version control, without
 * installing anything. Entries of other repositories already in the file
 * are kept.
 */
import { Effect } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { ExpectedForm } from "../downloader/Errors.ts"
import { ReleasePlatforms } from "../downloader/ReleaseAsset.ts"
import { withLogging } from "./Logging.ts"
import { releaseFlags } from "./PluginSources.ts"

const lockFlags = {
  specs: Argument.String("spec").pipe(Argument.withDescription(`releases to lock, each ${ExpectedForm}`), Argument.variadic({ min: 1 })),
  platform: Flag.String("platform").pipe(
    Flag.withDescription(
      `platforms to record, comma-separated <os>_<arch> (default: ${ReleasePlatforms.map((p) => `${p.os}_${p.arch}`).join(",")})`
    ),
    Flag.optional
  ),
  ...releaseFlags,
  lock: Flag.String("lock").pipe(Flag.withDescription("the lock file to write (created if missing; other repositories' entries are kept)"))
}

/** The lock itself, loaded when the command runs. */
const lockPlugins = (flags: Parameters<typeof import("./Lock.ts").lockPlugins>[0]) =>
  Effect.flatMap(Effect.promise(() => import("./Lock.ts")), (m) => m.lockPlugins(flags))

export const lockCommand = Command.make("lock", lockFlags, (flags) => withLogging(lockPlugins(flags))).pipe(
  Command.withDescription(
    "Record the SHA-256 of each release's archive for every platform into a lock file, without installing: " +
      "review it and keep it in version control, then install or run with --lock so that nothing else is installed"
  ),
  Command.withExamples([
    { command: "halkyon plugins lock acme/redis@v2.1.0 --lock halkyon.lock", description: "Lock a release for every platform" },
    {
      command: "halkyon plugins lock acme/redis@v2.1.0 --platform linux_amd64,linux_arm64 --lock halkyon.lock",
      description: "For the cluster's platforms only"
    }
  ])
)

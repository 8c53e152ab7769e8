/**
 * `halkyon plugins lock SPEC... --lock FILE [--platform linux_amd64,...]`:
 * records, for each release, the SHA-256 of its archive for every platform
 * into a lock file to review and keep in version control, without
 * installing anything. Entries of other repositories already in the file
 * are kept.
 */
import { Console, Effect, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { ExpectedForm } from "../downloader/Errors.ts"
import { PluginDownloader } from "../downloader/PluginDownloader.ts"
import { parsePlatform, type Platform, ReleasePlatforms } from "../downloader/ReleaseAsset.ts"
import { parsePluginSpecs } from "../downloader/PluginSpec.ts"
import { emptyReleaseLock, readReleaseLock, writeReleaseLock } from "../lock/ReleaseLock.ts"
import { withLogging } from "./Logging.ts"
import { releaseFlags, type ReleaseFlagValues, settingsFor } from "./PluginSources.ts"

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

interface LockFlagValues extends Omit<ReleaseFlagValues, "lock"> {
  readonly specs: ReadonlyArray<string>
  readonly platform: Option.Option<string>
  readonly lock: string
}

const lockPlugins = Effect.fn("plugins.lock")(function*(flags: LockFlagValues) {
  const platforms: Array<Platform> = []
  for (const entry of Option.getOrElse(flags.platform, () => "").split(",").filter((e) => e.trim() !== "")) {
    const platform = parsePlatform(entry)
    if (platform === undefined) {
      return yield* Effect.fail(new Error(`--platform ${JSON.stringify(entry)} is not <os>_<arch>, e.g. linux_amd64`))
    }
    platforms.push(platform)
  }
  const { specs, invalid } = parsePluginSpecs(flags.specs)
  if (invalid.length > 0) return yield* Effect.fail(new Error(invalid.map((e) => e.message).join("; ")))
  // Locking reads releases; it never consults the file it writes.
  const settings = yield* settingsFor(".", { ...flags, lock: Option.none() })
  const previous = yield* readReleaseLock(flags.lock).pipe(
    Effect.catchTag("LockUnreadable", (e) => e.detail.includes("ENOENT") ? Effect.succeed(emptyReleaseLock) : Effect.fail(e))
  )
  const releases = yield* Effect.gen(function*() {
    const downloader = yield* PluginDownloader
    return yield* Effect.forEach(specs, (spec) => downloader.lockRelease(spec, platforms.length > 0 ? platforms : ReleasePlatforms), {
      concurrency: 4
    })
  }).pipe(Effect.provide(PluginDownloader.layer(settings)))
  yield* writeReleaseLock(flags.lock, previous, releases)
  for (const release of releases) {
    yield* Console.log(`${release.repository}@${release.tag}: ${Object.keys(release.archives).join(", ")} locked in ${flags.lock}`)
  }
})

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

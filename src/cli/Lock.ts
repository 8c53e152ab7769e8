/**
 * What `halkyon plugins lock` does once its flags are parsed (LockCommand.ts
 * loads it when the command runs): each release's archive digests, for every
 * platform asked for, merged into the lock file.
 */
import { Console, Effect, Option } from "effect"
import { PluginDownloader } from "../downloader/PluginDownloader.ts"
import { parsePlatform, type Platform, ReleasePlatforms } from "../downloader/ReleaseAsset.ts"
import { parsePluginSpecs } from "../downloader/PluginSpec.ts"
import { emptyReleaseLock, readReleaseLock, writeReleaseLock } from "../lock/ReleaseLock.ts"
import type { ReleaseFlagValues } from "./PluginSources.ts"
import { settingsFor } from "./ReleaseSettings.ts"

export interface LockFlagValues extends Omit<ReleaseFlagValues, "lock"> {
  readonly specs: ReadonlyArray<string>
  readonly platform: Option.Option<string>
  readonly lock: string
}

export const lockPlugins = Effect.fn("plugins.lock")(function*(flags: LockFlagValues) {
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

/**
 * What `halkyon plugins install` does once its flags are parsed (InstallCommand.ts
 * loads it when the command runs): the specs from the arguments, HALKYON_PLUGINS
 * or the lock file, installed a few at once, one line each on stdout.
 */
import { Config, Console, Effect, Result } from "effect"
import { describeVerification, PluginDownloader } from "../downloader/PluginDownloader.ts"
import { ExpectedForm } from "../downloader/Errors.ts"
import { installListed } from "../downloader/InstallListed.ts"
import type { ReleaseFlagValues } from "./PluginSources.ts"
import { settingsFor } from "./ReleaseSettings.ts"

export interface InstallFlagValues extends ReleaseFlagValues {
  readonly specs: ReadonlyArray<string>
  readonly pluginsDir: string
}

const fromEnvironment = Config.String("HALKYON_PLUGINS").pipe(Config.withDefault(""))

export const installPlugins = Effect.fn("plugins.install")(function*(flags: InstallFlagValues) {
  const settings = yield* settingsFor(flags.pluginsDir, flags)
  const named = flags.specs.length > 0 ? flags.specs : [yield* fromEnvironment]
  const none = (lists: ReadonlyArray<string>) => lists.every((l) => l.trim() === "" || l.split(",").every((e) => e.trim() === ""))
  // Nothing named: a lock file names what to install.
  const lists = none(named) && settings.releaseLock !== undefined
    ? settings.releaseLock.lock.plugins.map((p) => `${p.repository}@${p.tag}`)
    : named
  if (none(lists)) {
    return yield* Effect.fail(
      new Error(
        `name the plugins to install, e.g. halkyon plugins install ${
          ExpectedForm.split(", e.g. ")[1]
        }, or set HALKYON_PLUGINS, or pass --lock`
      )
    )
  }
  const { results, specs, invalid } = yield* installListed(lists, { repair: true }).pipe(
    Effect.provide(PluginDownloader.layer(settings))
  )
  for (const [index, result] of results.entries()) {
    if (Result.isSuccess(result)) {
      const { entry } = result.success
      yield* Console.log(
        `${entry.spec}: ${result.success.result} ${entry.files.map((f) => f.path).join(", ")} in ${flags.pluginsDir} ` +
          `(sha256 ${entry.sha256.slice(0, 12)}…, ${
            describeVerification(entry, specs[index]?.digest !== undefined || settings.releaseLock !== undefined)
          })`
      )
    } else yield* Console.log(`${specs[index]}: failed (see above)`)
  }
  if (invalid.length > 0 || results.some(Result.isFailure)) process.exitCode = 1
})

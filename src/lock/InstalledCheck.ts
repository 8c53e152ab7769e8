/**
 * The check the plugin host makes before it starts a plugin file: if an
 * install put the file there, its bytes must still be the ones recorded in
 * plugins.lock. A plugin changed behind the lock's back is refused, with the
 * command that reinstalls it. Files nobody installed (copied in by hand,
 * built locally) are not checked.
 */
import { join } from "node:path"
import { Effect, Option } from "effect"
import { entryOwning, hashFile, readLock } from "./PluginLock.ts"
import { PluginModified } from "./Errors.ts"

export const checkInstalled = Effect.fn("InstalledCheck.check")(function*(dir: string, name: string) {
  const lock = yield* readLock(dir).pipe(
    Effect.tapError((e) => Effect.logWarning(`${e.message}; plugins are started without checking them against it`)),
    Effect.option
  )
  if (Option.isNone(lock)) return
  const entry = entryOwning(lock.value, name)
  const recorded = entry?.files.find((f) => f.path === name)
  if (entry === undefined || recorded === undefined) return
  const actual = yield* hashFile(join(dir, name)).pipe(Effect.catch((e) => Effect.succeed(`unreadable (${e.message})`)))
  if (actual === recorded.sha256) return
  return yield* new PluginModified({
    spec: entry.spec,
    dir,
    problems: [`${name} has changed since it was installed (SHA-256 ${actual}, installed ${recorded.sha256})`]
  })
})

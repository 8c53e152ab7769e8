/**
 * The check the plugin host makes before it starts a plugin file: if an
 * install put the file there, its bytes must still be the ones recorded in
 * plugins.lock. A plugin changed behind the lock's back is refused, with the
 * command that reinstalls it. Files nobody installed (copied in by hand,
 * built locally) are not checked, unless only locked plugins may run
 * (`--require-locked`): then they are refused, and so is every file when the
 * lock cannot be read.
 */
import { join } from "node:path"
import { Effect, Option } from "effect"
import { entryOwning, hashFile, LockFileName, readLock } from "./PluginLock.ts"
import { PluginModified, PluginNotLocked } from "./Errors.ts"

export const checkInstalled = Effect.fn("InstalledCheck.check")(function*(dir: string, name: string, requireLocked = false) {
  const lock = yield* readLock(dir).pipe(
    Effect.tapError((e) =>
      requireLocked ? Effect.void : Effect.logWarning(`${e.message}; plugins are started without checking them against it`)
    ),
    Effect.option
  )
  if (Option.isNone(lock)) {
    if (requireLocked) return yield* new PluginNotLocked({ name, dir, detail: `${LockFileName} cannot be read` })
    return
  }
  const entry = entryOwning(lock.value, name)
  const recorded = entry?.files.find((f) => f.path === name)
  if (entry === undefined || recorded === undefined) {
    if (requireLocked) return yield* new PluginNotLocked({ name, dir, detail: `no install recorded it in ${LockFileName}` })
    return
  }
  const actual = yield* hashFile(join(dir, name)).pipe(Effect.catch((e) => Effect.succeed(`unreadable (${e.message})`)))
  if (actual === recorded.sha256) return
  return yield* new PluginModified({
    spec: entry.spec,
    dir,
    problems: [`${name} has changed since it was installed (SHA-256 ${actual}, installed ${recorded.sha256})`]
  })
})

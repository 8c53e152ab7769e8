/**
 * The lock file a user reviews and keeps in version control (as Terraform's
 * `.terraform.lock.hcl`): per plugin repository, the tag and the SHA-256 of
 * its archive for each platform. `halkyon plugins lock` writes it without
 * installing; given to `install` or `run` with `--lock`, it is the authority:
 * a spec it does not list, another tag, or an archive with another digest is
 * refused.
 *
 * Not to be confused with `plugins.lock` inside the plugins folder, the
 * record of what was installed there (PluginLock.ts).
 */
import { readFileSync, renameSync, statSync, writeFileSync } from "node:fs"
import { Effect, Schema } from "effect"
import { LockUnreadable, LockWriteFailed } from "./Errors.ts"

const Sha256 = Schema.String.pipe(
  Schema.check(Schema.makeFilter((s: string) => /^[0-9a-f]{64}$/.test(s) || "must be a lower-case hex SHA-256"))
)
/** `<os>_<arch>`, as Go names them: linux_amd64, darwin_arm64. */
const PlatformKey = Schema.String.pipe(
  Schema.check(Schema.makeFilter((s: string) => /^[a-z0-9]+_[a-z0-9]+$/.test(s) || "must be <os>_<arch>"))
)

export const LockedArchive = Schema.Struct({
  asset: Schema.String,
  sha256: Sha256
})
export type LockedArchive = typeof LockedArchive.Type

export const LockedRelease = Schema.Struct({
  repository: Schema.String,
  tag: Schema.String,
  archives: Schema.Record(PlatformKey, LockedArchive)
})
export type LockedRelease = typeof LockedRelease.Type

export const ReleaseLockFile = Schema.Struct({
  version: Schema.Literal(1),
  plugins: Schema.Array(LockedRelease)
})
export type ReleaseLockFile = typeof ReleaseLockFile.Type

export const emptyReleaseLock: ReleaseLockFile = { version: 1, plugins: [] }

const decode = Schema.decodeUnknownExit(Schema.fromJsonString(ReleaseLockFile))
const MaxSize = 1 << 20

export const platformKey = (platform: { readonly os: string; readonly arch: string }) => `${platform.os}_${platform.arch}`

/** Reads and checks a lock file; a missing one is an error (the user named it). */
export const readReleaseLock = (path: string): Effect.Effect<ReleaseLockFile, LockUnreadable> =>
  Effect.suspend(() => {
    let text: string
    try {
      if (statSync(path).size > MaxSize) return Effect.fail(new LockUnreadable({ path, detail: "it is over 1 MiB" }))
      text = readFileSync(path, "utf8")
    } catch (e) {
      return Effect.fail(new LockUnreadable({ path, detail: e instanceof Error ? e.message : String(e) }))
    }
    const decoded = decode(text)
    return decoded._tag === "Success"
      ? Effect.succeed(decoded.value)
      : Effect.fail(new LockUnreadable({ path, detail: `not a halkyon lock file: ${String(decoded.cause).split("\n")[0]}` }))
  })

/** The lock with `releases` in place of the entries of their repositories, sorted, written so that readers never see a part. */
export const writeReleaseLock = (path: string, previous: ReleaseLockFile, releases: ReadonlyArray<LockedRelease>) =>
  Effect.try({
    try: () => {
      const replaced = new Set(releases.map((r) => r.repository))
      const plugins = [...previous.plugins.filter((p) => !replaced.has(p.repository)), ...releases]
        .sort((a, b) => a.repository.localeCompare(b.repository))
        .map((p) => ({ ...p, archives: Object.fromEntries(Object.entries(p.archives).sort(([a], [b]) => a.localeCompare(b))) }))
      const next: ReleaseLockFile = { version: 1, plugins }
      const temp = `${path}.tmp-${process.pid}`
      writeFileSync(temp, JSON.stringify(next, null, 2) + "\n", { mode: 0o644 })
      renameSync(temp, path)
      return next
    },
    catch: (e) => new LockWriteFailed({ dir: path, detail: e instanceof Error ? e.message : String(e) })
  })

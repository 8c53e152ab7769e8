/**
 * `plugins.lock`, the record of what `halkyon plugins install` put in a
 * plugins folder: per release (one per repository), its spec, the asset's
 * URL and SHA-256, and each file it installed with the file's own SHA-256.
 *
 * Installs commit through a journal so that a process killed at any moment
 * leaves a state the next run completes: the new files wait in a staging
 * folder beside the plugins, the journal (written atomically) names the
 * moves and the new lock, then the moves, the lock and the cleanup happen.
 * Whoever finds a journal finishes it first.
 */
import { createReadStream, existsSync, lstatSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from "node:fs"
import { closeSync, fsyncSync, linkSync, openSync, writeSync } from "node:fs"
import { createHash } from "node:crypto"
import { basename, dirname, join, resolve, sep } from "node:path"
import { Duration, Effect, Schema } from "effect"
import { FileConflict, FolderBusy, LockUnreadable, LockWriteFailed } from "./Errors.ts"
import { formatIdentity, isRunning, parseIdentity, type ProcessIdentity, thisProcess } from "./ProcessIdentity.ts"

export const LockFileName = "plugins.lock"
const JournalName = ".plugins.lock.journal"
const TempPrefix = ".tmp-"
/** Held while a process commits to the folder, naming its pid. */
const MutexName = ".plugins.lock.mutex"
/**
 * Staging folders are dot-named, so the plugin host never takes them for
 * plugins, and carry their process's identity (pid and start time), so that
 * leftovers can be told from installs under way.
 */
export const stagingPrefix = (owner: ProcessIdentity = thisProcess) => `.halkyon-install-${formatIdentity(owner)}-`
const tempOwner = (entry: string) => {
  const match = /^\.tmp-.*-(\d+(?:\.\d+)?)$/.exec(entry)
  return match === null ? undefined : parseIdentity(match[1] ?? "")
}
const stagingOwner = (entry: string) => {
  const match = /^\.halkyon-install-(\d+(?:\.\d+)?)-/.exec(entry)
  return match === null ? undefined : parseIdentity(match[1] ?? "")
}

/** Names reserved in the plugins folder: the lock, and dot-names (the journal, the mutex, staging). */
export const isReservedName = (name: string) => name === LockFileName || name.startsWith(".")

const isRelativeName = (path: string) =>
  path !== "" && !path.startsWith("/") && !path.includes("\\") && !path.includes("\0") &&
  path.split("/").every((part) => part !== "" && part !== "." && part !== "..")

/** A path inside the plugins folder, relative and normalized: no "..", no leading "/", no empty part. */
const RelativePath = Schema.String.pipe(
  Schema.check(Schema.makeFilter((path: string) => isRelativeName(path) || "must be a relative path inside the plugins folder"))
)
/** One top-level name of the folder that an install may occupy: a relative single part, not reserved. */
const TopLevelName = Schema.String.pipe(
  Schema.check(
    Schema.makeFilter((name: string) =>
      (isRelativeName(name) && !name.includes("/") && !isReservedName(name)) || "must be a plain file name of the plugins folder"
    )
  )
)
/** A staging folder's name, as stagingPrefix makes it. */
const StagingName = Schema.String.pipe(
  Schema.check(
    Schema.makeFilter((name: string) =>
      (isRelativeName(name) && !name.includes("/") && stagingOwner(name) !== undefined) || "must name a staging folder"
    )
  )
)

export const InstalledFile = Schema.Struct({
  path: RelativePath,
  sha256: Schema.String,
  size: Schema.Number
})
export type InstalledFile = typeof InstalledFile.Type

export const LockEntry = Schema.Struct({
  spec: Schema.String,
  repository: Schema.String,
  tag: Schema.String,
  asset: Schema.String,
  sha256: Schema.String,
  /** "signed" when checksums.txt carried a signature by a configured key; "unpublished" when there was no checksums.txt. */
  checksum: Schema.Literals(["signed", "verified", "unpublished"]),
  files: Schema.Array(InstalledFile),
  installedAt: Schema.String
})
export type LockEntry = typeof LockEntry.Type

export const PluginLockFile = Schema.Struct({
  version: Schema.Literal(1),
  plugins: Schema.Array(LockEntry)
})
export type PluginLockFile = typeof PluginLockFile.Type

const Journal = Schema.Struct({
  staging: StagingName,
  moves: Schema.Array(TopLevelName),
  removes: Schema.Array(TopLevelName),
  lock: PluginLockFile
})
type Journal = typeof Journal.Type

const decodeLock = Schema.decodeUnknownExit(Schema.fromJsonString(PluginLockFile))
const decodeJournal = Schema.decodeUnknownExit(Schema.fromJsonString(Journal))

export const emptyLock: PluginLockFile = { version: 1, plugins: [] }

const describe = (e: unknown) => (e instanceof Error ? e.message : String(e))

/** `name` inside `dir`, or a thrown error: every rename and delete goes through it. */
const inside = (dir: string, name: string) => {
  const root = resolve(dir)
  const path = resolve(root, name)
  if (!path.startsWith(root + sep)) throw new Error(`refusing to touch ${path}: it is not inside the plugins folder ${root}`)
  return path
}

/** Writes `text` to disk beside `path`, under a name of its own, to be moved or linked into place; returns that name. */
const writeTemporary = (path: string, text: string) => {
  // Dot-named and pid-tagged: the plugin host ignores it, and recover() removes it if its writer died.
  const temp = join(dirname(path), `${TempPrefix}${basename(path)}-${formatIdentity(thisProcess)}`)
  const fd = openSync(temp, "w", 0o644)
  try {
    writeSync(fd, text)
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
  return temp
}

/**
 * Creates the mutex naming this process, whole: written under a temporary
 * name and linked into place, so that no one ever reads it half-written (and
 * takes an empty mutex for a stale one). False if another holds it.
 */
const takeMutex = (path: string): boolean => {
  const temp = writeTemporary(path, formatIdentity(thisProcess))
  try {
    linkSync(temp, path)
    return true
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EEXIST") return false
    throw e
  } finally {
    rmSync(temp, { force: true })
  }
}

/**
 * Who holds the mutex at `path`: its owner, undefined if it names no process
 * (stale), or "released" if it is gone, let go since this process found it.
 */
export const mutexOwner = (path: string): ProcessIdentity | undefined | "released" => {
  try {
    return parseIdentity(readFileSync(path, "utf8"))
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e
    // A symbolic link to nowhere is no halkyon's mutex (those are files): stale, not let go.
    try {
      return lstatSync(path).isSymbolicLink() ? undefined : "released"
    } catch {
      return "released"
    }
  }
}

/**
 * Runs `effect` while this process alone may change the folder's lock: two
 * installs at once (a user's `plugins install` beside `run`) must not each
 * write a lock without the other's entry. A mutex left by a killed process
 * is taken over.
 */
export const exclusively = <A, E, R>(
  dir: string,
  effect: Effect.Effect<A, E, R>
): Effect.Effect<A, E | FolderBusy | LockWriteFailed, R> => {
  const path = join(dir, MutexName)
  const acquire = Effect.gen(function*() {
    const deadline = Date.now() + 60_000
    for (;;) {
      const holder = yield* Effect.try({
        try: () => {
          if (takeMutex(path)) return undefined
          const owner = mutexOwner(path)
          // Let go between our try and our read: try again at once.
          if (owner === "released") return 0
          // A mutex of a process that is gone, or of this pid's previous life (a restarted container), is stale.
          if (owner === undefined || !isRunning(owner) || owner.pid === thisProcess.pid) {
            rmSync(path, { force: true })
            return 0
          }
          return owner.pid
        },
        catch: (e) => new LockWriteFailed({ dir, detail: describe(e) })
      })
      if (holder === undefined) return
      if (holder === 0) continue
      if (Date.now() > deadline) return yield* new FolderBusy({ dir, pid: holder, mutex: path })
      yield* Effect.sleep(Duration.millis(50))
    }
  })
  return Effect.acquireUseRelease(acquire, () => effect, () => Effect.sync(() => rmSync(path, { force: true })))
}

/** Writes a file so that readers see the old or the new content, never a part. */
const writeAtomically = (path: string, text: string) => renameSync(writeTemporary(path, text), path)

/** The top-level names a release's files occupy in the plugins folder. */
export const topLevelNames = (files: ReadonlyArray<{ readonly path: string }>): ReadonlyArray<string> => [
  ...new Set(files.map((f) => f.path.split("/")[0] ?? f.path))
]

export const readLock = (dir: string): Effect.Effect<PluginLockFile, LockUnreadable> =>
  Effect.suspend(() => {
    const path = join(dir, LockFileName)
    let text: string
    try {
      text = readFileSync(path, "utf8")
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return Effect.succeed(emptyLock)
      return Effect.fail(new LockUnreadable({ path, detail: describe(e) }))
    }
    const decoded = decodeLock(text)
    return decoded._tag === "Success"
      ? Effect.succeed(decoded.value)
      : Effect.fail(new LockUnreadable({ path, detail: `not a halkyon plugins.lock: ${String(decoded.cause).split("\n")[0]}` }))
  })

/** SHA-256 of a file, streamed. */
export const hashFile = (path: string): Effect.Effect<string, Error> =>
  Effect.tryPromise({
    try: async () => {
      const hash = createHash("sha256")
      for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer)
      return hash.digest("hex")
    },
    catch: (e) => (e instanceof Error ? e : new Error(String(e)))
  })

/** What differs between the folder and the lock's record of an install; empty when they agree. */
export const verifyEntry = Effect.fn("PluginLock.verifyEntry")(function*(dir: string, entry: LockEntry) {
  const problems: Array<string> = []
  for (const file of entry.files) {
    const path = join(dir, file.path)
    if (!existsSync(path)) {
      problems.push(`${file.path} is missing`)
      continue
    }
    const actual = yield* hashFile(path).pipe(Effect.catch((e) => Effect.succeed(`unreadable: ${e.message}`)))
    if (actual !== file.sha256) problems.push(`${file.path} has changed (SHA-256 ${actual}, installed ${file.sha256})`)
  }
  return problems
})

/** Moves staged files into place, drops what the replaced release had, writes the lock, and cleans up. */
const roll = (dir: string, journal: Journal) => {
  const staging = inside(dir, journal.staging)
  for (const name of journal.moves) {
    const from = inside(staging, name)
    if (!existsSync(from)) continue // moved before an interruption
    const to = inside(dir, name)
    // rename() replaces a file in one step, but not a non-empty folder.
    if (existsSync(to) && statSync(to).isDirectory()) rmSync(to, { recursive: true, force: true })
    renameSync(from, to)
  }
  for (const name of journal.removes) rmSync(inside(dir, name), { recursive: true, force: true })
  writeAtomically(join(dir, LockFileName), JSON.stringify(journal.lock, null, 2) + "\n")
  rmSync(staging, { recursive: true, force: true })
  rmSync(join(dir, JournalName), { force: true })
}

/**
 * Finishes an install that was interrupted after its journal was written,
 * and removes staging folders of installs whose process is gone. Returns the
 * spec it completed, if any.
 */
export const recover = (dir: string): Effect.Effect<string | undefined, LockWriteFailed> =>
  Effect.try({
    try: () => {
      let completed: string | undefined
      const journalPath = join(dir, JournalName)
      if (existsSync(journalPath)) {
        const journal = decodeJournal(readFileSync(journalPath, "utf8"))
        if (journal._tag === "Success") {
          roll(dir, journal.value)
          completed = journal.value.lock.plugins.map((p) => p.spec).join(", ")
        } else rmSync(journalPath, { force: true })
      }
      if (existsSync(dir)) {
        for (const entry of readdirSync(dir)) {
          // Staging folders of installs still running (here or in another process) are theirs;
          // those of a process that is gone, or of this pid's previous life, are leftovers.
          const owner = stagingOwner(entry) ?? tempOwner(entry)
          if (owner !== undefined && !isRunning(owner)) rmSync(inside(dir, entry), { recursive: true, force: true })
        }
      }
      return completed
    },
    catch: (e) => new LockWriteFailed({ dir, detail: describe(e) })
  })

/**
 * Puts the files staged in `staging` (a folder name inside `dir`) in place of
 * the release the entry's repository had, and records the entry.
 * Fails, changing nothing, when a file would take the place of one that
 * belongs to another release or that nobody installed.
 */
export const commit = (
  dir: string,
  staging: string,
  entry: LockEntry
): Effect.Effect<"installed" | "replaced", LockUnreadable | FileConflict | LockWriteFailed> =>
  Effect.gen(function*() {
    const lock = yield* readLock(dir)
    const previous = lock.plugins.find((p) => p.repository === entry.repository)
    const moves = topLevelNames(entry.files)
    const previousNames = new Set(previous === undefined ? [] : topLevelNames(previous.files))
    for (const name of moves) {
      const owner = lock.plugins.find((p) => p !== previous && topLevelNames(p.files).includes(name))
      if (owner !== undefined) return yield* new FileConflict({ spec: entry.spec, file: name, owner: owner.spec })
      if (!previousNames.has(name) && existsSync(join(dir, name))) {
        return yield* new FileConflict({ spec: entry.spec, file: name, owner: "" })
      }
    }
    const journal: Journal = {
      staging,
      moves,
      removes: [...previousNames].filter((name) => !moves.includes(name)),
      lock: {
        version: 1,
        plugins: [...lock.plugins.filter((p) => p !== previous), entry].sort((a, b) => a.repository.localeCompare(b.repository))
      }
    }
    yield* Effect.try({
      try: () => {
        writeAtomically(join(dir, JournalName), JSON.stringify(journal))
        roll(dir, journal)
      },
      catch: (e) => new LockWriteFailed({ dir, detail: describe(e) })
    })
    return previous === undefined ? "installed" as const : "replaced" as const
  })

/** The lock's entry for a top-level file of the folder, if an install put it there. */
export const entryOwning = (lock: PluginLockFile, name: string): LockEntry | undefined =>
  lock.plugins.find((p) => p.files.some((f) => f.path === name))

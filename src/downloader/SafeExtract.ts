/**
 * Unpacks a plugin's `.tar.gz` release archive into a folder as it streams
 * in, refusing anything a plugin archive has no business holding: entries
 * other than regular files and folders (links, devices, FIFOs), absolute
 * paths, `..` segments, and archives over the size or file-count caps. A
 * refusal aborts the whole archive; the caller throws the folder away.
 * Each file's SHA-256 is taken on the way to disk.
 *
 * The gzip layer is the runtime's native DecompressionStream: tar's own
 * streaming gunzip costs about six times as much under Bun.
 */
import { createHash, type Hash } from "node:crypto"
import { Transform } from "node:stream"
import { Effect, Schema } from "effect"
import { type ReadEntry, Unpack } from "tar"

export interface ExtractLimits {
  /** Total bytes of all files once unpacked. */
  readonly maxBytes: number
  readonly maxFiles: number
}

const CollectEvery = 32 * 1024 * 1024

export const DefaultLimits: ExtractLimits = { maxBytes: 1024 * 1024 * 1024, maxFiles: 1000 }

export class UnsafeArchive extends Schema.TaggedError<UnsafeArchive>()("UnsafeArchive", {
  asset: Schema.String,
  entry: Schema.String,
  problem: Schema.String
}) {
  override get message() {
    return `refused ${this.asset}: entry ${JSON.stringify(this.entry)} ${this.problem}. Nothing was installed; a plugin archive holds only regular files and folders inside it, so ask the plugin's publisher to fix the release`
  }
}

export class DamagedArchive extends Schema.TaggedError<DamagedArchive>()("DamagedArchive", {
  asset: Schema.String,
  detail: Schema.String
}) {
  override get message() {
    return `${this.asset} is not a readable .tar.gz archive (${this.detail}). Nothing was installed; check that the release asset is complete`
  }
}

export interface ExtractedEntry {
  /** Relative to the extraction folder, with forward slashes. */
  readonly path: string
  readonly type: "file" | "folder"
  readonly size: number
  /** Lower-case hex; empty for folders. */
  readonly sha256: string
}

export interface Extraction {
  /** Feeds the next chunk of the compressed archive, waiting if the disk is behind. */
  readonly write: (chunk: Uint8Array) => Effect.Effect<void, UnsafeArchive | DamagedArchive>
  /** Ends the archive and waits until every file is on disk. */
  readonly finish: Effect.Effect<ReadonlyArray<ExtractedEntry>, UnsafeArchive | DamagedArchive>
}

/** Why an entry's path is refused, if it is. */
const pathProblem = (path: string): string | undefined => {
  if (path.startsWith("/") || /^[A-Za-z]:/.test(path)) return "has an absolute path"
  if (path.includes("\\")) return "has a backslash in its path"
  if (path.split("/").includes("..")) return "climbs out of the archive (..)"
  if (path.includes("\0")) return "has a NUL byte in its path"
  return undefined
}

const typeNames: Record<string, string> = {
  SymbolicLink: "a symbolic link",
  Link: "a hard link",
  CharacterDevice: "a character device",
  BlockDevice: "a block device",
  FIFO: "a FIFO"
}

/** Starts unpacking into `dir`, an empty folder the caller owns. */
export const startExtraction = (dir: string, asset: string, limits: ExtractLimits = DefaultLimits): Extraction => {
  const entries: Array<{ path: string; type: "file" | "folder"; size: number; hash: Hash | undefined }> = []
  const hashes = new WeakMap<object, Hash>()
  let bytes = 0
  // Headers and padding on top of the files themselves; past this the gzip
  // stream is inflating something that is not a plugin archive.
  const maxTarBytes = limits.maxBytes + (limits.maxFiles + 2) * 1024 + 1024 * 1024
  let failure: UnsafeArchive | DamagedArchive | undefined
  const damaged = (detail: string) => {
    failure ??= new DamagedArchive({ asset, detail })
  }
  const refuse = (entry: string, problem: string) => {
    failure ??= new UnsafeArchive({ asset, entry, problem })
    unpack.abort(failure)
    return false
  }
  const unpack: Unpack = new Unpack({
    cwd: dir,
    strict: true,
    preserveOwner: false,
    processUmask: 0o022,
    maxDepth: 32,
    filter: (path, entry) => {
      if (!("type" in entry)) return false
      const name = path.replace(/^\.\//, "")
      const problem = pathProblem(name)
      if (problem !== undefined) return refuse(path, problem)
      const type = entry.type === "Directory" ? "folder" : entry.type === "File" || entry.type === "OldFile" || entry.type === "ContiguousFile" ? "file" : undefined
      if (type === undefined) {
        const link = entry.linkpath === undefined ? "" : ` (to ${JSON.stringify(entry.linkpath)})`
        return refuse(path, `is ${typeNames[entry.type] ?? `of type ${entry.type}`}${link}`)
      }
      bytes += entry.size ?? 0
      if (bytes > limits.maxBytes) return refuse(path, `takes the unpacked size over the ${limits.maxBytes}-byte cap`)
      if (entries.length + 1 > limits.maxFiles) return refuse(path, `takes the archive over the ${limits.maxFiles}-entry cap`)
      const clean = name.replace(/\/+$/, "")
      if (clean === "" || clean === ".") return true
      const hash = type === "file" ? createHash("sha256") : undefined
      entries.push({ path: clean, type, size: entry.size ?? 0, hash })
      if (hash !== undefined) hashes.set(entry, hash)
      return true
    },
    // Each file's bytes pass through its hash on their way to disk.
    transform: (entry) => {
      const hash = hashes.get(entry)
      if (hash === undefined) return undefined
      const through = new Transform({
        transform(chunk: Buffer, _encoding, done) {
          hash.update(chunk)
          done(null, chunk)
        }
      })
      // tar only pipes through what this returns; its type names its own stream class.
      return through as unknown as ReadEntry
    }
  })
  const written = new Promise<void>((resolve) => {
    unpack.on("close", () => resolve())
    unpack.on("error", (error: unknown) => {
      damaged(error instanceof Error ? error.message : String(error))
      resolve()
    })
  })

  const gunzip = new DecompressionStream("gzip")
  const compressed = gunzip.writable.getWriter()
  // Moves inflated bytes into tar, waiting for the disk when tar asks to.
  const pumped = (async () => {
    const reader = gunzip.readable.getReader()
    let inflated = 0
    try {
      for (;;) {
        const { done, value } = await reader.read()
        if (done || failure !== undefined) break
        inflated += value.byteLength
        // Every piece of a download is a fresh buffer, and the collector lets
        // them pile up: without a full collection now and then, peak memory
        // grows with the archive (121 MB at 50 MB, 160 MB at 200 MB); with one
        // every 32 MiB it levels off near 120 MB, for no measurable time.
        if (inflated % CollectEvery < value.byteLength) Bun.gc(true)
        if (inflated > maxTarBytes) {
          refuse("(archive)", `inflates past ${maxTarBytes} bytes, more than its files may hold`)
          break
        }
        if (!unpack.write(Buffer.from(value.buffer, value.byteOffset, value.byteLength))) {
          await new Promise<void>((resolve) => {
            unpack.once("drain", resolve)
            void written.then(resolve)
          })
        }
      }
    } catch (e) {
      damaged(`not gzip data: ${e instanceof Error ? e.message : String(e)}`)
    } finally {
      if (failure !== undefined) void reader.cancel().catch(() => undefined)
    }
  })()
  const check = Effect.suspend(() => (failure === undefined ? Effect.void : Effect.fail(failure)))

  return {
    write: (chunk) =>
      Effect.gen(function*() {
        yield* check
        yield* Effect.promise(() => compressed.write(chunk as Uint8Array<ArrayBuffer>).catch(() => undefined))
        yield* check
      }),
    finish: Effect.gen(function*() {
      yield* check
      yield* Effect.promise(() => compressed.close().catch(() => undefined))
      yield* Effect.promise(() => pumped)
      yield* check
      unpack.end()
      yield* Effect.promise(() => written)
      yield* check
      return entries.map(({ hash, ...e }) => ({ ...e, sha256: hash?.digest("hex") ?? "" }))
    })
  }
}

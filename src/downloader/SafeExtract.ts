/**
 * Unpacks a plugin's `.tar.gz` release archive into a folder as it streams
 * in, refusing anything a plugin archive has no business holding: entries
 * other than regular files and folders (links, devices, FIFOs), absolute
 * paths, `..` segments, a path that appears twice, and archives over the
 * size or file-count caps. A refusal aborts the whole archive; the caller
 * throws the folder away. Each file's SHA-256 is taken on the way to disk.
 *
 * The gzip layer is the runtime's native DecompressionStream, and tar's
 * Parser reads the archive's format (ustar, pax, GNU long names); the files
 * are written here, synchronously, as the parser hands their bytes over.
 * tar's own gunzip was several times slower than the native one under Bun,
 * and its Unpack (a write stream per file) several times costlier than these
 * writes (docs/performance.md).
 */
import { createHash, type Hash } from "node:crypto"
import { closeSync, mkdirSync, openSync, writeSync } from "node:fs"
import { join } from "node:path"
import { Effect } from "effect"
import { Parser, type ReadEntry } from "tar"
import { DamagedArchive, UnsafeArchive } from "./Errors.ts"

export interface ExtractLimits {
  /** Total bytes of all files once unpacked. */
  readonly maxBytes: number
  readonly maxFiles: number
}

export const DefaultLimits: ExtractLimits = { maxBytes: 1024 * 1024 * 1024, maxFiles: 1000 }

/** Paths of more segments than this are refused: a plugin has no use for them, a zip bomb of folders might. */
const MaxDepth = 32

export interface ExtractedEntry {
  /** Relative to the extraction folder, with forward slashes. */
  readonly path: string
  readonly type: "file" | "folder"
  readonly size: number
  /** Lower-case hex; empty for folders. */
  readonly sha256: string
}

export interface Extraction {
  /**
   * Feeds the next chunk of the compressed archive. Returns a promise when
   * the caller should wait before the next (the gunzip is behind), else
   * nothing; a refusal shows at `finish`.
   */
  readonly write: (chunk: Uint8Array) => Promise<void> | undefined
  /** Ends the archive and waits until every file is on disk. */
  readonly finish: Effect.Effect<ReadonlyArray<ExtractedEntry>, UnsafeArchive | DamagedArchive>
  /** Stops an extraction that will not be finished (the download failed): closes its files. */
  readonly abort: () => void
}

/** Why an entry's path is refused, if it is. */
const pathProblem = (path: string): string | undefined => {
  if (path.startsWith("/") || /^[A-Za-z]:/.test(path)) return "has an absolute path"
  if (path.includes("\\")) return "has a backslash in its path"
  if (path.split("/").includes("..")) return "climbs out of the archive (..)"
  if (path.includes("\0")) return "has a NUL byte in its path"
  if (path.split("/").length > MaxDepth) return `is nested more than ${MaxDepth} levels deep`
  return undefined
}

const typeNames: Record<string, string> = {
  SymbolicLink: "a symbolic link",
  Link: "a hard link",
  CharacterDevice: "a character device",
  BlockDevice: "a block device",
  FIFO: "a FIFO"
}

const fileTypes = new Set(["File", "OldFile", "ContiguousFile"])

/** A file's mode on disk: the archive's permission bits, less group and other write (umask 022). */
const modeOf = (entry: ReadEntry) => ((entry.mode ?? 0o644) & 0o777 & ~0o022) || 0o644

/** Starts unpacking into `dir`, an empty folder the caller owns. */
export const startExtraction = (dir: string, asset: string, limits: ExtractLimits = DefaultLimits): Extraction => {
  const entries: Array<{ path: string; type: "file" | "folder"; size: number; hash: Hash | undefined }> = []
  const seen = new Set<string>()
  /** Files being written, closed however the archive ends. */
  const open = new Set<number>()
  const closeAll = () => {
    for (const fd of open) closeSync(fd)
    open.clear()
  }
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
  }

  /** Creates what one entry says, or refuses it; file bytes then arrive as the entry's data. */
  const unpackEntry = (entry: ReadEntry) => {
    const name = entry.path.replace(/^\.\//, "").replace(/\/+$/, "")
    const problem = pathProblem(entry.path.replace(/^\.\//, ""))
    if (problem !== undefined) return refuse(entry.path, problem)
    const type = entry.type === "Directory" ? "folder" : fileTypes.has(entry.type) ? "file" : undefined
    if (type === undefined) {
      const link = entry.linkpath === undefined || entry.linkpath === "" ? "" : ` (to ${JSON.stringify(entry.linkpath)})`
      return refuse(entry.path, `is ${typeNames[entry.type] ?? `of type ${entry.type}`}${link}`)
    }
    if (name === "" || name === ".") return entry.resume()
    bytes += entry.size
    if (bytes > limits.maxBytes) return refuse(entry.path, `takes the unpacked size over the ${limits.maxBytes}-byte cap`)
    if (entries.length + 1 > limits.maxFiles) return refuse(entry.path, `takes the archive over the ${limits.maxFiles}-entry cap`)
    if (seen.has(name)) return refuse(entry.path, "appears twice in the archive")
    seen.add(name)
    const target = join(dir, name)
    if (type === "folder") {
      entries.push({ path: name, type, size: 0, hash: undefined })
      mkdirSync(target, { recursive: true })
      return entry.resume()
    }
    const slash = name.lastIndexOf("/")
    if (slash > 0) mkdirSync(join(dir, name.slice(0, slash)), { recursive: true })
    const hash = createHash("sha256")
    entries.push({ path: name, type, size: entry.size, hash })
    // wx: a name can only be created once, and never through something already there.
    const fd = openSync(target, "wx", modeOf(entry))
    open.add(fd)
    entry.on("data", (chunk: Buffer) => {
      if (failure !== undefined || !open.has(fd)) return
      hash.update(chunk)
      writeSync(fd, chunk)
    })
    entry.on("end", () => {
      if (open.delete(fd)) closeSync(fd)
    })
  }

  const parser = new Parser({ strict: true })
  parser.on("entry", (entry: ReadEntry) => {
    if (failure !== undefined) return entry.resume()
    try {
      unpackEntry(entry)
    } catch (e) {
      damaged(`cannot write ${entry.path}: ${e instanceof Error ? e.message : String(e)}`)
    }
    if (failure !== undefined) {
      entry.resume()
      parser.abort(failure)
    }
  })
  const parsed = new Promise<void>((resolve) => {
    parser.on("end", () => resolve())
    parser.on("error", (error: unknown) => {
      damaged(error instanceof Error ? error.message : String(error))
      resolve()
    })
  })

  const gunzip = new DecompressionStream("gzip")
  const compressed = gunzip.writable.getWriter()
  // Moves inflated bytes into the parser, which writes the files as it goes.
  const pumped = (async () => {
    const reader = gunzip.readable.getReader()
    let inflated = 0
    try {
      for (;;) {
        const { done, value } = await reader.read()
        if (done || failure !== undefined) break
        inflated += value.byteLength
        if (inflated > maxTarBytes) {
          refuse("(archive)", `inflates past ${maxTarBytes} bytes, more than its files may hold`)
          break
        }
        try {
          parser.write(Buffer.from(value.buffer, value.byteOffset, value.byteLength))
        } catch (e) {
          damaged(`cannot write a file: ${e instanceof Error ? e.message : String(e)}`)
        }
      }
    } catch (e) {
      damaged(`not gzip data: ${e instanceof Error ? e.message : String(e)}`)
    } finally {
      if (failure !== undefined) void reader.cancel().catch(() => undefined)
    }
  })()
  const check = Effect.suspend(() => (failure === undefined ? Effect.void : Effect.fail(failure)))
  let finished = false

  return {
    write: (chunk) => {
      if (failure !== undefined) return undefined
      const written = compressed.write(chunk as Uint8Array<ArrayBuffer>).catch(() => undefined)
      // Wait only when the gunzip's queue is full: awaiting every write would
      // ping-pong between the download and the gunzip a chunk at a time.
      return (compressed.desiredSize ?? 1) <= 0 ? written : undefined
    },
    finish: Effect.gen(function*() {
      yield* check
      yield* Effect.promise(() => compressed.close().catch(() => undefined))
      yield* Effect.promise(() => pumped)
      yield* check
      parser.end()
      yield* Effect.promise(() => parsed)
      yield* check
      finished = true
      return entries.map(({ hash, ...e }) => ({ ...e, sha256: hash?.digest("hex") ?? "" }))
    }).pipe(Effect.ensuring(Effect.sync(closeAll))),
    abort: () => {
      if (finished) return
      failure ??= new DamagedArchive({ asset, detail: "the download was abandoned" })
      parser.abort(failure)
      void compressed.abort().catch(() => undefined)
      closeAll()
    }
  }
}

/**
 * PluginDownloader: installs plugins from their releases into the plugins
 * folder. One install: finish any interrupted install, skip a release that
 * is already installed and intact, fetch the release's checksums.txt, find
 * the archive for this platform, stream it through a SHA-256 and a safe
 * extraction into a staging folder, check the sum, then commit the files
 * and the lock in one journaled step (PluginLock). A failure at any point
 * leaves the folder as it was.
 */
import { mkdirSync } from "node:fs"
import { mkdtemp, rm } from "node:fs/promises"
import { createHash } from "node:crypto"
import { basename, join } from "node:path"
import { Context, Effect, Fiber, Layer, Result, Schema, Semaphore } from "effect"
import { type Checksums, MalformedChecksums, parseChecksums } from "./Checksums.ts"
import { type Platform, archiveNames, assetUrl, ChecksumsAsset, thisPlatform } from "./ReleaseAsset.ts"
import { type AssetBody, defaultHttpSettings, download, type DownloadFailed, type DownloadRefused, type HttpSettings, Transient } from "./ReleaseHttp.ts"
import { type DamagedArchive, DefaultLimits, type ExtractLimits, startExtraction, type UnsafeArchive } from "./SafeExtract.ts"
import { commit, exclusively, type FileConflict, type FolderBusy, type LockEntry, type LockUnreadable, LockWriteFailed, readLock, recover, stagingPrefix, verifyEntry } from "../lock/PluginLock.ts"
import { PluginModified } from "../lock/Errors.ts"
import { progressFor } from "./Progress.ts"
import type { PluginSpec } from "./PluginSpec.ts"

export interface DownloaderSettings {
  readonly pluginsDir: string
  /** Where releases are: https://github.com or a mirror with the same layout. */
  readonly releaseBase: string
  readonly token: string | undefined
  /** Refuse releases that publish no checksums.txt. */
  readonly requireChecksums: boolean
  readonly platform: Platform
  readonly limits: ExtractLimits
  /** Installs at once. */
  readonly concurrency: number
  readonly http?: Partial<HttpSettings>
}

export const downloaderSettings = (pluginsDir: string, overrides: Partial<DownloaderSettings> = {}): DownloaderSettings => ({
  pluginsDir,
  releaseBase: "https://github.com",
  token: undefined,
  requireChecksums: false,
  platform: thisPlatform,
  limits: DefaultLimits,
  concurrency: 4,
  ...overrides
})

export class ChecksumMismatch extends Schema.TaggedError<ChecksumMismatch>()("ChecksumMismatch", {
  spec: Schema.String,
  asset: Schema.String,
  expected: Schema.String,
  actual: Schema.String
}) {
  override get message() {
    return `${this.asset} of ${this.spec} does not match the release's checksums.txt: expected SHA-256 ${this.expected}, got ${this.actual}. Nothing was installed; the file may have been tampered with or replaced, tell the plugin's publisher`
  }
}

export class ChecksumsMissing extends Schema.TaggedError<ChecksumsMissing>()("ChecksumsMissing", {
  spec: Schema.String,
  url: Schema.String
}) {
  override get message() {
    return `${this.spec} publishes no checksums.txt (${this.url}) and --require-checksums is set: nothing was installed`
  }
}

export class NoReleaseAsset extends Schema.TaggedError<NoReleaseAsset>()("NoReleaseAsset", {
  spec: Schema.String,
  platform: Schema.String,
  tried: Schema.Array(Schema.String)
}) {
  override get message() {
    return `${this.spec} has no release archive for ${this.platform}: tried ${this.tried.join(", ")}. Check the repository and tag, or ask its publisher for a ${this.platform} build`
  }
}

export class NotAPluginArchive extends Schema.TaggedError<NotAPluginArchive>()("NotAPluginArchive", {
  spec: Schema.String,
  asset: Schema.String,
  detail: Schema.String
}) {
  override get message() {
    return `${this.asset} of ${this.spec} is not a plugin archive: ${this.detail}. Nothing was installed`
  }
}


export interface InstallOutcome {
  readonly spec: string
  readonly result: "installed" | "replaced" | "unchanged"
  readonly entry: LockEntry
}

export interface InstallOptions {
  /** Reinstall a release whose installed files were changed (explicit installs); otherwise refuse it. */
  readonly repair: boolean
}

const sha256Hex = () => createHash("sha256")

export class PluginDownloader extends Context.Service<PluginDownloader, {
  readonly settings: DownloaderSettings
  readonly install: (spec: PluginSpec, options: InstallOptions) => Effect.Effect<InstallOutcome, InstallError>
  /** Installs each spec, a bounded number at once; one failure never stops the others. */
  readonly installAll: (
    specs: ReadonlyArray<PluginSpec>,
    options: InstallOptions
  ) => Effect.Effect<ReadonlyArray<Result.Result<InstallOutcome, InstallError>>>
}>()("halkyon/downloader/PluginDownloader") {
  static readonly layer = (settings: DownloaderSettings) => Layer.effect(PluginDownloader, make(settings))
}

const make = Effect.fn("PluginDownloader.make")(function*(settings: DownloaderSettings) {
  const dir = settings.pluginsDir
  const http: HttpSettings = { ...defaultHttpSettings(settings.releaseBase, settings.token), ...settings.http }
  // Commits read and rewrite the lock: one at a time.
  const committing = yield* Semaphore.make(1)

  const fetchChecksums = Effect.fn("PluginDownloader.fetchChecksums")(function*(spec: PluginSpec) {
    const url = assetUrl(settings.releaseBase, spec, ChecksumsAsset)
    const text = yield* download(url, http, (body) =>
      Effect.gen(function*() {
        const parts: Array<Uint8Array> = []
        let size = 0
        for (;;) {
          const chunk = yield* body.read
          if (chunk === undefined) break
          size += chunk.byteLength
          if (size > 1 << 20) return yield* new Transient({ url: body.url, detail: "checksums.txt is over 1 MiB" })
          parts.push(chunk)
        }
        return Buffer.concat(parts).toString("utf8")
      })).pipe(Effect.catchTag("AssetNotFound", () => Effect.succeed(undefined)))
    if (text === undefined) {
      if (settings.requireChecksums) return yield* new ChecksumsMissing({ spec: spec.toString(), url: url.href })
      yield* Effect.logWarning(`${spec} publishes no checksums.txt: installing it unverified (--require-checksums refuses such releases)`)
      return undefined
    }
    const sums = parseChecksums(url.href, text)
    if (sums instanceof MalformedChecksums) return yield* sums
    return sums
  })

  /** One try at one archive: download, unpack, verify, commit. */
  const receive = (spec: PluginSpec, asset: string, published: Effect.Effect<Checksums | undefined, InstallError>) => (body: AssetBody) =>
    Effect.gen(function*() {
      const staging = yield* Effect.acquireRelease(
        Effect.tryPromise({
          try: () => mkdtemp(join(dir, stagingPrefix())),
          catch: (e) => new LockWriteFailed({ dir, detail: e instanceof Error ? e.message : String(e) })
        }),
        (path) => Effect.promise(() => rm(path, { recursive: true, force: true }))
      )
      const extraction = startExtraction(staging, asset, settings.limits)
      yield* Effect.addFinalizer(() => Effect.sync(extraction.abort))
      const hash = sha256Hex()
      const services = yield* Effect.context<never>()
      const progress = progressFor(`${spec}`, body.size, (line) => Effect.runForkWith(services)(Effect.logInfo(line)))
      yield* body.forEach((chunk) => {
        hash.update(chunk)
        progress.advance(chunk.byteLength)
        return extraction.write(chunk)
      }).pipe(Effect.ensuring(progress.finish))
      const entries = yield* extraction.finish
      const actual = hash.digest("hex")
      const sums = yield* published
      const expected = sums?.get(asset)
      if (sums !== undefined && expected === undefined) {
        return yield* new NotAPluginArchive({ spec: spec.toString(), asset, detail: "the release's checksums.txt has no line for it, so it cannot be verified" })
      }
      if (expected !== undefined && actual !== expected) {
        return yield* new ChecksumMismatch({ spec: spec.toString(), asset, expected, actual })
      }
      const files = entries.filter((e) => e.type === "file")
      const topLevel = files.filter((f) => !f.path.includes("/"))
      if (topLevel.length === 0) {
        return yield* new NotAPluginArchive({ spec: spec.toString(), asset, detail: "it has no file at its top level, where the plugin executable belongs" })
      }
      const hidden = entries.find((e) => e.path.startsWith("."))
      if (hidden !== undefined) {
        return yield* new NotAPluginArchive({ spec: spec.toString(), asset, detail: `${hidden.path} is a dot-file, which the plugins folder reserves` })
      }
      const installed = files.map((f) => ({ path: f.path, sha256: f.sha256, size: f.size }))
      const entry: LockEntry = {
        spec: spec.toString(),
        repository: spec.repository,
        tag: spec.tag,
        asset: assetUrl(settings.releaseBase, spec, asset).href,
        sha256: actual,
        checksum: expected === undefined ? "unpublished" : "verified",
        files: installed,
        installedAt: new Date().toISOString()
      }
      const result = yield* committing.withPermits(1)(exclusively(dir, commit(dir, basename(staging), entry)))
      return { spec: spec.toString(), result, entry } satisfies InstallOutcome
    })

  const install = Effect.fn("PluginDownloader.install")(function*(spec: PluginSpec, options: InstallOptions) {
    yield* Effect.try({
      try: () => mkdirSync(dir, { recursive: true }),
      catch: (e) => new LockWriteFailed({ dir, detail: e instanceof Error ? e.message : String(e) })
    })
    const completed = yield* committing.withPermits(1)(exclusively(dir, recover(dir)))
    if (completed !== undefined) yield* Effect.logInfo(`completed an install interrupted earlier in ${dir}`)
    const current = (yield* readLock(dir)).plugins.find((p) => p.repository === spec.repository)
    if (current !== undefined && current.tag === spec.tag) {
      const problems = yield* verifyEntry(dir, current).pipe(Effect.orDie)
      if (problems.length === 0) {
        yield* Effect.logInfo(`${spec} is already installed and intact: nothing to download`)
        return { spec: spec.toString(), result: "unchanged" as const, entry: current }
      }
      if (!options.repair) return yield* new PluginModified({ spec: spec.toString(), dir, problems })
      yield* Effect.logWarning(`${spec} was changed since it was installed (${problems.join("; ")}): installing it again`)
    }
    // checksums.txt is fetched while the archive downloads, and awaited before anything is committed.
    const published = yield* Effect.forkScoped(fetchChecksums(spec))
    const tried: Array<string> = []
    for (const asset of archiveNames(settings.platform)) {
      const url = assetUrl(settings.releaseBase, spec, asset)
      yield* Effect.logInfo(`downloading ${spec} from ${url.href}`)
      const outcome = yield* download(url, http, receive(spec, asset, Fiber.join(published))).pipe(
        Effect.catchTag("AssetNotFound", () => Effect.succeed(undefined))
      )
      if (outcome === undefined) {
        tried.push(url.href)
        continue
      }
      yield* Effect.logInfo(
        `${outcome.result} ${spec}: ${outcome.entry.files.map((f) => f.path).join(", ")} (SHA-256 ${outcome.entry.sha256}, ${outcome.entry.checksum === "verified" ? "matches checksums.txt" : "unverified"})`
      )
      return outcome
    }
    // Without an archive, a missing or bad checksums.txt is still worth saying.
    yield* Fiber.join(published)
    return yield* new NoReleaseAsset({ spec: spec.toString(), platform: `${settings.platform.os}/${settings.platform.arch}`, tried })
  }, Effect.scoped)

  const installAll = (specs: ReadonlyArray<PluginSpec>, options: InstallOptions) =>
    Effect.forEach(
      specs,
      (spec) =>
        install(spec, options).pipe(
          Effect.tapError((e) => Effect.logError(e.message)),
          Effect.result
        ),
      { concurrency: settings.concurrency }
    )

  return PluginDownloader.of({ settings, install, installAll })
})

export type InstallError =
  | ChecksumMismatch
  | ChecksumsMissing
  | NoReleaseAsset
  | NotAPluginArchive
  | PluginModified
  | MalformedChecksums
  | DownloadFailed
  | DownloadRefused
  | UnsafeArchive
  | DamagedArchive
  | FileConflict
  | LockUnreadable
  | LockWriteFailed
  | FolderBusy

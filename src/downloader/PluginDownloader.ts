/**
 * PluginDownloader: installs plugins from their releases into the plugins
 * folder. One install: check the spec against the lock file (if one is the
 * authority), finish any interrupted install, skip a release that is already
 * installed and intact, fetch the release's checksums.txt (and its signature,
 * where a key is configured for the repository), find the archive for this
 * platform, stream it through a SHA-256 and a safe extraction into a staging
 * folder, check the sum against checksums.txt, the spec's pin and the lock
 * file, then commit the files and the folder's plugins.lock in one journaled
 * step (PluginLock). A failure at any point leaves the folder as it was.
 * Without checksums.txt nothing is installed, unless unverified installs are
 * allowed.
 */
import { mkdirSync } from "node:fs"
import { mkdtemp, rm } from "node:fs/promises"
import { createHash } from "node:crypto"
import { basename, join } from "node:path"
import { Context, Duration, Effect, Fiber, Layer, Result, Semaphore } from "effect"
import { type Checksums, parseChecksums } from "./Checksums.ts"
import { type Platform, archiveNames, assetUrl, ChecksumsAsset, thisPlatform } from "./ReleaseAsset.ts"
import { type AssetBody, defaultHttpSettings, download, type HttpSettings } from "./ReleaseHttp.ts"
import { DefaultLimits, type ExtractLimits, startExtraction } from "./SafeExtract.ts"
import { commit, exclusively, isReservedName, type LockEntry, readLock, recover, stagingPrefix, verifyEntry } from "../lock/PluginLock.ts"
import { type LockedArchive, type LockedRelease, platformKey, type ReleaseLockFile } from "../lock/ReleaseLock.ts"
import { keysFor, type PluginKey, SignatureAsset, signedByOneOf } from "./Signature.ts"
import { type FileConflict, type FolderBusy, type LockUnreadable, LockWriteFailed, PluginModified } from "../lock/Errors.ts"
import { progressFor } from "./Progress.ts"
import type { PluginSpec } from "./PluginSpec.ts"
import {
  ChecksumMismatch,
  ChecksumsMissing,
  type DamagedArchive,
  type NoSpaceForPlugin,
  DigestMismatch,
  type DownloadFailed,
  type DownloadRefused,
  InstallTimedOut,
  MalformedChecksums,
  NoReleaseAsset,
  NotAPluginArchive,
  NotInLock,
  SignatureInvalid,
  SignatureMissing,
  Transient,
  type UnsafeArchive
} from "./Errors.ts"

export interface DownloaderSettings {
  readonly pluginsDir: string
  /** Where releases are: https://github.com or a mirror with the same layout. */
  readonly releaseBase: string
  readonly token: string | undefined
  /** The origins the token may be sent to. */
  readonly tokenOrigins: ReadonlyArray<string>
  /** Install releases that publish no checksums.txt (each with a warning); otherwise they are refused. */
  readonly allowUnverified: boolean
  /** Public keys whose signature of checksums.txt a repository's releases must carry. */
  readonly keys: ReadonlyArray<PluginKey>
  /** A lock file that is the authority on what may be installed, and its path (for messages). */
  readonly releaseLock: { readonly path: string; readonly lock: ReleaseLockFile } | undefined
  /** How long one install may take in all, retries included. */
  readonly installTimeoutMs: number
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
  tokenOrigins: [],
  allowUnverified: false,
  keys: [],
  releaseLock: undefined,
  installTimeoutMs: 5 * 60_000,
  platform: thisPlatform,
  limits: DefaultLimits,
  concurrency: 4,
  ...overrides
})

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
  /**
   * What a lock file records for a release, without installing it: the
   * archive and its SHA-256 for each platform, from its checksums.txt
   * (signature checked where a key applies), or hashed from the archives
   * themselves when it publishes none and unverified releases are allowed.
   */
  readonly lockRelease: (spec: PluginSpec, platforms: ReadonlyArray<Platform>) => Effect.Effect<LockedRelease, InstallError>
}>()("halkyon/downloader/PluginDownloader") {
  static readonly layer = (settings: DownloaderSettings) => Layer.effect(PluginDownloader, make(settings))
}

const make = Effect.fn("PluginDownloader.make")(function*(settings: DownloaderSettings) {
  const dir = settings.pluginsDir
  const http: HttpSettings = { ...defaultHttpSettings(settings.token, settings.tokenOrigins), ...settings.http }
  // Commits read and rewrite the lock: one at a time.
  const committing = yield* Semaphore.make(1)

  /** A small asset's bytes, or undefined if the release has none by that name. */
  const fetchSmall = (url: URL, name: string) =>
    download(url, http, (body) =>
      Effect.gen(function*() {
        const parts: Array<Uint8Array> = []
        let size = 0
        for (;;) {
          const chunk = yield* body.read
          if (chunk === undefined) break
          size += chunk.byteLength
          if (size > 1 << 20) return yield* new Transient({ url: body.url, detail: `${name} is over 1 MiB` })
          parts.push(chunk)
        }
        return Buffer.concat(parts)
      })).pipe(Effect.catchTag("AssetNotFound", () => Effect.succeed(undefined)))

  /** The release's checksums, verified by signature where a key is configured; undefined if it publishes none and that is allowed. */
  const fetchChecksums = Effect.fn("PluginDownloader.fetchChecksums")(function*(spec: PluginSpec) {
    const url = assetUrl(settings.releaseBase, spec, ChecksumsAsset)
    const keys = keysFor(settings.keys, spec.repository)
    const bytes = yield* fetchSmall(url, ChecksumsAsset)
    if (bytes === undefined) {
      if (keys.length > 0) return yield* new SignatureMissing({ spec: spec.toString(), url: url.href, keys: keys.map((k) => k.file) })
      if (!settings.allowUnverified) return yield* new ChecksumsMissing({ spec: spec.toString(), url: url.href })
      yield* Effect.logWarning(`${spec} publishes no checksums.txt: installing it unverified, as --allow-unverified allows`)
      return undefined
    }
    if (keys.length > 0) {
      const sigUrl = assetUrl(settings.releaseBase, spec, SignatureAsset)
      const signature = yield* fetchSmall(sigUrl, SignatureAsset)
      if (signature === undefined) {
        return yield* new SignatureMissing({ spec: spec.toString(), url: sigUrl.href, keys: keys.map((k) => k.file) })
      }
      if (!signedByOneOf(keys, bytes, signature.toString("utf8"))) {
        return yield* new SignatureInvalid({
          spec: spec.toString(),
          keys: keys.map((k) => k.file),
          detail: `${SignatureAsset} does not verify`
        })
      }
    }
    const sums = parseChecksums(url.href, bytes.toString("utf8"))
    if (sums instanceof MalformedChecksums) return yield* sums
    return { sums, signed: keys.length > 0 }
  })

  /** What the lock file, if it is the authority, allows for `spec` on this platform: its archive digest. */
  const lockedDigest = (spec: PluginSpec) =>
    Effect.gen(function*() {
      const authority = settings.releaseLock
      if (authority === undefined) return undefined
      const refuse = (detail: string) => new NotInLock({ spec: spec.toString(), lock: authority.path, detail })
      const locked = authority.lock.plugins.find((p) => p.repository === spec.repository)
      if (locked === undefined) return yield* refuse("it lists no release of this repository")
      if (locked.tag !== spec.tag) return yield* refuse(`it pins ${spec.repository}@${locked.tag}`)
      const archive = locked.archives[platformKey(settings.platform)]
      if (archive === undefined) return yield* refuse(`it has no archive for ${settings.platform.os}/${settings.platform.arch}`)
      if (spec.digest !== undefined && spec.digest !== archive.sha256) {
        return yield* refuse(`the spec pins sha256:${spec.digest}, the lock sha256:${archive.sha256}`)
      }
      return archive.sha256
    })

  /** One try at one archive: download, unpack, verify, commit. */
  const receive =
    (
      spec: PluginSpec,
      asset: string,
      published: Effect.Effect<{ readonly sums: Checksums; readonly signed: boolean } | undefined, InstallError>,
      pins: ReadonlyArray<{ readonly source: string; readonly sha256: string }>
    ) =>
    (body: AssetBody) =>
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
        const checksums = yield* published
        const expected = checksums?.sums.get(asset)
        if (checksums !== undefined && expected === undefined) {
          return yield* new NotAPluginArchive({
            spec: spec.toString(),
            asset,
            detail: "the release's checksums.txt has no line for it, so it cannot be verified"
          })
        }
        if (expected !== undefined && actual !== expected) {
          return yield* new ChecksumMismatch({ spec: spec.toString(), asset, expected, actual })
        }
        for (const pin of pins) {
          if (actual !== pin.sha256) {
            return yield* new DigestMismatch({ spec: spec.toString(), asset, source: pin.source, expected: pin.sha256, actual })
          }
        }
        const files = entries.filter((e) => e.type === "file")
        const topLevel = files.filter((f) => !f.path.includes("/"))
        if (topLevel.length === 0) {
          return yield* new NotAPluginArchive({
            spec: spec.toString(),
            asset,
            detail: "it has no file at its top level, where the plugin executable belongs"
          })
        }
        const reserved = entries.find((e) => isReservedName(e.path.split("/")[0] ?? e.path))
        if (reserved !== undefined) {
          return yield* new NotAPluginArchive({
            spec: spec.toString(),
            asset,
            detail: `${reserved.path} is a name the plugins folder reserves (plugins.lock and dot-names)`
          })
        }
        const installed = files.map((f) => ({ path: f.path, sha256: f.sha256, size: f.size }))
        const entry: LockEntry = {
          spec: spec.toString(),
          repository: spec.repository,
          tag: spec.tag,
          asset: assetUrl(settings.releaseBase, spec, asset).href,
          sha256: actual,
          checksum: expected === undefined ? "unpublished" : checksums?.signed === true ? "signed" : "verified",
          files: installed,
          installedAt: new Date().toISOString()
        }
        const result = yield* committing.withPermits(1)(exclusively(dir, commit(dir, basename(staging), entry)))
        return { spec: spec.toString(), result, entry } satisfies InstallOutcome
      })

  const installOnce = Effect.fn("PluginDownloader.install")(function*(spec: PluginSpec, options: InstallOptions) {
    const fromLock = yield* lockedDigest(spec)
    const pins = [
      ...(spec.digest === undefined ? [] : [{ source: "the spec", sha256: spec.digest }]),
      ...(fromLock === undefined ? [] : [{ source: `the lock file ${settings.releaseLock?.path}`, sha256: fromLock }])
    ]
    yield* Effect.try({
      try: () => mkdirSync(dir, { recursive: true }),
      catch: (e) => new LockWriteFailed({ dir, detail: e instanceof Error ? e.message : String(e) })
    })
    const completed = yield* committing.withPermits(1)(exclusively(dir, recover(dir)))
    if (completed !== undefined) yield* Effect.logInfo(`completed an install interrupted earlier in ${dir}`)
    const current = (yield* readLock(dir)).plugins.find((p) => p.repository === spec.repository)
    // An install whose archive is not the pinned one is done again (and refused if the release still differs).
    if (current !== undefined && current.tag === spec.tag && pins.every((pin) => pin.sha256 === current.sha256)) {
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
      const outcome = yield* download(url, http, receive(spec, asset, Fiber.join(published), pins)).pipe(
        Effect.catchTag("AssetNotFound", () => Effect.succeed(undefined))
      )
      if (outcome === undefined) {
        tried.push(url.href)
        continue
      }
      yield* Effect.logInfo(
        `${outcome.result} ${spec}: ${outcome.entry.files.map((f) => f.path).join(", ")} (SHA-256 ${outcome.entry.sha256}, ${
          describeVerification(outcome.entry, pins.length > 0)
        })`
      )
      return outcome
    }
    // Without an archive, a bad checksums.txt is still worth saying; a missing one is not the news.
    yield* Fiber.join(published).pipe(Effect.catchTags({ ChecksumsMissing: () => Effect.void, SignatureMissing: () => Effect.void }))
    return yield* new NoReleaseAsset({ spec: spec.toString(), platform: `${settings.platform.os}/${settings.platform.arch}`, tried })
  }, Effect.scoped)

  const install = (spec: PluginSpec, options: InstallOptions) =>
    installOnce(spec, options).pipe(
      Effect.timeoutOrElse({
        duration: Duration.millis(settings.installTimeoutMs),
        orElse: () => Effect.fail(new InstallTimedOut({ spec: spec.toString(), timeoutMs: settings.installTimeoutMs }))
      })
    )

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

  const lockRelease = Effect.fn("PluginDownloader.lockRelease")(function*(spec: PluginSpec, platforms: ReadonlyArray<Platform>) {
    const published = yield* fetchChecksums(spec)
    const archives: Record<string, LockedArchive> = {}
    for (const platform of platforms) {
      const names = archiveNames(platform)
      let found: LockedArchive | undefined
      if (published !== undefined) {
        const asset = names.find((name) => published.sums.has(name))
        if (asset !== undefined) found = { asset, sha256: published.sums.get(asset) ?? "" }
      } else {
        for (const asset of names) {
          const url = assetUrl(settings.releaseBase, spec, asset)
          const sha256 = yield* download(url, http, (body) =>
            Effect.gen(function*() {
              const hash = sha256Hex()
              yield* body.forEach((chunk) => void hash.update(chunk))
              return hash.digest("hex")
            })).pipe(Effect.catchTag("AssetNotFound", () => Effect.succeed(undefined)))
          if (sha256 !== undefined) {
            found = { asset, sha256 }
            break
          }
        }
      }
      if (found === undefined) {
        return yield* new NoReleaseAsset({
          spec: spec.toString(),
          platform: `${platform.os}/${platform.arch}`,
          tried: names.map((n) => assetUrl(settings.releaseBase, spec, n).href)
        })
      }
      archives[platformKey(platform)] = found
    }
    return { repository: spec.repository, tag: spec.tag, archives } satisfies LockedRelease
  }, Effect.scoped)

  return PluginDownloader.of({ settings, install, installAll, lockRelease })
})

/** How an installed archive was checked, for logs and output. */
export const describeVerification = (entry: LockEntry, pinned: boolean) =>
  [
    entry.checksum === "signed"
      ? "checksums.txt signed and matched"
      : entry.checksum === "verified"
      ? "matches checksums.txt"
      : "unverified: no checksums.txt",
    ...(pinned ? ["matches its pin"] : [])
  ].join(", ")

export type InstallError =
  | ChecksumMismatch
  | ChecksumsMissing
  | SignatureMissing
  | SignatureInvalid
  | DigestMismatch
  | NotInLock
  | InstallTimedOut
  | NoReleaseAsset
  | NotAPluginArchive
  | PluginModified
  | MalformedChecksums
  | DownloadFailed
  | DownloadRefused
  | UnsafeArchive
  | DamagedArchive
  | NoSpaceForPlugin
  | FileConflict
  | LockUnreadable
  | LockWriteFailed
  | FolderBusy

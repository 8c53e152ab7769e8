/**
 * Where plugins are installed from: the flags and variables shared by
 * `halkyon plugins install` and `halkyon run` (HALKYON_PLUGINS, the release
 * host, checksums policy, GITHUB_TOKEN), turned into downloader settings.
 */
import { Config, Effect, Option, Redacted } from "effect"
import { Flag } from "effect/cli"
import { downloaderSettings, type DownloaderSettings } from "../downloader/PluginDownloader.ts"
import { DefaultReleaseBase } from "../downloader/ReleaseAsset.ts"
import { durationFlag } from "./HostFlags.ts"

export const releaseFlags = {
  releaseBaseUrl: Flag.String("release-base-url").pipe(
    Flag.withDescription(
      `where plugin releases are, laid out as <base>/<org>/<repo>/releases/download/<tag>/<asset> (env HALKYON_RELEASE_BASE_URL)`
    ),
    Flag.withFallbackConfig(Config.String("HALKYON_RELEASE_BASE_URL")),
    Flag.withDefault(DefaultReleaseBase),
    Flag.mapTryCatch(
      (text) => {
        const url = new URL(text)
        if (url.protocol !== "https:" && url.protocol !== "http:") throw new Error("not http(s)")
        return url.href
      },
      () => "--release-base-url must be an http(s) URL, e.g. https://github.com"
    )
  ),
  downloadTimeout: durationFlag(
    "download-timeout",
    30_000,
    "how long a release host may take to answer, and to send each next piece of a download, before the try counts as failed",
    "HALKYON_DOWNLOAD_TIMEOUT"
  ),
  requireChecksums: Flag.Boolean("require-checksums").pipe(
    Flag.withDescription("refuse releases that publish no checksums.txt (env HALKYON_REQUIRE_CHECKSUMS)"),
    Flag.withFallbackConfig(Config.Boolean("HALKYON_REQUIRE_CHECKSUMS")),
    Flag.withDefault(false)
  )
}

export interface ReleaseFlagValues {
  readonly releaseBaseUrl: string
  readonly downloadTimeout: number
  readonly requireChecksums: boolean
}

/** GITHUB_TOKEN, if set: sent to the release host only, never logged. */
const githubToken = Config.Redacted("GITHUB_TOKEN").pipe(Config.option)

export const settingsFor = (pluginsDir: string, flags: ReleaseFlagValues) =>
  Effect.gen(function*() {
    const token = yield* githubToken.pipe(Effect.orElseSucceed(() => Option.none()))
    return downloaderSettings(pluginsDir, {
      releaseBase: flags.releaseBaseUrl,
      requireChecksums: flags.requireChecksums,
      http: { answerTimeoutMs: flags.downloadTimeout, readTimeoutMs: flags.downloadTimeout },
      token: Option.match(token, { onNone: () => undefined, onSome: (t) => Redacted.value(t) || undefined })
    }) satisfies DownloaderSettings
  })

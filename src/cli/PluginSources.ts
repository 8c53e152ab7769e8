/**
 * Where plugins are installed from, and what is trusted: the flags and
 * variables shared by `halkyon plugins install`, `plugins lock` and
 * `halkyon run` (the release host, checksums and signatures, digests pinned
 * by a lock file, tokens). ReleaseSettings.ts turns them into downloader
 * settings when a command runs, so that parsing and --help load no downloader.
 */
import { Config, type Option } from "effect"
import { Flag } from "effect/cli"
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
      () => "--release-base-url must be an https URL, e.g. https://github.com"
    )
  ),
  insecureReleaseUrl: Flag.Boolean("insecure-release-url").pipe(
    Flag.withDescription(
      "accept an http:// --release-base-url (the archives then travel unencrypted; checksums and signatures still apply)"
    ),
    Flag.withDefault(false)
  ),
  downloadTimeout: durationFlag(
    "download-timeout",
    30_000,
    "how long a release host may take to answer, and to send each next piece of a download, before the try counts as failed",
    "HALKYON_DOWNLOAD_TIMEOUT"
  ),
  installTimeout: durationFlag(
    "install-timeout",
    5 * 60_000,
    "how long one plugin's install may take in all, retries included, before it is abandoned",
    "HALKYON_INSTALL_TIMEOUT"
  ),
  allowUnverified: Flag.Boolean("allow-unverified").pipe(
    Flag.withDescription(
      "install releases that publish no checksums.txt, with a warning each (env HALKYON_ALLOW_UNVERIFIED); by default they are refused"
    ),
    Flag.withFallbackConfig(Config.Boolean("HALKYON_ALLOW_UNVERIFIED")),
    Flag.withDefault(false)
  ),
  requireChecksums: Flag.Boolean("require-checksums").pipe(
    Flag.withDescription("refuse releases that publish no checksums.txt: the default now, kept so that existing scripts still run"),
    Flag.withDefault(false)
  ),
  pluginKeys: Flag.String("plugin-key").pipe(
    Flag.withDescription(
      "[org/repo=]FILE: a cosign public key (PEM); releases of org/repo (of every repository, without org/repo=) must carry a checksums.txt.sig it made. " +
        "Repeatable (env HALKYON_PLUGIN_KEYS, comma-separated)"
    ),
    Flag.atLeast(0)
  ),
  lock: Flag.File("lock").pipe(
    Flag.withDescription(
      "a lock file (halkyon plugins lock writes it) that decides what may be installed: an unlisted spec, another tag or another digest is refused (env HALKYON_PLUGINS_LOCK)"
    ),
    Flag.withFallbackConfig(Config.String("HALKYON_PLUGINS_LOCK")),
    Flag.optional
  )
}

export interface ReleaseFlagValues {
  readonly releaseBaseUrl: string
  readonly insecureReleaseUrl: boolean
  readonly downloadTimeout: number
  readonly installTimeout: number
  readonly allowUnverified: boolean
  readonly requireChecksums: boolean
  readonly pluginKeys: ReadonlyArray<string>
  readonly lock: Option.Option<string>
}

/**
 * Downloader settings from the release flags of PluginSources.ts: tokens
 * from the environment (each sent to its own origin only), signing keys, the
 * lock file. Loaded by a command when it runs.
 */
import { Config, Effect, Option, Redacted } from "effect"
import { downloaderSettings, type DownloaderSettings } from "../downloader/PluginDownloader.ts"
import { loadPluginKey, type PluginKey } from "../downloader/Signature.ts"
import { readReleaseLock } from "../lock/ReleaseLock.ts"
import type { ReleaseFlagValues } from "./PluginSources.ts"

/** GITHUB_TOKEN goes to github.com alone; a mirror gets HALKYON_RELEASE_TOKEN. Neither is logged. */
const githubToken = Config.Redacted("GITHUB_TOKEN").pipe(Config.option)
const mirrorToken = Config.Redacted("HALKYON_RELEASE_TOKEN").pipe(Config.option)
const keysFromEnvironment = Config.String("HALKYON_PLUGIN_KEYS").pipe(Config.withDefault(""))
const GitHubOrigins = ["https://github.com", "https://api.github.com"]

const readToken = (config: Config.Config<Option.Option<Redacted.Redacted<string>>>) =>
  config.pipe(
    Effect.orElseSucceed(() => Option.none<Redacted.Redacted<string>>()),
    Effect.map((token) => Option.match(token, { onNone: () => undefined, onSome: (t) => Redacted.value(t) || undefined }))
  )

/** Downloader settings from the flags; fails with a message naming the flag when one cannot be used. */
export const settingsFor = Effect.fnUntraced(function*(pluginsDir: string, flags: ReleaseFlagValues) {
  const base = new URL(flags.releaseBaseUrl)
  if (base.protocol === "http:" && !flags.insecureReleaseUrl) {
    return yield* Effect.fail(
      new Error(
        `--release-base-url ${base.href} is not https: refused, because archives and checksums could be altered on the way. Use https, or pass --insecure-release-url`
      )
    )
  }
  const onGitHub = base.origin === "https://github.com"
  const token = yield* readToken(onGitHub ? githubToken : mirrorToken)
  const keyEntries = [...flags.pluginKeys, ...(yield* keysFromEnvironment.pipe(Effect.orElseSucceed(() => ""))).split(",")].filter((e) =>
    e.trim() !== ""
  )
  const keys: Array<PluginKey> = []
  for (const entry of keyEntries) {
    keys.push(yield* Effect.try({ try: () => loadPluginKey(entry), catch: (e) => (e instanceof Error ? e : new Error(String(e))) }))
  }
  const releaseLock = Option.isSome(flags.lock) ? { path: flags.lock.value, lock: yield* readReleaseLock(flags.lock.value) } : undefined
  return downloaderSettings(pluginsDir, {
    releaseBase: flags.releaseBaseUrl,
    allowUnverified: flags.allowUnverified,
    keys,
    releaseLock,
    installTimeoutMs: flags.installTimeout,
    http: { answerTimeoutMs: flags.downloadTimeout, readTimeoutMs: flags.downloadTimeout },
    token,
    tokenOrigins: onGitHub ? GitHubOrigins : [base.origin]
  }) satisfies DownloaderSettings
})

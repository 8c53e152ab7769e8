/**
 * `halkyon plugins install [SPEC...]`: installs plugins from their releases
 * into the plugins folder (HALKYON_PLUGINS when no SPEC is given, or every
 * release of the --lock file), one line per plugin on stdout. Exits non-zero
 * if any entry was bad or failed; the others are installed all the same.
 */
import { existsSync, statSync } from "node:fs"
import { Config, Effect } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { ExpectedForm } from "../downloader/Errors.ts"
import { defaultHostSettings } from "../config/HostConfig.ts"
import { releaseFlags } from "./PluginSources.ts"
import { withLogging } from "./Logging.ts"

const installFlags = {
  specs: Argument.String("spec").pipe(
    Argument.withDescription(`plugins to install, each ${ExpectedForm} (default: HALKYON_PLUGINS)`),
    Argument.variadic()
  ),
  pluginsDir: Flag.String("plugins-dir").pipe(
    Flag.withDescription("folder to install into, created if missing (env HALKYON_PLUGINS_DIR)"),
    Flag.withFallbackConfig(Config.String("HALKYON_PLUGINS_DIR")),
    Flag.withDefault(defaultHostSettings.pluginsDir),
    // Missing is fine (it is created); a file in its place is not.
    Flag.mapTryCatch(
      (path) => {
        if (existsSync(path) && !statSync(path).isDirectory()) throw new Error(`${path} is a file, not a folder`)
        return path
      },
      (e) => (e instanceof Error ? e.message : String(e))
    )
  ),
  ...releaseFlags
}

/** The install itself, loaded when the command runs. */
const installPlugins = (flags: Parameters<typeof import("./Install.ts").installPlugins>[0]) =>
  Effect.flatMap(Effect.promise(() => import("./Install.ts")), (m) => m.installPlugins(flags))

export const installCommand = Command.make("install", installFlags, (flags) => withLogging(installPlugins(flags))).pipe(
  Command.withDescription(
    "Install plugins from their GitHub-style releases into the plugins folder: the archive for this platform, " +
      "checked against the release's checksums.txt (and its signature, with --plugin-key; and the digest a #sha256: pin or --lock names), " +
      "unpacked safely and recorded in the folder's plugins.lock. A release without checksums.txt is refused unless --allow-unverified. " +
      "A plugin already installed and intact is skipped; a new tag replaces the old one."
  ),
  Command.withExamples([
    { command: "halkyon plugins install halkyon-io/postgres-plugin@v1.0.0 --plugins-dir ./plugins", description: "Install one plugin" },
    {
      command: "HALKYON_PLUGINS=acme/redis@v2.1.0,acme/kafka@v0.3.0 halkyon plugins install",
      description: "Install what HALKYON_PLUGINS names"
    },
    { command: "halkyon plugins install acme/redis@v2.1.0 --release-base-url https://mirror.example.com", description: "From a mirror" },
    {
      command: "halkyon plugins install acme/redis@v2.1.0 --plugin-key acme/redis=cosign.pub",
      description: "Only if acme signed its checksums.txt with that key"
    },
    {
      command: "halkyon plugins install --lock halkyon.lock",
      description: "Everything the lock file names, each archive checked against its digest"
    }
  ])
)

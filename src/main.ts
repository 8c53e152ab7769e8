/**
 * halkyon's entry point. A bare `halkyon version` is answered here, before
 * the command line (Effect's CLI and every command's flags) is loaded; every
 * other start loads it, and each command loads the modules it runs when it
 * runs (the build splits them into chunks of their own).
 */
// First: a start of halkyon that is the Landlock helper for a plugin ends here.
import "./plugin-host/LandlockEntry.ts"
import { versionLine } from "./Version.ts"

const args = process.argv.slice(2)
if (args.length === 1 && args[0] === "version") console.log(versionLine())
else (await import("./cli/Cli.ts")).runCli()

/**
 * What is in the plugins folder: each entry is a native executable (any
 * language), a single-file JavaScript bundle (`*.js`, run with our own
 * runtime), or something we skip with a reason. Dotfiles and the lock file
 * are ignored. A fingerprint (inode, size, mtime) tells a replaced file.
 */
import { constants, accessSync, readdirSync, statSync } from "node:fs"
import { basename, extname, join } from "node:path"
import { pluginServiceAccountName } from "../api/PluginRbac.ts"

/** "reattached": started by hand and reached at an address (--reattach), never found in the folder. */
export type PluginForm = "executable" | "bundle" | "reattached"

export interface PluginFile {
  /** The file name: `postgres` and `postgres.js` are two plugins. */
  readonly name: string
  readonly path: string
  readonly form: PluginForm
  /** Changes when the file is replaced or rewritten. */
  readonly fingerprint: string
}

export interface SkippedEntry {
  readonly path: string
  readonly reason: string
}

export interface FolderScan {
  readonly plugins: ReadonlyArray<PluginFile>
  readonly skipped: ReadonlyArray<SkippedEntry>
}

const isExecutable = (path: string) => {
  try {
    accessSync(path, constants.X_OK)
    return true
  } catch {
    return false
  }
}

/** Reads one folder entry; undefined for entries that are silently ignored. */
export const classify = (path: string): PluginFile | SkippedEntry | undefined => {
  const entry = basename(path)
  if (entry.startsWith(".") || entry === "plugins.lock") return undefined
  let stat
  try {
    stat = statSync(path)
  } catch (e) {
    return { path, reason: `cannot be read: ${e instanceof Error ? e.message : String(e)}` }
  }
  if (stat.isDirectory()) return { path, reason: "is a folder; plugins are single files" }
  if (!stat.isFile()) return { path, reason: "is not a regular file" }
  const fingerprint = `${stat.ino}:${stat.size}:${stat.mtimeMs}`
  if (extname(path) === ".js") return { name: entry, path, form: "bundle", fingerprint }
  if (process.platform === "win32" ? extname(path) === ".exe" : isExecutable(path)) {
    return { name: entry, path, form: "executable", fingerprint }
  }
  return { path, reason: "is neither an executable nor a .js bundle (chmod +x it if it is a plugin)" }
}

/**
 * Lists the folder, sorted by name so that choices between plugins are deterministic. Two names that
 * map to one ServiceAccount (`a_b` and `a.b`) would share one identity and so each other's permissions:
 * the first by name runs, the other is skipped.
 */
export const scanFolder = (dir: string): FolderScan => {
  const plugins: Array<PluginFile> = []
  const skipped: Array<SkippedEntry> = []
  const identities = new Map<string, string>()
  for (const entry of readdirSync(dir).sort()) {
    const found = classify(join(dir, entry))
    if (found === undefined) continue
    if (!("form" in found)) {
      skipped.push(found)
      continue
    }
    const identity = pluginServiceAccountName(found.name)
    const holder = identities.get(identity)
    if (holder !== undefined) {
      skipped.push({
        path: found.path,
        reason: `would run as the ServiceAccount ${identity}, which plugin ${holder} already has: rename one of the two files`
      })
      continue
    }
    identities.set(identity, found.name)
    plugins.push(found)
  }
  return { plugins, skipped }
}

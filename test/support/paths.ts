/** Where the built plugins and fixtures are (npm test builds them first). */
import { chmodSync, copyFileSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { basename, join, resolve } from "node:path"

export const root = resolve(import.meta.dir, "../..")
export const bun = process.execPath
export const builtPlugin = (name: string) => join(root, "dist/plugins", name)
export const testPlugin = (name: string) => join(root, "dist/test-plugins", name)
export const badPlugin = (name: string) => join(root, "test/fixtures/bad", name)

/** A fresh plugins folder holding copies of the given files; removed by the returned cleanup. */
export const pluginsFolder = (...files: ReadonlyArray<string>) => {
  const dir = mkdtempSync(join(tmpdir(), "halkyon-plugins-"))
  for (const file of files) addPlugin(dir, file)
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) }
}

export const addPlugin = (dir: string, file: string, as = basename(file)) => {
  const target = join(dir, as)
  copyFileSync(file, target)
  if (!as.endsWith(".js") && !as.endsWith(".txt")) chmodSync(target, 0o755)
  return target
}

/** Both forms of a built plugin, for tests that run against each. */
export const forms = (path: (name: string) => string, name: string) =>
  [
    { form: "executable", file: path(name) },
    { form: "bundle", file: path(`${name}.js`) }
  ] as const

/** Lists processes whose command line contains `needle` (from /proc). */
export const processesMatching = async (needle: string): Promise<Array<number>> => {
  const { readdirSync, readFileSync } = await import("node:fs")
  const pids: Array<number> = []
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, "utf8")
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8")
      // zombies (state Z) are dead already
      if (cmdline.includes(needle) && !/\) Z /.test(stat)) pids.push(Number(entry))
    } catch {
      // the process exited while we looked
    }
  }
  return pids
}

/** Polls until `check` holds or the time is up; returns whether it held. */
export const eventually = async (check: () => boolean | Promise<boolean>, timeoutMs: number, stepMs = 25) => {
  const end = Date.now() + timeoutMs
  for (;;) {
    if (await check()) return true
    if (Date.now() > end) return false
    await Bun.sleep(stepMs)
  }
}

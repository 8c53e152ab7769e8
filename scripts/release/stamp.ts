/**
 * Skips a slow build whose inputs have not changed: a hash of the input
 * files' contents (plus anything else that matters, such as the git commit
 * embedded in binaries), kept in a stamp file next to the outputs.
 */
import { createHash } from "node:crypto"
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs"
import { join } from "node:path"

const filesUnder = (path: string): Array<string> => {
  if (!existsSync(path)) return []
  if (!statSync(path).isDirectory()) return [path]
  return readdirSync(path)
    .sort()
    .flatMap((entry) => filesUnder(join(path, entry)))
}

/** A hash of every file under `paths` (names and contents) and of `extra`. */
export const inputsHash = (paths: ReadonlyArray<string>, extra: ReadonlyArray<string> = []) => {
  const hash = createHash("sha256")
  for (const file of paths.flatMap(filesUnder)) hash.update(`${file}\0`).update(readFileSync(file)).update("\0")
  for (const e of extra) hash.update(`${e}\0`)
  return hash.digest("hex")
}

/**
 * Runs `build` unless `stampFile` holds `hash` and every output exists; then
 * records the hash. Returns whether it built.
 */
export const buildUnlessFresh = async (stampFile: string, hash: string, outputs: ReadonlyArray<string>, build: () => Promise<unknown>) => {
  const fresh = existsSync(stampFile) && readFileSync(stampFile, "utf8") === hash && outputs.every((o) => existsSync(o))
  if (fresh) return false
  await build()
  writeFileSync(stampFile, hash)
  return true
}

/**
 * Formats the sources as dprint.json says (`npm run format`), or checks that
 * they are (`npm run format:check`, part of `npm test`): dprint's TypeScript
 * and JSON formatters, run as WebAssembly through @dprint/formatter, so no
 * native binary is needed.
 *
 *   bun scripts/format.ts           # rewrite what is not formatted
 *   bun scripts/format.ts --check   # list it and exit 1
 */
import { readFileSync, writeFileSync } from "node:fs"
import { join, relative, resolve } from "node:path"
import { createContext } from "@dprint/formatter"
import * as json from "@dprint/json"
import * as typescript from "@dprint/typescript"

const root = resolve(import.meta.dir, "..")
const check = process.argv.includes("--check")

interface FormatConfig {
  readonly lineWidth: number
  readonly indentWidth: number
  readonly typescript: Record<string, unknown>
  readonly json: Record<string, unknown>
  readonly includes: ReadonlyArray<string>
  readonly excludes: ReadonlyArray<string>
}
const config = JSON.parse(readFileSync(join(root, "dprint.json"), "utf8")) as FormatConfig

const context = createContext({ lineWidth: config.lineWidth, indentWidth: config.indentWidth })
context.addPlugin(readFileSync(typescript.getPath()), config.typescript)
context.addPlugin(readFileSync(json.getPath()), config.json)

const excluded = config.excludes.map((pattern) => new Bun.Glob(pattern))
const files = new Set<string>()
for (const pattern of config.includes) {
  for (const file of new Bun.Glob(pattern).scanSync({ cwd: root })) {
    if (!excluded.some((glob) => glob.match(file))) files.add(file)
  }
}

const unformatted: Array<string> = []
for (const file of [...files].sort()) {
  const path = join(root, file)
  const text = readFileSync(path, "utf8")
  const formatted = context.formatText({ filePath: path, fileText: text })
  if (formatted === text) continue
  unformatted.push(relative(root, path))
  if (!check) writeFileSync(path, formatted)
}

if (check && unformatted.length > 0) {
  console.error(`${unformatted.length} files are not formatted (npm run format fixes them):\n  ${unformatted.join("\n  ")}`)
  process.exit(1)
}
console.log(check ? `${files.size} files formatted as dprint.json says` : `formatted ${unformatted.length} of ${files.size} files`)

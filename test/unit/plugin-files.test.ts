/** The plugins folder as the host reads it: what runs, what is skipped and why. */
import { afterEach, describe, expect, test } from "bun:test"
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { scanFolder } from "../../src/plugin-host/PluginFiles.ts"

let dir = ""
afterEach(() => rmSync(dir, { recursive: true, force: true }))

const folder = (files: Record<string, { executable: boolean }>) => {
  dir = mkdtempSync(join(tmpdir(), "plugin-files-"))
  for (const [name, { executable }] of Object.entries(files)) {
    writeFileSync(join(dir, name), "#!/bin/sh\n")
    chmodSync(join(dir, name), executable ? 0o755 : 0o644)
  }
  return dir
}

describe("scanFolder", () => {
  test("executables and .js bundles are plugins, sorted by name; anything else is skipped with a reason", () => {
    const scan = scanFolder(
      folder({ "redis": { executable: true }, "postgres.js": { executable: false }, "notes.txt": { executable: false } })
    )
    expect(scan.plugins.map((p) => [p.name, p.form])).toEqual([["postgres.js", "bundle"], ["redis", "executable"]])
    expect(scan.skipped.map((s) => s.reason)).toEqual([expect.stringContaining("neither an executable nor a .js bundle")])
  })

  test("two names that would share one ServiceAccount: the first by name runs, the other is skipped", () => {
    const scan = scanFolder(
      folder({ "a_b": { executable: true }, "a.b": { executable: true }, "A-B": { executable: true }, "a-c": { executable: true } })
    )
    expect(scan.plugins.map((p) => p.name)).toEqual(["A-B", "a-c"])
    expect(scan.skipped.map((s) => [s.path.slice(dir.length + 1), s.reason])).toEqual([
      ["a.b", "would run as the ServiceAccount halkyon-plugin-a-b, which plugin A-B already has: rename one of the two files"],
      ["a_b", "would run as the ServiceAccount halkyon-plugin-a-b, which plugin A-B already has: rename one of the two files"]
    ])
  })
})

/** How `halkyon plugins build` reads a project folder: its language, its plugin's name, its entry point. */
import { afterAll, describe, expect, test } from "bun:test"
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { detectProject } from "../../src/cli/BuildCommand.ts"

const work = mkdtempSync(join(tmpdir(), "halkyon-project-"))
afterAll(() => rmSync(work, { recursive: true, force: true }))

const folder = (name: string, files: Record<string, string>) => {
  const dir = join(work, name)
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(join(dir, path, ".."), { recursive: true })
    writeFileSync(join(dir, path), text)
  }
  return dir
}

describe("detectProject", () => {
  test("TypeScript: halkyon.name and halkyon.main, as plugins new writes them", () => {
    const dir = folder("a", {
      "package.json": JSON.stringify({ name: "memcached-plugin", halkyon: { name: "memcached", main: "src/main.ts" } }),
      "src/main.ts": "",
      "node_modules/.keep": ""
    })
    expect(detectProject(dir)).toEqual({ lang: "ts", dir, name: "memcached", entry: join(dir, "src/main.ts") })
  })

  test("TypeScript without a halkyon field: the package name less its scope and -plugin, main.ts", () => {
    const dir = folder("b", { "package.json": JSON.stringify({ name: "@acme/kafka-plugin" }), "main.ts": "", "node_modules/.keep": "" })
    expect(detectProject(dir)).toEqual({ lang: "ts", dir, name: "kafka", entry: join(dir, "main.ts") })
  })

  test("TypeScript before npm install: says to run it", () => {
    const dir = folder("c", { "package.json": JSON.stringify({ name: "x" }), "main.ts": "" })
    expect(() => detectProject(dir)).toThrow("run npm install there first")
  })

  test("Go: the module path's last element, a major version suffix skipped", () => {
    const dir = folder("d", { "go.mod": "module github.com/acme/halkyon-nats/v2\n\ngo 1.24.0\n" })
    expect(detectProject(dir)).toEqual({ lang: "go", dir, name: "nats" })
  })

  test("neither: says what a plugin project is", () => {
    expect(() => detectProject(folder("e", { "README.md": "" }))).toThrow("neither a package.json (TypeScript) nor a go.mod (Go)")
  })
})

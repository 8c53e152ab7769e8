/**
 * The SDK as an outside project gets it: the packed @halkyon/sdk tarball is
 * installed with npm into a project in a temporary folder outside the
 * repository (the npm registry serves its dependencies), which holds a
 * small plugin written with definePlugin/dependent, a unit test with
 * `@halkyon/sdk/testing` in-process, and a test that launches its built
 * bundle through the real handshake. The project typechecks with
 * `tsc --strict`, and its tests pass.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, relative } from "node:path"
import { buildSdk, packSdk } from "../../scripts/build-sdk.ts"
import { bun, root } from "../support/paths.ts"

const fixture = join(root, "test/fixtures/sdk-project")
let project = ""
let tarball = ""

const run = (command: ReadonlyArray<string>) => {
  const result = Bun.spawnSync([...command], { cwd: project, stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "1" } })
  return { code: result.exitCode, output: result.stdout.toString() + result.stderr.toString() }
}

beforeAll(() => {
  buildSdk()
  tarball = packSdk(mkdtempSync(join(tmpdir(), "halkyon-sdk-pack-")))
  project = mkdtempSync(join(tmpdir(), "halkyon-sdk-project-"))
  for (const file of readdirSync(fixture)) copyFileSync(join(fixture, file), join(project, file))
  writeFileSync(
    join(project, "package.json"),
    JSON.stringify(
      {
        name: "memcached-plugin",
        private: true,
        type: "module",
        dependencies: { "@halkyon/sdk": `file:${tarball}` },
        devDependencies: { "@types/bun": "1.4.5", "kubernetes-types": "1.30.0" }
      },
      null,
      2
    )
  )
  const install = run(["npm", "install", "--no-audit", "--no-fund", "--ignore-scripts"])
  if (install.code !== 0) throw new Error(`npm install failed:\n${install.output}`)
}, 240_000)

afterAll(() => {
  if (project !== "") rmSync(project, { recursive: true, force: true })
  if (tarball !== "") rmSync(join(tarball, ".."), { recursive: true, force: true })
})

describe("@halkyon/sdk in a project outside the repository", () => {
  test("the project is outside the repository, and the package brings only what a plugin needs", () => {
    expect(relative(root, project).startsWith("..")).toBe(true)
    const installed = readdirSync(join(project, "node_modules")).flatMap((name) =>
      name.startsWith("@") ? readdirSync(join(project, "node_modules", name)).map((n) => `${name}/${n}`) : [name]
    )
    expect(installed).toContain("@halkyon/sdk")
    expect(installed).toContain("effect")
    for (const operatorOnly of ["@kubernetes/client-node", "@effect/platform-node", "tar", "typescript"]) {
      expect(installed).not.toContain(operatorOnly)
    }
    expect(existsSync(join(project, "node_modules/@halkyon/sdk/dist/sdk/index.d.ts"))).toBe(true)
  })

  test("it typechecks with tsc --strict, the package's declarations included", () => {
    const result = run([join(root, "node_modules/.bin/tsc"), "--noEmit", "-p", "tsconfig.json", "--strict", "--skipLibCheck", "false"])
    expect(result.output).toBe("")
    expect(result.code).toBe(0)
  })

  test("its unit tests pass with the in-process harness", () => {
    const result = run([bun, "test", "plugin.test.ts"])
    expect(result.output).toContain("3 pass")
    expect(result.code).toBe(0)
  })

  test(
    "its bundle starts and answers the five calls through the real handshake (the process-level harness)",
    () => {
      // The package keeps what loads after the handshake a module of its own, which a plugin build carries as a string.
      const loader = readFileSync(join(project, "node_modules/@halkyon/sdk/dist/sdk/ServicesLoader.js"), "utf8")
      expect(loader).toContain("import(\"./Services.js\")")
      const build = run([bun, "build", "main.ts", "--target=bun", "--format=esm", "--minify", "--outfile=dist/memcached.js"])
      expect(build.output).toContain("memcached.js")
      expect(build.code).toBe(0)
      const result = run([bun, "test", "launch.test.ts"])
      expect(result.output).toContain("1 pass")
      expect(result.code).toBe(0)
    },
    60_000
  )
})

/**
 * The round trip of a plugin release: the folders `npm run build:plugins`
 * writes (dist/plugin-releases/<name>, a TypeScript and a Go plugin), served
 * as they are from loopback release pages, installed with the compiled
 * binary's `halkyon plugins install`, and loaded by `halkyon plugins list`.
 */
import { afterAll, beforeAll, expect, test } from "bun:test"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { releasePlugin } from "../../scripts/build-plugins.ts"
import { pluginBuildsIn, pluginReleaseDir, writePluginRelease } from "../../scripts/release/plugin-archives.ts"
import { goArch, goOs, version } from "../../src/Version.ts"
import { root } from "../support/paths.ts"
import { folderAssets, makeTestCa, type ReleaseServers, removeCa, startReleaseServers, type TestCa } from "../support/releases.ts"

let ca: TestCa
let servers: ReleaseServers
const work = mkdtempSync(join(tmpdir(), "halkyon-release-install-"))
const tag = `v${version}`

beforeAll(async () => {
  await releasePlugin("postgres")
  // npm test's plugin build cross-builds the Go plugin; its release folder is made from those builds.
  await writePluginRelease("redis", pluginBuildsIn("redis"))
  ca = makeTestCa()
  servers = await startReleaseServers(ca)
  servers.publish(`halkyon-io/postgres-plugin@${tag}`, folderAssets(pluginReleaseDir("postgres")))
  servers.publish(`halkyon-io/redis-plugin@${tag}`, folderAssets(pluginReleaseDir("redis")))
}, 300_000)

afterAll(async () => {
  await servers?.close()
  if (ca !== undefined) removeCa(ca)
  rmSync(work, { recursive: true, force: true })
})

test("the release folders install with halkyon plugins install, verified, and both plugins load", async () => {
  const dir = join(work, "plugins")
  const install = Bun.spawn(
    [
      join(root, "dist/halkyon"),
      "plugins",
      "install",
      `halkyon-io/postgres-plugin@${tag}`,
      `halkyon-io/redis-plugin@${tag}`,
      "--plugins-dir",
      dir,
      "--release-base-url",
      servers.base
    ],
    { env: { ...process.env, NODE_EXTRA_CA_CERTS: ca.caFile }, stdout: "pipe", stderr: "pipe" }
  )
  const [stdout, stderr, code] = await Promise.all([
    new Response(install.stdout).text(),
    new Response(install.stderr).text(),
    install.exited
  ])
  if (code !== 0) throw new Error(stderr)
  expect(stdout).toContain(`halkyon-io/postgres-plugin@${tag}: installed postgres in ${dir}`)
  expect(stdout).toContain(`halkyon-io/redis-plugin@${tag}: installed redis in ${dir}`)
  expect(stdout.match(/matches checksums.txt/g)).toHaveLength(2)
  const lock = JSON.parse(readFileSync(join(dir, "plugins.lock"), "utf8"))
  const archive = `halkyon_plugin_${goOs}_${goArch}.tar.gz`
  expect(lock.plugins.map((p: { asset: string }) => p.asset.split("/").pop())).toEqual([archive, archive])

  const list = Bun.spawn([join(root, "dist/halkyon"), "plugins", "list", "--plugins-dir", dir, "-o", "json"], {
    stdout: "pipe",
    stderr: "pipe"
  })
  const [listed, listCode] = await Promise.all([new Response(list.stdout).text(), list.exited])
  expect(listCode).toBe(0)
  expect(JSON.parse(listed)).toMatchObject([
    { name: "postgres", form: "executable", category: "database", state: "running" },
    { name: "redis", form: "executable", category: "cache", state: "running" }
  ])
}, 120_000)

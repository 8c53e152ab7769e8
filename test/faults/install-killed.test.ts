/**
 * Fault: `halkyon plugins install` SIGKILLed in the middle of an install
 * (the archive streaming in slowly, part of it already unpacked into a staging
 * folder) over an installed version of the same plugin. The installed
 * executable and plugins.lock stay byte for byte as they were and the plugin
 * still loads; the next install converges (the new version installed and
 * locked, the dead one's staging folder gone).
 */
import { afterAll, beforeAll, expect, test } from "bun:test"
import { readdirSync, readFileSync, statSync } from "node:fs"
import { mkdtempSync, rmSync } from "node:fs"
import { createHash } from "node:crypto"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { pluginArchiveName, pluginBuildsIn, pluginReleaseDir, writePluginRelease } from "../../scripts/release/plugin-archives.ts"
import { goArch, goOs } from "../../src/Version.ts"
import { until } from "../support/faults.ts"
import { root } from "../support/paths.ts"
import { folderAssets, makeTestCa, type ReleaseServers, removeCa, startReleaseServers, type TestCa } from "../support/releases.ts"

let ca: TestCa
let servers: ReleaseServers
const work = mkdtempSync(join(tmpdir(), "halkyon-install-killed-"))
const dir = join(work, "plugins")
const archive = pluginArchiveName(goOs, goArch)

beforeAll(async () => {
  await writePluginRelease("redis", pluginBuildsIn("redis"))
  ca = makeTestCa()
  servers = await startReleaseServers(ca)
  servers.publish("halkyon-io/redis-plugin@v1.0.0", folderAssets(pluginReleaseDir("redis")))
  // The next version's archive trickles in: 64 KiB every 20 ms.
  const body = new Uint8Array(readFileSync(join(pluginReleaseDir("redis"), archive)))
  servers.publish("halkyon-io/redis-plugin@v1.0.1", {
    ...folderAssets(pluginReleaseDir("redis")),
    [archive]: [{ kind: "bytes", body, throttle: { chunk: 64 * 1024, everyMs: 20 } }]
  })
}, 120_000)

afterAll(async () => {
  await servers?.close()
  if (ca !== undefined) removeCa(ca)
  rmSync(work, { recursive: true, force: true })
})

const halkyon = (args: ReadonlyArray<string>) =>
  Bun.spawn([join(root, "dist/halkyon"), ...args], {
    env: { ...process.env, NODE_EXTRA_CA_CERTS: ca.caFile },
    stdout: "pipe",
    stderr: "pipe"
  })

const install = async (release: string) => {
  const proc = halkyon(["plugins", "install", release, "--plugins-dir", dir, "--release-base-url", servers.base])
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited])
  return { out: out + err, code }
}

const sha256 = (path: string) => createHash("sha256").update(readFileSync(path)).digest("hex")
const snapshot = () => ({ redis: sha256(join(dir, "redis")), lock: readFileSync(join(dir, "plugins.lock"), "utf8") })
const staging = () => readdirSync(dir).filter((name) => name.startsWith(".halkyon-install-"))
/** Bytes unpacked so far into the staging folders. */
const staged = () => {
  let bytes = 0
  for (const folder of staging()) {
    for (const name of readdirSync(join(dir, folder))) bytes += statSync(join(dir, folder, name)).size
  }
  return bytes
}

test("SIGKILL in the middle of a plugin install leaves the installed version intact, and the next install converges", async () => {
  const first = await install("halkyon-io/redis-plugin@v1.0.0")
  expect(first.code).toBe(0)
  const before = snapshot()
  expect(before.lock).toContain("v1.0.0")

  const killed = halkyon(["plugins", "install", "halkyon-io/redis-plugin@v1.0.1", "--plugins-dir", dir, "--release-base-url", servers.base])
  // Part of the new executable is on disk: the install is under way.
  await until("the install unpacked its first megabyte", () => staged() > 1024 * 1024, 30_000, 10)
  const atKill = staged()
  killed.kill("SIGKILL")
  expect(await killed.exited).not.toBe(0)
  expect(snapshot()).toEqual(before)
  const list = halkyon(["plugins", "list", "--plugins-dir", dir, "-o", "json"])
  const [listed, listCode] = await Promise.all([new Response(list.stdout).text(), list.exited])
  expect(listCode).toBe(0)
  expect(JSON.parse(listed)).toMatchObject([{ name: "redis", state: "running" }])

  // The next try, at full speed, converges.
  servers.publish("halkyon-io/redis-plugin@v1.0.1", folderAssets(pluginReleaseDir("redis")))
  const again = await install("halkyon-io/redis-plugin@v1.0.1")
  console.log(
    `[faults] install SIGKILLed with ${
      (atKill / 1024 / 1024).toFixed(1)
    } MB unpacked: installed version intact; the next install exited ${again.code}`
  )
  expect(again.code).toBe(0)
  expect(snapshot().lock).toContain("v1.0.1")
  expect(staging()).toEqual([])
  expect(readdirSync(dir).sort()).toEqual(["plugins.lock", "redis"])
}, 90_000)

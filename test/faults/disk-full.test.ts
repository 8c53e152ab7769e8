/**
 * Fault: the disk fills up during a plugin install. The plugins folder is a
 * 20 MB tmpfs, mounted in a user and mount namespace of its own (unshare
 * -rm: no root needed where unprivileged user namespaces are allowed), that
 * holds one 13 MB redis plugin but not the staging copy of a second version.
 * The compiled binary installs the first, then is refused the second: it
 * exits non-zero saying the folder is full (not that the release is broken), and leaves the folder as it was (the installed
 * executable and plugins.lock byte for byte, no staging folder left, the
 * plugin still loads).
 */
import { afterAll, beforeAll, expect, test } from "bun:test"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { pluginBuildsIn, writePluginRelease, pluginReleaseDir } from "../../scripts/release/plugin-archives.ts"
import { root } from "../support/paths.ts"
import { folderAssets, makeTestCa, type ReleaseServers, removeCa, startReleaseServers, type TestCa } from "../support/releases.ts"

let ca: TestCa
let servers: ReleaseServers
const work = mkdtempSync(join(tmpdir(), "halkyon-disk-full-"))

beforeAll(async () => {
  const probe = Bun.spawnSync(["unshare", "--user", "--map-root-user", "--mount", "true"], { stdout: "pipe", stderr: "pipe" })
  if (probe.exitCode !== 0) {
    throw new Error(
      `the disk-full case needs a user and mount namespace (unshare -rm) to mount a small tmpfs without root: ${probe.stderr.toString().trim()}`
    )
  }
  await writePluginRelease("redis", pluginBuildsIn("redis"))
  ca = makeTestCa()
  servers = await startReleaseServers(ca)
  servers.publish("halkyon-io/redis-plugin@v1.0.0", folderAssets(pluginReleaseDir("redis")))
  servers.publish("halkyon-io/redis-plugin@v1.0.1", folderAssets(pluginReleaseDir("redis")))
}, 120_000)

afterAll(async () => {
  await servers?.close()
  if (ca !== undefined) removeCa(ca)
  rmSync(work, { recursive: true, force: true })
})

/** Runs in the namespace: mount, install, snapshot, install again, snapshot. Sections are marked `== name`. */
const script = `
set -u
dir="$1"; halkyon="$2"; base="$3"
mkdir -p "$dir" && mount -t tmpfs -o size=20m tmpfs "$dir" || exit 90
snapshot() { (cd "$dir" && ls -A | sort && sha256sum redis plugins.lock); }
echo "== first"; "$halkyon" plugins install halkyon-io/redis-plugin@v1.0.0 --plugins-dir "$dir" --release-base-url "$base" 2>&1; echo "exit=$?"
echo "== before"; snapshot
echo "== df"; df -k "$dir" | tail -1
echo "== second"; "$halkyon" plugins install halkyon-io/redis-plugin@v1.0.1 --plugins-dir "$dir" --release-base-url "$base" 2>&1; echo "exit=$?"
echo "== after"; snapshot
echo "== list"; "$halkyon" plugins list --plugins-dir "$dir" -o json 2>&1; echo "exit=$?"
`

test("a plugin install that fills the disk is refused cleanly and leaves the installed plugin as it was", async () => {
  const dir = join(work, "plugins")
  const proc = Bun.spawn([
    "unshare",
    "--user",
    "--map-root-user",
    "--mount",
    "sh",
    "-c",
    script,
    "sh",
    dir,
    join(root, "dist/halkyon"),
    servers.base
  ], {
    env: { ...process.env, NODE_EXTRA_CA_CERTS: ca.caFile },
    stdout: "pipe",
    stderr: "pipe"
  })
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited])
  if (code === 90) throw new Error(`mounting a tmpfs in the namespace failed: ${err}`)
  const sections = new Map<string, string>()
  for (const part of out.split(/^== /m).slice(1)) sections.set(part.slice(0, part.indexOf("\n")), part.slice(part.indexOf("\n") + 1).trim())
  const section = (name: string) => sections.get(name) ?? ""
  console.log(
    `[faults] disk full: tmpfs ${section("df")}; second install said: ${
      section("second").split("\n").filter((l) => !l.startsWith("exit=")).join(" / ")
    }`
  )

  expect(section("first")).toContain("installed redis")
  expect(section("first")).toEndWith("exit=0")
  expect(section("second")).not.toEndWith("exit=0")
  // Said as what it is: the folder is full, not the release broken.
  expect(section("second")).toContain("no room to unpack halkyon_plugin_")
  expect(section("second")).toContain("ENOSPC")
  expect(section("second")).not.toContain("not a readable .tar.gz archive")
  // Byte for byte as before: the same files (no staging folder left), the same executable and lock.
  expect(section("after")).toBe(section("before"))
  expect(section("list")).toEndWith("exit=0")
  expect(section("list")).toContain(`"name": "redis"`)
}, 120_000)

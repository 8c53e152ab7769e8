/**
 * Fault: a plugin install SIGKILLed, over an installed version of the same
 * plugin, at each point it can be held:
 * - `halkyon plugins install` and `halkyon run --plugins ...` while the archive
 *   streams in slowly, part of it already unpacked into a staging folder: the
 *   installed executable and plugins.lock stay byte for byte as they were and
 *   the plugin still loads; the next install converges (the new version
 *   installed and locked, the dead one's staging folder gone);
 * - at the commit step, with the journal written and the executable moved
 *   into place but plugins.lock not yet rewritten (the install is held opening
 *   the lock's temporary file, a FIFO the test put where it goes): the next
 *   start finishes the commit from the journal alone, with no release server
 *   to download from.
 */
import { afterAll, beforeAll, expect, test } from "bun:test"
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { mkdtempSync } from "node:fs"
import { createHash } from "node:crypto"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { pluginArchiveName, pluginBuildsIn, pluginReleaseDir, writePluginRelease } from "../../scripts/release/plugin-archives.ts"
import { formatIdentity, startTimeOf, thisProcess } from "../../src/lock/ProcessIdentity.ts"
import { goArch, goOs } from "../../src/Version.ts"
import { until } from "../support/faults.ts"
import { root } from "../support/paths.ts"
import { folderAssets, makeTestCa, type ReleaseServers, removeCa, startReleaseServers, type TestCa } from "../support/releases.ts"

let ca: TestCa
let servers: ReleaseServers
const work = mkdtempSync(join(tmpdir(), "halkyon-install-killed-"))
const archive = pluginArchiveName(goOs, goArch)
// `halkyon run` installs before it talks to the API server: a kubeconfig naming a closed port is enough.
const kubeconfig = join(work, "kubeconfig")
// A release base no server answers on: an install that needs a download fails.
const nowhere = "https://127.0.0.1:9"

beforeAll(async () => {
  await writePluginRelease("redis", pluginBuildsIn("redis"))
  ca = makeTestCa()
  servers = await startReleaseServers(ca)
  servers.publish("halkyon-io/redis-plugin@v1.0.0", folderAssets(pluginReleaseDir("redis")))
  // The next versions' archives trickle in: 64 KiB every 20 ms.
  const body = new Uint8Array(readFileSync(join(pluginReleaseDir("redis"), archive)))
  for (const tag of ["v1.0.1", "v1.0.3"]) {
    servers.publish(`halkyon-io/redis-plugin@${tag}`, {
      ...folderAssets(pluginReleaseDir("redis")),
      [archive]: [{ kind: "bytes", body, throttle: { chunk: 64 * 1024, everyMs: 20 } }]
    })
  }
  servers.publish("halkyon-io/redis-plugin@v1.0.2", folderAssets(pluginReleaseDir("redis")))
  writeFileSync(
    kubeconfig,
    [
      "apiVersion: v1",
      "kind: Config",
      "clusters: [{ name: nowhere, cluster: { server: \"https://127.0.0.1:9\", insecure-skip-tls-verify: true } }]",
      "users: [{ name: nobody, user: { token: none } }]",
      "contexts: [{ name: nowhere, context: { cluster: nowhere, user: nobody } }]",
      "current-context: nowhere",
      ""
    ].join("\n")
  )
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

const finished = async (proc: ReturnType<typeof halkyon>) => {
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited])
  return { out: out + err, code }
}

/** A running process's output so far, and all of it once it has exited. */
const watched = (proc: ReturnType<typeof halkyon>) => {
  let text = ""
  const read = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder()
    for await (const chunk of stream) text += decoder.decode(chunk, { stream: true })
  }
  const done = Promise.all([read(proc.stdout), read(proc.stderr), proc.exited]).then(([, , code]) => ({ out: text, code }))
  return { sofar: () => text, done }
}

const installArgs = (dir: string, release: string, base = servers.base) => [
  "plugins",
  "install",
  release,
  "--plugins-dir",
  dir,
  "--release-base-url",
  base
]
const install = (dir: string, release: string, base = servers.base) => finished(halkyon(installArgs(dir, release, base)))
const runArgs = (dir: string, release: string, base = servers.base) => [
  "run",
  "--plugins",
  release,
  "--plugins-dir",
  dir,
  "--release-base-url",
  base,
  "--kubeconfig",
  kubeconfig,
  "--health-addr",
  "0",
  "--metrics-addr",
  "0"
]

const sha256 = (path: string) => createHash("sha256").update(readFileSync(path)).digest("hex")
const snapshot = (dir: string) => ({ redis: sha256(join(dir, "redis")), lock: readFileSync(join(dir, "plugins.lock"), "utf8") })
const staging = (dir: string) => readdirSync(dir).filter((name) => name.startsWith(".halkyon-install-"))
/** Bytes unpacked so far into the staging folders. */
const staged = (dir: string) => {
  let bytes = 0
  for (const folder of staging(dir)) {
    for (const name of readdirSync(join(dir, folder))) bytes += statSync(join(dir, folder, name)).size
  }
  return bytes
}
/** Whether the folder's plugin still loads. */
const loads = async (dir: string) => {
  const list = halkyon(["plugins", "list", "--plugins-dir", dir, "-o", "json"])
  const [listed, listCode] = await Promise.all([new Response(list.stdout).text(), list.exited])
  expect(listCode).toBe(0)
  expect(JSON.parse(listed)).toMatchObject([{ name: "redis", state: "running" }])
}
/** A folder with v1.0.0 installed, and its state. */
const installed = async (name: string) => {
  const dir = join(work, name)
  const first = await install(dir, "halkyon-io/redis-plugin@v1.0.0")
  expect(first.code).toBe(0)
  const before = snapshot(dir)
  expect(before.lock).toContain("v1.0.0")
  return { dir, before }
}

test("SIGKILL in the middle of a plugin install leaves the installed version intact, and the next install converges", async () => {
  const { dir, before } = await installed("install")

  const killed = halkyon(installArgs(dir, "halkyon-io/redis-plugin@v1.0.1"))
  // Part of the new executable is on disk: the install is under way.
  await until("the install unpacked its first megabyte", () => staged(dir) > 1024 * 1024, 30_000, 10)
  const atKill = staged(dir)
  killed.kill("SIGKILL")
  expect(await killed.exited).not.toBe(0)
  expect(snapshot(dir)).toEqual(before)
  await loads(dir)

  // The next try, at full speed, converges.
  servers.publish("halkyon-io/redis-plugin@v1.0.1", folderAssets(pluginReleaseDir("redis")))
  const again = await install(dir, "halkyon-io/redis-plugin@v1.0.1")
  console.log(
    `[faults] install SIGKILLed with ${
      (atKill / 1024 / 1024).toFixed(1)
    } MB unpacked: installed version intact; the next install exited ${again.code}`
  )
  expect(again.code).toBe(0)
  expect(snapshot(dir).lock).toContain("v1.0.1")
  expect(staging(dir)).toEqual([])
  expect(readdirSync(dir).sort()).toEqual(["plugins.lock", "redis"])
}, 90_000)

test(
  "SIGKILL of `halkyon run --plugins` in the middle of its install leaves the installed version intact, and the next start converges",
  async () => {
    const { dir, before } = await installed("run")

    const killed = halkyon(runArgs(dir, "halkyon-io/redis-plugin@v1.0.3"))
    await until("the operator's install unpacked its first megabyte", () => staged(dir) > 1024 * 1024, 30_000, 10)
    const atKill = staged(dir)
    killed.kill("SIGKILL")
    expect(await killed.exited).not.toBe(0)
    expect(snapshot(dir)).toEqual(before)
    await loads(dir)

    // The next start, at full speed, installs it; then it goes on to the API server, which is nowhere: stopped there.
    servers.publish("halkyon-io/redis-plugin@v1.0.3", folderAssets(pluginReleaseDir("redis")))
    const next = halkyon(runArgs(dir, "halkyon-io/redis-plugin@v1.0.3"))
    const output = finished(next)
    await until(
      "the next start installed v1.0.3",
      () => readFileSync(join(dir, "plugins.lock"), "utf8").includes("v1.0.3") || next.exitCode !== null,
      30_000
    )
    next.kill("SIGTERM")
    const { out } = await output
    console.log(
      `[faults] halkyon run SIGKILLed mid-install with ${(atKill / 1024 / 1024).toFixed(1)} MB unpacked: installed version intact`
    )
    expect(out).toContain("downloading halkyon-io/redis-plugin@v1.0.3")
    expect(snapshot(dir).lock).toContain("v1.0.3")
    expect(snapshot(dir).redis).toBe(before.redis)
    expect(staging(dir)).toEqual([])
    expect(readdirSync(dir).sort()).toEqual(["plugins.lock", "redis"])
    await loads(dir)
  },
  90_000
)

for (const command of ["plugins install", "run --plugins"] as const) {
  test(
    `SIGKILL at the commit step (executable moved, plugins.lock not yet written): the next \`halkyon ${command}\` finishes it from the journal, without downloading`,
    async () => {
      const { dir, before } = await installed(`commit-${command.split(" ")[0]}`)
      const journal = join(dir, ".plugins.lock.journal")
      // The folder's mutex, held by this (running) test process: the install waits before touching the folder, so the
      // FIFO below is in place before it commits, however fast it downloads.
      const mutex = join(dir, ".plugins.lock.mutex")
      writeFileSync(mutex, formatIdentity(thisProcess))
      const killed = halkyon(installArgs(dir, "halkyon-io/redis-plugin@v1.0.2"))
      // Where this process will write the new plugins.lock before renaming it over the old one: opening a FIFO for
      // writing blocks until someone reads it, nobody will, so the commit stops between the moves and the lock.
      const temp = join(dir, `.tmp-plugins.lock-${formatIdentity({ pid: killed.pid, start: startTimeOf(killed.pid) })}`)
      const fifo = Bun.spawnSync(["mkfifo", temp])
      expect(fifo.exitCode).toBe(0)
      rmSync(mutex)
      await until(
        "the install committed up to the lock (journal written, executable moved)",
        () => existsSync(journal) && staging(dir).length === 1 && readdirSync(join(dir, staging(dir)[0] ?? "")).length === 0,
        30_000,
        10
      )
      killed.kill("SIGKILL")
      expect(await killed.exited).not.toBe(0)
      // Half done, and recorded as such: the old lock (whole), the journal naming the new one.
      expect(snapshot(dir).lock).toBe(before.lock)
      expect(readFileSync(journal, "utf8")).toContain("v1.0.2")

      // No release server now: only the journal can finish the install.
      const next = command === "plugins install"
        ? await install(dir, "halkyon-io/redis-plugin@v1.0.2", nowhere)
        : await (async () => {
          const proc = halkyon(runArgs(dir, "halkyon-io/redis-plugin@v1.0.2", nowhere))
          const output = watched(proc)
          await until(
            "the next start is past its install",
            () => output.sofar().includes("nothing to download") || proc.exitCode !== null,
            30_000
          )
          proc.kill("SIGTERM")
          return await output.done
        })()
      console.log(
        `[faults] ${command} SIGKILLed at the commit step: the next start ${
          next.out.includes("completed an install interrupted earlier") ? "completed it" : "did not complete it"
        }`
      )
      if (command === "plugins install") expect(next.code).toBe(0)
      expect(next.out).toContain("completed an install interrupted earlier")
      expect(next.out).toContain("already installed and intact: nothing to download")
      const after = snapshot(dir)
      expect(after.lock).toContain("v1.0.2")
      expect(after.lock).not.toContain("v1.0.0")
      expect(after.redis).toBe(before.redis)
      expect(readdirSync(dir).sort()).toEqual(["plugins.lock", "redis"])
      await loads(dir)
    },
    90_000
  )
}

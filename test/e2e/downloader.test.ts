/**
 * `halkyon plugins install` and `halkyon run --plugins`, through the compiled
 * binary, against release pages on loopback (HTTPS with a test CA, and a
 * redirect to a second host standing for object storage). Every failure
 * also checks that the plugins folder holds exactly what it held before.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs"
import { createServer as createHttpServer, type Server } from "node:http"
import { connect, type AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { goArch, goOs } from "../../src/Version.ts"
import { parsePluginSpecs } from "../../src/downloader/PluginSpec.ts"
import { builtPlugin, eventually, root } from "../support/paths.ts"
import { type Cluster, startCluster, startOperator, untilReady } from "../support/cluster.ts"
import {
  type Asset,
  checksums,
  type ReleaseServers,
  sha256,
  folderMaker,
  openReleasePages,
  tarGz,
  type TestCa
} from "../support/releases.ts"

const halkyon = join(root, "dist/halkyon")
const archName = `halkyon_plugin_${goOs}_${goArch}.tar.gz`
const osName = `halkyon_plugin_${goOs}.tar.gz`

let ca: TestCa
let servers: ReleaseServers
let close = async () => {}
const work = mkdtempSync(join(tmpdir(), "halkyon-downloader-"))

beforeAll(async () => {
  ;({ ca, servers, close } = await openReleasePages(work))
})
afterAll(() => close())

const freshFolder = folderMaker(work)

interface Run {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

const install = async (args: ReadonlyArray<string>, env: Record<string, string> = {}): Promise<Run> => {
  const proc = Bun.spawn([halkyon, "plugins", "install", "--release-base-url", servers.base, ...args], {
    env: { ...process.env, NODE_EXTRA_CA_CERTS: ca.caFile, GITHUB_TOKEN: "", HALKYON_PLUGINS: "", ...env },
    stdout: "pipe",
    stderr: "pipe"
  })
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited])
  // Log lines are logfmt: quotes inside messages come escaped.
  return { code, stdout, stderr: stderr.replaceAll("\\\"", "\"") }
}

/** Every entry of the folder, with each file's mode and SHA-256: what "unchanged" means. */
const snapshot = (dir: string): Record<string, string> => {
  const out: Record<string, string> = {}
  const walk = (path: string, rel: string) => {
    for (const entry of readdirSync(path).sort()) {
      const full = join(path, entry)
      const name = rel === "" ? entry : `${rel}/${entry}`
      const stat = lstatSync(full)
      if (stat.isDirectory()) {
        out[name] = "folder"
        walk(full, name)
      } else out[name] = `${(stat.mode & 0o777).toString(8)} ${sha256(readFileSync(full))}`
    }
  }
  walk(dir, "")
  return out
}

const encode = (text: string) => new TextEncoder().encode(text)
const bundle = readFileSync(builtPlugin("postgres.js"))

/** A release holding the postgres bundle, with its checksums. */
const publishPostgres = (release: string, assetName = archName, extra: Record<string, Uint8Array> = {}) => {
  const archive = tarGz([{ path: "postgres.js", body: bundle }])
  servers.publish(release, { [assetName]: archive, "checksums.txt": encode(checksums({ [assetName]: archive, ...extra })), ...extra })
  return archive
}

/** A folder with one plugin installed, for the failure cases to start from. */
const folderWithPlugin = async () => {
  const dir = freshFolder()
  publishPostgres("base/pg@v1")
  const first = await install(["base/pg@v1", "--plugins-dir", dir])
  expect(first.code).toBe(0)
  return dir
}

/** Publishes `asset` as the only archive of a release, installs it, and expects a refusal that leaves the folder as it was. */
const expectRefused = async (release: string, assets: Record<string, Asset>, args: ReadonlyArray<string> = []) => {
  const dir = await folderWithPlugin()
  const before = snapshot(dir)
  servers.publish(release, assets)
  const result = await install([release, "--plugins-dir", dir, ...args])
  expect(result.code).toBe(1)
  expect(snapshot(dir)).toEqual(before)
  expect(result.stdout).toContain(`${release}: failed`)
  return result
}

describe("plugin specs", () => {
  test("entries are trimmed, empty ones ignored, bad ones quoted with the expected form", () => {
    const { specs, invalid } = parsePluginSpecs([" acme/redis@v1.0.0 ,, acme/kafka@v2 ", "nonsense,acme/x@", "a/b/c@v1,acme/ok@../x"])
    expect(specs.map(String)).toEqual(["acme/redis@v1.0.0", "acme/kafka@v2"])
    expect(invalid.map((e) => e.message)).toEqual([
      "invalid plugin \"nonsense\": no @tag; expected org/repo@tag[#sha256:<archive digest>], e.g. halkyon-io/postgres-plugin@v1.2.0",
      "invalid plugin \"acme/x@\": \"\" is not a valid tag; expected org/repo@tag[#sha256:<archive digest>], e.g. halkyon-io/postgres-plugin@v1.2.0",
      "invalid plugin \"a/b/c@v1\": the repository must be org/repo; expected org/repo@tag[#sha256:<archive digest>], e.g. halkyon-io/postgres-plugin@v1.2.0",
      "invalid plugin \"acme/ok@../x\": \"../x\" is not a valid tag; expected org/repo@tag[#sha256:<archive digest>], e.g. halkyon-io/postgres-plugin@v1.2.0"
    ])
  })

  test("a repository named twice keeps its last tag", () => {
    expect(parsePluginSpecs(["acme/redis@v1,acme/redis@v2"]).specs.map(String)).toEqual(["acme/redis@v2"])
  })
})

describe("halkyon plugins install (compiled binary)", () => {
  test("happy path: redirect to storage, the mirror's token to the release host only, checksum verified, lock written, plugin loads", async () => {
    const dir = freshFolder()
    const archive = publishPostgres("acme/pg@v1.0.0")
    const from = servers.requests.length
    // A mirror gets HALKYON_RELEASE_TOKEN; GITHUB_TOKEN is for github.com alone.
    const result = await install(["acme/pg@v1.0.0", "--plugins-dir", dir], {
      HALKYON_RELEASE_TOKEN: "token-for-release-host",
      GITHUB_TOKEN: "github-only"
    })
    expect(result.stderr).not.toContain("token-for-release-host")
    expect(result.code).toBe(0)
    expect(result.stdout).toContain("acme/pg@v1.0.0: installed postgres.js")
    expect(result.stdout).toContain("matches checksums.txt")

    const requests = servers.requests.slice(from)
    expect(requests.map((r) => `${r.server} ${r.path.replace(/\?.*/, "")}`).sort()).toEqual([
      "release /acme/pg/releases/download/v1.0.0/checksums.txt",
      `release /acme/pg/releases/download/v1.0.0/${archName}`,
      `storage /blobs/${encodeURIComponent("acme/pg@v1.0.0/checksums.txt")}`,
      `storage /blobs/${encodeURIComponent(`acme/pg@v1.0.0/${archName}`)}`
    ])
    for (const r of requests) expect(r.authorization).toBe(r.server === "release" ? "Bearer token-for-release-host" : undefined)

    expect(readdirSync(dir).sort()).toEqual(["plugins.lock", "postgres.js"])
    const lock = JSON.parse(readFileSync(join(dir, "plugins.lock"), "utf8"))
    expect(lock.version).toBe(1)
    expect(lock.plugins).toHaveLength(1)
    expect(lock.plugins[0]).toMatchObject({
      spec: "acme/pg@v1.0.0",
      repository: "acme/pg",
      tag: "v1.0.0",
      asset: `${servers.base}/acme/pg/releases/download/v1.0.0/${archName}`,
      sha256: sha256(archive),
      checksum: "verified",
      files: [{ path: "postgres.js", sha256: sha256(bundle), size: bundle.byteLength }]
    })
    expect(Number.isNaN(Date.parse(lock.plugins[0].installedAt))).toBe(false)

    const list = Bun.spawnSync([halkyon, "plugins", "list", "--plugins-dir", dir, "-o", "json"], { stdout: "pipe", stderr: "pipe" })
    expect(list.exitCode).toBe(0)
    expect(JSON.parse(list.stdout.toString())).toMatchObject([{ name: "postgres.js", category: "database", state: "running" }])
  })

  test("the same spec again is verified and skipped without a download", async () => {
    const dir = freshFolder()
    publishPostgres("acme/again@v1")
    expect((await install(["acme/again@v1", "--plugins-dir", dir])).code).toBe(0)
    const before = snapshot(dir)
    const from = servers.requests.length
    const again = await install(["acme/again@v1", "--plugins-dir", dir])
    expect(again.code).toBe(0)
    expect(again.stdout).toContain("acme/again@v1: unchanged postgres.js")
    expect(again.stderr).toContain("already installed and intact")
    expect(servers.requests.length).toBe(from)
    expect(snapshot(dir)).toEqual(before)
  })

  test("a new tag replaces the old release's files and its lock entry", async () => {
    const dir = freshFolder()
    const v1 = tarGz([{ path: "tool-a.js", body: bundle }, { path: "notes.txt", body: "v1 notes" }])
    servers.publish("acme/tool@v1", { [archName]: v1, "checksums.txt": encode(checksums({ [archName]: v1 })) })
    expect((await install(["acme/tool@v1", "--plugins-dir", dir])).code).toBe(0)
    const v2 = tarGz([{ path: "tool-a.js", body: `${bundle.toString()}\n// v2\n` }])
    servers.publish("acme/tool@v2", { [archName]: v2, "checksums.txt": encode(checksums({ [archName]: v2 })) })
    const result = await install(["acme/tool@v2", "--plugins-dir", dir])
    expect(result.code).toBe(0)
    expect(result.stdout).toContain("acme/tool@v2: replaced tool-a.js")
    expect(readdirSync(dir).sort()).toEqual(["plugins.lock", "tool-a.js"])
    expect(readFileSync(join(dir, "tool-a.js"), "utf8")).toEndWith("// v2\n")
    const lock = JSON.parse(readFileSync(join(dir, "plugins.lock"), "utf8"))
    expect(lock.plugins.map((p: { spec: string }) => p.spec)).toEqual(["acme/tool@v2"])
  })

  test("the executable bit is kept", async () => {
    const dir = freshFolder()
    const archive = tarGz([
      { path: "tool", body: "#!/bin/sh\necho hi\n", mode: 0o755 },
      { path: "README.md", body: "read me", mode: 0o644 }
    ])
    servers.publish("acme/modes@v1", { [archName]: archive, "checksums.txt": encode(checksums({ [archName]: archive })) })
    expect((await install(["acme/modes@v1", "--plugins-dir", dir])).code).toBe(0)
    expect(statSync(join(dir, "tool")).mode & 0o777).toBe(0o755)
    expect(statSync(join(dir, "README.md")).mode & 0o777).toBe(0o644)
  })

  test("the arch-specific name first, then the original's OS-only name", async () => {
    const dir = freshFolder()
    const archive = tarGz([{ path: "postgres.js", body: bundle }])
    // No checksums.txt: both names are asked for in turn.
    servers.publish("acme/old@v1", { [osName]: archive })
    const from = servers.requests.length
    const result = await install(["acme/old@v1", "--plugins-dir", dir, "--allow-unverified"])
    expect(result.code).toBe(0)
    expect(result.stderr).toContain("publishes no checksums.txt: installing it unverified, as --allow-unverified allows")
    const asked = servers.requests.slice(from).filter((r) => r.server === "release").map((r) => r.path.split("/").pop())
    // checksums.txt is fetched alongside the first archive.
    expect(asked.filter((a) => a !== "checksums.txt")).toEqual([archName, osName])
    expect(asked.filter((a) => a === "checksums.txt")).toHaveLength(1)
    expect(JSON.parse(readFileSync(join(dir, "plugins.lock"), "utf8")).plugins[0].checksum).toBe("unpublished")
  })

  test("404 everywhere: no release asset, named with what was tried", async () => {
    const result = await expectRefused("acme/missing@v9", {})
    expect(result.stderr).toContain(`acme/missing@v9 has no release archive for ${goOs}/${goArch}: tried`)
    expect(result.stderr).toContain(archName)
    expect(result.stderr).toContain(osName)
  })

  test("500 then success: retried", async () => {
    const dir = freshFolder()
    const archive = tarGz([{ path: "postgres.js", body: bundle }])
    servers.publish("acme/flaky@v1", {
      [archName]: [{ kind: "status", status: 500 }, { kind: "bytes", body: archive }],
      "checksums.txt": encode(checksums({ [archName]: archive }))
    })
    const result = await install(["acme/flaky@v1", "--plugins-dir", dir])
    expect(result.code).toBe(0)
    expect(result.stderr).toContain("HTTP 500; trying again")
    expect(servers.tries("acme/flaky@v1", archName)).toBe(2)
  })

  test("429 with Retry-After: waits as long as asked", async () => {
    const dir = freshFolder()
    const archive = tarGz([{ path: "postgres.js", body: bundle }])
    servers.publish("acme/limited@v1", {
      [archName]: [{ kind: "status", status: 429, headers: { "retry-after": "2" } }, { kind: "bytes", body: archive }],
      "checksums.txt": encode(checksums({ [archName]: archive }))
    })
    const from = servers.requests.length
    const result = await install(["acme/limited@v1", "--plugins-dir", dir])
    expect(result.code).toBe(0)
    const tries = servers.requests.slice(from).filter((r) => r.server === "storage" && r.path.includes(encodeURIComponent(archName)))
    expect(tries).toHaveLength(2)
    // The backoff alone would have tried again after 500 ms.
    expect((tries[1]?.at ?? 0) - (tries[0]?.at ?? 0)).toBeGreaterThanOrEqual(1900)
  })

  for (const ending of ["drop", "close"] as const) {
    test(`a body cut off mid-way (${ending === "drop" ? "connection dropped" : "truncated, then a clean close"}) is downloaded again`, async () => {
      const dir = freshFolder()
      const archive = tarGz([{ path: "postgres.js", body: bundle }])
      servers.publish(`acme/cut-${ending}@v1`, {
        [archName]: [
          { kind: "broken", body: archive, sendBytes: Math.floor(archive.byteLength / 2), ending },
          { kind: "bytes", body: archive }
        ],
        "checksums.txt": encode(checksums({ [archName]: archive }))
      })
      const result = await install([`acme/cut-${ending}@v1`, "--plugins-dir", dir])
      expect(result.code).toBe(0)
      expect(result.stderr).toContain("trying again")
      expect(servers.tries(`acme/cut-${ending}@v1`, archName)).toBe(2)
      expect(readFileSync(join(dir, "postgres.js"))).toEqual(bundle)
      expect(readdirSync(dir).sort()).toEqual(["plugins.lock", "postgres.js"])
    })
  }

  for (const stall of ["silent", "stall"] as const) {
    test(`a host that ${stall === "silent" ? "never answers" : "stops sending mid-body"} times out and is tried again (--download-timeout)`, async () => {
      const dir = freshFolder()
      const archive = tarGz([{ path: "postgres.js", body: bundle }])
      const first = stall === "silent" ? ({ kind: "silent" } as const) : ({ kind: "stall", body: archive, sendBytes: 1000 } as const)
      servers.publish(`acme/${stall}@v1`, {
        [archName]: [first, { kind: "bytes", body: archive }],
        "checksums.txt": encode(checksums({ [archName]: archive }))
      })
      const result = await install([`acme/${stall}@v1`, "--plugins-dir", dir, "--download-timeout", "700ms"])
      expect(result.code).toBe(0)
      expect(result.stderr).toContain(
        stall === "silent" ? "no answer within 700 ms; trying again" : "no data for 700 ms after 1000 bytes; trying again"
      )
      expect(servers.tries(`acme/${stall}@v1`, archName)).toBe(2)
    })
  }

  test("a checksum mismatch installs nothing and names the file and both sums", async () => {
    const archive = tarGz([{ path: "evil.js", body: "console.log('not what was published')" }])
    const published = "0".repeat(64)
    const result = await expectRefused("acme/tampered@v1", { [archName]: archive, "checksums.txt": encode(`${published}  ${archName}\n`) })
    expect(result.stderr).toContain(
      `${archName} of acme/tampered@v1 does not match the release's checksums.txt: expected SHA-256 ${published}, got ${sha256(archive)}`
    )
  })

  test("no checksums.txt: refused by default, naming --allow-unverified", async () => {
    const archive = tarGz([{ path: "postgres.js", body: bundle }])
    const result = await expectRefused("acme/unsigned@v1", { [archName]: archive })
    expect(result.stderr).toContain("acme/unsigned@v1 publishes no checksums.txt")
    expect(result.stderr).toContain("so it cannot be verified: nothing was installed")
    expect(result.stderr).toContain("--allow-unverified (HALKYON_ALLOW_UNVERIFIED=true)")
  })

  const hostile: ReadonlyArray<{ readonly name: string; readonly entries: Parameters<typeof tarGz>[0]; readonly says: string }> = [
    {
      name: "a .. path",
      entries: [{ path: "ok.js", body: "1" }, { path: "../escaped.js", body: "x" }],
      says: "entry \"../escaped.js\" climbs out of the archive (..)"
    },
    {
      name: "an absolute path",
      entries: [{ path: "/tmp/halkyon-escaped.js", body: "x" }],
      says: "entry \"/tmp/halkyon-escaped.js\" has an absolute path"
    },
    {
      name: "a symlink out",
      entries: [{ path: "link", type: "symlink", linkTarget: "/etc/passwd" }, { path: "link/../x", body: "x" }],
      says: "entry \"link\" is a symbolic link (to \"/etc/passwd\")"
    },
    {
      name: "a hard link",
      entries: [{ path: "ok.js", body: "1" }, { path: "hard", type: "hardlink", linkTarget: "/etc/shadow" }],
      says: "entry \"hard\" is a hard link"
    },
    { name: "a device file", entries: [{ path: "dev", type: "chardev" }], says: "entry \"dev\" is a character device" },
    {
      name: "an oversized file",
      entries: [{ path: "huge.js", body: "x", claimedSize: 2 * 1024 ** 3 }],
      says: "over the 1073741824-byte cap"
    },
    {
      name: "too many files",
      entries: Array.from({ length: 1001 }, (_, i) => ({ path: `f${i}`, body: "" })),
      says: "entry \"f1000\" takes the archive over the 1000-entry cap"
    },
    {
      name: "a path twice",
      entries: [{ path: "ok.js", body: "1" }, { path: "ok.js", body: "2" }],
      says: "entry \"ok.js\" appears twice in the archive"
    },
    {
      name: "a path 33 folders deep",
      entries: [{ path: `${Array(33).fill("d").join("/")}/x.js`, body: "x" }],
      says: "is nested more than 32 levels deep"
    }
  ]
  for (const h of hostile) {
    test(`an archive with ${h.name} is refused and nothing lands anywhere`, async () => {
      const archive = tarGz(h.entries)
      const release = `acme/hostile-${h.name.replace(/\W+/g, "-")}@v1`
      const result = await expectRefused(release, { [archName]: archive, "checksums.txt": encode(checksums({ [archName]: archive })) })
      expect(result.stderr).toContain(h.says)
      expect(result.stderr).toContain("Nothing was installed")
      expect(existsSync(join(work, "escaped.js"))).toBe(false)
      expect(existsSync("/tmp/halkyon-escaped.js")).toBe(false)
    })
  }

  test("a file that another release or a user owns is not overwritten", async () => {
    const dir = await folderWithPlugin()
    writeFileSync(join(dir, "mine.js"), "// put here by hand")
    const before = snapshot(dir)
    const clash = tarGz([{ path: "postgres.js", body: bundle }])
    const byHand = tarGz([{ path: "mine.js", body: bundle }])
    servers.publish("other/pg@v1", { [archName]: clash, "checksums.txt": encode(checksums({ [archName]: clash })) })
    servers.publish("other/mine@v1", { [archName]: byHand, "checksums.txt": encode(checksums({ [archName]: byHand })) })
    const result = await install(["other/pg@v1", "other/mine@v1", "--plugins-dir", dir])
    expect(result.code).toBe(1)
    expect(result.stderr).toContain("cannot install other/pg@v1: postgres.js belongs to base/pg@v1")
    expect(result.stderr).toContain(
      "cannot install other/mine@v1: mine.js is already in the plugins folder and was not installed by halkyon"
    )
    expect(snapshot(dir)).toEqual(before)
  })

  test("two processes installing into one folder at once both end up in the lock", async () => {
    const dir = freshFolder()
    const releases = ["acme/one@v1", "acme/two@v1", "acme/three@v1", "acme/four@v1"]
    for (const [i, release] of releases.entries()) {
      const archive = tarGz([{ path: `p${i}.js`, body: bundle }])
      servers.publish(release, { [archName]: archive, "checksums.txt": encode(checksums({ [archName]: archive })) })
    }
    const [a, b] = await Promise.all([
      install([releases[0] ?? "", releases[1] ?? "", "--plugins-dir", dir]),
      install([releases[2] ?? "", releases[3] ?? "", "--plugins-dir", dir])
    ])
    expect([a?.code, b?.code]).toEqual([0, 0])
    const lock = JSON.parse(readFileSync(join(dir, "plugins.lock"), "utf8"))
    expect(lock.plugins.map((p: { spec: string }) => p.spec).sort()).toEqual([...releases].sort())
    expect(readdirSync(dir).sort()).toEqual(["p0.js", "p1.js", "p2.js", "p3.js", "plugins.lock"])
  })

  test("bad entries are reported and the good ones still install", async () => {
    const dir = freshFolder()
    publishPostgres("acme/good@v1")
    const result = await install(["--plugins-dir", dir], { HALKYON_PLUGINS: " acme/good@v1 , ,not-a-spec," })
    expect(result.code).toBe(1)
    expect(result.stderr).toContain("invalid plugin \"not-a-spec\": no @tag; expected org/repo@tag")
    expect(result.stdout).toContain("acme/good@v1: installed postgres.js")
  })

  test("kill -9 in the middle of a download leaves the folder as it was; the next run completes", async () => {
    const dir = await folderWithPlugin()
    const before = snapshot(dir)
    const archive = tarGz([{ path: "slow.js", body: bundle }])
    servers.publish("acme/slow@v1", {
      [archName]: [{ kind: "bytes", body: archive, throttle: { chunk: 4096, everyMs: 20 } }, { kind: "bytes", body: archive }],
      "checksums.txt": encode(checksums({ [archName]: archive }))
    })
    const proc = Bun.spawn([halkyon, "plugins", "install", "acme/slow@v1", "--plugins-dir", dir, "--release-base-url", servers.base], {
      env: { ...process.env, NODE_EXTRA_CA_CERTS: ca.caFile },
      stdout: "ignore",
      stderr: "ignore"
    })
    // Killed once the download is under way and staged files exist.
    expect(await eventually(() => readdirSync(dir).some((e) => e.startsWith(".halkyon-install-")), 10_000)).toBe(true)
    await Bun.sleep(200)
    proc.kill("SIGKILL")
    await proc.exited
    const after = snapshot(dir)
    const leftovers = Object.keys(after).filter((k) => k.startsWith(".halkyon-install-"))
    for (const k of leftovers) delete after[k]
    expect(after).toEqual(before)

    const rerun = await install(["acme/slow@v1", "--plugins-dir", dir])
    expect(rerun.code).toBe(0)
    expect(readdirSync(dir).sort()).toEqual(["plugins.lock", "postgres.js", "slow.js"])
  })

  test("an install interrupted during its commit is completed by the next run", async () => {
    const dir = await folderWithPlugin()
    // The state a kill between the journal and the lock leaves: the journal, and the staged file not yet moved,
    // in the staging folder of a process that has exited.
    const staging = `.halkyon-install-${Bun.spawnSync(["true"]).pid}-interrupted`
    mkdirSync(join(dir, staging))
    writeFileSync(join(dir, staging, "late.js"), "// late")
    const lock = JSON.parse(readFileSync(join(dir, "plugins.lock"), "utf8"))
    const entry = {
      spec: "acme/late@v1",
      repository: "acme/late",
      tag: "v1",
      asset: "https://example.invalid/late",
      sha256: "0".repeat(64),
      checksum: "unpublished",
      files: [{ path: "late.js", sha256: sha256("// late"), size: 7 }],
      installedAt: new Date().toISOString()
    }
    // And a half-written lock of a writer that died (its pid: a process that has exited).
    const dead = Bun.spawnSync(["true"]).pid
    writeFileSync(join(dir, `.tmp-plugins.lock-${dead}`), "{ half")
    writeFileSync(
      join(dir, ".plugins.lock.journal"),
      JSON.stringify({ staging, moves: ["late.js"], removes: [], lock: { version: 1, plugins: [...lock.plugins, entry] } })
    )
    publishPostgres("base/pg@v1")
    const from = servers.requests.length
    const result = await install(["base/pg@v1", "--plugins-dir", dir])
    expect(result.code).toBe(0)
    expect(result.stderr).toContain("completed an install interrupted earlier")
    expect(readdirSync(dir).sort()).toEqual(["late.js", "plugins.lock", "postgres.js"])
    expect(JSON.parse(readFileSync(join(dir, "plugins.lock"), "utf8")).plugins.map((p: { spec: string }) => p.spec).sort()).toEqual([
      "acme/late@v1",
      "base/pg@v1"
    ])
    expect(servers.requests.length).toBe(from)
  })

  test("a tampered installed plugin is refused at start, and install puts it back", async () => {
    const dir = await folderWithPlugin()
    writeFileSync(join(dir, "postgres.js"), `${bundle.toString()}\n// tampered\n`)
    const list = Bun.spawnSync([halkyon, "plugins", "list", "--plugins-dir", dir, "-o", "json"], { stdout: "pipe", stderr: "pipe" })
    expect(list.exitCode).toBe(1)
    const [row] = JSON.parse(list.stdout.toString())
    expect(row.state).toBe("failed")
    expect(row.error).toContain("base/pg@v1 in")
    expect(row.error).toContain("postgres.js has changed since it was installed")
    expect(row.error).toContain(`Reinstall it with: halkyon plugins install base/pg@v1 --plugins-dir ${dir}`)

    const repaired = await install(["base/pg@v1", "--plugins-dir", dir])
    expect(repaired.code).toBe(0)
    expect(repaired.stderr).toContain("was changed since it was installed")
    expect(readFileSync(join(dir, "postgres.js"))).toEqual(bundle)
  })

  test("progress: periodic log lines when stderr is not a terminal", async () => {
    const dir = freshFolder()
    const archive = tarGz([{ path: "postgres.js", body: bundle }])
    servers.publish("acme/progress@v1", {
      // About 6 s: at least one progress line, every 5 s.
      [archName]: [{ kind: "bytes", body: archive, throttle: { chunk: Math.ceil(archive.byteLength / 60), everyMs: 100 } }],
      "checksums.txt": encode(checksums({ [archName]: archive }))
    })
    const result = await install(["acme/progress@v1", "--plugins-dir", dir])
    expect(result.code).toBe(0)
    expect(result.stderr).toMatch(/downloading acme\/progress@v1: [\d.]+ MB \/ [\d.]+ MB {2}\d+%/)
  })

  test("progress: a bar redrawn in place on a terminal", async () => {
    const dir = freshFolder()
    const archive = tarGz([{ path: "postgres.js", body: bundle }])
    servers.publish("acme/bar@v1", {
      [archName]: [{ kind: "bytes", body: archive, throttle: { chunk: Math.ceil(archive.byteLength / 10), everyMs: 100 } }],
      "checksums.txt": encode(checksums({ [archName]: archive }))
    })
    const command = [halkyon, "plugins", "install", "acme/bar@v1", "--plugins-dir", dir, "--release-base-url", servers.base].join(" ")
    // script(1) gives the command a terminal (the servers live in this process: no spawnSync).
    const proc = Bun.spawn(["script", "-qec", command, "/dev/null"], {
      env: { ...process.env, NODE_EXTRA_CA_CERTS: ca.caFile },
      stdout: "pipe",
      stderr: "pipe"
    })
    const [output, code] = await Promise.all([new Response(proc.stdout).text(), proc.exited])
    expect(code).toBe(0)
    expect(output).toMatch(/\r\x1b\[Kacme\/bar@v1 \[#+-*\] [\d.]+ MB \/ [\d.]+ MB {2}\d+%/)
  })

  test("HTTPS_PROXY is used, and NO_PROXY bypasses it", async () => {
    const tunnels: Array<string> = []
    const proxy: Server = createHttpServer((_req, res) => res.writeHead(405).end())
    proxy.on("connect", (req, socket, head) => {
      tunnels.push(req.url ?? "")
      const [host, port] = (req.url ?? "").split(":")
      const upstream = connect(Number(port), host, () => {
        socket.write("HTTP/1.1 200 Connection Established\r\n\r\n")
        upstream.write(head)
        upstream.pipe(socket)
        socket.pipe(upstream)
      })
      upstream.on("error", () => socket.destroy())
      socket.on("error", () => upstream.destroy())
    })
    await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve))
    const proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`
    try {
      publishPostgres("acme/proxied@v1")
      const through = await install(["acme/proxied@v1", "--plugins-dir", freshFolder()], { HTTPS_PROXY: proxyUrl, NO_PROXY: "" })
      expect(through.code).toBe(0)
      expect(tunnels.some((t) => t.startsWith("localhost:"))).toBe(true)
      expect(tunnels.some((t) => t.startsWith("127.0.0.1:"))).toBe(true)

      tunnels.length = 0
      const bypassed = await install(["acme/proxied@v1", "--plugins-dir", freshFolder()], {
        HTTPS_PROXY: proxyUrl,
        NO_PROXY: "localhost,127.0.0.1"
      })
      expect(bypassed.code).toBe(0)
      expect(tunnels).toEqual([])
    } finally {
      proxy.close()
    }
  })

  test("--help describes the command", () => {
    const help = Bun.spawnSync([halkyon, "plugins", "install", "--help"], { stdout: "pipe" })
    expect(help.exitCode).toBe(0)
    for (
      const text of ["--release-base-url", "--require-checksums", "--download-timeout", "--plugins-dir", "HALKYON_PLUGINS", "checksums.txt"]
    ) {
      expect(help.stdout.toString()).toContain(text)
    }
  })

  test("--plugins-dir naming a file is refused, and the file is left as it was", async () => {
    const file = join(freshFolder(), "not-a-folder")
    writeFileSync(file, "mine")
    const result = await install(["acme/redis@v1", "--plugins-dir", file])
    expect(result.code).toBe(1)
    expect(result.stderr).toContain(`${file} is a file, not a folder`)
    expect(readFileSync(file, "utf8")).toBe("mine")
  })

  test("no spec and no HALKYON_PLUGINS: says what to do", async () => {
    const result = await install(["--plugins-dir", freshFolder()])
    expect(result.code).toBe(1)
    expect(result.stderr).toContain("name the plugins to install")
  })
})

describe("halkyon run with HALKYON_PLUGINS (compiled binary, local control plane)", () => {
  let cluster: Cluster
  beforeAll(async () => {
    cluster = await startCluster()
  }, 120_000)
  afterAll(async () => {
    await cluster.plane.stop()
  })

  const runUntilReady = async (dir: string, plugins: string) => {
    const operator = startOperator(cluster, dir, [], cluster.plane.kubeconfigPath, {
      NODE_EXTRA_CA_CERTS: ca.caFile,
      HALKYON_PLUGINS: plugins,
      HALKYON_RELEASE_BASE_URL: servers.base
    })
    const ready = await untilReady(operator, 60_000).then(() => true, () => false)
    await operator.stop()
    return { ready, logs: operator.logs.join("\n").replaceAll("\\\"", "\"") }
  }

  test("installs what it names before loading plugins; a failed install is reported and the operator runs", async () => {
    const dir = join(work, "run-plugins")
    publishPostgres("acme/run-pg@v1")
    const { ready, logs } = await runUntilReady(dir, "acme/run-pg@v1, acme/absent@v1, not-a-spec")
    expect(ready).toBe(true)
    expect(logs).toContain("installed acme/run-pg@v1: postgres.js")
    expect(logs).toContain("acme/absent@v1 has no release archive")
    expect(logs).toContain("invalid plugin \"not-a-spec\"")
    expect(logs).toContain("2 of 3 plugins named in --plugins/HALKYON_PLUGINS could not be installed")
    expect(logs).toContain("plugin postgres.js running")
    expect(logs.indexOf("installed acme/run-pg@v1")).toBeLessThan(logs.indexOf("plugin postgres.js running"))

    // Tampered with between runs: the operator neither repairs nor starts it, and says how to reinstall.
    writeFileSync(join(dir, "postgres.js"), "// tampered")
    const second = await runUntilReady(dir, "acme/run-pg@v1")
    expect(second.ready).toBe(true)
    expect(second.logs).toContain(`acme/run-pg@v1 in ${dir} no longer matches what was installed`)
    expect(second.logs).toContain(`not starting plugin postgres.js`)
    expect(second.logs).toContain(`Reinstall it with: halkyon plugins install acme/run-pg@v1 --plugins-dir ${dir}`)
    expect(second.logs).not.toContain("plugin postgres.js running")
    expect(readFileSync(join(dir, "postgres.js"), "utf8")).toBe("// tampered")
  }, 180_000)
})

/**
 * The release archives, as a user and the plugin downloader get them: each
 * holds one executable of the right format and CPU for its name, checksums.txt
 * matches, the Linux binaries print their version, commit and platform (arm64
 * under qemu-user with Debian's arm64 glibc). Archives are read with other
 * tools than the ones that wrote them: GNU tar and Python's zipfile.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { createHash } from "node:crypto"
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import pkg from "../../package.json" with { type: "json" }
import { RunByHandMessage } from "../../src/protocol/Handshake.ts"
import { ensureRelease, gitCommit, releaseArchiveName, releaseDir } from "../../scripts/build.ts"
import { releasePlugin } from "../../scripts/build-plugins.ts"
import { debianPackage, qemuAarch64 } from "../../scripts/release/debian.ts"
import { pluginBuildsIn, pluginReleaseDir } from "../../scripts/release/plugin-archives.ts"
import { releaseTargets } from "../../src/release/Targets.ts"
import { executableKind, formatOf } from "../support/binaries.ts"

const run = (command: ReadonlyArray<string>, cwd?: string) => {
  const result = Bun.spawnSync([...command], { cwd, stdout: "pipe", stderr: "pipe" })
  return { code: result.exitCode, stdout: result.stdout.toString(), stderr: result.stderr.toString() }
}

const sha256 = (file: string) => createHash("sha256").update(readFileSync(file)).digest("hex")

/** `<sum>  <name>` lines of a checksums.txt, as a map. */
const checksums = (dir: string) =>
  new Map(
    readFileSync(join(dir, "checksums.txt"), "utf8").trimEnd().split("\n").map((l) => {
      const [sum = "", name = ""] = l.split("  ")
      return [name, sum] as const
    })
  )

/** Each entry of an archive (name and mode), read with GNU tar or Python's zipfile; extracted into `into`. */
const unpack = (archive: string, into: string): Array<{ name: string; mode: string }> => {
  if (archive.endsWith(".zip")) {
    const script = [
      "import sys, zipfile",
      "z = zipfile.ZipFile(sys.argv[1])",
      "bad = z.testzip()",
      "assert bad is None, bad",
      "z.extractall(sys.argv[2])",
      "[print(i.filename, oct((i.external_attr >> 16) & 0o7777)[2:]) for i in z.infolist()]"
    ].join("\n")
    const listed = run(["python3", "-c", script, archive, into])
    if (listed.code !== 0) throw new Error(`python3 zipfile could not read ${archive}: ${listed.stderr}`)
    return listed.stdout.trim().split("\n").map((l) => ({ name: l.split(" ")[0] ?? "", mode: l.split(" ")[1] ?? "" }))
  }
  const listed = run(["tar", "-tvzf", archive])
  if (listed.code !== 0) throw new Error(`tar could not read ${archive}: ${listed.stderr}`)
  expect(run(["tar", "-xzf", archive, "-C", into]).code).toBe(0)
  return listed.stdout.trim().split("\n").map((l) => {
    const fields = l.split(/\s+/)
    const perms = fields[0] ?? ""
    // -rwxr-xr-x → 755
    const octal = [1, 4, 7].map((i) => [...perms.slice(i, i + 3)].reduce((n, c, j) => n + (c === "-" ? 0 : [4, 2, 1][j] ?? 0), 0)).join("")
    return { name: fields[fields.length - 1] ?? "", mode: perms.startsWith("-") ? octal : perms }
  })
}

/** The folder qemu-aarch64-static takes as the arm64 root (-L): Debian's arm64 libc6, unpacked. */
const arm64Sysroot = () => debianPackage("libc6", "arm64")

describe("operator release archives (npm run build)", () => {
  const work = mkdtempSync(join(tmpdir(), "halkyon-release-"))

  beforeAll(async () => {
    await ensureRelease()
  }, 300_000)

  test("dist/release holds one archive per platform and checksums.txt, and nothing else", () => {
    const expected = [...releaseTargets.map((t) => releaseArchiveName(t.os, t.arch)), "checksums.txt"].sort()
    expect(readdirSync(releaseDir).sort()).toEqual(expected)
    expect(expected).toContain(`halkyon_${pkg.version}_linux_amd64.tar.gz`)
    expect(expected).toContain(`halkyon_${pkg.version}_windows_amd64.zip`)
  })

  test("checksums.txt lists every archive with its sha256", () => {
    const sums = checksums(releaseDir)
    expect([...sums.keys()].sort()).toEqual(releaseTargets.map((t) => releaseArchiveName(t.os, t.arch)).sort())
    for (const [name, sum] of sums) expect({ name, sum }).toEqual({ name, sum: sha256(join(releaseDir, name)) })
  })

  for (const t of releaseTargets) {
    test(`${t.os}/${t.arch}: the archive holds only halkyon${t.os === "windows" ? ".exe" : ""}, mode 0755, ${formatOf(t.os)} for ${t.arch}`, () => {
      const into = mkdtempSync(join(work, `${t.os}_${t.arch}-`))
      const name = t.os === "windows" ? "halkyon.exe" : "halkyon"
      expect(unpack(join(releaseDir, releaseArchiveName(t.os, t.arch)), into)).toEqual([{ name, mode: "755" }])
      expect(executableKind(join(into, name))).toEqual({ format: formatOf(t.os), arch: t.arch })
    })
  }

  test("the linux/amd64 binary prints its version, commit and platform", () => {
    const into = mkdtempSync(join(work, "run-amd64-"))
    unpack(join(releaseDir, releaseArchiveName("linux", "amd64")), into)
    const { code, stdout, stderr } = run([join(into, "halkyon"), "version"])
    expect({ code, stderr }).toEqual({ code: 0, stderr: "" })
    expect(stdout).toBe(`halkyon ${pkg.version} (commit ${gitCommit()}) linux/amd64\n`)
  })

  test("the linux/arm64 binary prints its version under qemu-user (Debian's qemu-user-static, no binfmt needed)", async () => {
    const into = mkdtempSync(join(work, "run-arm64-"))
    unpack(join(releaseDir, releaseArchiveName("linux", "arm64")), into)
    const { code, stdout, stderr } = run([await qemuAarch64(), "-L", await arm64Sysroot(), join(into, "halkyon"), "version"])
    expect({ code, stderr }).toEqual({ code: 0, stderr: "" })
    expect(stdout).toBe(`halkyon ${pkg.version} (commit ${gitCommit()}) linux/arm64\n`)
  })

  afterAll(() => rmSync(work, { recursive: true, force: true }))
})

describe("plugin release folders (npm run build:plugins)", () => {
  const work = mkdtempSync(join(tmpdir(), "halkyon-plugin-release-"))
  const dir = pluginReleaseDir("postgres")

  beforeAll(async () => {
    await releasePlugin("postgres")
  }, 300_000)

  test("the postgres folder holds an archive per platform, the amd64 ones under their short names too, and checksums.txt", () => {
    expect(readdirSync(dir).sort()).toEqual([
      "checksums.txt",
      "halkyon_plugin_darwin.tar.gz",
      "halkyon_plugin_darwin_amd64.tar.gz",
      "halkyon_plugin_darwin_arm64.tar.gz",
      "halkyon_plugin_linux.tar.gz",
      "halkyon_plugin_linux_amd64.tar.gz",
      "halkyon_plugin_linux_arm64.tar.gz",
      "halkyon_plugin_windows.tar.gz",
      "halkyon_plugin_windows_amd64.tar.gz"
    ])
    for (const os of ["linux", "darwin", "windows"]) {
      expect(sha256(join(dir, `halkyon_plugin_${os}.tar.gz`))).toBe(sha256(join(dir, `halkyon_plugin_${os}_amd64.tar.gz`)))
    }
  })

  test("checksums.txt lists every archive with its sha256", () => {
    const sums = checksums(dir)
    expect([...sums.keys()].sort()).toEqual(readdirSync(dir).filter((f) => f !== "checksums.txt").sort())
    for (const [name, sum] of sums) expect({ name, sum }).toEqual({ name, sum: sha256(join(dir, name)) })
  })

  for (const t of releaseTargets) {
    test(`${t.os}/${t.arch}: the archive holds only the plugin, named postgres${t.os === "windows" ? ".exe" : ""}, mode 0755, ${formatOf(t.os)} for ${t.arch}`, () => {
      const into = mkdtempSync(join(work, `${t.os}_${t.arch}-`))
      const name = t.os === "windows" ? "postgres.exe" : "postgres"
      expect(unpack(join(dir, `halkyon_plugin_${t.os}_${t.arch}.tar.gz`), into)).toEqual([{ name, mode: "755" }])
      expect(executableKind(join(into, name))).toEqual({ format: formatOf(t.os), arch: t.arch })
    })
  }

  test("the linux/amd64 archive's plugin is a working plugin (run by hand, it says so and exits 1)", () => {
    const into = mkdtempSync(join(work, "run-"))
    unpack(join(dir, "halkyon_plugin_linux.tar.gz"), into)
    expect(run([join(into, "postgres")])).toEqual({ code: 1, stdout: "", stderr: RunByHandMessage })
  })

  test("pluginBuildsIn finds the cross builds laid out as <os>_<arch>/<name>[.exe] (how a Go plugin's builds are handed over)", () => {
    expect(pluginBuildsIn("postgres").map((b) => `${b.os}/${b.arch} ${b.file.split("/").slice(-2).join("/")}`)).toEqual([
      "darwin/amd64 darwin_amd64/postgres",
      "darwin/arm64 darwin_arm64/postgres",
      "linux/amd64 linux_amd64/postgres",
      "linux/arm64 linux_arm64/postgres",
      "windows/amd64 windows_amd64/postgres.exe"
    ])
  })

  afterAll(() => rmSync(work, { recursive: true, force: true }))
})

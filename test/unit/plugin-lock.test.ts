/**
 * The plugins folder's bookkeeping under hostile or stale state: paths in
 * the lock and the journal stay inside the folder, and the leftovers of a
 * process with this very pid but another start time (a restarted
 * container) are recognised as stale at once.
 */
import { afterEach, describe, expect, test } from "bun:test"
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect } from "effect"
import { exclusively, mutexOwner, readLock, recover } from "../../src/lock/PluginLock.ts"
import { formatIdentity, isRunning, parseIdentity, startTimeOf, thisProcess } from "../../src/lock/ProcessIdentity.ts"

const roots: Array<string> = []
const tempRoot = () => {
  const root = mkdtempSync(join(tmpdir(), "halkyon-lock-unit-"))
  roots.push(root)
  return root
}
afterEach(() => {
  for (const root of roots.splice(0)) rmSync(root, { recursive: true, force: true })
})

const entry = (path: string) => ({
  spec: "acme/x@v1",
  repository: "acme/x",
  tag: "v1",
  asset: "https://example.invalid/x",
  sha256: "0".repeat(64),
  checksum: "verified",
  files: [{ path, sha256: "0".repeat(64), size: 1 }],
  installedAt: "2026-12-06T00:00:00Z"
})

/** This process's pid with a start time it never had: what a restarted container finds. */
const previousLife = `${process.pid}.1`

describe("paths in the lock and the journal", () => {
  test("a journal that names ../precious/data.db deletes nothing outside the folder, and is dropped", async () => {
    const root = tempRoot()
    const dir = join(root, "plugins")
    mkdirSync(join(root, "precious"), { recursive: true })
    mkdirSync(dir)
    writeFileSync(join(root, "precious", "data.db"), "keep me")
    const staging = `.halkyon-install-${previousLife}-x`
    mkdirSync(join(dir, staging))
    writeFileSync(
      join(dir, ".plugins.lock.journal"),
      JSON.stringify({ staging, moves: [], removes: ["../precious/data.db"], lock: { version: 1, plugins: [] } })
    )
    await Effect.runPromise(recover(dir))
    expect(readFileSync(join(root, "precious", "data.db"), "utf8")).toBe("keep me")
    expect(existsSync(join(dir, ".plugins.lock.journal"))).toBe(false)
  })

  test("a journal whose staging folder is not one of ours is dropped, not followed", async () => {
    const root = tempRoot()
    const dir = join(root, "plugins")
    mkdirSync(join(root, "elsewhere"), { recursive: true })
    mkdirSync(dir)
    writeFileSync(join(root, "elsewhere", "x"), "x")
    writeFileSync(
      join(dir, ".plugins.lock.journal"),
      JSON.stringify({ staging: "../elsewhere", moves: ["x"], removes: [], lock: { version: 1, plugins: [] } })
    )
    await Effect.runPromise(recover(dir))
    expect(existsSync(join(root, "elsewhere", "x"))).toBe(true)
    expect(existsSync(join(dir, "x"))).toBe(false)
  })

  for (const path of ["../escaped", "/etc/passwd", "a/../../b", "", "a//b"]) {
    test(`a plugins.lock with the file path ${JSON.stringify(path)} is unreadable, and says why`, async () => {
      const dir = tempRoot()
      writeFileSync(join(dir, "plugins.lock"), JSON.stringify({ version: 1, plugins: [entry(path)] }))
      const error = await Effect.runPromise(Effect.flip(readLock(dir)))
      expect(error._tag).toBe("LockUnreadable")
      expect(error.message).toContain("must be a relative path inside the plugins folder")
    })
  }

  test("a plain relative path is read", async () => {
    const dir = tempRoot()
    writeFileSync(join(dir, "plugins.lock"), JSON.stringify({ version: 1, plugins: [entry("bin/tool")] }))
    const lock = await Effect.runPromise(readLock(dir))
    expect(lock.plugins[0]?.files[0]?.path).toBe("bin/tool")
  })
})

describe("a restarted process with the same pid", () => {
  test("the staging folders of this pid's previous life are removed; this life's are kept", async () => {
    const dir = tempRoot()
    const stale = `.halkyon-install-${previousLife}-abc`
    const mine = `.halkyon-install-${formatIdentity(thisProcess)}-abc`
    const oldForm = `.halkyon-install-${Bun.spawnSync(["true"]).pid}-abc`
    for (const name of [stale, mine, oldForm]) mkdirSync(join(dir, name))
    await Effect.runPromise(recover(dir))
    expect(existsSync(join(dir, stale))).toBe(false)
    expect(existsSync(join(dir, oldForm))).toBe(false)
    expect(existsSync(join(dir, mine))).toBe(true)
  })

  test("a mutex let go between the try to take it and the read of its owner is tried again, not an error", async () => {
    const dir = tempRoot()
    const path = join(dir, ".plugins.lock.mutex")
    // What the reader sees when the holder removed it in between: nothing there.
    expect(mutexOwner(path)).toBe("released")
    writeFileSync(path, formatIdentity(thisProcess))
    expect(mutexOwner(path)).toEqual(thisProcess)
    // A link to nowhere exists (so the mutex cannot be made) yet cannot be read: taken over as stale, where the
    // read's ENOENT used to fail the install with LockWriteFailed.
    rmSync(path)
    symlinkSync(join(dir, "nowhere"), path)
    expect(mutexOwner(path)).toBeUndefined()
    const held = await Effect.runPromise(exclusively(dir, Effect.sync(() => readFileSync(path, "utf8"))))
    expect(held).toBe(formatIdentity(thisProcess))
    expect(existsSync(path)).toBe(false)
    // Made whole under a temporary name and linked into place: none is left behind.
    expect(readdirSync(dir).filter((f) => f.startsWith(".tmp-"))).toEqual([])
  })

  test("a mutex left by this pid's previous life is taken over at once, not waited on", async () => {
    const dir = tempRoot()
    writeFileSync(join(dir, ".plugins.lock.mutex"), previousLife)
    const held = await Effect.runPromise(
      exclusively(dir, Effect.sync(() => readFileSync(join(dir, ".plugins.lock.mutex"), "utf8"))).pipe(
        // The wait for a live holder is 60 s; a takeover needs none of it.
        Effect.timeoutOrElse({ duration: "2 seconds", orElse: () => Effect.succeed("still waiting") })
      )
    )
    expect(held).toBe(formatIdentity(thisProcess))
    expect(existsSync(join(dir, ".plugins.lock.mutex"))).toBe(false)
  })
})

describe("process identity", () => {
  test("reads and writes <pid>.<start>, and a bare pid", () => {
    expect(parseIdentity("123.456")).toEqual({ pid: 123, start: "456" })
    expect(parseIdentity(" 123\n")).toEqual({ pid: 123, start: "" })
    expect(parseIdentity("x")).toBeUndefined()
    expect(parseIdentity("0")).toBeUndefined()
    expect(formatIdentity({ pid: 7, start: "" })).toBe("7")
  })

  test("on Linux this process has a start time, and only its own identity counts as running", () => {
    if (process.platform !== "linux") throw new Error("this test reads /proc: run it on Linux")
    expect(startTimeOf(process.pid)).toMatch(/^\d+$/)
    expect(isRunning(thisProcess)).toBe(true)
    expect(isRunning(parseIdentity(previousLife)!)).toBe(false)
    expect(isRunning({ pid: Bun.spawnSync(["true"]).pid, start: "" })).toBe(false)
  })
})

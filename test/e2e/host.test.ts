/**
 * The plugin host over a real plugins folder: supervision, restarts, the
 * registry, and the folder changing at run time.
 */
import { describe, expect, test } from "bun:test"
import { renameSync, rmSync, utimesSync, copyFileSync } from "node:fs"
import { join } from "node:path"
import { Effect } from "effect"
import { PluginHost } from "../../src/plugin-host/PluginHost.ts"
import { PluginRegistry } from "../../src/registry/PluginRegistry.ts"
import { awaitState, logLines, testSettings, withHost } from "../support/host.ts"
import { addPlugin, badPlugin, builtPlugin, eventually, pluginsFolder, processesMatching, testPlugin } from "../support/paths.ts"

const crash = {
  metadata: { name: "x", namespace: "default" },
  spec: { category: "test", type: "flaky", parameters: [{ name: "MODE", value: "crash" }] }
}

describe("plugin host", () => {
  test("one bad plugin never stops the others; each failure is reported", async () => {
    const folder = pluginsFolder(builtPlugin("postgres.js"), badPlugin("exits"), badPlugin("garbage"), badPlugin("README.txt"))
    try {
      await withHost(
        testSettings(folder.dir, { restart: false, watch: false }),
        Effect.gen(function*() {
          const host = yield* PluginHost
          yield* host.awaitSettled
          const statuses = yield* host.statuses
          expect(statuses.map((s) => [s.name, s.state])).toEqual([["exits", "failed"], ["garbage", "failed"], ["postgres.js", "running"]])
          expect(statuses.find((s) => s.name === "exits")?.error).toContain("exited with code 3")
          expect((yield* host.skipped).map((s) => s.reason)).toEqual([
            "is neither an executable nor a .js bundle (chmod +x it if it is a plugin)"
          ])
          const registry = yield* PluginRegistry
          const resolved = yield* registry.resolve("Database", "POSTGRES", "")
          expect([resolved.plugin, resolved.version]).toEqual(["postgres.js", "17"])
        })
      )
    } finally {
      folder.cleanup()
    }
  })

  test("a crashed plugin is marked unavailable, restarted with backoff, and the registry recovers", async () => {
    const folder = pluginsFolder(testPlugin("flaky.js"))
    try {
      await withHost(
        testSettings(folder.dir, { restartBaseMs: 300 }),
        Effect.gen(function*() {
          const registry = yield* PluginRegistry
          const first = yield* awaitState("flaky.js", "running")
          const { connection } = yield* registry.resolve("test", "flaky", "1")
          yield* Effect.flip(connection.buildDependents(crash))
          const restarting = yield* awaitState("flaky.js", "restarting")
          expect(restarting.error).toBe("exited with code 2")
          const unavailable = yield* Effect.flip(registry.resolve("test", "flaky", "1"))
          expect(unavailable._tag).toBe("PluginNotAvailable")
          expect(unavailable.message).toContain("exited with code 2")
          const second = yield* awaitState("flaky.js", "running")
          expect(second.pid).not.toBe(first.pid)
          expect(second.restarts).toBe(1)
          const again = yield* registry.resolve("test", "flaky", "1")
          expect((yield* again.connection.buildDependents({ ...crash, spec: { ...crash.spec, parameters: [] } })).length).toBe(1)
          // A second crash in a row waits twice as long.
          yield* Effect.flip(again.connection.buildDependents(crash))
          const began = Date.now()
          yield* awaitState("flaky.js", "restarting")
          yield* awaitState("flaky.js", "running")
          expect(Date.now() - began).toBeGreaterThanOrEqual(550)
          expect(logLines.some((l) => l.includes("plugin flaky.js stopped: exited with code 2; restarting in 600 ms"))).toBe(true)
        })
      )
    } finally {
      folder.cleanup()
    }
  })

  test("a hung plugin fails its health checks and is restarted", async () => {
    const folder = pluginsFolder(testPlugin("flaky.js"))
    try {
      await withHost(
        testSettings(folder.dir, { callTimeoutMs: 300, healthIntervalMs: 200 }),
        Effect.gen(function*() {
          const registry = yield* PluginRegistry
          const first = yield* awaitState("flaky.js", "running")
          const { connection } = yield* registry.resolve("test", "flaky", "1")
          yield* Effect.flip(
            connection.buildDependents({ ...crash, spec: { ...crash.spec, parameters: [{ name: "MODE", value: "hang" }] } })
          )
          const restarting = yield* awaitState("flaky.js", "restarting", 10_000)
          expect(restarting.error).toBe("stopped answering health checks (3 in a row)")
          const second = yield* awaitState("flaky.js", "running")
          expect(second.pid).not.toBe(first.pid)
          // The hung process was killed, not left behind.
          expect(
            yield* Effect.promise(() => eventually(async () => !(await processesMatching(folder.dir)).includes(first.pid ?? 0), 5_000))
          ).toBe(true)
        })
      )
    } finally {
      folder.cleanup()
    }
  }, 30_000)

  test("the folder changes at run time: added, replaced and removed plugins", async () => {
    const folder = pluginsFolder()
    try {
      await withHost(
        testSettings(folder.dir),
        Effect.gen(function*() {
          const registry = yield* PluginRegistry
          const host = yield* PluginHost
          expect((yield* Effect.flip(registry.resolve("database", "postgres", "16"))).message).toBe(
            "no plugin serves category \"database\", type \"postgres\", version \"16\"; no plugins are loaded"
          )
          // Added: copied under a temporary dotfile name, then renamed, as installers do.
          copyFileSync(builtPlugin("postgres.js"), join(folder.dir, ".postgres.js.tmp"))
          renameSync(join(folder.dir, ".postgres.js.tmp"), join(folder.dir, "postgres.js"))
          const first = yield* awaitState("postgres.js", "running")
          expect((yield* registry.resolve("database", "postgres", "16")).plugin).toBe("postgres.js")
          // Replaced: restarted. Every poll's result is asserted: a host that stops the old process without
          // starting the new one (or never notices the change) must fail here.
          addPlugin(folder.dir, builtPlugin("postgres.js"))
          utimesSync(join(folder.dir, "postgres.js"), new Date(), new Date(Date.now() + 5_000))
          const statusOf = async () => (await Effect.runPromise(host.statuses)).find((p) => p.name === "postgres.js")
          expect(
            yield* Effect.promise(() =>
              eventually(async () => {
                const s = await statusOf()
                return s?.state === "running" && s.pid !== undefined && s.pid !== first.pid
              }, 10_000)
            )
          ).toBe(true)
          const replaced = yield* Effect.promise(statusOf)
          expect(
            yield* Effect.promise(() => eventually(async () => !(await processesMatching(folder.dir)).includes(first.pid ?? 0), 5_000))
          ).toBe(true)
          expect(yield* Effect.promise(() => processesMatching(folder.dir))).toEqual([replaced?.pid ?? -1])
          expect((yield* registry.resolve("database", "postgres", "16")).plugin).toBe("postgres.js")
          // Removed: stopped and unregistered.
          rmSync(join(folder.dir, "postgres.js"))
          expect(yield* Effect.promise(() => eventually(async () => (await Effect.runPromise(host.statuses)).length === 0, 5_000))).toBe(
            true
          )
          expect((yield* Effect.flip(registry.resolve("database", "postgres", "16")))._tag).toBe("NoPluginFound")
          expect(yield* Effect.promise(() => eventually(async () => (await processesMatching(folder.dir)).length === 0, 5_000))).toBe(true)
        })
      )
    } finally {
      folder.cleanup()
    }
  }, 30_000)

  test("closing the host stops every plugin and removes every socket folder", async () => {
    const folder = pluginsFolder(builtPlugin("postgres.js"), builtPlugin("postgres"), testPlugin("flaky.js"))
    const sockets: Array<string> = []
    await withHost(
      testSettings(folder.dir),
      Effect.gen(function*() {
        const host = yield* PluginHost
        yield* host.awaitSettled
        for (const s of yield* host.statuses) {
          expect(s.state).toBe("running")
          sockets.push(s.launched?.handshake.address ?? "")
        }
      })
    )
    expect(await processesMatching(folder.dir)).toEqual([])
    const { existsSync } = await import("node:fs")
    for (const socket of sockets) {
      expect(existsSync(socket)).toBe(false)
      expect(existsSync(join(socket, ".."))).toBe(false)
    }
    folder.cleanup()
  })
})

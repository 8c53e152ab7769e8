/**
 * Hostile plugins against the real plugin host (real processes, real
 * sockets), each refused or contained: floods without a newline, forged log
 * fields, handshakes pointing elsewhere, an invalid category, and a plugin
 * that hangs in BuildDependents while answering health checks.
 */
import { describe, expect, test } from "bun:test"
import { Effect } from "effect"
import { launchFailure, launchOptions } from "../support/launch.ts"
import { awaitState, logLines, testSettings, withHost } from "../support/host.ts"
import { addPlugin, badPlugin, eventually, pluginsFolder, testPlugin } from "../support/paths.ts"
import { PluginHost } from "../../src/plugin-host/PluginHost.ts"
import { PluginRegistry } from "../../src/registry/PluginRegistry.ts"

describe("a handshake that points elsewhere, or never ends", () => {
  test("a TCP address on Linux: refused before any connection, saying where a plugin must listen", async () => {
    const { tag, message } = await launchFailure(badPlugin("tcp-handshake"), launchOptions())
    expect(tag).toBe("PluginBadHandshake")
    expect(message).toContain(
      "it listens on TCP 127.0.0.1:10001; on this OS a plugin must listen on a unix socket in PLUGIN_UNIX_SOCKET_DIR"
    )
  })

  test("a unix socket outside the folder the host made: refused", async () => {
    const { tag, message } = await launchFailure(badPlugin("foreign-socket"), launchOptions())
    expect(tag).toBe("PluginBadHandshake")
    expect(message).toContain("its unix socket /run/docker.sock is outside the folder the host made for it")
  })

  test("400 MB without a newline where the handshake goes: refused once past 16 KiB, not after reading it all", async () => {
    const started = Date.now()
    const { tag, message } = await launchFailure(badPlugin("flood-handshake"), launchOptions())
    expect(tag).toBe("PluginBadHandshake")
    expect(message).toContain("printed a handshake line longer than 16384 bytes")
    expect(Date.now() - started).toBeLessThan(4_000)
  })

  test("400 MB without a newline on stderr before any handshake: the timeout's evidence stays short", async () => {
    const { tag, message } = await launchFailure(badPlugin("flood-stderr-early"), launchOptions({ handshakeTimeoutMs: 3_000 }))
    expect(tag).toBe("PluginHandshakeTimeout")
    expect(message).toContain("starting")
    // The line in progress is held to 64 KiB and quoted to a few hundred characters.
    expect(message.length).toBeLessThan(2_000)
  })
})

describe("a plugin's log lines", () => {
  test(
    "forged plugin and capability fields are nested under plugin_fields; a burst past the rate limit is dropped and counted",
    async () => {
      const folder = pluginsFolder()
      addPlugin(folder.dir, testPlugin("noisy.js"), "forge.js")
      try {
        await withHost(
          testSettings(folder.dir),
          Effect.gen(function*() {
            yield* awaitState("forge.js", "running")
            const done = yield* Effect.promise(() =>
              eventually(() => logLines.some((l) => l.includes("lines dropped") && l.includes("plugin=forge.js")), 10_000)
            )
            expect(done).toBe(true)
          })
        )
        const forged = logLines.find((l) => l.includes("message=forged"))
        expect(forged).toContain("plugin=forge.js")
        expect(forged).not.toContain("plugin=postgres")
        expect(forged).not.toContain("capability=")
        expect(forged).toContain("plugin_fields=")
        expect(forged).toContain("prod/payments")
        const dropped = logLines.filter((l) => l.includes("plugin=forge.js") && l.includes("lines dropped"))
        const count = dropped.map((l) => Number(/(\d+) lines dropped/.exec(l)?.[1] ?? 0)).reduce((a, b) => a + b, 0)
        const relayed = logLines.filter((l) => l.includes("plugin=forge.js") && /message="(spam \d+|flood done)"/.test(l)).length
        // Each of the 5000 spam lines and the closing one is either relayed or counted, never both, never lost.
        expect(relayed + count).toBe(5001)
        expect(relayed).toBeLessThan(1000)
      } finally {
        folder.cleanup()
      }
    },
    30_000
  )
})

describe("a plugin whose category is not a valid name", () => {
  test("is refused at load, once, and the others still serve", async () => {
    const folder = pluginsFolder()
    addPlugin(folder.dir, testPlugin("noisy.js"), "badcategory.js")
    addPlugin(folder.dir, testPlugin("flaky.js"))
    try {
      await withHost(
        testSettings(folder.dir),
        Effect.gen(function*() {
          const refused = yield* awaitState("badcategory.js", "failed")
          expect(refused.error).toContain("plugin badcategory.js is refused: its category \"Bad_Category\" is not a valid name")
          expect(refused.restarts).toBe(0)
          yield* awaitState("flaky.js", "running")
          const registry = yield* PluginRegistry
          expect((yield* registry.entries).map((e) => e.plugin)).toEqual(["flaky.js"])
        })
      )
    } finally {
      folder.cleanup()
    }
  }, 30_000)
})

describe("a plugin that hangs in BuildDependents but answers health checks", () => {
  test("after 3 calls in a row time out it is degraded, its calls fail at once, and it is restarted", async () => {
    const folder = pluginsFolder()
    addPlugin(folder.dir, testPlugin("go-stall"), "stall")
    try {
      await withHost(
        testSettings(folder.dir, { callTimeoutMs: 500 }),
        Effect.gen(function*() {
          yield* awaitState("stall", "running")
          const registry = yield* PluginRegistry
          const host = yield* PluginHost
          const { connection } = yield* registry.resolve("test", "stall", "")
          // Health checks keep passing meanwhile: the host's own watch would not restart it.
          for (let i = 0; i < 3; i++) {
            const failed = yield* Effect.flip(connection.buildDependents({}))
            expect(`${failed._tag}: ${failed.message}`).toStartWith("PluginTimeout")
          }
          const degraded = yield* Effect.flip(connection.buildDependents({}))
          expect(degraded._tag).toBe("PluginUnavailable")
          expect(degraded.message).toContain("degraded after 3 calls in a row timed out")
          const unavailable = yield* Effect.flip(registry.resolve("test", "stall", ""))
          expect(unavailable.message).toContain("3 calls in a row timed out")
          // Restarted, and serving again (its calls would hang again: it is that kind of plugin).
          const restarted = yield* Effect.promise(() =>
            eventually(async () => {
              const s = (await Effect.runPromise(host.statuses)).find((p) => p.name === "stall")
              return s?.state === "running" && s.restarts === 1
            }, 10_000)
          )
          expect(restarted).toBe(true)
          expect((yield* registry.resolve("test", "stall", "")).plugin).toBe("stall")
        })
      )
      expect(logLines.some((l) => l.includes("plugin stall stopped: degraded: 3 calls in a row timed out"))).toBe(true)
    } finally {
      folder.cleanup()
    }
  }, 30_000)
})

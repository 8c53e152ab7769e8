/**
 * Plugins that misbehave, each a real process: the host fails with a tagged
 * error quoting the evidence, and never hangs.
 */
import { describe, expect, test } from "bun:test"
import { mkdirSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect } from "effect"
import { launchFailure, launchOptions, withPlugin } from "../support/launch.ts"
import { badPlugin, forms, testPlugin } from "../support/paths.ts"

describe("a plugin that fails to start", () => {
  test("prints garbage before the handshake: quoted", async () => {
    const { tag, message } = await launchFailure(badPlugin("garbage"), launchOptions())
    expect(tag).toBe("PluginBadHandshake")
    expect(message).toContain("printed output before (or instead of) its handshake: \"Starting plugin v1.2.3...\"")
    expect(message).toContain("log to stderr")
  })

  test("never handshakes: the timeout fires, with its stderr", async () => {
    const started = Date.now()
    const { tag, message } = await launchFailure(badPlugin("silent"), launchOptions({ handshakeTimeoutMs: 500 }))
    expect(tag).toBe("PluginHandshakeTimeout")
    expect(message).toContain("within 500 ms")
    expect(message).toContain("warming up")
    expect(Date.now() - started).toBeLessThan(4_000)
  })

  test("exits at once: its exit code and last stderr lines", async () => {
    const { tag, message } = await launchFailure(badPlugin("exits"), launchOptions())
    expect(tag).toBe("PluginExitedEarly")
    expect(message).toContain("exited with code 3")
    expect(message).toContain("error: cannot open configuration file")
  })

  test("speaks netrpc: explained as Go-only", async () => {
    const { tag, message } = await launchFailure(badPlugin("netrpc"), launchOptions())
    expect(tag).toBe("PluginBadHandshake")
    expect(message).toContain("netrpc protocol, which only Go hosts can load")
  })

  test("is not executable", async () => {
    const { tag, message } = await launchFailure(badPlugin("README.txt"), launchOptions()).catch((e: Error) => ({
      tag: "thrown",
      message: e.message
    }))
    expect(tag).toBe("thrown")
    expect(message).toContain("neither an executable nor a .js bundle")
  })

  test("would get a socket path longer than the OS allows: said before spawning", async () => {
    const saved = process.env.TMPDIR
    const long = join(tmpdir(), "x".repeat(100))
    mkdirSync(long, { recursive: true })
    process.env.TMPDIR = long
    try {
      const { tag, message } = await launchFailure(testPlugin("flaky.js"), launchOptions())
      expect(tag).toBe("PluginNotRunnable")
      expect(message).toContain("over the 107 the OS allows")
      expect(message).toContain("set TMPDIR to a shorter folder")
    } finally {
      if (saved === undefined) delete process.env.TMPDIR
      else process.env.TMPDIR = saved
      rmSync(long, { recursive: true, force: true })
    }
  })

  for (const { form, file } of forms(testPlugin, "oldproto")) {
    test(`offers no shared version (${form}): both sides named`, async () => {
      const { tag, message } = await launchFailure(file, launchOptions({ protocolVersions: [1, 2] }))
      expect(tag).toBe("PluginBadHandshake")
      expect(message).toContain("shares no protocol version with this operator: it answered version 7, this operator offers 1, 2")
    })
  }
})

describe("version negotiation with a real plugin", () => {
  test("the plugin picks the highest version both speak", () =>
    withPlugin(
      testPlugin("oldproto.js"),
      launchOptions({ protocolVersions: [1, 7] }),
      (plugin) => Effect.sync(() => expect(plugin.handshake.appVersion).toBe(7))
    ))
})

describe("a plugin that fails mid-call", () => {
  const cap = (mode: string) => ({
    metadata: { name: "x", namespace: "default" },
    spec: { category: "test", type: "flaky", version: "1", parameters: [{ name: "MODE", value: mode }] }
  })

  for (const { form, file } of forms(testPlugin, "flaky")) {
    test(`crashes (${form}): the call fails as unavailable, at once`, () =>
      withPlugin(file, launchOptions(), (plugin) =>
        Effect.gen(function*() {
          const started = Date.now()
          const error = yield* Effect.flip(plugin.connection.buildDependents(cap("crash")))
          expect(error._tag).toBe("PluginUnavailable")
          expect(Date.now() - started).toBeLessThan(1_500)
          expect(yield* plugin.exited).toBe(2)
        })))

    test(`hangs (${form}): the deadline fires and the host carries on`, () =>
      withPlugin(file, launchOptions({ callTimeoutMs: 400, shutdownGraceMs: 300 }), (plugin) =>
        Effect.gen(function*() {
          const started = Date.now()
          const error = yield* Effect.flip(plugin.connection.buildDependents(cap("hang")))
          expect(error._tag).toBe("PluginTimeout")
          expect(error.message).toContain("did not answer BuildDependents within 400 ms")
          expect(Date.now() - started).toBeLessThan(1_500)
          const ping = yield* Effect.flip(plugin.connection.ping)
          expect(ping._tag).toBe("PluginTimeout")
        })))

    test(`sees only the environment a plugin needs (${form}), not the operator's secrets`, () => {
      process.env.GITHUB_TOKEN = "do-not-leak"
      return withPlugin(file, launchOptions(), (plugin) =>
        Effect.gen(function*() {
          const [config] = yield* plugin.connection.buildDependents(cap("env"))
          const names = String((config?.object.data as { names: string }).names).split(",")
          expect(names).not.toContain("GITHUB_TOKEN")
          expect(names).toContain("HALKYON_CAPABILITY_PLUGIN")
          expect(names).toContain("PLUGIN_PROTOCOL_VERSIONS")
          // JavaScriptCore's JIT switch, off unless the host is told otherwise (--plugin-jit).
          expect(names).toContain("BUN_JSC_useJIT")
          expect(
            names.filter((n) =>
              !/^(HALKYON_CAPABILITY_PLUGIN|HALKYON_HOST_PID|PLUGIN_[A-Z_]+|PATH|TZ|LANG|BUN_BE_BUN|BUN_JSC_useJIT)$/.test(n) &&
              !["PWD", "SHLVL", "_", "OLDPWD"].includes(n)
            )
          ).toEqual([])
        })).finally(() => delete process.env.GITHUB_TOKEN)
    })

    test(`throws (${form}): an internal error naming the dependent`, () =>
      withPlugin(file, launchOptions(), (plugin) =>
        Effect.gen(function*() {
          const error = yield* Effect.flip(plugin.connection.buildDependents(cap("throw")))
          expect(error._tag).toBe("PluginCallFailed")
          expect(error.message).toBe(
            "plugin flaky" + (form === "bundle" ? ".js" : "") + " failed BuildDependents: building dependent config failed: asked to throw"
          )
          yield* plugin.connection.ping
        })))
  }
})

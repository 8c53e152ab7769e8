/**
 * Conformance with HashiCorp go-plugin itself, not with our reading of it.
 *
 * - go-plugin's own client (test/conformance, a Go program) loads the
 *   TypeScript postgres plugin in both forms, with AutoMTLS on and off, calls
 *   every RPC, pings it and shuts it down.
 * - The handshake and lifecycle table, run both ways: our host against a Go
 *   fixture plugin built on go-plugin (test/fixtures/go-plugins/conform), and
 *   go-plugin's host against a fixture on our SDK (test/fixtures/plugins/conform).
 *   One test per row and direction, each asserting what was observed; the
 *   same table, in words, is in docs/plugins/protocol.md.
 *
 * npm test builds the Go programs (build-plugins --with-test-fixtures).
 */
import { afterAll, describe, expect, test } from "bun:test"
import { NodeServices } from "@effect/platform-node"
import { Effect, Layer, Logger, References } from "effect"
import { PluginClient } from "../../src/plugin-client/PluginClient.ts"
import { Metrics } from "../../src/metrics/Metrics.ts"
import { launch, type LaunchOptions } from "../../src/plugin-host/PluginProcess.ts"
import { Redactions } from "../../src/plugin-host/Redactions.ts"
import { PluginLauncher } from "../../src/plugin-host/PluginLauncher.ts"
import { launchFailure, launchOptions, pluginFile, withPlugin } from "../support/launch.ts"
import { addPlugin, builtPlugin, bun, eventually, pluginsFolder, processesMatching, root, testPlugin } from "../support/paths.ts"

interface LogEntry {
  level: string
  message: string
  module: string
  fields: Record<string, unknown>
}
interface GoHostReport {
  ok: boolean
  stage?: string
  error?: string
  negotiatedVersion?: number
  protocol?: string
  results?: Record<string, unknown>
  shutdown?: { graceful: boolean; exited: boolean; killed: boolean; exitError?: string; ms: number }
  logs: Array<LogEntry>
}

const conformanceHost = `${root}/dist/conformance/conformance`

/** Runs go-plugin's client (the Go conformance host) against a plugin. */
const goHost = async (plugin: string, args: ReadonlyArray<string> = [], mode?: string): Promise<GoHostReport> => {
  const proc = Bun.spawn([
    conformanceHost,
    "-plugin",
    plugin,
    "-bun",
    bun,
    ...(mode === undefined ? [] : ["-env", `HALKYON_CONFORMANCE_MODE=${mode}`]),
    ...args
  ], {
    stdout: "pipe",
    stderr: "pipe"
  })
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited])
  if (code !== 0) throw new Error(`the conformance host exited with ${code}: ${err}`)
  return JSON.parse(out) as GoHostReport
}

/** The Go fixture plugin under a mode's name (it reads its mode from its file name). */
const folder = pluginsFolder()
afterAll(() => folder.cleanup())
const goFixture = (mode: string) => addPlugin(folder.dir, testPlugin("go-conform"), mode)
const tsFixture = (form: "executable" | "bundle") => testPlugin(form === "bundle" ? "conform.js" : "conform")

/** Launches with our host and collects what it logged (logfmt lines, every level). */
const launchLogging = async (path: string, options: LaunchOptions) => {
  const lines: Array<string> = []
  const collect = Logger.layer([Logger.make((o) => void lines.push(Logger.formatLogFmt.log(o)))])
  await Effect.runPromise(
    Effect.scoped(Effect.gen(function*() {
      const plugin = yield* launch(pluginFile(path), options)
      // The stderr relay and the stdio stream run beside the launch: wait for the last line of each.
      const seen = (text: string) => lines.some((l) => l.includes(text))
      const both = yield* Effect.promise(() => eventually(() => seen("a plain warning") && seen("stdout after the handshake"), 5_000))
      if (!both) throw new Error(`the stderr relay and the stdio stream did not both deliver their last line:\n${lines.join("\n")}`)
      return plugin
    })).pipe(
      Effect.provide(
        Layer.mergeAll(
          PluginClient.layer.pipe(Layer.provide(Metrics.layer)),
          PluginLauncher.local.pipe(Layer.provide(NodeServices.layer)),
          Redactions.layer,
          collect
        )
      ),
      Effect.provideService(References.MinimumLogLevel, "All")
    )
  )
  return lines
}

const postgresCapability = JSON.stringify({
  metadata: { name: "db", namespace: "default" },
  spec: { category: "database", type: "postgres", version: "17" }
})

describe("go-plugin's own client loads the TypeScript postgres plugin", () => {
  for (const [form, file] of [["executable", builtPlugin("postgres")], ["bundle", builtPlugin("postgres.js")]] as const) {
    for (const mtls of [false, true]) {
      test(`${form}, AutoMTLS ${mtls ? "on" : "off"}: every RPC answers, Ping, then Kill stops it gracefully`, async () => {
        const report = await goHost(file, [`-mtls=${mtls}`, "-capability", postgresCapability])
        expect(report.error).toBeUndefined()
        expect(report).toMatchObject({ ok: true, negotiatedVersion: 1, protocol: "grpc" })
        expect(report.results).toEqual({
          describe: {
            name: "postgres",
            category: "database",
            dependents: 3,
            types: [{ type: "postgres", versions: ["14", "15", "16", "17", "18"], default_version: "17" }]
          },
          checkValidity: [],
          checkValidityWrongVersion: [
            "version \"017\" of postgres is not supported by plugin postgres; supported versions: 14, 15, 16, 17, 18"
          ],
          checkValidityGarbage: "rpc error: code = InvalidArgument desc = the Capability could not be read: Expected a valid JSON string",
          buildDependents: { ids: ["config-secret", "statefulset", "service"], kinds: ["Secret", "StatefulSet", "Service"] },
          updateDependent: { id: "config-secret", needsUpdate: true },
          updateUnknownDependent:
            "rpc error: code = NotFound desc = plugin postgres has no dependent \"no-such-dependent\"; it has: config-secret, statefulset, service",
          evaluateConditions: [
            { id: "statefulset", state: "CONDITION_STATE_PENDING", reason: "ReplicasNotReady", message: "0/1 replicas ready" },
            { id: "statefulset", state: "CONDITION_STATE_PENDING", reason: "NotFound", message: "StatefulSet for db does not exist yet" }
          ],
          ping: "ok",
          health: "SERVING"
        })
        // Kill: Shutdown answered, the process gone well before go-plugin's 2 s SIGKILL.
        expect(report.shutdown).toMatchObject({ graceful: true, exited: true, killed: false })
        expect(report.logs.map((l) => l.message)).not.toContain("plugin failed to exit gracefully")
        // Our plugin's hclog lines reach go-plugin's logger as structured entries.
        expect(report.logs.find((l) => l.message === "plugin serving")).toMatchObject({
          level: "debug",
          module: "postgres",
          fields: { mtls, protocol_version: 1 }
        })
      })
    }
  }

  test("the Go redis plugin answers the same go-plugin host the same way", async () => {
    const report = await goHost(builtPlugin("redis"), [
      "-mtls=true",
      "-capability",
      JSON.stringify({ metadata: { name: "c", namespace: "default" }, spec: { category: "cache", type: "redis" } })
    ])
    expect(report).toMatchObject({ ok: true, negotiatedVersion: 1, protocol: "grpc" })
    expect(report.results?.buildDependents).toEqual({
      ids: ["config-secret", "deployment", "service"],
      kinds: ["Secret", "Deployment", "Service"]
    })
    expect(report.results?.evaluateConditions).toEqual([
      { id: "deployment", state: "CONDITION_STATE_PENDING", reason: "ReplicasNotAvailable", message: "0/1 replicas available" },
      { id: "deployment", state: "CONDITION_STATE_PENDING", reason: "NotFound", message: "Deployment for c does not exist yet" }
    ])
    expect(report.shutdown).toMatchObject({ graceful: true, exited: true, killed: false })
  })
})

describe("conformance table: our host loads Go plugins built on go-plugin", () => {
  test("ok: handshakes (AutoMTLS on), describes, answers, and the line has no multiplexing field (our host never asks)", () =>
    withPlugin(goFixture("ok"), launchOptions(), (plugin) =>
      Effect.gen(function*() {
        expect(plugin.handshake).toMatchObject({ appVersion: 1, network: "unix", protocol: "grpc", multiplexed: undefined })
        expect(plugin.handshake.certificate?.length).toBeGreaterThan(100)
        expect(plugin.description.name).toBe("conform-ok")
        expect(yield* plugin.connection.checkValidity({ metadata: { name: "x" }, spec: {} })).toEqual([])
        yield* plugin.connection.ping
      })))

  test("version mismatch: the plugin answers its only version, 7; refused naming both sides", async () => {
    const { tag, message } = await launchFailure(goFixture("oldproto"), launchOptions())
    expect(tag).toBe("PluginBadHandshake")
    expect(message).toContain("shares no protocol version with this operator: it answered version 7, this operator offers 1")
  })

  test("no certificate: AutoMTLS on, a plugin that ignores PLUGIN_CLIENT_CERT is refused", async () => {
    const { tag, message } = await launchFailure(goFixture("nocert"), launchOptions())
    expect(tag).toBe("PluginBadHandshake")
    expect(message).toContain("AutoMTLS is on but the plugin sent no certificate")
  })

  test("no certificate: AutoMTLS off, the same plugin loads in plain gRPC", () =>
    withPlugin(
      goFixture("nocert"),
      launchOptions({ autoMtls: false }),
      (plugin) => Effect.sync(() => expect(plugin.handshake.certificate).toBeUndefined())
    ))

  test("output before the handshake: refused, the line quoted", async () => {
    const { tag, message } = await launchFailure(goFixture("chatty"), launchOptions())
    expect(tag).toBe("PluginBadHandshake")
    expect(message).toContain("printed output before (or instead of) its handshake: \"Starting plugin v1.2.3...\"")
  })

  test("slow start (1.5 s): a 500 ms handshake timeout fires", async () => {
    const { tag, message } = await launchFailure(goFixture("slow"), launchOptions({ handshakeTimeoutMs: 500 }))
    expect(tag).toBe("PluginHandshakeTimeout")
    expect(message).toContain("did not print its handshake line within 500 ms")
  })

  test("slow start (1.5 s): a 5 s handshake timeout waits for it", () =>
    withPlugin(
      goFixture("slow"),
      launchOptions({ handshakeTimeoutMs: 5_000 }),
      (plugin) => Effect.sync(() => expect(plugin.description.name).toBe("conform-slow"))
    ))

  test("crash at start: its exit code and stderr", async () => {
    const { tag, message } = await launchFailure(goFixture("crash"), launchOptions())
    expect(tag).toBe("PluginExitedEarly")
    expect(message).toContain("exited with code 3 before completing the handshake")
    expect(message).toContain("error: cannot open configuration file /etc/conform.yaml")
  })

  test("Shutdown answered UNAVAILABLE (a Go plugin stops its server hard): success, and it exits 0", () =>
    withPlugin(goFixture("ok"), launchOptions(), (plugin) =>
      Effect.gen(function*() {
        // go-plugin's Shutdown stops the server before the answer is sent.
        yield* plugin.connection.shutdown
        expect(yield* plugin.exited).toBe(0)
      })))

  test("hclog lines parsed into levels and fields; [WARN] lines too; stdout after the handshake relayed from the stdio stream", async () => {
    const lines = await launchLogging(goFixture("logs"), launchOptions())
    const line = (message: string) =>
      lines.find((l) => l.includes(`message="${message}"`) || l.includes(`message=${message}`)) ?? `(no line for ${message})`
    // The plugin's own fields are nested under plugin_fields (JSON in a logfmt line), apart from the host's.
    expect(line("a trace line")).toMatch(/level=TRACE .*plugin=logs .*plugin_fields="\{\\"step\\":1\}"/)
    expect(line("a debug line")).toMatch(/level=DEBUG .*plugin_fields="\{\\"step\\":2\}"/)
    expect(line("an info line")).toMatch(/level=INFO .*plugin_fields="\{\\"port\\":6379,\\"tls\\":true\}"/)
    expect(line("a warn line")).toMatch(/level=WARN .*plugin_fields="\{\\"attempt\\":3\}"/)
    expect(line("an error line")).toMatch(/level=ERROR .*plugin_fields="\{\\"error\\":\\"disk full\\"\}"/)
    expect(line("a plain warning")).toMatch(/level=WARN /)
    expect(line("stdout after the handshake")).toMatch(/level=INFO .*plugin=logs .*stream=stdout/)
  })
})

describe("beyond go-plugin: a Go plugin served by go/shared", () => {
  test("exits when its host is killed with SIGKILL, as SDK plugins do (bare go-plugin plugins keep running)", async () => {
    const dir = pluginsFolder(builtPlugin("redis"))
    const host = Bun.spawn([`${root}/dist/halkyon`, "plugins", "watch", "--plugins-dir", dir.dir], { stdout: "pipe", stderr: "pipe" })
    const plugins = async () => (await processesMatching(dir.dir)).filter((pid) => pid !== host.pid)
    try {
      expect(await eventually(async () => (await plugins()).length === 1, 10_000)).toBe(true)
      host.kill("SIGKILL")
      await host.exited
      expect(await eventually(async () => (await plugins()).length === 0, 2_000)).toBe(true)
    } finally {
      host.kill("SIGKILL")
      dir.cleanup()
    }
  })
})

describe("conformance table: go-plugin's host loads plugins on our SDK", () => {
  for (const form of ["executable", "bundle"] as const) {
    describe(form, () => {
      test("version mismatch: go-plugin refuses the plugin's only version, 7", async () => {
        const report = await goHost(testPlugin(form === "bundle" ? "oldproto.js" : "oldproto"), ["-mode", "start"])
        expect(report).toMatchObject({ ok: false, stage: "start" })
        expect(report.error).toContain("incompatible API version with plugin. Plugin version: 7, Client versions: [1]")
      })

      test("no certificate: AutoMTLS off, our plugin sends an empty certificate field and serves plain gRPC", async () => {
        const report = await goHost(tsFixture(form), ["-mode", "start", "-mtls=false"])
        expect(report).toMatchObject({ ok: true, results: { describe: "conform-ok" } })
      })

      test("no certificate: AutoMTLS on, a plugin that ignores PLUGIN_CLIENT_CERT fails at the first call", async () => {
        const report = await goHost(tsFixture(form), ["-mode", "start", "-mtls=true"], "nocert")
        expect(report).toMatchObject({ ok: false, stage: "describe" })
        expect(report.error).toContain("code = Unavailable")
      })

      test("multiplexing requested: our plugin answers false, and go-plugin refuses it", async () => {
        const report = await goHost(tsFixture(form), ["-mode", "start", "-mux"])
        expect(report).toMatchObject({ ok: false, stage: "start" })
        expect(report.error).toBe("client requested gRPC broker multiplexing but plugin does not support the feature")
      })

      test("output before the handshake: go-plugin quotes the line", async () => {
        const report = await goHost(tsFixture(form), ["-mode", "start"], "chatty")
        expect(report).toMatchObject({ ok: false, stage: "start" })
        expect(report.error).toStartWith("Unrecognized remote plugin message: Starting plugin v1.2.3...")
      })

      test("slow start (1.5 s): a 500 ms start timeout fires", async () => {
        const report = await goHost(tsFixture(form), ["-mode", "start", "-start-timeout", "500ms"], "slow")
        expect(report).toMatchObject({ ok: false, stage: "start", error: "timeout while waiting for plugin to start" })
      })

      test("slow start (1.5 s): a 5 s start timeout waits for it", async () => {
        const report = await goHost(tsFixture(form), ["-mode", "start", "-start-timeout", "5s"], "slow")
        expect(report).toMatchObject({ ok: true, results: { describe: "conform-slow" } })
      })

      test("crash at start: go-plugin sees the exit, and relays the stderr line", async () => {
        const report = await goHost(tsFixture(form), ["-mode", "start"], "crash")
        expect(report).toMatchObject({ ok: false, stage: "start" })
        // go-plugin races the process exit against the end of stdout: either message comes.
        expect(report.error).toMatch(
          /^(plugin exited before we could connect|Unrecognized remote plugin message: \nFailed to read any lines from plugin's stdout)/
        )
        expect(report.logs.find((l) => l.message === "plugin process exited")?.fields.error).toBe("exit status 3")
        expect(report.logs.some((l) => l.message.includes("error: cannot open configuration file /etc/conform.yaml"))).toBe(true)
      })

      test("Shutdown: our plugin answers and exits before go-plugin's 2 s SIGKILL", async () => {
        const report = await goHost(tsFixture(form), ["-mode", "start", "-mtls=true"])
        expect(report.shutdown).toMatchObject({ graceful: true, exited: true, killed: false })
        expect(report.logs.map((l) => l.message)).toContain("plugin exited")
        expect(report.logs.map((l) => l.message)).not.toContain("plugin failed to exit gracefully")
      })

      test("hclog lines parsed by go-plugin into levels and fields; [WARN] lines too", async () => {
        const report = await goHost(tsFixture(form), ["-mode", "start"], "logs")
        const entry = (message: string) => report.logs.find((l) => l.message === message)
        expect(entry("a trace line")).toMatchObject({ level: "trace", module: "conform", fields: { step: 1 } })
        expect(entry("a debug line")).toMatchObject({ level: "debug", fields: { step: 2 } })
        expect(entry("an info line")).toMatchObject({ level: "info", fields: { port: 6379, tls: true } })
        expect(entry("a warn line")).toMatchObject({ level: "warn", fields: { attempt: 3 } })
        expect(entry("an error line")).toMatchObject({ level: "error", fields: { error: "disk full" } })
        expect(report.logs.find((l) => l.message.includes("a plain warning"))).toMatchObject({ level: "warn" })
      })
    })
  }
})

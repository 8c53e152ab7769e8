/**
 * How the plugin benchmarks time a plugin under our host: starts (spawn to
 * handshake, as PluginProcess.launch measures it) and CheckValidity round
 * trips, with the figures' percentiles. Shared by bench:plugins and
 * bench:interop so that both measure the same way.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { NodeServices } from "@effect/platform-node"
import { Effect, Layer, Logger } from "effect"
import { PluginClient, type PluginConnection } from "../../src/plugin-client/PluginClient.ts"
import { Metrics } from "../../src/metrics/Metrics.ts"
import { classify, type PluginFile } from "../../src/plugin-host/PluginFiles.ts"
import { attach, launch, type LaunchOptions } from "../../src/plugin-host/PluginProcess.ts"
import { MagicCookieKey, MagicCookieValue } from "../../src/protocol/Handshake.ts"
import { PluginLauncher } from "../../src/plugin-host/PluginLauncher.ts"
import { Redactions } from "../../src/plugin-host/Redactions.ts"

export const percentile = (values: ReadonlyArray<number>, p: number) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN
}

/** As the host launches a plugin; `pluginJit` as `--plugin-jit` sets it (off by default: BUN_JSC_useJIT=0). */
export const launchOptions = (autoMtls: boolean, pluginJit = false): LaunchOptions => ({
  handshakeTimeoutMs: 10_000,
  callTimeoutMs: 10_000,
  shutdownGraceMs: 2_000,
  autoMtls,
  protocolVersions: [1],
  pluginJit
})

const services = Layer.mergeAll(
  PluginClient.layer.pipe(Layer.provide(Metrics.layer)),
  PluginLauncher.local.pipe(Layer.provide(NodeServices.layer)),
  Redactions.layer,
  Logger.layer([])
)

export const pluginFile = (path: string) => classify(path) as PluginFile

/** Start-to-handshake times of `starts` starts; two more before them warm the page cache and are dropped. */
export const startTimes = (file: PluginFile, autoMtls: boolean, starts: number) =>
  Effect.runPromise(
    Effect.gen(function*() {
      const times: Array<number> = []
      for (let i = 0; i < starts + 2; i++) {
        const ms = yield* Effect.scoped(Effect.map(launch(file, launchOptions(autoMtls)), (p) => p.startMs))
        if (i >= 2) times.push(ms)
      }
      return times
    }).pipe(Effect.provide(services))
  )

/** CheckValidity round trips on one running plugin; 200 more before them warm it up and are dropped. */
export const roundTrips = (file: PluginFile, autoMtls: boolean, capability: unknown, calls: number, pluginJit = false) =>
  Effect.runPromise(
    Effect.scoped(Effect.gen(function*() {
      const plugin = yield* launch(file, launchOptions(autoMtls, pluginJit))
      const times: Array<number> = []
      for (let i = 0; i < calls + 200; i++) {
        const t0 = performance.now()
        yield* plugin.connection.checkValidity(capability)
        if (i >= 200) times.push(performance.now() - t0)
      }
      return times
    })).pipe(Effect.provide(services))
  )

/** A process's memory from /proc: RSS and its anonymous and file-backed parts, and PSS (shared pages split among their users), in KiB. */
export const memoryOf = (pid: number) => {
  const status = readFileSync(`/proc/${pid}/status`, "utf8")
  const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8")
  const field = (text: string, name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)`, "m").exec(text)?.[1] ?? NaN)
  return { rss: field(status, "VmRSS"), anon: field(status, "RssAnon"), file: field(status, "RssFile"), pss: field(rollup, "Pss") }
}

/** A process's CPU seconds so far (user and system). */
export const cpuSecondsOf = (pid: number) => {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? []
  return (Number(fields[11]) + Number(fields[12])) / 100
}

/**
 * A described plugin's memory after a pause (`ready`); then `calls`
 * CheckValidity round trips, timed, with the plugin's CPU seconds for them;
 * then, after a pause, its memory again (`afterCalls`).
 */
const memoryAtWork = (connection: PluginConnection, pid: number, capability: unknown, calls: number, settleMs: number) =>
  Effect.gen(function*() {
    yield* Effect.sleep(settleMs)
    const ready = memoryOf(pid)
    const cpuBefore = cpuSecondsOf(pid)
    const times: Array<number> = []
    for (let i = 0; i < calls; i++) {
      const t0 = performance.now()
      yield* connection.checkValidity(capability)
      times.push(performance.now() - t0)
    }
    const cpuSeconds = cpuSecondsOf(pid) - cpuBefore
    yield* Effect.sleep(settleMs)
    return { ready, afterCalls: memoryOf(pid), times, cpuSeconds }
  })

/**
 * A plugin's memory once ready, and again after work. It is started here as
 * a host starts it (the magic cookie, a socket folder) with `env` added (JSC
 * options, say); a pause after its handshake, its memory with no call yet
 * (`listening`); then it is reached as `--reattach` reaches it: described (its
 * services loaded), a pause, its memory (`ready`); then `calls`
 * CheckValidity round trips (timed, and the plugin's CPU seconds for them,
 * returned too), a pause, its memory
 * again (`afterCalls`: what the JIT tiers added). `command` runs the plugin: its executable, or a runtime and a bundle.
 */
export const readyMemory = async (
  command: ReadonlyArray<string>,
  env: Record<string, string>,
  capability: unknown,
  calls: number,
  settleMs = 1_000
) => {
  const socketDir = mkdtempSync(join(tmpdir(), "halkyon-mem-"))
  const child = Bun.spawn([...command], {
    env: {
      [MagicCookieKey]: MagicCookieValue,
      PLUGIN_PROTOCOL_VERSIONS: "1",
      PLUGIN_UNIX_SOCKET_DIR: socketDir,
      ...(process.env.PATH === undefined ? {} : { PATH: process.env.PATH }),
      ...env
    },
    stdout: "pipe",
    stderr: "ignore"
  })
  try {
    const reader = child.stdout.getReader()
    let line = ""
    while (!line.includes("\n")) {
      const { value, done } = await reader.read()
      if (done) throw new Error(`${command.join(" ")} exited before its handshake`)
      line += new TextDecoder().decode(value)
    }
    reader.releaseLock()
    // Its handshake out and no call yet: what the plugin takes before any connection.
    await Bun.sleep(settleMs)
    const listening = memoryOf(child.pid)
    const [, , network, address] = line.trim().split("|")
    const target = { name: "bench", network: network === "tcp" ? "tcp" : "unix", address: address ?? "" } as const
    return await Effect.runPromise(
      Effect.scoped(Effect.gen(function*() {
        const plugin = yield* attach(target, launchOptions(false))
        return { listening, ...(yield* memoryAtWork(plugin.connection, child.pid, capability, calls, settleMs)) }
      })).pipe(Effect.provide(services))
    )
  } finally {
    child.kill("SIGTERM")
    await child.exited
    rmSync(socketDir, { recursive: true, force: true })
  }
}

/**
 * A plugin's memory as the host runs it, AutoMTLS and JIT setting included:
 * launched by PluginProcess.launch (which describes it), a pause, its memory
 * (`ready`); `calls` CheckValidity round trips (timed, with the plugin's CPU
 * seconds), a pause, its memory again (`afterCalls`).
 */
export const hostedMemory = (file: PluginFile, options: LaunchOptions, capability: unknown, calls: number, settleMs = 1_000) =>
  Effect.runPromise(
    Effect.scoped(Effect.gen(function*() {
      const plugin = yield* launch(file, options)
      return yield* memoryAtWork(plugin.connection, plugin.pid, capability, calls, settleMs)
    })).pipe(Effect.provide(services))
  )

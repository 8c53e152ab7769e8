/**
 * PluginLauncher: the step that turns a plugin file into a running process,
 * with a socket folder, its output streams and its exit. Two implementations:
 * `local` spawns the plugin as a child of this process (laptops, tests), and
 * RunnerLauncher asks a `halkyon plugin-runner` in another container (another
 * uid, no ServiceAccount token) to spawn it. PluginProcess does the rest
 * (handshake, connection, Describe) the same way for both.
 *
 * Everything lives in the caller's scope: closing it stops the process
 * (SIGTERM, then SIGKILL after the grace) and removes its socket folder.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { Context, Duration, Effect, Layer, type Scope, type Stream } from "effect"
import { ChildProcess, ChildProcessSpawner } from "effect/process"
import { HostPidKey, MaxSocketPathBytes, socketPathIn } from "../protocol/Handshake.ts"
import { PluginNotRunnable } from "./Errors.ts"
import { type ExecPlan, landlockAbi } from "./Landlock.ts"
import { LandlockExecKey } from "./LandlockKey.ts"
import { formatBytes } from "../config/HostConfig.ts"
import { type MemoryKill, makeMemoryLimiter } from "./MemoryLimit.ts"
import type { PluginFile } from "./PluginFiles.ts"

export interface LaunchSpec {
  readonly file: PluginFile
  /** The plugin's whole environment but its socket folder and host pid, which the launcher adds. */
  readonly env: Readonly<Record<string, string>>
  /** Between SIGTERM and SIGKILL when the scope closes. */
  readonly graceMs: number
}

export interface SpawnedPlugin {
  readonly pid: number
  /** The folder the plugin makes its socket in (PLUGIN_UNIX_SOCKET_DIR). */
  readonly socketDir: string
  /** Ends (or fails) when the process's pipe closes. */
  readonly stdout: Stream.Stream<Uint8Array, unknown>
  readonly stderr: Stream.Stream<Uint8Array, unknown>
  /** Completes with the exit code (-1 when unknown) when the process exits. */
  readonly exitCode: Effect.Effect<number>
  /** Once it exited: whether its memory limit (`--plugin-memory-limit`) killed it. */
  readonly memoryKill: Effect.Effect<MemoryKill | undefined>
}

export class PluginLauncher extends Context.Service<PluginLauncher, {
  /** Where plugins run, for logs and `plugins list`: "local" or "runner <socket>". */
  readonly where: string
  readonly spawn: (spec: LaunchSpec) => Effect.Effect<SpawnedPlugin, PluginNotRunnable, Scope.Scope>
}>()("halkyon/plugin-host/PluginLauncher") {
  /** Spawns plugins as children of this process; `hidden` files are kept from them where Landlock can. */
  static readonly local = Layer.effect(PluginLauncher, Effect.suspend(() => makeLocal([], undefined)))
  /** Local plugins kept from `hidden` where Landlock can, each under `memoryLimitBytes` (MemoryLimit.ts) when given. */
  static readonly localHiding = (hidden: ReadonlyArray<string>, memoryLimitBytes?: number) =>
    Layer.effect(PluginLauncher, Effect.suspend(() => makeLocal(hidden, memoryLimitBytes)))
}

/** A compiled halkyon can start itself as the Landlock helper; `bun src/main.ts` cannot. */
const isCompiled = () => typeof Bun !== "undefined" && (Bun.main.includes("$bunfs") || Bun.main.includes("~BUN"))

/**
 * How a plugin is started: directly, or through this executable as the
 * Landlock helper (Landlock.ts) when files are to be hidden and the kernel can.
 */
const commandFor = (hidden: ReadonlyArray<string>, command: string, args: ReadonlyArray<string>, env: Record<string, string>) => {
  if (hidden.length === 0) return { command, args, env }
  // Bun's own variables are for the plugin's runtime: BUN_BE_BUN would make the helper a bare
  // runtime, and BUN_JSC_useJIT=0 would leave it without the JIT its FFI calls need.
  const forPlugin = Object.fromEntries(Object.entries(env).filter(([k]) => k.startsWith("BUN_")))
  const rest = Object.fromEntries(Object.entries(env).filter(([k]) => !k.startsWith("BUN_")))
  const plan: ExecPlan = { hidden, command, args, env: forPlugin }
  return { command: process.execPath, args: [], env: { ...rest, [LandlockExecKey]: JSON.stringify(plan) } }
}

/** Whether local plugins can be kept from `hidden` here, and if not, why. */
export const hidingAvailable = (hidden: ReadonlyArray<string>): { readonly ok: true } | { readonly ok: false; readonly reason: string } => {
  if (hidden.length === 0) return { ok: false, reason: "nothing to hide" }
  if (process.platform !== "linux") return { ok: false, reason: `Landlock is Linux's (this is ${process.platform})` }
  if (!isCompiled()) return { ok: false, reason: "only the compiled halkyon can start plugins through its Landlock helper" }
  return landlockAbi() > 0 ? { ok: true } : { ok: false, reason: "this kernel offers no Landlock" }
}

/** Makes the private socket folder (0700, short path) and removes it with the scope. */
const socketFolder = (file: PluginFile) =>
  Effect.acquireRelease(
    Effect.try({
      try: () => mkdtempSync(join(tmpdir(), "hk-")),
      catch: (e) =>
        new PluginNotRunnable({ plugin: file.name, path: file.path, detail: `no socket folder could be made in ${tmpdir()}: ${String(e)}` })
    }),
    (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
  )

const makeLocal = Effect.fn("PluginLauncher.local")(function*(hiddenPaths: ReadonlyArray<string>, memoryLimitBytes: number | undefined) {
  const spawner = yield* ChildProcessSpawner.ChildProcessSpawner
  const hidden = hidingAvailable(hiddenPaths).ok ? hiddenPaths : []
  const limiter = memoryLimitBytes === undefined ? undefined : makeMemoryLimiter(memoryLimitBytes)
  if (limiter !== undefined) {
    yield* Effect.addFinalizer(() => limiter.cleanup)
    const log = limiter.enforcement === "watchdog" ? Effect.logWarning : Effect.logInfo
    yield* log(
      `plugins are limited to ${formatBytes(limiter.limitBytes)} of memory each, enforced by ${limiter.enforcement}` +
        (limiter.fallbackReason === undefined ? "" : ` (${limiter.fallbackReason})`)
    ).pipe(Effect.annotateLogs({ memoryEnforcement: limiter.enforcement, memoryLimitBytes: limiter.limitBytes }))
  }
  const spawn = Effect.fn("PluginLauncher.spawn")(function*(spec: LaunchSpec) {
    const { file } = spec
    // Made before the socket folder and the process, so removed after both (an empty group only can go).
    const limit = limiter === undefined ? undefined : yield* limiter.prepare(file.name)
    const socketDir = yield* socketFolder(file)
    // The plugin names its socket as socketPathIn does; the OS caps the path.
    const socketBytes = Buffer.byteLength(socketPathIn(socketDir))
    if (socketBytes > MaxSocketPathBytes) {
      return yield* new PluginNotRunnable({
        plugin: file.name,
        path: file.path,
        detail: `its socket path would be ${socketBytes} bytes, over the ${MaxSocketPathBytes} the OS allows under ${socketDir}: ` +
          "set TMPDIR to a shorter folder"
      })
    }
    const path = resolve(file.path)
    const [plugin, pluginArgs] = file.form === "bundle" ? [process.execPath, [path]] : [path, []]
    const { command, args, env } = commandFor(hidden, plugin, pluginArgs, {
      ...spec.env,
      PLUGIN_UNIX_SOCKET_DIR: socketDir,
      [HostPidKey]: String(process.pid)
    })
    const handle = yield* spawner.spawn(
      ChildProcess.make(command, args, {
        env,
        extendEnv: false,
        // Its own empty folder, not the operator's: the runtime a TypeScript
        // plugin carries would read a .env or bunfig.toml found where it starts.
        cwd: socketDir,
        killSignal: "SIGTERM",
        forceKillAfter: Duration.millis(spec.graceMs)
      })
    ).pipe(
      Effect.mapError((e) => new PluginNotRunnable({ plugin: file.name, path: file.path, detail: e.message }))
    )
    const limited = limit === undefined ? undefined : yield* limit(Number(handle.pid))
    const spawned: SpawnedPlugin = {
      pid: Number(handle.pid),
      socketDir,
      stdout: handle.stdout,
      stderr: handle.stderr,
      exitCode: handle.exitCode.pipe(Effect.map(Number), Effect.catch(() => Effect.succeed(-1))),
      memoryKill: limited === undefined ? Effect.undefined : limited.killed
    }
    return spawned
  })
  return PluginLauncher.of({ where: "local", spawn })
})

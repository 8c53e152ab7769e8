/**
 * `halkyon plugin-runner`: starts, relays and kills plugin processes on the
 * operator's behalf, where the operator's credentials are out of reach (in
 * the cluster: a second container of the operator's pod, another uid, no
 * ServiceAccount token). It listens on a unix socket in a folder both
 * containers share; RunnerProtocol.ts is what is said on it.
 *
 * Per connection: one Launch naming a file of the runner's own plugins
 * folder (never a path the operator chooses), then Signal requests. The
 * plugin gets a socket folder made beside the runner's socket, in its own
 * process group, with the runner as HALKYON_HOST_PID (so it also exits if the
 * runner dies). Its stdout and stderr are relayed, paused while the
 * connection is behind. When the connection closes, the plugin is stopped:
 * SIGTERM, then SIGKILL after the grace (at most DropGraceMs), so an operator
 * killed with SIGKILL leaves no plugin running. Closing the runner's scope
 * stops every plugin the same way.
 *
 * It does not supervise: the operator's PluginHost restarts what exits.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { accessSync, chmodSync, constants, lstatSync, mkdtempSync, rmSync, statSync } from "node:fs"
import { createServer, type Server, type Socket } from "node:net"
import { constants as os } from "node:os"
import { dirname, join, resolve } from "node:path"
import { Effect, Schema } from "effect"
import { HostPidKey, MaxSocketPathBytes, socketPathIn } from "../protocol/Handshake.ts"
import { decodeRequest, encodeFrame, FrameDecoder, type LaunchRequest, outputFrames } from "./RunnerProtocol.ts"

export interface RunnerSettings {
  /** Where the runner listens. */
  readonly socketPath: string
  /** The only folder plugins are run from. */
  readonly pluginsDir: string
  /** Where plugins' socket folders are made (default: the socket's folder). */
  readonly socketsDir?: string
}

/** The longest time a plugin gets between SIGTERM and SIGKILL once its operator is gone. */
const DropGraceMs = 1_000
/** Plugins (connections) served at once; more are refused. */
const MaxConnections = 512
/** Silence after a process exits before its Exited is sent anyway (a grandchild may hold its pipes). */
const PipeDrainMs = 500

export class RunnerListenFailed extends Schema.TaggedError<RunnerListenFailed>()("RunnerListenFailed", {
  socketPath: Schema.String,
  detail: Schema.String
}) {
  override get message() {
    const hint = "the folder must exist and be writable, e.g. a shared emptyDir"
    return `the plugin runner cannot listen on ${this.socketPath}: ${this.detail} (${hint})`
  }
}

/** Signals a plugin's whole process group; the process alone if it has no group of its own. */
const signal = (child: ChildProcess, sig: NodeJS.Signals) => {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return
  try {
    process.kill(-child.pid, sig)
  } catch {
    child.kill(sig)
  }
}

/** The plugin file a Launch names, checked to be a runnable file directly inside the plugins folder. */
const pluginPath = (pluginsDir: string, request: LaunchRequest): string => {
  const path = join(pluginsDir, request.plugin)
  if (dirname(path) !== pluginsDir) throw new Error(`${request.plugin} is not a file name`)
  const stat = statSync(path)
  if (!stat.isFile()) throw new Error(`${path} is not a regular file`)
  if (request.form === "executable") accessSync(path, constants.X_OK)
  return path
}

const socketDirFor = (socketsDir: string) => {
  const dir = mkdtempSync(join(socketsDir, "hk-"))
  // The operator runs as another uid in the same group: it must reach the plugin's socket.
  chmodSync(dir, 0o770)
  const bytes = Buffer.byteLength(socketPathIn(dir))
  if (bytes > MaxSocketPathBytes) {
    rmSync(dir, { recursive: true, force: true })
    throw new Error(`a plugin socket path would be ${bytes} bytes, over the ${MaxSocketPathBytes} the OS allows under ${socketsDir}`)
  }
  return dir
}

interface Served {
  readonly children: Set<ChildProcess>
  readonly log: (message: string) => void
}

const serveConnection = (settings: Required<RunnerSettings>, served: Served, socket: Socket) => {
  const decoder = new FrameDecoder()
  let child: ChildProcess | undefined
  let socketDir: string | undefined
  let graceMs = DropGraceMs
  let ended = false
  const send = (frame: Uint8Array) => (ended ? true : socket.write(frame))
  const refuse = (message: string) => {
    send(encodeFrame({ _tag: "Refused", message }))
    socket.end()
  }

  const launch = (request: LaunchRequest) => {
    let path: string
    try {
      path = pluginPath(settings.pluginsDir, request)
      socketDir = socketDirFor(settings.socketsDir)
    } catch (e) {
      return refuse(e instanceof Error ? e.message : String(e))
    }
    graceMs = Math.min(request.graceMs, DropGraceMs)
    const [command, args] = request.form === "bundle" ? [process.execPath, [path]] : [path, []]
    const spawned = spawn(command, args, {
      env: { ...request.env, PLUGIN_UNIX_SOCKET_DIR: socketDir, [HostPidKey]: String(process.pid) },
      cwd: socketDir,
      detached: true,
      // stdin a pipe left open, as the local launcher gives it ("ignore" would need a /dev/null).
      stdio: ["pipe", "pipe", "pipe"]
    })
    child = spawned
    served.children.add(spawned)
    let exitCode: number | undefined
    let reported = false
    const reportExit = () => {
      if (reported || exitCode === undefined) return
      reported = true
      served.children.delete(spawned)
      if (socketDir !== undefined) rmSync(socketDir, { recursive: true, force: true })
      send(encodeFrame({ _tag: "Exited", code: exitCode }))
      served.log(`plugin ${request.plugin} (pid ${spawned.pid}) exited with code ${exitCode}`)
      socket.end()
    }
    spawned.once("error", (e) => {
      if (spawned.pid !== undefined) return
      served.children.delete(spawned)
      if (socketDir !== undefined) rmSync(socketDir, { recursive: true, force: true })
      refuse(`cannot start ${path}: ${e.message}`)
    })
    spawned.once("spawn", () => {
      send(encodeFrame({ _tag: "Started", pid: spawned.pid!, socketDir: socketDir! }))
      served.log(`started plugin ${request.plugin} (pid ${spawned.pid})`)
    })
    for (const stream of ["stdout", "stderr"] as const) {
      const pipe = spawned[stream]!
      pipe.on("data", (chunk: Buffer) => {
        let flowing = true
        for (const frame of outputFrames(stream, chunk)) flowing = send(frame) && flowing
        // The operator is behind: stop reading the plugin until it catches up.
        if (!flowing) {
          pipe.pause()
          socket.once("drain", () => pipe.resume())
        }
      })
    }
    spawned.once("exit", (code, sig) => {
      // A signal is reported as a shell would: 128 + its number.
      exitCode = code ?? (sig === null ? -1 : 128 + os.signals[sig])
      setTimeout(reportExit, PipeDrainMs).unref()
    })
    spawned.once("close", reportExit)
  }

  socket.on("data", (chunk: Buffer) => {
    try {
      for (const body of decoder.push(chunk)) {
        const request = decodeRequest(body)
        if (request._tag === "Launch") {
          if (child !== undefined) return refuse("one Launch per connection")
          launch(request)
        } else if (child === undefined) {
          return refuse("a Signal before any Launch")
        } else {
          signal(child, request.signal)
        }
      }
    } catch (e) {
      refuse(e instanceof Error ? e.message : String(e))
      socket.destroy()
    }
  })
  socket.on("error", () => socket.destroy())
  socket.on("close", () => {
    ended = true
    // The operator is gone or done: its plugin goes too.
    const orphan = child
    if (orphan === undefined || orphan.exitCode !== null || orphan.signalCode !== null) return
    signal(orphan, "SIGTERM")
    setTimeout(() => signal(orphan, "SIGKILL"), graceMs).unref()
  })
}

const listen = (server: Server, socketPath: string) =>
  Effect.callback<void, RunnerListenFailed>((resume) => {
    server.once("error", (e) => resume(Effect.fail(new RunnerListenFailed({ socketPath, detail: e.message }))))
    server.listen(socketPath, () => resume(Effect.void))
  })

/** Listens until the scope closes; then stops every plugin (SIGTERM, grace, SIGKILL). */
export const serveRunner = Effect.fn("PluginRunner.serve")(function*(options: RunnerSettings) {
  const settings: Required<RunnerSettings> = {
    socketPath: resolve(options.socketPath),
    pluginsDir: resolve(options.pluginsDir),
    socketsDir: resolve(options.socketsDir ?? dirname(resolve(options.socketPath)))
  }
  // Plugins' sockets and folders are for this uid and its group (the operator's container), not others.
  process.umask(0o007)
  yield* Effect.try({
    try: () => {
      if (lstatSync(settings.socketPath, { throwIfNoEntry: false })?.isSocket()) rmSync(settings.socketPath)
    },
    catch: (e) => new RunnerListenFailed({ socketPath: settings.socketPath, detail: String(e) })
  })
  const services = yield* Effect.context<never>()
  const log = (message: string) => Effect.runForkWith(services)(Effect.logDebug(message))
  const served: Served = { children: new Set(), log }
  const server = createServer((socket) => serveConnection(settings, served, socket))
  server.maxConnections = MaxConnections
  yield* Effect.acquireRelease(listen(server, settings.socketPath), () =>
    Effect.gen(function*() {
      server.close()
      for (const child of served.children) signal(child, "SIGTERM")
      const deadline = Date.now() + DropGraceMs
      while (served.children.size > 0 && Date.now() < deadline) yield* Effect.sleep("20 millis")
      for (const child of served.children) signal(child, "SIGKILL")
      rmSync(settings.socketPath, { force: true })
    }))
  yield* Effect.logInfo(`plugin runner listening on ${settings.socketPath}, running plugins of ${settings.pluginsDir}`)
})

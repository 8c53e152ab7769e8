/**
 * Launches one plugin process and brings it to a described, connected state:
 * a private socket folder, a minimal environment, the handshake (with a
 * timeout and the evidence when it fails), the gRPC connection and Describe.
 * Everything lives in the caller's scope: closing it asks the plugin to shut
 * down, waits a grace period, then SIGTERMs and SIGKILLs its process group and
 * removes the socket folder.
 *
 * `attach` connects to a plugin an author started by hand (--reattach): no
 * process, no socket folder, no Shutdown on close (the author's debugger owns
 * the process, as go-plugin's reattach leaves it).
 *
 * It does not restart anything: PluginHost supervises.
 */
import { mkdtempSync, rmSync, statSync, accessSync, constants } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { Deferred, Duration, Effect, Fiber, Option, Stream } from "effect"
import { ChildProcess, ChildProcessSpawner } from "effect/process"
import type { PluginDescription } from "../gen/halkyon/capability/v1/capability.ts"
import { PluginClient, type PluginConnection } from "../plugin-client/PluginClient.ts"
import { type Handshake, HostPidKey, MagicCookieKey, MagicCookieValue, MaxSocketPathBytes, parseHandshake, socketPathIn } from "../protocol/Handshake.ts"
import { type Certificate, generateCertificate } from "../protocol/Mtls.ts"
import type { ReattachTarget } from "../protocol/Reattach.ts"
import {
  PluginBadHandshake,
  PluginDescribeFailed,
  PluginExitedEarly,
  PluginNotReachable,
  PluginHandshakeTimeout,
  PluginNotRunnable
} from "./Errors.ts"
import { parseLogLine } from "./Hclog.ts"
import type { PluginFile } from "./PluginFiles.ts"

export interface LaunchOptions {
  readonly handshakeTimeoutMs: number
  readonly callTimeoutMs: number
  /** Time between Shutdown and SIGTERM, and between SIGTERM and SIGKILL. */
  readonly shutdownGraceMs: number
  readonly autoMtls: boolean
  /** App protocol versions offered in PLUGIN_PROTOCOL_VERSIONS. */
  readonly protocolVersions: ReadonlyArray<number>
}

export interface LaunchedPlugin {
  readonly file: PluginFile
  readonly pid: number
  readonly handshake: Handshake
  readonly description: PluginDescription
  readonly connection: PluginConnection
  /** Milliseconds from spawn to the handshake line. */
  readonly startMs: number
  /** Completes with the exit code when the process exits. */
  readonly exited: Effect.Effect<number>
}

/** How many stderr lines are kept to explain a failed start, and their longest length. */
const StderrTail = 20
const MaxEvidenceLine = 300

/**
 * The environment a plugin gets: what go-plugin defines, PATH and locale.
 * Never the operator's own (tokens, kubeconfig).
 */
const pluginEnv = (options: LaunchOptions, socketDir: string, certificate: Certificate | undefined, bundle: boolean) => ({
  [MagicCookieKey]: MagicCookieValue,
  [HostPidKey]: String(process.pid),
  PLUGIN_PROTOCOL_VERSIONS: options.protocolVersions.join(","),
  PLUGIN_UNIX_SOCKET_DIR: socketDir,
  PLUGIN_MIN_PORT: "10000",
  PLUGIN_MAX_PORT: "25000",
  ...(certificate === undefined ? {} : { PLUGIN_CLIENT_CERT: certificate.certPem }),
  // A compiled halkyon runs a bundle with its own embedded runtime.
  ...(bundle ? { BUN_BE_BUN: "1" } : {}),
  ...(process.env.PATH === undefined ? {} : { PATH: process.env.PATH }),
  ...(process.env.TZ === undefined ? {} : { TZ: process.env.TZ }),
  ...(process.env.LANG === undefined ? {} : { LANG: process.env.LANG })
})

const checkRunnable = (file: PluginFile): Effect.Effect<void, PluginNotRunnable> =>
  Effect.try({
    try: () => {
      const stat = statSync(file.path)
      if (!stat.isFile()) throw new Error("it is not a regular file")
      if (file.form === "executable") accessSync(file.path, constants.X_OK)
    },
    catch: (e) =>
      new PluginNotRunnable({
        plugin: file.name,
        path: file.path,
        detail: e instanceof Error && "code" in e && e.code === "EACCES"
          ? "it is not executable (chmod +x it)"
          : e instanceof Error ? e.message : String(e)
      })
  })

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

export const launch = Effect.fn("PluginProcess.launch")(function*(file: PluginFile, options: LaunchOptions) {
  yield* Effect.annotateCurrentSpan({ plugin: file.name })
  yield* checkRunnable(file)
  const spawner = yield* ChildProcessSpawner.ChildProcessSpawner
  const client = yield* PluginClient
  const socketDir = yield* socketFolder(file)
  // The plugin names its socket as socketPathIn does; the OS caps the path.
  const socketBytes = Buffer.byteLength(socketPathIn(socketDir))
  if (socketBytes > MaxSocketPathBytes) {
    return yield* new PluginNotRunnable({
      plugin: file.name,
      path: file.path,
      detail: `its socket path would be ${socketBytes} bytes, over the ${MaxSocketPathBytes} the OS allows under ${socketDir}: set TMPDIR to a shorter folder`
    })
  }
  const certificate = options.autoMtls ? yield* Effect.promise(generateCertificate) : undefined
  const path = resolve(file.path)
  const [command, args] = file.form === "bundle" ? [process.execPath, [path]] : [path, []]

  const started = performance.now()
  const handle = yield* spawner.spawn(
    ChildProcess.make(command, args, {
      env: pluginEnv(options, socketDir, certificate, file.form === "bundle"),
      extendEnv: false,
      // Its own empty folder, not the operator's: the runtime a TypeScript
      // plugin carries would read a .env or bunfig.toml found where it starts.
      cwd: socketDir,
      killSignal: "SIGTERM",
      forceKillAfter: Duration.millis(options.shutdownGraceMs)
    })
  ).pipe(
    Effect.mapError((e) => new PluginNotRunnable({ plugin: file.name, path: file.path, detail: e.message }))
  )

  const firstLine = yield* Deferred.make<string | undefined>()
  const stderrTail: Array<string> = []
  const logStdout = Effect.fnUntraced(function*(line: string) {
    if (!(yield* Deferred.succeed(firstLine, line))) yield* Effect.logDebug(line).pipe(Effect.annotateLogs({ plugin: file.name, stream: "stdout" }))
  })
  // stdout: the first line is the handshake; the rest is drained forever.
  yield* handle.stdout.pipe(
    Stream.decodeText(),
    Stream.splitLines,
    Stream.runForEach(logStdout),
    Effect.ignore,
    Effect.ensuring(Deferred.succeed(firstLine, undefined)),
    Effect.forkScoped
  )
  // stderr: relayed into our log at the plugin's hclog level.
  const stderrDone = yield* handle.stderr.pipe(
    Stream.decodeText(),
    Stream.splitLines,
    Stream.runForEach((line) => {
      // Bun's crash reports hold lines of thousands of spaces: keep evidence short.
      stderrTail.push(line.length > MaxEvidenceLine ? `${line.trimEnd().slice(0, MaxEvidenceLine)}…` : line.trimEnd())
      if (stderrTail.length > StderrTail) stderrTail.shift()
      const parsed = parseLogLine(line)
      return Effect.logWithLevel(levelName[parsed.level])(parsed.message).pipe(
        Effect.annotateLogs({ plugin: file.name, ...parsed.fields })
      )
    }),
    Effect.ignore,
    Effect.forkScoped
  )
  const exitCode = yield* Deferred.make<number>()
  yield* handle.exitCode.pipe(
    Effect.map(Number),
    Effect.catch(() => Effect.succeed(-1)),
    Effect.flatMap((code) => Deferred.succeed(exitCode, code)),
    Effect.forkScoped
  )

  // Wait for the first line, the exit or the timeout, whichever comes first.
  const line = yield* Deferred.await(firstLine).pipe(
    Effect.timeoutOption(Duration.millis(options.handshakeTimeoutMs))
  )
  const stderrLines = Effect.gen(function*() {
    // Let the stderr relay catch up so the evidence is complete.
    yield* Fiber.await(stderrDone).pipe(Effect.timeoutOption(Duration.millis(200)))
    return [...stderrTail]
  })
  if (Option.isNone(line)) {
    return yield* new PluginHandshakeTimeout({ plugin: file.name, timeoutMs: options.handshakeTimeoutMs, stderr: yield* stderrLines })
  }
  if (line.value === undefined) {
    const code = yield* Deferred.await(exitCode).pipe(Effect.timeoutOption(Duration.seconds(2)))
    return yield* new PluginExitedEarly({ plugin: file.name, exitCode: Option.getOrElse(code, () => -1), stderr: yield* stderrLines })
  }
  const startMs = Math.round((performance.now() - started) * 10) / 10
  const parsed = parseHandshake(line.value, options.protocolVersions)
  if (!parsed.ok) {
    const p = parsed.problem
    const detail = p._tag === "Malformed" ? p.detail
      : p._tag === "CoreVersion" ? `core protocol version ${p.got}, expected 1`
      : p._tag === "UnknownProtocol" ? `protocol "${p.protocol}"`
      : p._tag === "NoSharedVersion" ? `it answered version ${p.got}, this operator offers ${p.offered.join(", ")}`
      : "netrpc"
    return yield* new PluginBadHandshake({ plugin: file.name, kind: p._tag, line: p.line, detail })
  }
  const handshake = parsed.handshake
  if (certificate !== undefined && handshake.certificate === undefined) {
    return yield* new PluginBadHandshake({
      plugin: file.name,
      kind: "Certificate",
      line: line.value,
      detail: "AutoMTLS is on but the plugin sent no certificate (is it built with an SDK that supports AutoMTLS?)"
    })
  }

  // go-plugin's stdio stream arrives in an HTTP/2 callback: log it with this
  // fiber's services, so it goes through the host's own logger and level.
  const services = yield* Effect.context<never>()
  const connection = yield* client.connect({
    name: file.name,
    handshake,
    certificate,
    callTimeoutMs: options.callTimeoutMs,
    onStdio: (channel, data) => {
      const text = new TextDecoder().decode(data).trimEnd()
      if (text !== "") Effect.runForkWith(services)(Effect.logInfo(text).pipe(Effect.annotateLogs({ plugin: file.name, stream: channel })))
    }
  })
  // On close, before the connection closes: Shutdown over RPC, then wait up to
  // the grace for the exit; the spawner's own finalizer then signals the
  // process group if it is still alive.
  yield* Effect.addFinalizer(() =>
    Effect.gen(function*() {
      if (yield* Deferred.isDone(exitCode)) return
      yield* connection.shutdown.pipe(Effect.timeoutOption(Duration.millis(options.shutdownGraceMs)), Effect.ignore)
      yield* Deferred.await(exitCode).pipe(Effect.timeoutOption(Duration.millis(options.shutdownGraceMs)))
    })
  )
  const description = yield* connection.describe.pipe(
    Effect.mapError((e) => new PluginDescribeFailed({ plugin: file.name, detail: e.message }))
  )
  yield* Effect.logDebug(`plugin ${file.name} started in ${startMs} ms`).pipe(Effect.annotateLogs({ plugin: file.name }))
  const launched: LaunchedPlugin = {
    file,
    pid: Number(handle.pid),
    handshake,
    description,
    connection,
    startMs,
    exited: Deferred.await(exitCode)
  }
  return launched
})

/** The plugin file standing for a reattached plugin: its address in place of a path. */
export const reattachedFile = (target: ReattachTarget): PluginFile => ({
  name: target.name,
  path: `${target.network}:${target.address}`,
  form: "reattached",
  fingerprint: `${target.network}:${target.address}`
})

/**
 * Connects to a plugin started by hand, over plaintext gRPC (it got no
 * client certificate to answer with), and describes it. It never exits as far
 * as the host knows: a dead one fails its calls and health checks instead.
 */
export const attach = Effect.fn("PluginProcess.attach")(function*(target: ReattachTarget, options: LaunchOptions) {
  yield* Effect.annotateCurrentSpan({ plugin: target.name })
  const file = reattachedFile(target)
  if (target.network === "unix") {
    const present = yield* Effect.sync(() => {
      try {
        return statSync(target.address).isSocket()
      } catch {
        return false
      }
    })
    if (!present) return yield* new PluginNotReachable({ plugin: target.name, address: file.path, detail: "no socket is there" })
  }
  const client = yield* PluginClient
  const handshake: Handshake = {
    coreVersion: 1,
    appVersion: options.protocolVersions[options.protocolVersions.length - 1] ?? 1,
    network: target.network,
    address: target.address,
    protocol: "grpc",
    certificate: undefined,
    multiplexed: undefined
  }
  const services = yield* Effect.context<never>()
  const connection = yield* client.connect({
    name: target.name,
    handshake,
    certificate: undefined,
    callTimeoutMs: options.callTimeoutMs,
    onStdio: (channel, data) => {
      const text = new TextDecoder().decode(data).trimEnd()
      if (text !== "") Effect.runForkWith(services)(Effect.logInfo(text).pipe(Effect.annotateLogs({ plugin: target.name, stream: channel })))
    }
  })
  const description = yield* connection.describe.pipe(
    Effect.mapError((e) => new PluginNotReachable({ plugin: target.name, address: file.path, detail: e.message }))
  )
  yield* Effect.logInfo(`reattached to plugin ${target.name} at ${file.path}; it keeps running when halkyon exits`).pipe(
    Effect.annotateLogs({ plugin: target.name })
  )
  const attached: LaunchedPlugin = { file, pid: 0, handshake, description, connection, startMs: 0, exited: Effect.never }
  return attached
})

const levelName = {
  trace: "Trace",
  debug: "Debug",
  info: "Info",
  warn: "Warn",
  error: "Error"
} as const

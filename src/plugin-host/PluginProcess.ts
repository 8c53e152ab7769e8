/**
 * Launches one plugin process and brings it to a described, connected state:
 * a minimal environment, the spawn (PluginLauncher: here or through the
 * plugin runner), the handshake (with a timeout and the evidence when it
 * fails), the gRPC connection and Describe. Everything lives in the caller's
 * scope: closing it asks the plugin to shut down, waits a grace period, then
 * the launcher SIGTERMs and SIGKILLs it and removes the socket folder.
 *
 * `attach` connects to a plugin an author started by hand (--reattach): no
 * process, no socket folder, no Shutdown on close (the author's debugger owns
 * the process, as go-plugin's reattach leaves it).
 *
 * Every line a plugin writes (stdout, stderr, go-plugin's stdio stream, the
 * evidence of a failed start) goes through Redactions before it reaches the
 * operator's log: a plugin that logs a secret parameter it was given does not
 * leak it.
 *
 * It does not restart anything: PluginHost supervises.
 */
import { accessSync, constants, lstatSync, statSync } from "node:fs"
import { Deferred, Duration, Effect, Fiber, Option, Schedule, Stream } from "effect"
import type { PluginDescription } from "../gen/halkyon/capability/v1/capability.ts"
import { PluginClient, type PluginConnection } from "../plugin-client/PluginClient.ts"
import { type Handshake, MagicCookieKey, MagicCookieValue, parseHandshake } from "../protocol/Handshake.ts"
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
import { addressProblem } from "./HandshakeAddress.ts"
import { type LogLevel, parseLogLine, relayAnnotations } from "./Hclog.ts"
import { BoundedLines, type Line, lineText, LogRateLimit, MaxHandshakeLineBytes, MaxLogLineBytes } from "./LogLines.ts"
import type { MemoryKill } from "./MemoryLimit.ts"
import type { PluginFile } from "./PluginFiles.ts"
import { PluginLauncher } from "./PluginLauncher.ts"
import { redactFields, Redactions } from "./Redactions.ts"

export interface LaunchOptions {
  readonly handshakeTimeoutMs: number
  readonly callTimeoutMs: number
  /** Time between Shutdown and SIGTERM, and between SIGTERM and SIGKILL. */
  readonly shutdownGraceMs: number
  readonly autoMtls: boolean
  /** App protocol versions offered in PLUGIN_PROTOCOL_VERSIONS. */
  readonly protocolVersions: ReadonlyArray<number>
  /**
   * Whether a plugin that runs on Bun may use JavaScriptCore's JIT tiers.
   * Absent or false: BUN_JSC_useJIT=0 in its environment. A plugin answers
   * a few calls per reconcile, where compiled code saves fractions of a
   * millisecond and the compilers' code and output cost megabytes per plugin
   * (docs/performance.md). Other runtimes ignore the variable.
   */
  readonly pluginJit?: boolean | undefined
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
  /** Once it exited: whether its memory limit killed it. */
  readonly memoryKill: Effect.Effect<MemoryKill | undefined>
}

/** How many stderr lines are kept to explain a failed start, and their longest length. */
const StderrTail = 20
const MaxEvidenceLine = 300

/** JavaScriptCore's switch for every JIT tier, as Bun reads it from the environment at start. */
const NoJitKey = "BUN_JSC_useJIT"

/**
 * The environment a plugin gets: what go-plugin defines, the runtime's
 * switches (a bundle's runtime, the JIT), PATH and locale. Never the
 * operator's own (tokens, kubeconfig).
 */
const pluginEnv = (options: LaunchOptions, certificate: Certificate | undefined, bundle: boolean): Record<string, string> => ({
  [MagicCookieKey]: MagicCookieValue,
  PLUGIN_PROTOCOL_VERSIONS: options.protocolVersions.join(","),
  PLUGIN_MIN_PORT: "10000",
  PLUGIN_MAX_PORT: "25000",
  ...(certificate === undefined ? {} : { PLUGIN_CLIENT_CERT: certificate.certPem }),
  // A compiled halkyon runs a bundle with its own embedded runtime.
  ...(bundle ? { BUN_BE_BUN: "1" } : {}),
  ...(options.pluginJit === true ? {} : { [NoJitKey]: "0" }),
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
          : e instanceof Error
          ? e.message
          : String(e)
      })
  })

/** Told of what a plugin's output cost it, for metrics. */
export interface LaunchObserver {
  readonly logLinesDropped: (plugin: string, lines: number) => void
}

/**
 * Plugin output read since memory was last reclaimed, all plugins together.
 * Each chunk read from a pipe is garbage at once, and the runtime lets that
 * garbage pile up well past the one capped line kept per stream: a plugin
 * flooding its output would raise the operator's peak memory by tens of MB
 * (docs/security.md). A full collection every ReclaimEveryBytes keeps the
 * peak down; ordinary plugin logs never come near it.
 */
let readSinceReclaim = 0
const ReclaimEveryBytes = 16 * 1024 * 1024
const reclaimAfterFlood = (bytes: number) => {
  readSinceReclaim += bytes
  if (readSinceReclaim < ReclaimEveryBytes) return
  readSinceReclaim = 0
  Bun.gc(true)
}

/** The handshake line, or the start of one over the cap; undefined when stdout closed first. */
type FirstLine = { readonly line: string } | { readonly tooLong: string } | undefined

/** The handshake's unix socket must be a socket, not a symlink to one elsewhere. */
const socketProblem = (handshake: Handshake): string | undefined => {
  if (handshake.network !== "unix") return undefined
  try {
    return lstatSync(handshake.address).isSocket() ? undefined : `${handshake.address} is not a unix socket`
  } catch (e) {
    return `its socket ${handshake.address} cannot be read: ${e instanceof Error ? e.message : String(e)}`
  }
}

export const launch = Effect.fn("PluginProcess.launch")(function*(file: PluginFile, options: LaunchOptions, observer?: LaunchObserver) {
  yield* Effect.annotateCurrentSpan({ plugin: file.name })
  yield* checkRunnable(file)
  const launcher = yield* PluginLauncher
  const client = yield* PluginClient
  const { redact } = yield* Redactions
  const certificate = options.autoMtls ? yield* Effect.promise(generateCertificate) : undefined
  const started = performance.now()
  // Here, or through the plugin runner: a private socket folder, the process, its pipes.
  const handle = yield* launcher.spawn({
    file,
    env: pluginEnv(options, certificate, file.form === "bundle"),
    graceMs: options.shutdownGraceMs
  })
  const socketDir = handle.socketDir

  // The first stdout line is the handshake, at most MaxHandshakeLineBytes;
  // every later line, on either stream, is cut at MaxLogLineBytes and relayed
  // within the plugin's rate limit. Nothing here holds more than one capped
  // line per stream, whatever the plugin writes.
  const firstLine = yield* Deferred.make<FirstLine>()
  const stderrTail: Array<string> = []
  const limiter = new LogRateLimit()
  const relay = (stream: "stdout" | "stderr", level: LogLevel, message: string, fields: Readonly<Record<string, unknown>>) =>
    limiter.admit(Date.now())
      ? Effect.logWithLevel(levelName[level])(redact(message)).pipe(
        Effect.annotateLogs(relayAnnotations(file.name, stream, redactFields(fields, redact) as Record<string, unknown>))
      )
      : Effect.void
  const reportDropped = Effect.suspend(() => {
    const dropped = limiter.takeDropped()
    if (dropped === 0) return Effect.void
    observer?.logLinesDropped(file.name, dropped)
    return Effect.logWarning(
      `plugin ${file.name} logs more than ${limiter.perSecond} lines a second: ${dropped} lines dropped`
    ).pipe(Effect.annotateLogs({ plugin: file.name, dropped }))
  })
  yield* reportDropped.pipe(Effect.repeat(Schedule.spaced(Duration.seconds(1))), Effect.forkScoped)
  yield* Effect.addFinalizer(() => reportDropped)

  const stdoutLines = new BoundedLines(MaxHandshakeLineBytes)
  let handshakeSeen = false
  const takeHandshake = (outcome: FirstLine) => {
    handshakeSeen = true
    stdoutLines.maxBytes = MaxLogLineBytes
    return Deferred.succeed(firstLine, outcome)
  }
  const onStdoutLine = (line: Line) =>
    handshakeSeen
      ? relay("stdout", "debug", lineText(line), {})
      : takeHandshake(line.truncatedBytes === 0 ? { line: line.text } : { tooLong: line.text })
  yield* handle.stdout.pipe(
    Stream.runForEach((chunk) =>
      Effect.gen(function*() {
        reclaimAfterFlood(chunk.length)
        for (const line of stdoutLines.push(chunk)) yield* onStdoutLine(line)
        // No need to wait for the newline of a handshake already too long.
        if (!handshakeSeen && stdoutLines.overflowing) yield* takeHandshake({ tooLong: "" })
      })
    ),
    Effect.andThen(Effect.suspend(() => {
      const last = stdoutLines.end()
      return last === undefined ? Effect.void : onStdoutLine(last)
    })),
    Effect.ignore,
    Effect.ensuring(Deferred.succeed(firstLine, undefined)),
    Effect.forkScoped
  )
  // stderr: relayed into our log at the plugin's hclog level.
  const stderrSplitter = new BoundedLines(MaxLogLineBytes)
  const onStderrLine = (line: Line) => {
    // Bun's crash reports hold lines of thousands of spaces: keep evidence short.
    const text = redact(line.text.trimEnd())
    stderrTail.push(text.length > MaxEvidenceLine || line.truncatedBytes > 0 ? `${text.slice(0, MaxEvidenceLine)}…` : text)
    if (stderrTail.length > StderrTail) stderrTail.shift()
    const parsed = parseLogLine(line.text)
    const message = line.truncatedBytes === 0 ? parsed.message : lineText({ text: parsed.message, truncatedBytes: line.truncatedBytes })
    return relay("stderr", parsed.level, message, parsed.fields)
  }
  const stderrDone = yield* handle.stderr.pipe(
    Stream.runForEach((chunk) => {
      reclaimAfterFlood(chunk.length)
      return Effect.forEach(stderrSplitter.push(chunk), onStderrLine, { discard: true })
    }),
    Effect.andThen(Effect.suspend(() => {
      const last = stderrSplitter.end()
      return last === undefined ? Effect.void : onStderrLine(last)
    })),
    Effect.ignore,
    Effect.forkScoped
  )
  const exitCode = yield* Deferred.make<number>()
  yield* handle.exitCode.pipe(
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
    // A line still unfinished (a flood without newline) shows by its start.
    const unfinished = redact(stderrSplitter.partial(MaxEvidenceLine).trimEnd())
    return unfinished === "" ? [...stderrTail] : [...stderrTail, `${unfinished}…`]
  })
  if (Option.isNone(line)) {
    return yield* new PluginHandshakeTimeout({ plugin: file.name, timeoutMs: options.handshakeTimeoutMs, stderr: yield* stderrLines })
  }
  if (line.value !== undefined && "tooLong" in line.value) {
    return yield* new PluginBadHandshake({
      plugin: file.name,
      kind: "TooLong",
      line: redact(line.value.tooLong),
      detail: `${MaxHandshakeLineBytes} bytes`
    })
  }
  if (line.value === undefined) {
    const code = yield* Deferred.await(exitCode).pipe(Effect.timeoutOption(Duration.seconds(2)))
    return yield* new PluginExitedEarly({ plugin: file.name, exitCode: Option.getOrElse(code, () => -1), stderr: yield* stderrLines })
  }
  const startMs = Math.round((performance.now() - started) * 10) / 10
  const parsed = parseHandshake(line.value.line, options.protocolVersions)
  if (!parsed.ok) {
    const p = parsed.problem
    const detail = p._tag === "Malformed" ?
      p.detail
      : p._tag === "CoreVersion" ?
      `core protocol version ${p.got}, expected 1`
      : p._tag === "UnknownProtocol" ?
      `protocol "${p.protocol}"`
      : p._tag === "NoSharedVersion" ?
      `it answered version ${p.got}, this operator offers ${p.offered.join(", ")}`
      : "netrpc"
    return yield* new PluginBadHandshake({ plugin: file.name, kind: p._tag, line: redact(p.line), detail: redact(detail) })
  }
  const handshake = parsed.handshake
  // Checked before anything else about it: the host connects nowhere the plugin was not told to listen.
  const refused = addressProblem(handshake, socketDir, process.platform) ?? socketProblem(handshake)
  if (refused !== undefined) {
    return yield* new PluginBadHandshake({ plugin: file.name, kind: "Address", line: redact(line.value.line), detail: redact(refused) })
  }
  if (certificate !== undefined && handshake.certificate === undefined) {
    return yield* new PluginBadHandshake({
      plugin: file.name,
      kind: "Certificate",
      line: redact(line.value.line),
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
      const cut = Math.max(0, data.length - MaxLogLineBytes)
      const text = new TextDecoder().decode(cut === 0 ? data : data.subarray(0, MaxLogLineBytes)).trimEnd()
      if (text !== "") Effect.runForkWith(services)(relay(channel, "info", lineText({ text, truncatedBytes: cut }), {}))
    }
  })
  // On close, before the connection closes: Shutdown over RPC, then wait up to
  // the grace for the exit; the launcher's own finalizer then signals the
  // process group if it is still alive.
  yield* Effect.addFinalizer(() =>
    Effect.gen(function*() {
      if (yield* Deferred.isDone(exitCode)) return
      yield* connection.shutdown.pipe(Effect.timeoutOption(Duration.millis(options.shutdownGraceMs)), Effect.ignore)
      yield* Deferred.await(exitCode).pipe(Effect.timeoutOption(Duration.millis(options.shutdownGraceMs)))
    })
  )
  const description = yield* connection.describe.pipe(
    Effect.mapError((e) => new PluginDescribeFailed({ plugin: file.name, detail: redact(e.message) }))
  )
  yield* Effect.logDebug(`plugin ${file.name} started in ${startMs} ms`).pipe(Effect.annotateLogs({ plugin: file.name }))
  const launched: LaunchedPlugin = {
    file,
    pid: Number(handle.pid),
    handshake,
    description,
    connection,
    startMs,
    exited: Deferred.await(exitCode),
    memoryKill: handle.memoryKill
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
  const { redact } = yield* Redactions
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
      if (text !== "") {
        Effect.runForkWith(services)(Effect.logInfo(redact(text)).pipe(Effect.annotateLogs({ plugin: target.name, stream: channel })))
      }
    }
  })
  const description = yield* connection.describe.pipe(
    Effect.mapError((e) => new PluginNotReachable({ plugin: target.name, address: file.path, detail: e.message }))
  )
  yield* Effect.logInfo(`reattached to plugin ${target.name} at ${file.path}; it keeps running when halkyon exits`).pipe(
    Effect.annotateLogs({ plugin: target.name })
  )
  const attached: LaunchedPlugin = {
    file,
    pid: 0,
    handshake,
    description,
    connection,
    startMs: 0,
    exited: Effect.never,
    memoryKill: Effect.undefined
  }
  return attached
})

const levelName = {
  trace: "Trace",
  debug: "Debug",
  info: "Info",
  warn: "Warn",
  error: "Error"
} as const

/**
 * Serves a PluginDefinition as a go-plugin gRPC plugin, with go-plugin's
 * manners and a few of our own:
 * - run by hand (no magic cookie): go-plugin's message on stderr, exit 1;
 * - app protocol version negotiated from PLUGIN_PROTOCOL_VERSIONS;
 * - a unix socket in PLUGIN_UNIX_SOCKET_DIR (TCP loopback on Windows);
 * - AutoMTLS when the host sends PLUGIN_CLIENT_CERT;
 * - the handshake line on stdout, and nothing else ever there;
 * - SIGINT ignored (the host owns the terminal's Ctrl-C), SIGTERM and the
 *   Shutdown RPC stop it promptly;
 * - it exits on its own within a second when its host dies, removing its
 *   socket (go-plugin plugins are left running);
 * - started by hand with HALKYON_PLUGIN_DEBUG=1 (under `bun --inspect`, say),
 *   it serves with no host, prints the `--reattach` value that connects
 *   `halkyon run` or `halkyon plugins render` to it, and runs until Ctrl-C.
 *
 * Start-up time matters (a plugin starts with its host and at each restart):
 * before the handshake this module loads no node: builtin and no generated
 * code. It listens with Bun.listen (wire/Listener.ts; Bun's TLS for
 * AutoMTLS), prints the handshake, and only then loads Services.ts, which
 * brings the SDK's HTTP/2 server, the generated code and the services, and serves the
 * connections that came in the meantime first. Files are touched through a
 * lazily loaded node:fs, randomness and keys come from WebCrypto.
 */
import {
  formatHandshake,
  HostPidKey,
  MagicCookieKey,
  MagicCookieValue,
  MaxSocketPathBytes,
  negotiateVersion,
  parseOfferedVersions,
  RunByHandMessage,
  socketPathIn,
  SupportedAppProtocolVersions
} from "../protocol/Handshake.ts"
import { DebugKey, formatReattach } from "../protocol/Reattach.ts"
import type { Certificate } from "../protocol/Mtls.ts"
import { captureConsole, makeLogger } from "./Log.ts"
import { parameterErrors, type PluginDefinition } from "./Plugin.ts"
import type { Serving } from "./Services.ts"
import { loadServices } from "./ServicesLoader.ts"
import { Listener } from "./wire/Listener.ts"

export interface ServeOptions {
  /** App protocol versions this plugin speaks. Default: the SDK's. */
  readonly protocolVersions?: ReadonlyArray<number>
  /** The environment to read; default process.env. */
  readonly env?: Readonly<Record<string, string | undefined>>
}

/** How often the plugin checks that its host is alive. */
const ParentCheckMs = 250

/**
 * Serves the plugin until the host stops it. Call it once, at the end of the
 * plugin's main module.
 *
 * @example
 * ```ts
 * import { serve } from "@halkyon/sdk"
 * import { plugin } from "./plugin.ts"
 *
 * serve(plugin)
 * ```
 */
export const serve = (plugin: PluginDefinition, options: ServeOptions = {}): void => {
  const loadedMs = performance.now()
  const env = options.env ?? process.env
  // Debugging: no host started it, so no cookie, no parent to watch, and Ctrl-C is the author's.
  const debug = env[DebugKey] === "1"
  if (!debug && env[MagicCookieKey] !== MagicCookieValue) {
    process.stderr.write(RunByHandMessage)
    process.exit(1)
  }
  const logger = makeLogger(plugin.name)
  captureConsole(logger)
  const fatal = (message: string) => {
    logger.error(message)
    process.exit(1)
  }

  const appVersion = negotiateVersion(
    parseOfferedVersions(env.PLUGIN_PROTOCOL_VERSIONS),
    options.protocolVersions ?? SupportedAppProtocolVersions
  )
  const clientCert = env.PLUGIN_CLIENT_CERT

  let listener: Listener | undefined
  let serving: Serving | undefined
  let stopping = false
  const socketPath = process.platform === "win32" ? undefined : newSocketPath(env)
  const stop = (why: string, orphaned = false) => {
    if (stopping) return
    stopping = true
    logger.debug("plugin stopping", { reason: why })
    const finish = async () => {
      const { rmdirSync, rmSync } = await import("node:fs")
      if (socketPath !== undefined) rmSync(socketPath, { force: true })
      // Orphaned, we also remove the host's socket folder, which it can no
      // longer do; rmdir only succeeds when it is empty.
      if (orphaned && env.PLUGIN_UNIX_SOCKET_DIR) {
        try {
          rmdirSync(env.PLUGIN_UNIX_SOCKET_DIR)
        } catch {
          // another plugin's socket is still there, or it is gone already
        }
      }
      process.exit(0)
    }
    // A stop must not hang: exit even if a connection refuses to close.
    setTimeout(() => void finish(), 500).unref()
    const closing = (serving ?? listener)?.close() ?? Promise.resolve()
    void closing.then(finish, finish)
  }

  process.on("SIGINT", () => (debug ? stop("SIGINT") : logger.debug("ignoring SIGINT: the host stops plugins")))
  process.on("SIGTERM", () => stop("SIGTERM"))
  // Our host names its pid: a host that died before this line ran is caught too.
  const parent = Number(env[HostPidKey]) || process.ppid
  if (!debug) {
    setInterval(() => {
      if (process.ppid !== parent) stop("the host process exited", true)
    }, ParentCheckMs).unref()
  }

  // Keep the process alive while serving: the intervals above are unref'd.
  const keepAlive = setInterval(() => {}, 1 << 30)
  // Listen, announce, serve: as go-plugin's Go servers do.
  const start = async () => {
    const listening = await listen(env, clientCert, socketPath)
    listener = listening.listener
    const { network, address } = listening.listener.address
    const certificate = listening.certificate
    const mux = env.PLUGIN_MULTIPLEX_GRPC === "true" ? false : undefined
    // Bun.stdout, not process.stdout: the latter builds a Node stream before the handshake (docs/performance.md).
    await Bun.write(
      Bun.stdout,
      formatHandshake({ appVersion, network, address, protocol: "grpc", certificate: certificate?.der, multiplexed: mux }) + "\n"
    )
    const handshakeMs = performance.now()
    if (debug) {
      const reattach = formatReattach({ name: plugin.name, network, address })
      process.stderr.write(
        `plugin ${plugin.name} is serving for debugging (Ctrl-C stops it). Connect halkyon to it with:\n` +
          `  halkyon run --reattach ${reattach}\n` +
          `  halkyon plugins render --reattach ${reattach} -f capability.yaml\n`
      )
    }
    // Only now do HTTP/2, the services and their generated code load; connections made meanwhile wait.
    const services = loadServices()
      .then(({ serveServices }) => serveServices(listening.listener, plugin, stop, parameterErrors))
      .catch((error: unknown) => {
        throw new Error(`cannot serve gRPC: ${messageOf(error)}`)
      })
    logger.debug("plugin serving", {
      network,
      address,
      protocol_version: appVersion,
      mtls: certificate !== undefined,
      uptime_ms: Math.round(handshakeMs * 10) / 10,
      loaded_ms: Math.round(loadedMs * 10) / 10
    })
    // Stopped while they loaded? The listener is closed then, and serves nothing.
    serving = await services
  }
  void start().catch((error: unknown) => {
    clearInterval(keepAlive)
    fatal(messageOf(error))
  })
}

const messageOf = (error: unknown) => (error instanceof Error ? error.message : String(error))

/** A fresh socket path in the folder the host made for us. */
const newSocketPath = (env: Readonly<Record<string, string | undefined>>) =>
  socketPathIn(env.PLUGIN_UNIX_SOCKET_DIR || process.env.TMPDIR || "/tmp")

/** Listens where the host asked, with AutoMTLS when it sent a certificate. */
const listen = async (
  env: Readonly<Record<string, string | undefined>>,
  clientCert: string | undefined,
  socketPath: string | undefined
): Promise<{ readonly listener: Listener; readonly certificate: Certificate | undefined }> => {
  // Mtls.ts only with AutoMTLS: evaluating it (its DER constants) delays the handshake (docs/performance.md).
  const certificate = clientCert !== undefined && clientCert !== ""
    ? await (await import("../protocol/Mtls.ts")).generateCertificate()
    : undefined
  const tls = certificate === undefined || clientCert === undefined
    ? undefined
    : { certPem: certificate.certPem, keyPem: certificate.keyPem, clientCaPem: clientCert }
  if (socketPath === undefined) {
    const minPort = Number(env.PLUGIN_MIN_PORT ?? 10000)
    const maxPort = Number(env.PLUGIN_MAX_PORT ?? 25000)
    return { listener: Listener.open({ tcp: { host: "127.0.0.1", minPort, maxPort }, tls }), certificate }
  }
  if (Buffer.byteLength(socketPath) > MaxSocketPathBytes) {
    throw new Error(
      `socket path ${socketPath} is ${
        Buffer.byteLength(socketPath)
      } bytes, longer than the ${MaxSocketPathBytes} the OS allows: set a shorter PLUGIN_UNIX_SOCKET_DIR`
    )
  }
  const listener = Listener.open({ unixSocket: socketPath, tls })
  // A socket that cannot be shared is not left behind (Bun removes it when the listener stops).
  await shareSocket(socketPath, env.PLUGIN_UNIX_SOCKET_GROUP).catch(async (error: unknown) => {
    await listener.close()
    throw error
  })
  return { listener, certificate }
}

/** Applies PLUGIN_UNIX_SOCKET_GROUP: the socket goes to that group, mode 0660. */
const shareSocket = async (socket: string, group: string | undefined) => {
  if (group === undefined || group === "") return
  const { chmodSync, chownSync, existsSync, readFileSync } = await import("node:fs")
  const line = existsSync("/etc/group") ? readFileSync("/etc/group", "utf8").split("\n").find((l) => l.split(":")[0] === group) : undefined
  const gid = /^\d+$/.test(group) ? Number(group) : line === undefined ? undefined : Number(line.split(":")[2])
  if (gid === undefined) throw new Error(`PLUGIN_UNIX_SOCKET_GROUP names group "${group}", which does not exist`)
  chownSync(socket, -1, gid)
  chmodSync(socket, 0o660)
}

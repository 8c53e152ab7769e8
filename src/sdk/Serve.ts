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
 *   socket (go-plugin plugins are left running).
 */
import { chownSync, chmodSync, existsSync, readFileSync, rmdirSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { randomBytes } from "node:crypto"
import { HealthCheckResponse_ServingStatus, Health } from "../gen/grpc/health/v1/health_pb.ts"
import { GRPCBroker } from "../gen/plugin/grpc_broker_pb.ts"
import { GRPCController } from "../gen/plugin/grpc_controller_pb.ts"
import { GRPCStdio } from "../gen/plugin/grpc_stdio_pb.ts"
import {
  formatHandshake,
  MagicCookieKey,
  MagicCookieValue,
  negotiateVersion,
  parseOfferedVersions,
  RunByHandMessage,
  SupportedAppProtocolVersions
} from "../protocol/Handshake.ts"
import { generateCertificate } from "../protocol/Mtls.ts"
import { registerCapabilityService } from "./CapabilityService.ts"
import { captureConsole, makeLogger } from "./Log.ts"
import type { PluginDefinition } from "./Plugin.ts"
import { GrpcServer } from "./wire/GrpcServer.ts"

export interface ServeOptions {
  /** App protocol versions this plugin speaks. Default: the SDK's. */
  readonly protocolVersions?: ReadonlyArray<number>
  /** The environment to read; default process.env. */
  readonly env?: Readonly<Record<string, string | undefined>>
}

/** Longest unix socket path the OS accepts (sun_path), less the NUL. */
const MaxSocketPath = process.platform === "darwin" ? 103 : 107
/** How often the plugin checks that its host is alive. */
const ParentCheckMs = 250

/**
 * Serves the plugin until the host stops it. Call it once, at the end of the
 * plugin's main module.
 *
 * @example
 * ```ts
 * import { definePlugin, serve } from "halkyon/sdk"
 * import { plugin } from "./plugin.ts"
 *
 * serve(plugin)
 * ```
 */
export const serve = (plugin: PluginDefinition, options: ServeOptions = {}): void => {
  const env = options.env ?? process.env
  if (env[MagicCookieKey] !== MagicCookieValue) {
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
  const certificate = clientCert !== undefined && clientCert !== "" ? generateCertificate() : undefined

  const server = new GrpcServer()
  let stopping = false
  let socketPath: string | undefined
  const stop = (why: string, orphaned = false) => {
    if (stopping) return
    stopping = true
    logger.debug("plugin stopping", { reason: why })
    const finish = () => {
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
    setTimeout(finish, 500).unref()
    server.close().then(finish, finish)
  }

  server
    .unary(Health.method.check, (request) => ({
      status: request.service === "" || request.service === "plugin"
        ? HealthCheckResponse_ServingStatus.SERVING
        : HealthCheckResponse_ServingStatus.SERVICE_UNKNOWN
    }))
    .unary(GRPCController.method.shutdown, () => {
      // Answer first, then stop: the host waits for the reply.
      setTimeout(() => stop("Shutdown RPC"), 1)
      return {}
    })
    // Our logs go straight to stderr; the stdio stream is held open for hosts
    // that read it, as go-plugin hosts do.
    .stream(GRPCStdio.method.streamStdio, () => {})
    .stream(GRPCBroker.method.startStream, () => {})
  registerCapabilityService(server, plugin)

  process.on("SIGINT", () => logger.debug("ignoring SIGINT: the host stops plugins"))
  process.on("SIGTERM", () => stop("SIGTERM"))
  const parent = process.ppid
  setInterval(() => {
    if (process.ppid !== parent) stop("the host process exited", true)
  }, ParentCheckMs).unref()

  const tls = certificate === undefined || clientCert === undefined
    ? undefined
    : { certPem: certificate.certPem, keyPem: certificate.keyPem, clientCaPem: clientCert }

  let listening: ReturnType<GrpcServer["listen"]>
  if (process.platform === "win32") {
    const minPort = Number(env.PLUGIN_MIN_PORT ?? 10000)
    const maxPort = Number(env.PLUGIN_MAX_PORT ?? 25000)
    listening = server.listen({ tcp: { host: "127.0.0.1", minPort, maxPort }, tls })
  } else {
    const dir = env.PLUGIN_UNIX_SOCKET_DIR || tmpdir()
    socketPath = join(dir, `plugin${randomBytes(5).toString("hex")}`)
    if (Buffer.byteLength(socketPath) > MaxSocketPath) {
      fatal(`socket path ${socketPath} is ${Buffer.byteLength(socketPath)} bytes, longer than the ${MaxSocketPath} the OS allows: set a shorter PLUGIN_UNIX_SOCKET_DIR`)
    }
    listening = server.listen({ unixSocket: socketPath, tls })
  }
  // Keep the process alive while serving: the intervals above are unref'd.
  const keepAlive = setInterval(() => {}, 1 << 30)
  listening.then(
    ({ network, address }) => {
      if (network === "unix") shareSocket(address, env.PLUGIN_UNIX_SOCKET_GROUP, fatal)
      const mux = env.PLUGIN_MULTIPLEX_GRPC === "true" ? false : undefined
      process.stdout.write(formatHandshake({ appVersion, network, address, protocol: "grpc", certificate: certificate?.der, multiplexed: mux }) + "\n")
      logger.debug("plugin serving", { network, address, protocol_version: appVersion, mtls: certificate !== undefined })
    },
    (error: unknown) => {
      clearInterval(keepAlive)
      fatal(`could not listen: ${error instanceof Error ? error.message : String(error)}`)
    }
  )
}

/** Applies PLUGIN_UNIX_SOCKET_GROUP: the socket goes to that group, mode 0660. */
const shareSocket = (socket: string, group: string | undefined, fatal: (message: string) => void) => {
  if (group === undefined || group === "") return
  const gid = /^\d+$/.test(group) ? Number(group) : lookupGroup(group)
  if (gid === undefined) return fatal(`PLUGIN_UNIX_SOCKET_GROUP names group "${group}", which does not exist`)
  chownSync(socket, -1, gid)
  chmodSync(socket, 0o660)
}

const lookupGroup = (name: string): number | undefined => {
  if (!existsSync("/etc/group")) return undefined
  const line = readFileSync("/etc/group", "utf8").split("\n").find((l) => l.split(":")[0] === name)
  const gid = line?.split(":")[2]
  return gid === undefined ? undefined : Number(gid)
}

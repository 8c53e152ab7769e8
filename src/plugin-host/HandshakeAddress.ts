/**
 * Where a plugin may ask the host to connect: a unix socket inside the
 * private folder the host made for it, or, on Windows only (where go-plugin
 * plugins listen on TCP), a loopback TCP port. Anything else (another
 * process's socket, a remote address) is refused before any connection.
 * Pure: the socket's existence and type are checked by PluginProcess.
 */
import { isAbsolute, relative, resolve } from "node:path"
import type { Handshake } from "../protocol/Handshake.ts"

const LoopbackHosts = new Set(["127.0.0.1", "::1", "[::1]", "localhost"])

/** Why the handshake's address is refused, or undefined when it is acceptable. */
export const addressProblem = (handshake: Handshake, socketDir: string, platform: string): string | undefined => {
  if (handshake.network === "unix") {
    // The host dials the path as given: a relative one would name a file where the operator runs.
    if (!isAbsolute(handshake.address)) {
      return `its unix socket ${handshake.address} is not an absolute path in the folder the host made for it (${socketDir})`
    }
    const inside = relative(resolve(socketDir), resolve(socketDir, handshake.address))
    if (inside === "" || inside.startsWith("..") || isAbsolute(inside)) {
      return `its unix socket ${handshake.address} is outside the folder the host made for it (${socketDir})`
    }
    return undefined
  }
  if (platform !== "win32") {
    return `it listens on TCP ${handshake.address}; on this OS a plugin must listen on a unix socket in PLUGIN_UNIX_SOCKET_DIR (${socketDir})`
  }
  const cut = handshake.address.lastIndexOf(":")
  const host = cut === -1 ? "" : handshake.address.slice(0, cut)
  const port = Number(handshake.address.slice(cut + 1))
  if (!LoopbackHosts.has(host)) return `its TCP address ${handshake.address} is not on the loopback interface`
  if (!Number.isInteger(port) || port < 1 || port > 65535) return `its TCP address ${handshake.address} has no valid port`
  return undefined
}

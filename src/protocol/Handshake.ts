/**
 * The go-plugin handshake: the constants a host and a plugin share, and the
 * one line a plugin prints on stdout once it listens. Pure: no I/O here, so
 * both sides (the operator's host and the SDK) and the tests use it as is.
 *
 * Line format (go-plugin docs/internals.md):
 * `CORE|APP|NETWORK|ADDRESS|PROTOCOL|CERT[|MUX]`
 *
 * What a plugin runs before its handshake (negotiation, its socket's name,
 * the line) is written with plain loops: JavaScriptCore compiles the
 * builtins written in JavaScript (Array.from, map, filter, padStart…) and
 * each regular expression when first used, a measurable part of a plugin's
 * start (docs/performance.md).
 */

/** The magic cookie: a UX guard that stops a plugin being run by hand. */
export const MagicCookieKey = "HALKYON_CAPABILITY_PLUGIN"
export const MagicCookieValue = "io.halkyon.capability.plugin"

/** go-plugin's core protocol version; always 1. */
export const CoreProtocolVersion = 1

/** The app protocol versions this build of halkyon speaks. */
export const SupportedAppProtocolVersions: ReadonlyArray<number> = [1]

/** Longest unix socket path the OS accepts (sun_path less its NUL): 104 bytes on macOS, 108 on Linux. */
export const MaxSocketPathBytes = process.platform === "darwin" ? 103 : 107

/** A plugin's socket in its folder: `plugin` and 10 random hex digits, like go-plugin's. */
export const socketPathIn = (dir: string): string => {
  let end = dir.length
  while (end > 0 && dir.charCodeAt(end - 1) === 0x2f) end--
  const random = crypto.getRandomValues(new Uint8Array(5))
  let name = "plugin"
  for (let i = 0; i < random.length; i++) {
    const byte = random[i] ?? 0
    name += HexDigits.charAt(byte >> 4) + HexDigits.charAt(byte & 15)
  }
  return `${dir.slice(0, end)}/${name}`
}

const HexDigits = "0123456789abcdef"

/**
 * halkyon's host names its pid here, so that a plugin whose host died before
 * the plugin even started watching (its parent is then already init) still
 * notices. Go hosts do not set it; plugins then watch the parent they start with.
 */
export const HostPidKey = "HALKYON_HOST_PID"

/** The message go-plugin prints when a plugin is run without its host. */
export const RunByHandMessage = "This binary is a plugin. These are not meant to be executed directly.\n" +
  "Please execute the program that consumes these plugins, which will\n" +
  "load any plugins automatically\n"

export interface Handshake {
  readonly coreVersion: number
  readonly appVersion: number
  readonly network: "unix" | "tcp"
  readonly address: string
  readonly protocol: string
  /** The plugin's DER certificate (AutoMTLS), when it sent one. */
  readonly certificate: Uint8Array | undefined
  /** The multiplexing answer (field 7), when the plugin sent one. */
  readonly multiplexed: boolean | undefined
}

/** Why a handshake line could not be accepted, with the evidence. */
export type HandshakeProblem =
  | { readonly _tag: "Malformed"; readonly line: string; readonly detail: string }
  | { readonly _tag: "CoreVersion"; readonly line: string; readonly got: string }
  | { readonly _tag: "NetRpc"; readonly line: string }
  | { readonly _tag: "UnknownProtocol"; readonly line: string; readonly protocol: string }
  | { readonly _tag: "NoSharedVersion"; readonly line: string; readonly got: number; readonly offered: ReadonlyArray<number> }

/**
 * Formats the line a plugin prints. The certificate is base64 without `=`
 * padding (Go's RawStdEncoding), and empty when the host sent none.
 */
export const formatHandshake = (h: Omit<Handshake, "coreVersion">): string => {
  let cert = h.certificate === undefined ? "" : Buffer.from(h.certificate).toString("base64")
  while (cert.endsWith("=")) cert = cert.slice(0, -1)
  const line = `${CoreProtocolVersion}|${h.appVersion}|${h.network}|${h.address}|${h.protocol}|${cert}`
  return h.multiplexed === undefined ? line : `${line}|${h.multiplexed}`
}

/**
 * Parses the line a plugin printed, checking it against the app protocol
 * versions the host offered.
 */
export const parseHandshake = (
  raw: string,
  offered: ReadonlyArray<number>
): { readonly ok: true; readonly handshake: Handshake } | { readonly ok: false; readonly problem: HandshakeProblem } => {
  const line = raw.replace(/\r?\n$/, "")
  const fail = (problem: HandshakeProblem) => ({ ok: false as const, problem })
  const parts = line.split("|")
  if (parts.length < 4) {
    return fail({ _tag: "Malformed", line, detail: `expected at least 4 fields separated by "|", got ${parts.length}` })
  }
  const [core, app, network, address, protocol = "netrpc", cert = "", mux] = parts as [string, string, string, string, ...Array<string>]
  if (core !== String(CoreProtocolVersion)) return fail({ _tag: "CoreVersion", line, got: core })
  const appVersion = Number(app)
  if (!/^\d+$/.test(app)) return fail({ _tag: "Malformed", line, detail: `app protocol version "${app}" is not a number` })
  if (network !== "unix" && network !== "tcp") {
    return fail({ _tag: "Malformed", line, detail: `network "${network}" is neither unix nor tcp` })
  }
  if (address === "") return fail({ _tag: "Malformed", line, detail: "the address is empty" })
  if (protocol === "netrpc") return fail({ _tag: "NetRpc", line })
  if (protocol !== "grpc") return fail({ _tag: "UnknownProtocol", line, protocol })
  if (!offered.includes(appVersion)) return fail({ _tag: "NoSharedVersion", line, got: appVersion, offered })
  // go-plugin only treats field 6 as a certificate when it is longer than 50 characters.
  const certificate = cert.length > 50 ? new Uint8Array(Buffer.from(cert, "base64")) : undefined
  return {
    ok: true,
    handshake: {
      coreVersion: CoreProtocolVersion,
      appVersion,
      network,
      address,
      protocol,
      certificate,
      multiplexed: mux === undefined ? undefined : mux === "true"
    }
  }
}

/**
 * Picks the app protocol version a plugin answers with: the highest it shares
 * with the host's offer, or, when none is shared, its own lowest (go-plugin's
 * rule), which the host then reports as a mismatch.
 */
export const negotiateVersion = (offered: ReadonlyArray<number>, supported: ReadonlyArray<number>): number => {
  let highestShared: number | undefined
  let lowest: number | undefined
  for (let i = 0; i < supported.length; i++) {
    const v = supported[i] as number
    if (lowest === undefined || v < lowest) lowest = v
    if ((highestShared === undefined || v > highestShared) && offered.indexOf(v) >= 0) highestShared = v
  }
  return highestShared ?? lowest ?? Number.POSITIVE_INFINITY
}

/** Reads `PLUGIN_PROTOCOL_VERSIONS` ("1,2"): numbers only, others ignored. */
export const parseOfferedVersions = (value: string | undefined): ReadonlyArray<number> => {
  const versions: Array<number> = []
  const parts = (value ?? "").split(",")
  for (let i = 0; i < parts.length; i++) {
    const part = (parts[i] as string).trim()
    if (isDigits(part)) versions.push(Number(part))
  }
  return versions
}

const isDigits = (text: string) => {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c < 0x30 || c > 0x39) return false
  }
  return text.length > 0
}

/**
 * Why a plugin could not be started or loaded. Each message quotes the
 * evidence (the plugin's output, its exit code) and says what to do.
 */
import { Schema } from "effect"

const lastLines = (lines: ReadonlyArray<string>) =>
  lines.length === 0 ? " It wrote nothing on stderr." : `\nIts last stderr lines:\n  ${lines.join("\n  ")}`

export class PluginExitedEarly extends Schema.TaggedError<PluginExitedEarly>()("PluginExitedEarly", {
  plugin: Schema.String,
  exitCode: Schema.Number,
  stderr: Schema.Array(Schema.String)
}) {
  override get message() {
    const byHand = this.stderr.some((l) => l.includes("not meant to be executed directly"))
    const hint = byHand ? " It did not get the magic cookie: is it a halkyon plugin built for this protocol?" : ""
    return `plugin ${this.plugin} exited with code ${this.exitCode} before completing the handshake.${hint}${lastLines(this.stderr)}`
  }
}

export class PluginHandshakeTimeout extends Schema.TaggedError<PluginHandshakeTimeout>()("PluginHandshakeTimeout", {
  plugin: Schema.String,
  timeoutMs: Schema.Number,
  stderr: Schema.Array(Schema.String)
}) {
  override get message() {
    return `plugin ${this.plugin} did not print its handshake line within ${this.timeoutMs} ms (raise --handshake-timeout if it is just slow).${
      lastLines(this.stderr)
    }`
  }
}

export class PluginBadHandshake extends Schema.TaggedError<PluginBadHandshake>()("PluginBadHandshake", {
  plugin: Schema.String,
  kind: Schema.Literals(["Malformed", "CoreVersion", "NetRpc", "UnknownProtocol", "NoSharedVersion", "Certificate", "TooLong", "Address"]),
  line: Schema.String,
  detail: Schema.String
}) {
  override get message() {
    const quoted = JSON.stringify(this.line.length > 200 ? `${this.line.slice(0, 200)}…` : this.line)
    switch (this.kind) {
      case "Malformed":
        return `plugin ${this.plugin} printed output before (or instead of) its handshake: ${quoted} (${this.detail}). A plugin must write only the handshake line on stdout and log to stderr.`
      case "NetRpc":
        return `plugin ${this.plugin} speaks go-plugin's netrpc protocol, which only Go hosts can load; halkyon needs gRPC plugins (in Go: set Plugins to a GRPCPlugin and GRPCServer: plugin.DefaultGRPCServer). Line: ${quoted}`
      case "NoSharedVersion":
        return `plugin ${this.plugin} shares no protocol version with this operator: ${this.detail}. Upgrade the plugin or the operator so they share one. Line: ${quoted}`
      case "TooLong":
        return `plugin ${this.plugin} printed a handshake line longer than ${this.detail}: refused. A handshake line is short (go-plugin's format); the plugin must log to stderr, not stdout. Start: ${quoted}`
      case "Address":
        return `plugin ${this.plugin} is refused: ${this.detail}. A plugin listens where the host tells it (go-plugin's PLUGIN_UNIX_SOCKET_DIR); rebuild it with a current SDK. Line: ${quoted}`
      default:
        return `plugin ${this.plugin} sent a handshake halkyon cannot use: ${this.detail}. Line: ${quoted}`
    }
  }
}

export class PluginNotRunnable extends Schema.TaggedError<PluginNotRunnable>()("PluginNotRunnable", {
  plugin: Schema.String,
  path: Schema.String,
  detail: Schema.String
}) {
  override get message() {
    return `plugin ${this.plugin} (${this.path}) cannot be run: ${this.detail}`
  }
}

export class PluginDescribeFailed extends Schema.TaggedError<PluginDescribeFailed>()("PluginDescribeFailed", {
  plugin: Schema.String,
  detail: Schema.String
}) {
  override get message() {
    return `plugin ${this.plugin} handshook but could not describe itself: ${this.detail}`
  }
}

export class PluginNotReachable extends Schema.TaggedError<PluginNotReachable>()("PluginNotReachable", {
  plugin: Schema.String,
  address: Schema.String,
  detail: Schema.String
}) {
  override get message() {
    return `cannot reattach to plugin ${this.plugin} at ${this.address}: ${this.detail}. ` +
      "Start it by hand with HALKYON_PLUGIN_DEBUG=1 and pass the --reattach value it prints"
  }
}

export type PluginStartError =
  | PluginExitedEarly
  | PluginHandshakeTimeout
  | PluginBadHandshake
  | PluginNotRunnable
  | PluginDescribeFailed
  | PluginNotReachable

export class PluginsFolderMissing extends Schema.TaggedError<PluginsFolderMissing>()("PluginsFolderMissing", {
  path: Schema.String
}) {
  override get message() {
    return `the plugins folder ${this.path} does not exist or is not a folder: create it, or point --plugins-dir (HALKYON_PLUGINS_DIR) at the folder holding your plugins`
  }
}

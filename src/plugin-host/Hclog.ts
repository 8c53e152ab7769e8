/**
 * Reads a plugin's stderr line as go-plugin does: an hclog JSON line gives a
 * level, a message and fields; a plain line prefixed `[INFO]`, `[WARN]`…
 * gives its level; anything else is a debug line. Pure.
 *
 * A plugin's fields never land beside the host's own (`plugin`,
 * `capability`…): they are nested under `plugin_fields`.
 */
export type LogLevel = "trace" | "debug" | "info" | "warn" | "error"

export interface PluginLogLine {
  readonly level: LogLevel
  readonly message: string
  readonly fields: Readonly<Record<string, unknown>>
}

const levels: ReadonlyArray<LogLevel> = ["trace", "debug", "info", "warn", "error"]
const toLevel = (value: unknown): LogLevel | undefined => {
  const v = String(value).toLowerCase()
  if (v === "warning") return "warn"
  return levels.find((l) => l === v)
}

export const parseLogLine = (line: string): PluginLogLine => {
  const trimmed = line.trimEnd()
  if (trimmed.startsWith("{")) {
    try {
      const parsed: unknown = JSON.parse(trimmed)
      if (typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)) {
        const { "@level": level, "@message": message, "@timestamp": _timestamp, "@module": _module, "@caller": _caller, ...fields } =
          parsed as Record<string, unknown>
        return { level: toLevel(level) ?? "info", message: String(message ?? ""), fields }
      }
    } catch {
      // not JSON after all: a plain line
    }
  }
  const prefixed = /^\[(TRACE|DEBUG|INFO|WARN|WARNING|ERROR)\]\s*(.*)$/i.exec(trimmed)
  if (prefixed !== null) return { level: toLevel(prefixed[1]) ?? "debug", message: prefixed[2] ?? "", fields: {} }
  if (trimmed.startsWith("panic: ")) return { level: "error", message: trimmed, fields: {} }
  return { level: "debug", message: trimmed, fields: {} }
}

/** The annotations a relayed line carries: the host's `plugin`, and the plugin's own fields nested apart. */
export const relayAnnotations = (plugin: string, stream: "stdout" | "stderr", fields: Readonly<Record<string, unknown>>) =>
  Object.keys(fields).length === 0 ? { plugin, stream } : { plugin, stream, plugin_fields: fields }

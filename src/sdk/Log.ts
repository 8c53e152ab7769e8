/**
 * Plugin logging as hclog JSON lines on stderr, the format go-plugin hosts
 * (and ours) parse into levels and fields. stdout belongs to the handshake:
 * nothing else is ever written there, so console output is routed here too.
 */

export type Level = "trace" | "debug" | "info" | "warn" | "error"

/** An hclog timestamp: RFC 3339 with exactly 6 fractional digits. */
export const hclogTimestamp = (epochMicros: number = Math.floor((performance.timeOrigin + performance.now()) * 1000)): string => {
  const millis = Math.floor(epochMicros / 1000)
  const micros = String(epochMicros % 1000).padStart(3, "0")
  return new Date(millis).toISOString().replace(/\.(\d{3})Z$/, `.$1${micros}Z`)
}

export interface Logger {
  log(level: Level, message: string, fields?: Readonly<Record<string, unknown>>): void
  trace(message: string, fields?: Readonly<Record<string, unknown>>): void
  debug(message: string, fields?: Readonly<Record<string, unknown>>): void
  info(message: string, fields?: Readonly<Record<string, unknown>>): void
  warn(message: string, fields?: Readonly<Record<string, unknown>>): void
  error(message: string, fields?: Readonly<Record<string, unknown>>): void
}

/**
 * Writes a line to stderr with Bun.write, in order, at once where the pipe
 * takes it. Not process.stderr: building that Node stream at its first
 * write, which for a plugin is right after its handshake, delays its first
 * answer (its "plugin serving" line; docs/performance.md). A line that
 * cannot be written (the host is gone) has nowhere else to go.
 */
const writeStderr = (line: string): void => {
  Bun.write(Bun.stderr, line).catch(() => {})
}

/** A logger writing hclog JSON lines for `module` to stderr. */
export const makeLogger = (module: string, write: (line: string) => void = writeStderr): Logger => {
  const log = (level: Level, message: string, fields: Readonly<Record<string, unknown>> = {}) =>
    write(JSON.stringify({ "@level": level, "@message": message, "@module": module, "@timestamp": hclogTimestamp(), ...fields }) + "\n")
  return {
    log,
    trace: (m, f) => log("trace", m, f),
    debug: (m, f) => log("debug", m, f),
    info: (m, f) => log("info", m, f),
    warn: (m, f) => log("warn", m, f),
    error: (m, f) => log("error", m, f)
  }
}

/** Routes console.* to the logger, so a stray console.log never breaks the protocol. */
export const captureConsole = (logger: Logger): void => {
  // Bun.inspect rather than node:util, which a bundled plugin would have to load (docs/performance.md).
  const text = (args: ReadonlyArray<unknown>) => args.map((a) => (typeof a === "string" ? a : Bun.inspect(a))).join(" ")
  console.log = (...args: Array<unknown>) => logger.info(text(args))
  console.info = (...args: Array<unknown>) => logger.info(text(args))
  console.debug = (...args: Array<unknown>) => logger.debug(text(args))
  console.warn = (...args: Array<unknown>) => logger.warn(text(args))
  console.error = (...args: Array<unknown>) => logger.error(text(args))
}

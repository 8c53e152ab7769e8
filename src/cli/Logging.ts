/**
 * Where the operator's own logs go: stderr, always (stdout carries command
 * output such as `plugins list --output json`), as logfmt text or JSON lines,
 * chosen by the global `--log-format` flag. The lowest level logged is the
 * CLI's built-in global `--log-level` flag.
 */
import { Effect, Layer, Logger, Option } from "effect"
import { Flag, GlobalFlag } from "effect/cli"

export const LogFormat = GlobalFlag.Setting("log-format")({
  flag: Flag.Literals("log-format", ["text", "json"]).pipe(
    Flag.withDescription("format of the operator's logs on stderr"),
    Flag.withDefault("text")
  )
})

export const loggingLayer = (format: "text" | "json") => {
  const formatter = format === "json" ? Logger.formatJson : Logger.formatLogFmt
  const toStderr = Logger.make((options) => {
    process.stderr.write(formatter.log(options) + "\n")
  })
  return Logger.layer([toStderr])
}

/** Runs a command's handler with the logger the flags ask for. */
export const withLogging = <A, E, R>(handler: Effect.Effect<A, E, R>) =>
  Effect.provide(
    handler,
    Layer.unwrap(Effect.map(Effect.serviceOption(LogFormat), (format) => loggingLayer(Option.getOrElse(format, () => "text" as const))))
  )

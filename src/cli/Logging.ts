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

/** Hands a pending write's failure (the reader went away) to nobody: a log line has no one to tell. */
const settled = (result: number | Promise<number>) => {
  if (result instanceof Promise) result.catch(() => undefined)
}

/**
 * One line per log entry on stderr, through a FileSink: process.stderr.write
 * blocks the whole event loop while a pipe is full (docs/performance.md),
 * where the sink keeps what the pipe cannot take and
 * writes it, in order, as it drains. What is still queued is written before
 * the command's scope closes.
 */
export const loggingLayer = (format: "text" | "json") =>
  Layer.unwrap(Effect.gen(function*() {
    const formatter = format === "json" ? Logger.formatJson : Logger.formatLogFmt
    const sink = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const writer = Bun.stderr.writer()
        // Logging must never be what keeps a finished command running.
        writer.unref()
        return writer
      }),
      (writer) => Effect.promise(() => Promise.resolve(writer.flush()).catch(() => 0))
    )
    const toStderr = Logger.make((options) => {
      settled(sink.write(formatter.log(options) + "\n"))
      settled(sink.flush())
    })
    return Logger.layer([toStderr])
  }))

/** Runs a command's handler with the logger the flags ask for. */
export const withLogging = <A, E, R>(handler: Effect.Effect<A, E, R>) =>
  Effect.provide(
    handler,
    Layer.unwrap(Effect.map(Effect.serviceOption(LogFormat), (format) => loggingLayer(Option.getOrElse(format, () => "text" as const))))
  )

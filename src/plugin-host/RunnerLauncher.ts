/**
 * The PluginLauncher that spawns through `halkyon plugin-runner` (--plugin-runner
 * SOCKET): one connection to the runner's socket per plugin process. The
 * runner answers with the process id and the socket folder it made in the
 * folder both sides share, relays the plugin's stdout and stderr, and reports
 * its exit. Closing the scope signals the plugin (SIGTERM, the grace, SIGKILL)
 * and closes the connection; the runner also kills the plugin when the
 * connection drops, so an operator killed with SIGKILL leaves no plugin behind.
 *
 * The operator then connects to the plugin's gRPC socket itself, as it does
 * for a local plugin: AutoMTLS, deadlines and health checks are unchanged.
 */
import { connect, type Socket } from "node:net"
import { Cause, Deferred, Duration, Effect, Layer, Queue, Stream } from "effect"
import { PluginNotRunnable } from "./Errors.ts"
import { type LaunchSpec, PluginLauncher, type SpawnedPlugin } from "./PluginLauncher.ts"
import { decodeReply, encodeFrame, FrameDecoder, type FromRunner } from "./RunnerProtocol.ts"

/** How long the runner may take to answer a launch (it only spawns; the handshake has its own timeout). */
const StartTimeoutMs = 10_000

export const runnerLauncher = (socketPath: string) =>
  Layer.succeed(PluginLauncher, PluginLauncher.of({ where: `runner ${socketPath}`, spawn: (spec) => spawnThrough(socketPath, spec) }))

const spawnThrough = Effect.fn("PluginLauncher.runner")(function*(socketPath: string, spec: LaunchSpec) {
  const { file } = spec
  const refused = (detail: string) => new PluginNotRunnable({ plugin: file.name, path: file.path, detail })
  const stdout = yield* Queue.unbounded<Uint8Array, Cause.Done>()
  const stderr = yield* Queue.unbounded<Uint8Array, Cause.Done>()
  const started = yield* Deferred.make<{ pid: number; socketDir: string }, string>()
  const exitCode = yield* Deferred.make<number>()

  const onMessage = (message: FromRunner) => {
    switch (message._tag) {
      case "Started":
        return Deferred.doneUnsafe(started, Effect.succeed({ pid: message.pid, socketDir: message.socketDir }))
      case "Refused":
        return Deferred.doneUnsafe(started, Effect.fail(message.message))
      case "Output":
        return Queue.offerUnsafe(message.stream === "stdout" ? stdout : stderr, Buffer.from(message.data, "base64"))
      case "Exited":
        return finish(message.code)
    }
  }
  const finish = (code: number) => {
    Queue.endUnsafe(stdout)
    Queue.endUnsafe(stderr)
    Deferred.doneUnsafe(started, Effect.fail(`the runner reported the plugin exited with code ${code} as it started`))
    Deferred.doneUnsafe(exitCode, Effect.succeed(code))
  }

  const socket = yield* Effect.acquireRelease(
    Effect.sync(() => {
      const socket: Socket = connect(socketPath)
      const decoder = new FrameDecoder()
      socket.on("data", (chunk: Buffer) => {
        try {
          for (const body of decoder.push(chunk)) onMessage(decodeReply(body))
        } catch (e) {
          socket.destroy(e instanceof Error ? e : new Error(String(e)))
        }
      })
      socket.on("error", (e) => Deferred.doneUnsafe(started, Effect.fail(`cannot use the plugin runner at ${socketPath}: ${e.message}`)))
      // The runner gone: the plugin is gone with it (the runner kills its plugins when it stops).
      socket.on("close", () => finish(-1))
      return socket
    }),
    (socket) => Effect.sync(() => socket.destroy())
  )
  const send = (frame: Uint8Array) => Effect.sync(() => void socket.write(frame))
  // A reattached plugin is connected to, never launched: only files of the folder come here.
  const form = file.form === "bundle" ? "bundle" : "executable"
  yield* send(encodeFrame({ _tag: "Launch", plugin: file.name, form, env: spec.env, graceMs: spec.graceMs }))
  const child = yield* Deferred.await(started).pipe(
    Effect.timeoutOrElse({
      duration: Duration.millis(StartTimeoutMs),
      orElse: () => Effect.fail(`the plugin runner at ${socketPath} did not answer within ${StartTimeoutMs} ms`)
    }),
    Effect.mapError(refused)
  )
  // Runs before the socket closes: a stop in order, then the connection's end as a last resort.
  yield* Effect.addFinalizer(() =>
    Effect.gen(function*() {
      if (yield* Deferred.isDone(exitCode)) return
      yield* send(encodeFrame({ _tag: "Signal", signal: "SIGTERM" }))
      if ((yield* Deferred.await(exitCode).pipe(Effect.timeoutOption(Duration.millis(spec.graceMs))))._tag === "Some") return
      yield* send(encodeFrame({ _tag: "Signal", signal: "SIGKILL" }))
      yield* Deferred.await(exitCode).pipe(Effect.timeoutOption(Duration.seconds(1)))
    })
  )
  const spawned: SpawnedPlugin = {
    pid: child.pid,
    socketDir: child.socketDir,
    stdout: Stream.fromQueue(stdout),
    stderr: Stream.fromQueue(stderr),
    exitCode: Deferred.await(exitCode),
    // The runner's container has its own memory limit; --plugin-memory-limit applies to local plugins.
    memoryKill: Effect.undefined
  }
  return spawned
})

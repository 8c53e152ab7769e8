/**
 * The process-level test harness: starts a built plugin (or its source, with
 * this runtime) as a host does, through the real go-plugin handshake (magic
 * cookie, protocol versions, a unix socket in a folder of its own), and
 * gives a typed client for the five capability calls over gRPC. It is what
 * go-plugin's testing.go does for Go, without a host's restarts and
 * AutoMTLS. The plugin is stopped with the Shutdown call, killed if it does
 * not exit.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import * as http2 from "node:http2"
import { connect } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type { Capability } from "../../api/Capability.ts"
import { ConditionState, DeletionPolicy, type PluginDescription } from "../../gen/halkyon/capability/v1/capability.ts"
import { decodeGrpcMessage, frame, MessageReader, Status } from "../../protocol/GrpcWire.ts"
import { type Handshake, HostPidKey, MagicCookieKey, MagicCookieValue, parseHandshake } from "../../protocol/Handshake.ts"
import { BuildDependents, CheckValidity, Describe, EvaluateConditions, Shutdown, UpdateDependent } from "../../protocol/Methods.ts"
import { jsonBytes, jsonText, type Method } from "../../protocol/Rpc.ts"
import type { Observation } from "../CapabilityService.ts"
import type { Condition, ObjectShape } from "../Plugin.ts"

export interface LaunchOptions {
  /** Added to this process's environment. */
  readonly env?: Readonly<Record<string, string>>
  readonly cwd?: string
  /** Default: 10 s. */
  readonly handshakeTimeoutMs?: number
  /** Default: 10 s per call. */
  readonly callTimeoutMs?: number
  /** App protocol versions offered. Default: [1]. */
  readonly protocolVersions?: ReadonlyArray<number>
}

/** A call the plugin answered with a gRPC status other than OK. */
export class PluginCallError extends Error {
  constructor(readonly method: string, readonly code: number, readonly details: string) {
    super(`${method} failed with gRPC status ${code}: ${details}`)
  }
}

/** A plugin process after its handshake, and a client for its capability calls. */
export interface LaunchedPlugin extends AsyncDisposable {
  readonly pid: number
  /** The handshake line the plugin printed, parsed. */
  readonly handshake: Handshake
  describe(): Promise<PluginDescription>
  checkValidity(capability: Capability): Promise<Array<string>>
  /** `deletionPolicy`: when the plugin decides it per Capability. */
  buildDependents(
    capability: Capability
  ): Promise<Array<{ readonly id: string; readonly object: ObjectShape; readonly deletionPolicy?: "delete" | "orphan" }>>
  updateDependent(capability: Capability, id: string, existing: object): Promise<ObjectShape | undefined>
  evaluateConditions(capability: Capability, observed: Readonly<Record<string, Observation>>): Promise<Record<string, Condition>>
  /** What the plugin wrote to stderr so far (hclog JSON lines). */
  stderr(): string
  /** Sends Shutdown and waits for the process to exit (killing it after 2 s); resolves with its exit code. */
  close(): Promise<number | null>
}

const stateOf: Record<number, Condition["state"]> = {
  [ConditionState.CONDITION_STATE_READY]: "ready",
  [ConditionState.CONDITION_STATE_PENDING]: "pending",
  [ConditionState.CONDITION_STATE_FAILED]: "failed"
}

/**
 * Starts a plugin as a host does and waits for its handshake. `command` is
 * an executable, a `.js`/`.ts` file (run with this runtime), or an argv.
 *
 * @example
 * ```ts
 * import { expect, test } from "bun:test"
 * import { launchPlugin, testPlugin } from "@halkyon/sdk/testing"
 * import { plugin } from "./plugin.ts"
 *
 * test("the built plugin answers through the handshake", async () => {
 *   await using launched = await launchPlugin("dist/memcached.js")
 *   expect((await launched.describe()).name).toBe("memcached")
 *   const capability = testPlugin(plugin).capability()
 *   expect(await launched.checkValidity(capability)).toEqual([])
 * })
 * ```
 */
export const launchPlugin = async (command: string | ReadonlyArray<string>, options: LaunchOptions = {}): Promise<LaunchedPlugin> => {
  const argv = typeof command === "string" ? (/\.[cm]?[jt]s$/.test(command) ? [process.execPath, command] : [command]) : [...command]
  const [file, ...args] = argv
  if (file === undefined) throw new Error("launchPlugin: the command is empty")
  const offered = options.protocolVersions ?? [1]
  const socketDir = mkdtempSync(join(tmpdir(), "hk-plugin-"))
  const child = spawn(file, args, {
    cwd: options.cwd,
    stdio: ["ignore", "pipe", "pipe"],
    env: {
      ...process.env,
      ...options.env,
      [MagicCookieKey]: MagicCookieValue,
      [HostPidKey]: String(process.pid),
      PLUGIN_PROTOCOL_VERSIONS: offered.join(","),
      PLUGIN_UNIX_SOCKET_DIR: socketDir
    }
  })
  let stderr = ""
  child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
    stderr += chunk
  })
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)))
  const cleanUp = () => rmSync(socketDir, { recursive: true, force: true })
  let handshake: Handshake
  try {
    handshake = await readHandshake(child, exited, offered, options.handshakeTimeoutMs ?? 10_000, () => stderr)
  } catch (error) {
    child.kill("SIGKILL")
    cleanUp()
    throw error
  }
  const session = http2.connect("http://localhost", {
    createConnection:
      () => (handshake.network === "unix" ? connect(handshake.address) : connect(Number(handshake.address.split(":").pop()), "127.0.0.1"))
  })
  session.on("error", () => {})
  const callTimeoutMs = options.callTimeoutMs ?? 10_000
  const call = <I, O>(method: Method<I, O>, request: I) => unary(session, method, request, callTimeoutMs)
  let closing: Promise<number | null> | undefined
  const close = () => (closing ??= (async () => {
    if (child.exitCode === null) await call(Shutdown, {}).catch(() => undefined)
    const killer = setTimeout(() => child.kill("SIGKILL"), 2_000)
    const code = await exited
    clearTimeout(killer)
    session.destroy()
    cleanUp()
    return code
  })())
  return {
    pid: child.pid ?? -1,
    handshake,
    describe: () => call(Describe, {}),
    checkValidity: async (capability) => (await call(CheckValidity, { capability: jsonBytes(capability) })).errors,
    buildDependents: async (capability) =>
      (await call(BuildDependents, { capability: jsonBytes(capability), observed: [] })).dependents.map((d) => ({
        id: d.id,
        object: JSON.parse(jsonText(d.object)) as ObjectShape,
        // Decided per Capability: as the in-process harness says it.
        ...(d.deletionPolicy === undefined
          ? {}
          : { deletionPolicy: d.deletionPolicy === DeletionPolicy.DELETION_POLICY_ORPHAN ? "orphan" as const : "delete" as const })
      })),
    updateDependent: async (capability, id, existing) => {
      const answer = await call(UpdateDependent, { capability: jsonBytes(capability), id, existing: jsonBytes(existing), observed: [] })
      return answer.needsUpdate ? (JSON.parse(jsonText(answer.updated)) as ObjectShape) : undefined
    },
    evaluateConditions: async (capability, observed) => {
      const answer = await call(EvaluateConditions, {
        capability: jsonBytes(capability),
        observed: Object.entries(observed).map(([id, o]) => ({
          id,
          observation: "object" in o
            ? { $case: "object" as const, value: jsonBytes(o.object) }
            : { $case: "error" as const, value: { reason: o.error.reason, message: o.error.message, code: 0 } }
        }))
      })
      return Object.fromEntries(answer.conditions.map((c) => [
        c.id,
        {
          state: stateOf[c.state] ?? "failed",
          reason: c.reason,
          message: c.message,
          attributes: c.attributes
        } satisfies Condition
      ]))
    },
    stderr: () => stderr,
    close,
    [Symbol.asyncDispose]: async () => {
      await close()
    }
  }
}

/** The first line of the plugin's stdout, parsed; fails with its stderr when it exits or takes too long. */
const readHandshake = (
  child: ChildProcess,
  exited: Promise<number | null>,
  offered: ReadonlyArray<number>,
  timeoutMs: number,
  stderr: () => string
): Promise<Handshake> =>
  new Promise<Handshake>((resolve, reject) => {
    let out = ""
    const timer = setTimeout(
      () => reject(new Error(`the plugin printed no handshake within ${timeoutMs} ms; its stderr:\n${stderr()}`)),
      timeoutMs
    )
    void exited.then((code) => {
      clearTimeout(timer)
      reject(new Error(`the plugin exited (code ${code}) before its handshake; its stderr:\n${stderr()}`))
    })
    child.stdout?.setEncoding("utf8").on("data", (chunk: string) => {
      out += chunk
      const end = out.indexOf("\n")
      if (end < 0) return
      clearTimeout(timer)
      const parsed = parseHandshake(out.slice(0, end), offered)
      if (parsed.ok) resolve(parsed.handshake)
      else reject(new Error(`the plugin's handshake line cannot be used (${parsed.problem._tag}): ${parsed.problem.line}`))
    })
  })

/** One unary gRPC call over the session. */
const unary = <I, O>(session: http2.ClientHttp2Session, method: Method<I, O>, request: I, timeoutMs: number): Promise<O> =>
  new Promise<O>((resolve, reject) => {
    const stream = session.request({ ":method": "POST", ":path": method.path, "content-type": "application/grpc", te: "trailers" })
    const reader = new MessageReader()
    const messages: Array<Uint8Array> = []
    let status: { code: number; details: string } | undefined
    const statusOf = (headers: http2.IncomingHttpHeaders) => {
      const code = headers["grpc-status"]
      const message = headers["grpc-message"]
      if (code !== undefined) status = { code: Number(code), details: decodeGrpcMessage(typeof message === "string" ? message : "") }
    }
    const timer = setTimeout(() => {
      stream.close(http2.constants.NGHTTP2_CANCEL)
      reject(new PluginCallError(method.name, Status.DEADLINE_EXCEEDED, `no answer within ${timeoutMs} ms`))
    }, timeoutMs)
    stream.on("response", statusOf)
    stream.on("trailers", statusOf)
    stream.on("data", (chunk: Buffer) => messages.push(...reader.push(chunk)))
    stream.on("error", () => {})
    stream.once("close", () => {
      clearTimeout(timer)
      const message = messages[0]
      if (status === undefined) return reject(new PluginCallError(method.name, Status.UNAVAILABLE, "the call ended without a gRPC status"))
      if (status.code !== Status.OK) return reject(new PluginCallError(method.name, status.code, status.details))
      if (message === undefined) return reject(new PluginCallError(method.name, Status.INTERNAL, "no response message"))
      resolve(method.response.decode(message))
    })
    stream.end(frame(method.request.encode(request).finish()))
  })

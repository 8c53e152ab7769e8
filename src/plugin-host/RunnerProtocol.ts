/**
 * The plugin runner's wire protocol: what the operator and `halkyon
 * plugin-runner` say to each other over the runner's unix socket. One
 * connection per plugin process; each message is a frame, a 4-byte big-endian
 * length then that many bytes of UTF-8 JSON. Everything read is bounded (a
 * frame's length before its bytes are buffered) and decoded with Schema.
 *
 * It owns the codec and the messages, not the sockets: PluginRunner.ts serves,
 * RunnerLauncher.ts connects.
 */
import { Exit, Schema } from "effect"

/** Longest frame either side accepts; a longer length prefix ends the connection. */
export const MaxFrameBytes = 256 * 1024
/** Longest slice of a plugin's output carried by one frame (base64 grows it by a third). */
export const MaxOutputChunk = 64 * 1024

/** A plugin file name inside the runner's plugins folder: no separator, no dotfile. */
const PluginName = Schema.String.check(Schema.isPattern(/^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,254}$/))
const EnvName = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/
const EnvValue = Schema.String.check(Schema.isMaxLength(16 * 1024))
const Milliseconds = Schema.Number.check(Schema.isInt(), Schema.isBetween({ minimum: 0, maximum: 600_000 }))

/** Operator to runner, first frame: start this plugin of your folder. */
export const LaunchRequest = Schema.TaggedStruct("Launch", {
  plugin: PluginName,
  form: Schema.Literals(["executable", "bundle"]),
  // Keys checked here, not by the Record's key schema, which would drop a bad key silently.
  env: Schema.Record(Schema.String, EnvValue).check(
    Schema.isMaxProperties(64),
    Schema.makeFilter((env: Record<string, string>) =>
      Object.keys(env).every((k) => EnvName.test(k)) || "environment variable names are letters, digits and _, not starting with a digit"
    )
  ),
  /** Between SIGTERM and SIGKILL when the operator's connection drops. */
  graceMs: Milliseconds
})
export type LaunchRequest = typeof LaunchRequest.Type

/** Operator to runner, afterwards: signal the plugin's process group. */
export const SignalRequest = Schema.TaggedStruct("Signal", { signal: Schema.Literals(["SIGTERM", "SIGKILL"]) })

export const ToRunner = Schema.Union([LaunchRequest, SignalRequest])
export type ToRunner = typeof ToRunner.Type

export const Started = Schema.TaggedStruct("Started", {
  pid: Schema.Number.check(Schema.isInt(), Schema.isBetween({ minimum: 1, maximum: 2 ** 31 })),
  /** The folder made for the plugin's socket, inside the folder both containers share. */
  socketDir: Schema.String.check(Schema.isMaxLength(4096))
})
export const Refused = Schema.TaggedStruct("Refused", { message: Schema.String.check(Schema.isMaxLength(4096)) })
export const Output = Schema.TaggedStruct("Output", {
  stream: Schema.Literals(["stdout", "stderr"]),
  /** Base64 of at most MaxOutputChunk bytes. */
  data: Schema.String.check(Schema.isMaxLength(Math.ceil(MaxOutputChunk / 3) * 4))
})
export const Exited = Schema.TaggedStruct("Exited", { code: Schema.Number.check(Schema.isInt()) })

export const FromRunner = Schema.Union([Started, Refused, Output, Exited])
export type FromRunner = typeof FromRunner.Type

export class FrameError extends Schema.TaggedError<FrameError>()("FrameError", { detail: Schema.String }) {
  override get message() {
    return `the plugin runner connection carried an invalid frame: ${this.detail}`
  }
}

/** One message as a frame. */
export const encodeFrame = (message: ToRunner | FromRunner): Uint8Array => {
  const body = new TextEncoder().encode(JSON.stringify(message))
  if (body.byteLength > MaxFrameBytes) throw new FrameError({ detail: `a ${body.byteLength}-byte message, over ${MaxFrameBytes}` })
  const frame = new Uint8Array(4 + body.byteLength)
  new DataView(frame.buffer).setUint32(0, body.byteLength)
  frame.set(body, 4)
  return frame
}

/**
 * Reassembles frames from a byte stream cut anywhere. Chunks are kept as they
 * come and each byte is copied once into its frame, so a frame sent a byte at
 * a time costs no more than one sent whole.
 */
export class FrameDecoder {
  private chunks: Array<Uint8Array> = []
  private buffered = 0
  private expected: number | undefined

  /** Adds bytes; returns the frames' bodies now complete. Throws FrameError on an oversized length. */
  push(chunk: Uint8Array): Array<Uint8Array> {
    if (chunk.byteLength > 0) {
      this.chunks.push(chunk)
      this.buffered += chunk.byteLength
    }
    const frames: Array<Uint8Array> = []
    for (;;) {
      if (this.expected === undefined) {
        if (this.buffered < 4) return frames
        const header = this.take(4)
        const length = new DataView(header.buffer, header.byteOffset, 4).getUint32(0)
        if (length > MaxFrameBytes) throw new FrameError({ detail: `a frame of ${length} bytes announced, over ${MaxFrameBytes}` })
        this.expected = length
      }
      if (this.buffered < this.expected) return frames
      frames.push(this.take(this.expected))
      this.expected = undefined
    }
  }

  /** Bytes held for a frame not yet complete. */
  get pending(): number {
    return this.buffered
  }

  private take(n: number): Uint8Array {
    const out = new Uint8Array(n)
    let filled = 0
    while (filled < n) {
      const head = this.chunks[0]!
      const wanted = n - filled
      if (head.byteLength <= wanted) {
        out.set(head, filled)
        filled += head.byteLength
        this.chunks.shift()
      } else {
        out.set(head.subarray(0, wanted), filled)
        this.chunks[0] = head.subarray(wanted)
        filled += wanted
      }
    }
    this.buffered -= n
    return out
  }
}

const decodeToRunner = Schema.decodeUnknownExit(Schema.fromJsonString(ToRunner))
const decodeFromRunner = Schema.decodeUnknownExit(Schema.fromJsonString(FromRunner))

const decodeWith = <A>(decode: (text: string) => Exit.Exit<A, unknown>, body: Uint8Array): A => {
  let text: string
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(body)
  } catch {
    throw new FrameError({ detail: "a frame that is not UTF-8" })
  }
  const exit = decode(text)
  if (Exit.isSuccess(exit)) return exit.value
  const shown = text.length > 120 ? `${text.slice(0, 120)}…` : text
  throw new FrameError({ detail: `a message that is not one of the protocol's: ${shown}` })
}

/** Decodes a frame's body sent to the runner; throws FrameError. */
export const decodeRequest = (body: Uint8Array): ToRunner => decodeWith(decodeToRunner, body)
/** Decodes a frame's body sent by the runner; throws FrameError. */
export const decodeReply = (body: Uint8Array): FromRunner => decodeWith(decodeFromRunner, body)

/** Output frames for a chunk of a plugin's stdout or stderr, cut at MaxOutputChunk. */
export const outputFrames = (stream: "stdout" | "stderr", data: Uint8Array): Array<Uint8Array> => {
  const frames: Array<Uint8Array> = []
  for (let at = 0; at < data.byteLength; at += MaxOutputChunk) {
    const slice = data.subarray(at, Math.min(at + MaxOutputChunk, data.byteLength))
    frames.push(encodeFrame({ _tag: "Output", stream, data: Buffer.from(slice).toString("base64") }))
  }
  return frames
}

import { describe, expect, test } from "bun:test"
import {
  decodeReply,
  decodeRequest,
  encodeFrame,
  FrameDecoder,
  FrameError,
  type FromRunner,
  MaxFrameBytes,
  MaxOutputChunk,
  outputFrames,
  type ToRunner
} from "../../src/plugin-host/RunnerProtocol.ts"

const launch: ToRunner = {
  _tag: "Launch",
  plugin: "postgres.js",
  form: "bundle",
  env: { PATH: "/usr/bin", PLUGIN_PROTOCOL_VERSIONS: "1" },
  graceMs: 1000
}
const replies: ReadonlyArray<FromRunner> = [
  { _tag: "Started", pid: 4242, socketDir: "/run/halkyon/hk-abc" },
  { _tag: "Refused", message: "postgres.js is not a regular file" },
  { _tag: "Output", stream: "stderr", data: Buffer.from("hello\n").toString("base64") },
  { _tag: "Exited", code: 137 }
]

const concat = (frames: ReadonlyArray<Uint8Array>) => Buffer.concat(frames.map((f) => Buffer.from(f)))
const lengthPrefixed = (text: string) => {
  const body = Buffer.from(text)
  const header = Buffer.alloc(4)
  header.writeUInt32BE(body.byteLength)
  return Buffer.concat([header, body])
}
const thrown = (f: () => unknown) => {
  try {
    f()
  } catch (e) {
    return e
  }
  throw new Error("expected a throw")
}

describe("runner frames", () => {
  test("a request and every reply survive encode then decode", () => {
    expect(new FrameDecoder().push(encodeFrame(launch)).map(decodeRequest)).toEqual([launch])
    expect(new FrameDecoder().push(concat(replies.map(encodeFrame))).map(decodeReply)).toEqual([...replies])
  })

  test("frames cut at every byte boundary come out whole and in order", () => {
    const stream = concat([encodeFrame(launch), encodeFrame({ _tag: "Signal", signal: "SIGTERM" })])
    for (let cut = 0; cut <= stream.byteLength; cut++) {
      const decoder = new FrameDecoder()
      const bodies = [...decoder.push(stream.subarray(0, cut)), ...decoder.push(stream.subarray(cut))]
      expect(bodies.map(decodeRequest)).toEqual([launch, { _tag: "Signal", signal: "SIGTERM" }])
      expect(decoder.pending).toBe(0)
    }
  })

  test("a frame fed one byte at a time is decoded once it is complete", () => {
    const frame = encodeFrame(replies[0]!)
    const decoder = new FrameDecoder()
    const seen: Array<Uint8Array> = []
    for (const byte of frame) seen.push(...decoder.push(Uint8Array.of(byte)))
    expect(seen.map(decodeReply)).toEqual([replies[0]!])
  })

  test("an announced length over the limit is refused before its bytes arrive", () => {
    const header = Buffer.alloc(4)
    header.writeUInt32BE(MaxFrameBytes + 1)
    const error = thrown(() => new FrameDecoder().push(header))
    expect(error).toBeInstanceOf(FrameError)
    expect((error as FrameError).message).toContain(`over ${MaxFrameBytes}`)
  })

  test("a message too big to frame is refused at encoding", () => {
    const env = { BIG: "x".repeat(MaxFrameBytes) }
    expect(thrown(() => encodeFrame({ ...launch, env }))).toBeInstanceOf(FrameError)
  })

  const invalid: ReadonlyArray<[string, string]> = [
    ["not JSON", "{nope"],
    ["an unknown tag", JSON.stringify({ _tag: "Exec", command: "/bin/sh" })],
    ["a path instead of a plugin file name", JSON.stringify({ ...launch, plugin: "../../bin/sh" })],
    ["a dotfile", JSON.stringify({ ...launch, plugin: ".hidden" })],
    ["a variable name starting with a digit", JSON.stringify({ ...launch, env: { "1X": "x" } })],
    ["a variable name holding =", JSON.stringify({ ...launch, env: { "A=B": "x" } })],
    ["too many variables", JSON.stringify({ ...launch, env: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`V${i}`, "x"])) })],
    ["a variable over 16 KiB", JSON.stringify({ ...launch, env: { BIG: "x".repeat(16 * 1024 + 1) } })],
    ["a negative grace", JSON.stringify({ ...launch, graceMs: -1 })],
    ["an unknown signal", JSON.stringify({ _tag: "Signal", signal: "SIGSTOP" })]
  ]
  for (const [name, text] of invalid) {
    test(`a request with ${name} is refused`, () => {
      const [body] = new FrameDecoder().push(lengthPrefixed(text))
      expect(thrown(() => decodeRequest(body!))).toBeInstanceOf(FrameError)
    })
  }

  test("a variable name in mixed case, as JavaScriptCore's BUN_JSC_useJIT, is carried", () => {
    const env = { ...launch.env, BUN_JSC_useJIT: "0" }
    const [body] = new FrameDecoder().push(encodeFrame({ ...launch, env }))
    expect(decodeRequest(body!)).toEqual({ ...launch, env })
  })

  test("a reply that is not UTF-8 is refused", () => {
    const header = Buffer.alloc(4)
    header.writeUInt32BE(2)
    const [body] = new FrameDecoder().push(Buffer.concat([header, Buffer.from([0xc3, 0x28])]))
    expect((thrown(() => decodeReply(body!)) as FrameError).message).toContain("not UTF-8")
  })

  test("output is cut into frames of at most MaxOutputChunk bytes that decode back to it", () => {
    const data = Buffer.alloc(MaxOutputChunk * 2 + 10, 7)
    const frames = outputFrames("stdout", data)
    expect(frames.length).toBe(3)
    const decoded = new FrameDecoder().push(concat(frames)).map(decodeReply)
    const bytes = Buffer.concat(decoded.map((m) => (m._tag === "Output" ? Buffer.from(m.data, "base64") : Buffer.alloc(0))))
    expect(bytes.equals(data)).toBe(true)
  })
})

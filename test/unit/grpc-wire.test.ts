import { describe, expect, test } from "bun:test"
import { frame, FramingError, MaxMessageBytes, MessageReader } from "../../src/protocol/GrpcWire.ts"

const chunked = (bytes: Buffer, size: number) => {
  const chunks: Array<Buffer> = []
  for (let i = 0; i < bytes.length; i += size) chunks.push(bytes.subarray(i, Math.min(i + size, bytes.length)))
  return chunks
}

describe("message reassembly", () => {
  test("a 4 MiB message in 1 KiB chunks: each byte copied once, the message whole", () => {
    const body = Buffer.alloc(MaxMessageBytes)
    for (let i = 0; i < body.length; i++) body[i] = i % 251
    const reader = new MessageReader()
    const messages: Array<Uint8Array> = []
    for (const chunk of chunked(frame(body), 1024)) messages.push(...reader.push(chunk))
    expect(messages.length).toBe(1)
    expect(Buffer.from(messages[0] ?? []).equals(body)).toBe(true)
    // Linear: the prefix and the body, copied once each (concatenating at every chunk copied ~2 GiB here).
    expect(reader.copiedBytes).toBe(body.length + 5)
    expect(reader.pending).toBe(0)
  })

  test("copies stay linear in the bytes received for many small messages split at odd places", () => {
    const stream = Buffer.concat(Array.from({ length: 500 }, (_, i) => frame(Buffer.alloc(i * 7, i % 256))))
    const reader = new MessageReader()
    const sizes: Array<number> = []
    for (const chunk of chunked(stream, 3)) for (const m of reader.push(chunk)) sizes.push(m.length)
    expect(sizes).toEqual(Array.from({ length: 500 }, (_, i) => i * 7))
    expect(reader.copiedBytes).toBe(stream.length)
  })

  test("a prefix split across chunks, then a message mid-way: pending counts both", () => {
    const framed = frame(Buffer.from("hello"))
    const reader = new MessageReader()
    expect(reader.push(framed.subarray(0, 2))).toEqual([])
    expect(reader.pending).toBe(2)
    expect(reader.push(framed.subarray(2, 7))).toEqual([])
    expect(reader.pending).toBe(7)
    expect(reader.push(framed.subarray(7)).map((m) => Buffer.from(m).toString())).toEqual(["hello"])
    expect(reader.pending).toBe(0)
  })

  test("several messages in one chunk", () => {
    const reader = new MessageReader()
    const out = reader.push(Buffer.concat([frame(Buffer.from("a")), frame(Buffer.alloc(0)), frame(Buffer.from("bc"))]))
    expect(out.map((m) => Buffer.from(m).toString())).toEqual(["a", "", "bc"])
  })

  test("a compressed or oversized message is a FramingError", () => {
    const compressed = frame(Buffer.from("x"))
    compressed[0] = 1
    expect(() => new MessageReader().push(compressed)).toThrow(FramingError)
    const oversized = Buffer.alloc(5)
    oversized.writeUInt32BE(MaxMessageBytes + 1, 1)
    expect(() => new MessageReader().push(oversized)).toThrow("over the 4194304-byte limit")
  })
})

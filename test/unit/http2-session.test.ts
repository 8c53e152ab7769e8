/**
 * The SDK's HTTP/2 server session (src/sdk/wire/Http2Session.ts) on an
 * in-memory Connection: frames in as a client writes them, frames out read
 * back. The SETTINGS exchange, header blocks split and padded, flow control
 * both ways, and the connection errors a broken or hostile peer gets
 * (the GOAWAY code RFC 9113 gives each). The real clients (node:http2 in
 * the host, go-plugin's Go client) are in test/e2e/grpc-server.test.ts and
 * test/e2e/conformance.test.ts.
 */
import { describe, expect, test } from "bun:test"
import { encodeHeaders, type HeaderField } from "../../src/sdk/wire/Hpack.ts"
import {
  ClientPreface,
  ErrorCode,
  frame,
  FrameType,
  Http2Session,
  type Http2Stream,
  MaxConcurrentStreams,
  MaxFrameSize,
  MaxHeaderListSize,
  MaxStreamsBeforeAck
} from "../../src/sdk/wire/Http2Session.ts"
import type { Connection, ConnectionEvents } from "../../src/sdk/wire/Listener.ts"

const END_STREAM = 0x1
const ACK = 0x1
const END_HEADERS = 0x4
const PADDED = 0x8
const PRIORITY = 0x20

interface Frame {
  readonly type: number
  readonly flags: number
  readonly streamId: number
  readonly payload: Buffer
}

/** A Connection whose socket takes `accept` bytes per write (all by default) and keeps what it took. */
class FakeConnection implements Connection {
  written: Buffer = Buffer.alloc(0)
  events: ConnectionEvents | undefined
  ended = false
  terminated = false
  accept = Infinity

  write(bytes: Uint8Array): number {
    if (this.ended || this.terminated) return -1
    const taken = Math.min(bytes.length, this.accept)
    this.written = Buffer.concat([this.written, bytes.subarray(0, taken)])
    return taken
  }
  end(): void {
    this.ended = true
  }
  terminate(): void {
    this.terminated = true
  }
  attach(events: ConnectionEvents): void {
    this.events = events
  }

  /** Every whole frame written so far, after the ones already read. */
  frames(): Array<Frame> {
    const out: Array<Frame> = []
    let offset = 0
    while (this.written.length - offset >= 9) {
      const length = this.written.readUIntBE(offset, 3)
      if (this.written.length - offset < 9 + length) break
      out.push({
        type: this.written[offset + 3] as number,
        flags: this.written[offset + 4] as number,
        streamId: this.written.readUInt32BE(offset + 5) & 0x7fffffff,
        payload: this.written.subarray(offset + 9, offset + 9 + length)
      })
      offset += 9 + length
    }
    this.written = this.written.subarray(offset)
    return out
  }
}

const u32 = (n: number) => {
  const b = Buffer.alloc(4)
  b.writeUInt32BE(n)
  return b
}
const settings = (entries: ReadonlyArray<readonly [number, number]>) =>
  Buffer.concat(entries.map(([id, value]) => Buffer.concat([Buffer.from([id >> 8, id & 0xff]), u32(value)])))
const request = (path = "/test.Service/Method"): Array<HeaderField> => [
  [":method", "POST"],
  [":scheme", "http"],
  [":path", path],
  [":authority", "localhost"],
  ["content-type", "application/grpc"],
  ["te", "trailers"]
]

/** Microtasks run: the session writes what it queued. */
const settle = () => new Promise<void>((resolve) => setTimeout(resolve, 0))

/** A session past the preface and the SETTINGS exchange, its streams as they open, and a way to send frames. */
const connected = async (peerSettings: ReadonlyArray<readonly [number, number]> = []) => {
  const connection = new FakeConnection()
  const streams: Array<Http2Stream> = []
  const session = new Http2Session(connection, (stream) => {
    streams.push(stream)
    stream.events = { data: () => {}, end: () => {}, close: () => {} }
  })
  const send = (...frames: Array<Uint8Array>) => connection.events?.data(Buffer.concat(frames))
  send(ClientPreface, frame(FrameType.SETTINGS, 0, 0, settings(peerSettings)))
  await settle()
  connection.frames()
  return { connection, session, streams, send }
}

/** The GOAWAY written, as [last stream id, error code], or undefined. */
const goAwayOf = (frames: ReadonlyArray<Frame>) => {
  const f = frames.find((f) => f.type === FrameType.GOAWAY)
  return f === undefined ? undefined : [f.payload.readUInt32BE(0), f.payload.readUInt32BE(4)]
}

const headersFrame = (streamId: number, fields: ReadonlyArray<HeaderField>, flags = END_HEADERS) =>
  frame(FrameType.HEADERS, flags, streamId, encodeHeaders(fields))

describe("HTTP/2 session: the connection's start", () => {
  test("answers the preface with its SETTINGS and a wider connection window, and acks the client's", async () => {
    const connection = new FakeConnection()
    new Http2Session(connection, () => {})
    connection.events?.data(Buffer.concat([ClientPreface, frame(FrameType.SETTINGS, 0, 0, settings([[0x4, 1 << 20]]))]))
    await settle()
    const frames = connection.frames()
    expect(frames.map((f) => [f.type, f.flags])).toEqual([[FrameType.SETTINGS, 0], [FrameType.WINDOW_UPDATE, 0], [FrameType.SETTINGS, ACK]])
    const ours = new Map<number, number>()
    const payload = frames[0]?.payload ?? Buffer.alloc(0)
    for (let i = 0; i < payload.length; i += 6) ours.set(payload.readUInt16BE(i), payload.readUInt32BE(i + 2))
    expect(ours.get(0x3)).toBe(MaxConcurrentStreams)
    expect(ours.get(0x6)).toBe(MaxHeaderListSize)
  })

  test("a preface split across reads is still read", async () => {
    const connection = new FakeConnection()
    new Http2Session(connection, () => {})
    const bytes = Buffer.concat([ClientPreface, frame(FrameType.SETTINGS, 0, 0, new Uint8Array(0))])
    for (let i = 0; i < bytes.length; i += 5) connection.events?.data(bytes.subarray(i, i + 5))
    await settle()
    expect(connection.frames().some((f) => f.type === FrameType.SETTINGS && f.flags === ACK)).toBe(true)
    expect(connection.ended).toBe(false)
  })

  test("bytes that are not the preface: GOAWAY PROTOCOL_ERROR, and the connection ends", async () => {
    const connection = new FakeConnection()
    new Http2Session(connection, () => {})
    connection.events?.data(Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
    await settle()
    expect(goAwayOf(connection.frames())).toEqual([0, ErrorCode.PROTOCOL_ERROR])
    expect(connection.ended).toBe(true)
  })

  test("a first frame that is not SETTINGS: GOAWAY PROTOCOL_ERROR", async () => {
    const connection = new FakeConnection()
    new Http2Session(connection, () => {})
    connection.events?.data(Buffer.concat([ClientPreface, frame(FrameType.PING, 0, 0, new Uint8Array(8))]))
    await settle()
    expect(goAwayOf(connection.frames())).toEqual([0, ErrorCode.PROTOCOL_ERROR])
  })
})

describe("HTTP/2 session: frames a peer must not send", () => {
  test("a frame over 16 KiB: GOAWAY FRAME_SIZE_ERROR before its payload is even read", async () => {
    const { connection, send } = await connected()
    const header = Buffer.from([0x00, 0x40, 0x01, FrameType.DATA, 0, 0, 0, 0, 1])
    expect(header.readUIntBE(0, 3)).toBe(MaxFrameSize + 1)
    send(header)
    expect(goAwayOf(connection.frames())).toEqual([0, ErrorCode.FRAME_SIZE_ERROR])
    expect(connection.ended).toBe(true)
  })

  test("CONTINUATION on another stream than its HEADERS: GOAWAY PROTOCOL_ERROR", async () => {
    const { connection, send } = await connected()
    const block = encodeHeaders(request())
    send(
      frame(FrameType.HEADERS, 0, 1, block.subarray(0, 10)),
      frame(FrameType.CONTINUATION, END_HEADERS, 3, block.subarray(10))
    )
    expect(goAwayOf(connection.frames())).toEqual([0, ErrorCode.PROTOCOL_ERROR])
  })

  test("another frame in the middle of a header block: GOAWAY PROTOCOL_ERROR", async () => {
    const { connection, send } = await connected()
    send(frame(FrameType.HEADERS, 0, 1, encodeHeaders(request()).subarray(0, 10)), frame(FrameType.PING, 0, 0, new Uint8Array(8)))
    expect(goAwayOf(connection.frames())).toEqual([0, ErrorCode.PROTOCOL_ERROR])
  })

  test("a header block over the advertised list size: GOAWAY ENHANCE_YOUR_CALM, nothing opened", async () => {
    const { connection, streams, send } = await connected()
    const fragment = new Uint8Array(MaxFrameSize).fill(0x82)
    send(frame(FrameType.HEADERS, 0, 1, fragment))
    for (let i = 0; i < 4; i++) send(frame(FrameType.CONTINUATION, 0, 1, fragment))
    expect(goAwayOf(connection.frames())).toEqual([0, ErrorCode.ENHANCE_YOUR_CALM])
    expect(streams).toEqual([])
  })

  test("a small header block that decodes past the list size (one large table entry named 30 times): GOAWAY ENHANCE_YOUR_CALM", async () => {
    const { connection, streams, send } = await connected()
    // A literal with incremental indexing: "k" and a 3000-byte value go into the dynamic table (index 62)...
    const value = Buffer.alloc(3000, 0x76)
    const entry = Buffer.concat([Buffer.from([0x40, 1, 0x6b, 0x7f, 0xb9, 0x16]), value])
    send(frame(FrameType.HEADERS, END_HEADERS | END_STREAM, 1, Buffer.concat([encodeHeaders(request()), entry])))
    expect(streams.length).toBe(1)
    // ...then 30 one-byte references to it: 30 bytes on the wire, 90 KB decoded.
    send(frame(FrameType.HEADERS, END_HEADERS, 3, Buffer.concat([encodeHeaders(request()), Buffer.alloc(30, 0xbe)])))
    expect(goAwayOf(connection.frames())).toEqual([1, ErrorCode.ENHANCE_YOUR_CALM])
    expect(streams.length).toBe(1)
  })

  test("a header block HPACK cannot decode: GOAWAY COMPRESSION_ERROR", async () => {
    const { connection, send } = await connected()
    send(frame(FrameType.HEADERS, END_HEADERS, 1, Uint8Array.from([0x80])))
    expect(goAwayOf(connection.frames())).toEqual([0, ErrorCode.COMPRESSION_ERROR])
  })

  test("an even stream id, DATA on an idle stream, PUSH_PROMISE: GOAWAY PROTOCOL_ERROR", async () => {
    for (
      const bad of [
        headersFrame(2, request()),
        frame(FrameType.DATA, 0, 7, new Uint8Array(1)),
        frame(FrameType.PUSH_PROMISE, END_HEADERS, 1, new Uint8Array(4))
      ]
    ) {
      const { connection, send } = await connected()
      send(bad)
      expect(goAwayOf(connection.frames())).toEqual([0, ErrorCode.PROTOCOL_ERROR])
    }
  })

  test("padding as long as the frame: GOAWAY PROTOCOL_ERROR", async () => {
    const { connection, send } = await connected()
    send(frame(FrameType.HEADERS, END_HEADERS | PADDED, 1, Uint8Array.from([5, 1, 2, 3])))
    expect(goAwayOf(connection.frames())).toEqual([0, ErrorCode.PROTOCOL_ERROR])
  })

  test("bad SETTINGS: a length not a multiple of 6 (FRAME_SIZE_ERROR), a window over 2^31-1 (FLOW_CONTROL_ERROR), a max frame size out of range (PROTOCOL_ERROR)", async () => {
    const cases: ReadonlyArray<readonly [Uint8Array, number]> = [
      [frame(FrameType.SETTINGS, 0, 0, new Uint8Array(5)), ErrorCode.FRAME_SIZE_ERROR],
      [frame(FrameType.SETTINGS, 0, 0, settings([[0x4, 2 ** 31]])), ErrorCode.FLOW_CONTROL_ERROR],
      [frame(FrameType.SETTINGS, 0, 0, settings([[0x5, 100]])), ErrorCode.PROTOCOL_ERROR],
      [frame(FrameType.SETTINGS, ACK, 0, new Uint8Array(6)), ErrorCode.FRAME_SIZE_ERROR]
    ]
    for (const [bad, code] of cases) {
      const { connection, send } = await connected()
      send(bad)
      expect(goAwayOf(connection.frames())).toEqual([0, code])
    }
  })

  test("a WINDOW_UPDATE of 0 on the connection (PROTOCOL_ERROR), or one past 2^31-1 (FLOW_CONTROL_ERROR)", async () => {
    const zero = await connected()
    zero.send(frame(FrameType.WINDOW_UPDATE, 0, 0, u32(0)))
    expect(goAwayOf(zero.connection.frames())).toEqual([0, ErrorCode.PROTOCOL_ERROR])
    const over = await connected()
    over.send(frame(FrameType.WINDOW_UPDATE, 0, 0, u32(2 ** 31 - 1)))
    expect(goAwayOf(over.connection.frames())).toEqual([0, ErrorCode.FLOW_CONTROL_ERROR])
  })

  test("data received is given back (WINDOW_UPDATE for the stream and the connection): a peer is never stalled", async () => {
    const { connection, send } = await connected()
    const chunk = new Uint8Array(MaxFrameSize)
    // 65 full frames on each of two streams: more than a stream's 1 MiB window, and past half the connection's 4 MiB.
    send(headersFrame(1, request()), headersFrame(3, request()))
    for (let i = 0; i < 65; i++) send(frame(FrameType.DATA, 0, 1, chunk), frame(FrameType.DATA, 0, 3, chunk))
    for (let i = 0; i < 65; i++) send(frame(FrameType.DATA, 0, 1, chunk))
    await settle()
    const frames = connection.frames()
    expect(frames.some((f) => f.type === FrameType.RST_STREAM || f.type === FrameType.GOAWAY)).toBe(false)
    const given = (streamId: number) =>
      frames.filter((f) => f.type === FrameType.WINDOW_UPDATE && f.streamId === streamId).reduce(
        (sum, f) => sum + f.payload.readUInt32BE(0),
        0
      )
    // Given back at half a window: 128 and 64 frames of the 130 and 65 sent.
    expect(given(1)).toBe(128 * MaxFrameSize)
    expect(given(3)).toBe(64 * MaxFrameSize)
    expect(given(0)).toBe(128 * MaxFrameSize)
  })

  test("a peer that sends PINGs and reads none of the answers is cut off", async () => {
    const { connection, send } = await connected()
    connection.accept = 0
    const ping = frame(FrameType.PING, 0, 0, new Uint8Array(8))
    for (let i = 0; i < 100_000 && !connection.ended && !connection.terminated; i++) {
      send(ping)
      await Promise.resolve()
    }
    expect(connection.ended || connection.terminated).toBe(true)
  })
})

describe("HTTP/2 session: streams", () => {
  test("HEADERS padded and with priority, then CONTINUATION; padded DATA; the stream hears its body and end", async () => {
    const { connection, streams, send } = await connected()
    const block = encodeHeaders(request("/a/B"))
    const received: Array<string> = []
    const first = Buffer.concat([Buffer.from([3]), Buffer.from([0, 0, 0, 0, 16]), block.subarray(0, 8), Buffer.alloc(3)])
    send(frame(FrameType.HEADERS, PADDED | PRIORITY, 1, first))
    expect(streams).toEqual([])
    send(frame(FrameType.CONTINUATION, END_HEADERS, 1, block.subarray(8)))
    const stream = streams[0] as Http2Stream
    expect(stream.header(":path")).toBe("/a/B")
    stream.events = { data: (b) => received.push(b.toString()), end: () => received.push("<end>"), close: () => received.push("<close>") }
    send(frame(FrameType.DATA, PADDED | END_STREAM, 1, Buffer.concat([Buffer.from([2]), Buffer.from("body"), Buffer.alloc(2)])))
    expect(received).toEqual(["body", "<end>"])
    stream.respond([[":status", "200"]])
    stream.write(Buffer.from("answer"))
    stream.end([["grpc-status", "0"]])
    await settle()
    expect(received).toEqual(["body", "<end>", "<close>"])
    const frames = connection.frames()
    expect(frames.map((f) => [f.type, f.flags, f.streamId])).toEqual([
      [FrameType.HEADERS, END_HEADERS, 1],
      [FrameType.DATA, 0, 1],
      [FrameType.HEADERS, END_HEADERS | END_STREAM, 1]
    ])
    expect(frames[1]?.payload.toString()).toBe("answer")
  })

  test("what we send waits for the peer's windows, is cut at its frame size, and the trailers come after it all", async () => {
    const { connection, streams, send } = await connected([[0x4, 10]])
    send(headersFrame(1, request(), END_HEADERS | END_STREAM))
    const stream = streams[0] as Http2Stream
    stream.respond([[":status", "200"]])
    stream.write(Buffer.alloc(100, 7))
    stream.end([["grpc-status", "0"]])
    await settle()
    const dataSizes = (frames: ReadonlyArray<Frame>) => frames.filter((f) => f.type === FrameType.DATA).map((f) => f.payload.length)
    let frames = connection.frames()
    expect(dataSizes(frames)).toEqual([10])
    expect(frames.some((f) => f.flags & END_STREAM)).toBe(false)
    send(frame(FrameType.WINDOW_UPDATE, 0, 1, u32(50)))
    await settle()
    frames = connection.frames()
    expect(dataSizes(frames)).toEqual([50])
    // A larger stream window than the connection's 65,535: the connection's bounds it.
    send(frame(FrameType.WINDOW_UPDATE, 0, 1, u32(100_000)))
    await settle()
    frames = connection.frames()
    expect(dataSizes(frames)).toEqual([40])
    expect(frames.at(-1)?.type).toBe(FrameType.HEADERS)
    expect((frames.at(-1)?.flags ?? 0) & END_STREAM).toBe(END_STREAM)
  })

  test("a large answer is cut at the peer's max frame size and stops at the connection's window", async () => {
    const { connection, streams, send } = await connected([[0x4, 1 << 20]])
    send(headersFrame(1, request(), END_HEADERS | END_STREAM))
    const stream = streams[0] as Http2Stream
    stream.respond([[":status", "200"]])
    stream.write(Buffer.alloc(100_000))
    await settle()
    const sizes = connection.frames().filter((f) => f.type === FrameType.DATA).map((f) => f.payload.length)
    expect(sizes.every((s) => s <= MaxFrameSize)).toBe(true)
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(65_535)
    // A lowered INITIAL_WINDOW_SIZE takes the stream's window below zero: nothing more until updates cover it.
    send(frame(FrameType.SETTINGS, 0, 0, settings([[0x4, 0]])), frame(FrameType.WINDOW_UPDATE, 0, 0, u32(1 << 20)))
    await settle()
    expect(connection.frames().filter((f) => f.type === FrameType.DATA)).toEqual([])
  })

  test("a client's RST_STREAM closes the stream and drops what was queued for it", async () => {
    const { connection, streams, send } = await connected([[0x4, 0]])
    send(headersFrame(1, request(), END_HEADERS | END_STREAM))
    const stream = streams[0] as Http2Stream
    let closed = false
    stream.events = { data: () => {}, end: () => {}, close: () => (closed = true) }
    stream.respond([[":status", "200"]])
    stream.write(Buffer.alloc(1000))
    send(frame(FrameType.RST_STREAM, 0, 1, u32(ErrorCode.CANCEL)))
    expect(closed).toBe(true)
    expect(stream.queued).toEqual([])
    // DATA and WINDOW_UPDATE still in flight for it are ignored, not errors.
    send(frame(FrameType.WINDOW_UPDATE, 0, 1, u32(10)), frame(FrameType.DATA, 0, 1, new Uint8Array(5)))
    await settle()
    expect(goAwayOf(connection.frames())).toBeUndefined()
  })

  test("an answer complete while the client still sends: END_STREAM, then RST_STREAM NO_ERROR", async () => {
    const { connection, streams, send } = await connected()
    send(headersFrame(1, request()))
    ;(streams[0] as Http2Stream).respond([[":status", "200"], ["grpc-status", "12"]], true)
    await settle()
    const frames = connection.frames()
    expect(frames.map((f) => f.type)).toEqual([FrameType.HEADERS, FrameType.RST_STREAM])
    expect(frames[1]?.payload.readUInt32BE(0)).toBe(ErrorCode.NO_ERROR)
  })

  test(`past ${MaxConcurrentStreams} open streams, once the client has our SETTINGS, new ones are refused (RST_STREAM REFUSED_STREAM)`, async () => {
    const { connection, streams, send } = await connected()
    send(frame(FrameType.SETTINGS, ACK, 0, new Uint8Array(0)))
    for (let i = 0; i <= MaxConcurrentStreams; i++) send(headersFrame(2 * i + 1, request()))
    await settle()
    expect(streams.length).toBe(MaxConcurrentStreams)
    const resets = connection.frames().filter((f) => f.type === FrameType.RST_STREAM)
    expect(resets.map((f) => [f.streamId, f.payload.readUInt32BE(0)])).toEqual([[2 * MaxConcurrentStreams + 1, ErrorCode.REFUSED_STREAM]])
    expect(goAwayOf(connection.frames())).toBeUndefined()
  })

  test(`before the client acknowledges our SETTINGS, streams past ${MaxConcurrentStreams} are taken, up to ${MaxStreamsBeforeAck}`, async () => {
    const { connection, streams, send } = await connected()
    for (let i = 0; i <= MaxStreamsBeforeAck; i++) send(headersFrame(2 * i + 1, request()))
    await settle()
    expect(streams.length).toBe(MaxStreamsBeforeAck)
    const resets = connection.frames().filter((f) => f.type === FrameType.RST_STREAM)
    expect(resets.map((f) => [f.streamId, f.payload.readUInt32BE(0)])).toEqual([[2 * MaxStreamsBeforeAck + 1, ErrorCode.REFUSED_STREAM]])
  })

  test("trailers from the client end its stream; trailers without END_STREAM reset it (PROTOCOL_ERROR)", async () => {
    const { connection, streams, send } = await connected()
    const ended: Array<number> = []
    send(headersFrame(1, request()), headersFrame(3, request()))
    for (const stream of streams) stream.events = { data: () => {}, end: () => ended.push(stream.id), close: () => {} }
    send(headersFrame(1, [["x-trailer", "1"]], END_HEADERS | END_STREAM), headersFrame(3, [["x-trailer", "1"]]))
    await settle()
    expect(ended).toEqual([1])
    const resets = connection.frames().filter((f) => f.type === FrameType.RST_STREAM)
    expect(resets.map((f) => [f.streamId, f.payload.readUInt32BE(0)])).toEqual([[3, ErrorCode.PROTOCOL_ERROR]])
  })

  test("PING is answered with the same payload", async () => {
    const { connection, send } = await connected()
    send(frame(FrameType.PING, 0, 0, Buffer.from("12345678")))
    await settle()
    const pong = connection.frames().find((f) => f.type === FrameType.PING)
    expect([pong?.flags, pong?.payload.toString()]).toEqual([ACK, "12345678"])
  })
})

describe("HTTP/2 session: going away", () => {
  test("close() sends GOAWAY with the last stream, and ends the connection once the open stream is answered", async () => {
    const { connection, session, streams, send } = await connected()
    send(headersFrame(1, request(), END_HEADERS | END_STREAM))
    session.close()
    await settle()
    expect(goAwayOf(connection.frames())).toEqual([1, ErrorCode.NO_ERROR])
    expect(connection.ended).toBe(false)
    // A stream opened after the GOAWAY is refused.
    send(headersFrame(3, request()))
    await settle()
    expect(connection.frames().map((f) => [f.type, f.streamId])).toEqual([[FrameType.RST_STREAM, 3]])
    const stream = streams[0] as Http2Stream
    stream.respond([[":status", "200"], ["grpc-status", "0"]], true)
    await settle()
    expect(connection.ended).toBe(true)
  })

  test("a client's GOAWAY: we answer with ours and end once its streams are over", async () => {
    const { connection, streams, send } = await connected()
    send(headersFrame(1, request(), END_HEADERS | END_STREAM))
    send(frame(FrameType.GOAWAY, 0, 0, Buffer.concat([u32(1), u32(ErrorCode.NO_ERROR)])))
    await settle()
    expect(goAwayOf(connection.frames())).toEqual([1, ErrorCode.NO_ERROR])
    expect(connection.ended).toBe(false)
    ;(streams[0] as Http2Stream).respond([[":status", "200"], ["grpc-status", "0"]], true)
    await settle()
    expect(connection.ended).toBe(true)
  })

  test("the connection closing closes its open streams", async () => {
    const { connection, session, streams, send } = await connected()
    send(headersFrame(1, request()))
    let closed = false
    let sessionClosed = false
    ;(streams[0] as Http2Stream).events = { data: () => {}, end: () => {}, close: () => (closed = true) }
    session.onClose(() => (sessionClosed = true))
    connection.events?.close()
    expect([closed, sessionClosed, session.openStreams]).toEqual([true, true, 0])
  })
})

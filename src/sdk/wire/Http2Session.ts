/**
 * The server side of one HTTP/2 connection (RFC 9113), written over a
 * listener's Connection, for the plugin's gRPC server (GrpcServer.ts).
 *
 * Why not node:http2: loading it and making a server costs a plugin about
 * a fifth of its memory once ready, and the SDK needs only what gRPC uses
 * of HTTP/2 (figures: docs/performance.md). This module loads no node:
 * builtin.
 *
 * What it does: the client preface, SETTINGS both ways, request HEADERS
 * with their CONTINUATIONs (HPACK in Hpack.ts), DATA, RST_STREAM, PING,
 * GOAWAY both ways, WINDOW_UPDATE, flow control both ways (what the peer
 * sends is handed on at once and its window given back; what we send waits
 * for the peer's windows and is cut to its largest frame). PRIORITY is read
 * and ignored. What it does not: server push, stream priorities, HTTP/1.
 *
 * Bounds, so a broken or hostile peer cannot make it hold unbounded memory:
 * frames up to 16 KiB (the default SETTINGS_MAX_FRAME_SIZE), header blocks
 * and header lists up to MaxHeaderListSize, MaxConcurrentStreams streams
 * (advertised; more are refused once the client knows it), and control frames we owe an answer to
 * (PING, SETTINGS) stop being answered and close the connection when the
 * peer does not read its answers.
 */
import type { Connection } from "./Listener.ts"
import { encodeHeaders, type HeaderField, HeaderListTooLarge, HpackDecoder, HpackError } from "./Hpack.ts"

/** HTTP/2 error codes (RFC 9113 7). */
export const ErrorCode = {
  NO_ERROR: 0x0,
  PROTOCOL_ERROR: 0x1,
  INTERNAL_ERROR: 0x2,
  FLOW_CONTROL_ERROR: 0x3,
  STREAM_CLOSED: 0x5,
  FRAME_SIZE_ERROR: 0x6,
  REFUSED_STREAM: 0x7,
  CANCEL: 0x8,
  COMPRESSION_ERROR: 0x9,
  ENHANCE_YOUR_CALM: 0xb
} as const

/** Frame types (RFC 9113 6). */
export const FrameType = {
  DATA: 0x0,
  HEADERS: 0x1,
  PRIORITY: 0x2,
  RST_STREAM: 0x3,
  SETTINGS: 0x4,
  PUSH_PROMISE: 0x5,
  PING: 0x6,
  GOAWAY: 0x7,
  WINDOW_UPDATE: 0x8,
  CONTINUATION: 0x9
} as const

const Flag = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4, PADDED: 0x8, PRIORITY: 0x20 } as const

const Setting = {
  HEADER_TABLE_SIZE: 0x1,
  ENABLE_PUSH: 0x2,
  MAX_CONCURRENT_STREAMS: 0x3,
  INITIAL_WINDOW_SIZE: 0x4,
  MAX_FRAME_SIZE: 0x5,
  MAX_HEADER_LIST_SIZE: 0x6
} as const

export const ClientPreface = Uint8Array.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", (c) => c.charCodeAt(0))

/** The largest frame payload we accept: the protocol's default, which we do not raise. */
export const MaxFrameSize = 16_384
/** The most streams a peer may have open at once (advertised). */
export const MaxConcurrentStreams = 100
/**
 * The most streams a client may open before it has acknowledged our
 * SETTINGS: until then it may not know our limit (RFC 9113 6.5.3), and a
 * host's first burst of calls races our SETTINGS, so those are taken up to
 * this harder bound rather than refused.
 */
export const MaxStreamsBeforeAck = 1000
/** The largest header list (and header block) we take (advertised as SETTINGS_MAX_HEADER_LIST_SIZE). */
export const MaxHeaderListSize = 65_536
/**
 * Our receive windows, per stream and for the connection. Received data is
 * handed on at once and its window given back, so these bound what is in
 * flight, not what we hold: wide enough that a 4 MiB message crosses in a
 * few round trips.
 */
const StreamWindow = 1 << 20
const ConnectionWindow = 1 << 22
/** A window of the peer's starts at this (RFC 9113 6.9.2) until its SETTINGS say otherwise. */
const DefaultWindow = 65_535
const MaxWindow = 2 ** 31 - 1
/** Unsent bytes past which we stop answering PINGs and SETTINGS: a peer that does not read is cut off. */
const MaxUnansweredBytes = 1 << 20

/** A connection error: GOAWAY with this code, then close. */
export class ConnectionError extends Error {
  constructor(readonly code: number, message: string) {
    super(message)
  }
}

/** What a request stream's owner hears from it. */
export interface StreamEvents {
  /** Bytes of the request body, as they come. */
  data(bytes: Buffer): void
  /** The client has sent all it will (END_STREAM). */
  end(): void
  /** The stream is over: answered and ended both ways, reset by either side, or its connection closed. */
  close(): void
}

/** One request stream, as a server answers it. */
export class Http2Stream {
  /** Set by the owner when it takes the stream (Http2Session's onStream). */
  events: StreamEvents | undefined
  sendWindow: number
  /** Our DATA waiting for the peer's windows or the socket, and the trailers to send after it. */
  readonly queued: Array<Uint8Array> = []
  trailers: Array<HeaderField> | undefined
  private responded = false
  sendEnded = false
  receiveEnded = false
  closed = false
  receiveUnacked = 0

  constructor(
    private readonly session: Http2Session,
    readonly id: number,
    readonly headers: ReadonlyArray<HeaderField>,
    sendWindow: number
  ) {
    this.sendWindow = sendWindow
  }

  /** The request header's value, or undefined. */
  header(name: string): string | undefined {
    return this.headers.find(([n]) => n === name)?.[1]
  }

  /** Sends the response headers; with `endStream` they are the whole answer (a trailers-only response). */
  respond(headers: ReadonlyArray<HeaderField>, endStream = false): void {
    if (this.closed || this.responded) return
    this.responded = true
    this.session.sendHeaders(this, headers, endStream)
    if (endStream) this.session.sentEnd(this)
  }

  /** Queues body bytes; they go out as the peer's windows allow. */
  write(bytes: Uint8Array): void {
    if (this.closed || this.sendEnded || this.trailers !== undefined || bytes.length === 0) return
    this.queued.push(bytes)
    this.session.flushData()
  }

  /** Sends the trailers once every queued byte is out, ending our side. */
  end(trailers: ReadonlyArray<HeaderField>): void {
    if (this.closed || this.sendEnded || this.trailers !== undefined) return
    this.trailers = [...trailers]
    this.session.flushData()
  }

  /** Resets the stream (RST_STREAM) with `code`. */
  reset(code: number = ErrorCode.CANCEL): void {
    if (this.closed) return
    this.session.resetStream(this, code)
  }
}

/** The server side of one HTTP/2 connection. */
export class Http2Session {
  private readonly decoder = new HpackDecoder()
  private readonly streams = new Map<number, Http2Stream>()
  /** Bytes received and not yet parsed: at most the preface or one frame's header and payload. */
  private input: Buffer = Buffer.alloc(0)
  private prefaceSeen = false
  private settingsSeen = false
  /** The client has acknowledged our SETTINGS: our stream limit holds from here. */
  private settingsAcked = false
  /** The highest stream id the client has opened. */
  private lastStreamId = 0
  /** A header block in progress: its stream, flags, and fragments. */
  private headerBlock: { streamId: number; endStream: boolean; fragments: Array<Uint8Array>; size: number } | undefined
  private peerMaxFrameSize = MaxFrameSize
  private peerInitialWindow = DefaultWindow
  private connectionSendWindow = DefaultWindow
  private connectionReceiveUnacked = 0
  /** Frames made and not yet given to the socket, and the part of a write the socket did not take. */
  private outbox: Array<Uint8Array> = []
  private outboxBytes = 0
  private unsent: Uint8Array | undefined
  private flushScheduled = false
  /** GOAWAY sent: no new streams; the connection ends once the open ones do. */
  private goingAway = false
  /** GOAWAY received: the peer opens no more streams. */
  private peerGoingAway = false
  private ended = false
  private closedFired = false
  private readonly closeListeners: Array<() => void> = []

  constructor(private readonly connection: Connection, private readonly onStream: (stream: Http2Stream) => void) {
    // Our SETTINGS go first (3.4), and the connection window is widened at once.
    this.queue(frame(
      FrameType.SETTINGS,
      0,
      0,
      settingsPayload([
        [Setting.ENABLE_PUSH, 0],
        [Setting.MAX_CONCURRENT_STREAMS, MaxConcurrentStreams],
        [Setting.INITIAL_WINDOW_SIZE, StreamWindow],
        [Setting.MAX_HEADER_LIST_SIZE, MaxHeaderListSize]
      ])
    ))
    this.queue(windowUpdate(0, ConnectionWindow - DefaultWindow))
    connection.attach({
      data: (bytes) => this.received(bytes),
      drain: () => this.drained(),
      close: () => this.closedByPeer()
    })
    // Our SETTINGS go out now even to a client that waits for them before it writes.
    this.scheduleFlush()
  }

  /** Streams still open. */
  get openStreams(): number {
    return this.streams.size
  }

  /** Runs `listener` once the connection has closed. */
  onClose(listener: () => void): void {
    if (this.closedFired) listener()
    else this.closeListeners.push(listener)
  }

  /**
   * Sends GOAWAY (no error): no new streams are taken; the connection ends
   * once the open ones are over and what was written is out.
   */
  close(): void {
    if (this.goingAway || this.closedFired) return
    this.goingAway = true
    this.queue(goAway(this.lastStreamId, ErrorCode.NO_ERROR))
    this.scheduleFlush()
  }

  // Incoming

  private received(bytes: Uint8Array) {
    if (this.ended) return
    const chunk = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    this.input = this.input.length === 0 ? chunk : Buffer.concat([this.input, chunk])
    try {
      this.parse()
    } catch (error) {
      if (error instanceof ConnectionError) this.fail(error.code, error.message)
      else throw error
    }
    this.flush()
  }

  private parse() {
    if (!this.prefaceSeen) {
      const n = Math.min(this.input.length, ClientPreface.length)
      for (let i = 0; i < n; i++) {
        if (this.input[i] !== ClientPreface[i]) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "not the HTTP/2 client preface")
      }
      if (this.input.length < ClientPreface.length) return
      this.prefaceSeen = true
      this.input = this.input.subarray(ClientPreface.length)
    }
    let offset = 0
    while (!this.ended && this.input.length - offset >= 9) {
      const input = this.input
      const length = (input[offset] as number) * 65536 + (input[offset + 1] as number) * 256 + (input[offset + 2] as number)
      const type = input[offset + 3] as number
      const flags = input[offset + 4] as number
      const streamId = input.readUInt32BE(offset + 5) & 0x7fffffff
      if (length > MaxFrameSize) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, `a frame of ${length} bytes, over ${MaxFrameSize}`)
      if (input.length - offset < 9 + length) break
      const payload = input.subarray(offset + 9, offset + 9 + length)
      offset += 9 + length
      this.frame(type, flags, streamId, payload)
    }
    // What is left is at most one frame: copied once, so the chunk it came in is not held.
    this.input = offset === this.input.length ? Buffer.alloc(0) : Buffer.from(this.input.subarray(offset))
  }

  private frame(type: number, flags: number, streamId: number, payload: Buffer) {
    if (!this.settingsSeen) {
      if (type !== FrameType.SETTINGS || (flags & Flag.ACK) !== 0) {
        throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "the client's first frame is not SETTINGS")
      }
      this.settingsSeen = true
    }
    if (this.headerBlock !== undefined && (type !== FrameType.CONTINUATION || streamId !== this.headerBlock.streamId)) {
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "a header block interrupted before END_HEADERS")
    }
    switch (type) {
      case FrameType.DATA:
        return this.onData(flags, streamId, payload)
      case FrameType.HEADERS:
        return this.onHeaders(flags, streamId, payload)
      case FrameType.PRIORITY:
        if (streamId === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "PRIORITY on stream 0")
        if (payload.length !== 5) this.resetId(streamId, ErrorCode.FRAME_SIZE_ERROR)
        return
      case FrameType.RST_STREAM:
        return this.onReset(streamId, payload)
      case FrameType.SETTINGS:
        return this.onSettings(flags, streamId, payload)
      case FrameType.PUSH_PROMISE:
        throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "PUSH_PROMISE from a client")
      case FrameType.PING:
        return this.onPing(flags, streamId, payload)
      case FrameType.GOAWAY:
        return this.onGoAway(streamId, payload)
      case FrameType.WINDOW_UPDATE:
        return this.onWindowUpdate(streamId, payload)
      case FrameType.CONTINUATION:
        return this.onContinuation(flags, streamId, payload)
      default:
        // Unknown frame types are ignored (5.5).
        return
    }
  }

  private onData(flags: number, streamId: number, payload: Buffer) {
    if (streamId === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "DATA on stream 0")
    if (streamId > this.lastStreamId) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "DATA on an idle stream")
    // The whole frame, padding included, counts against the windows (6.9.1).
    this.connectionReceiveUnacked += payload.length
    if (this.connectionReceiveUnacked > ConnectionWindow) {
      throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "DATA past the connection's window")
    }
    this.giveBackConnectionWindow()
    const body = unpad(flags, payload)
    const stream = this.streams.get(streamId)
    // A stream we reset or closed: its data may still be in flight, and is dropped.
    if (stream === undefined) return
    if (stream.receiveEnded) {
      this.resetStream(stream, ErrorCode.STREAM_CLOSED)
      return
    }
    stream.receiveUnacked += payload.length
    if (stream.receiveUnacked > StreamWindow) {
      this.resetStream(stream, ErrorCode.FLOW_CONTROL_ERROR)
      return
    }
    const endStream = (flags & Flag.END_STREAM) !== 0
    if (!endStream && stream.receiveUnacked >= StreamWindow / 2) {
      this.queue(windowUpdate(streamId, stream.receiveUnacked))
      stream.receiveUnacked = 0
    }
    if (body.length > 0) stream.events?.data(body)
    if (endStream) this.receivedEnd(stream)
  }

  private giveBackConnectionWindow() {
    if (this.connectionReceiveUnacked >= ConnectionWindow / 2) {
      this.queue(windowUpdate(0, this.connectionReceiveUnacked))
      this.connectionReceiveUnacked = 0
    }
  }

  private onHeaders(flags: number, streamId: number, payload: Buffer) {
    if (streamId === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "HEADERS on stream 0")
    let fragment = unpad(flags, payload)
    if ((flags & Flag.PRIORITY) !== 0) {
      if (fragment.length < 5) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "HEADERS too short for its priority")
      fragment = fragment.subarray(5)
    }
    const existing = this.streams.get(streamId)
    // Client streams are odd (5.1.1).
    if (existing === undefined && streamId % 2 === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "a client stream with an even id")
    if (existing?.receiveEnded === true) throw new ConnectionError(ErrorCode.STREAM_CLOSED, "HEADERS on a stream the client had ended")
    this.headerBlock = { streamId, endStream: (flags & Flag.END_STREAM) !== 0, fragments: [], size: 0 }
    this.addFragment(fragment, (flags & Flag.END_HEADERS) !== 0)
  }

  private onContinuation(flags: number, streamId: number, payload: Buffer) {
    if (this.headerBlock === undefined || this.headerBlock.streamId !== streamId) {
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "CONTINUATION without a header block on its stream")
    }
    this.addFragment(payload, (flags & Flag.END_HEADERS) !== 0)
  }

  private addFragment(fragment: Uint8Array, endHeaders: boolean) {
    const block = this.headerBlock as NonNullable<typeof this.headerBlock>
    block.size += fragment.length
    if (block.size > MaxHeaderListSize) {
      throw new ConnectionError(ErrorCode.ENHANCE_YOUR_CALM, `a header block over ${MaxHeaderListSize} bytes`)
    }
    // Copied: the fragment is a view of input that is reused.
    block.fragments.push(endHeaders && block.fragments.length === 0 ? fragment : Uint8Array.from(fragment))
    if (!endHeaders) return
    this.headerBlock = undefined
    const whole = block.fragments.length === 1 ? block.fragments[0] as Uint8Array : Buffer.concat(block.fragments)
    let headers: Array<HeaderField>
    try {
      headers = this.decoder.decode(whole, MaxHeaderListSize)
    } catch (error) {
      if (error instanceof HpackError) throw new ConnectionError(ErrorCode.COMPRESSION_ERROR, error.message)
      // Decoding stopped midway, so the dynamic table may be out of step with the peer's: the connection cannot go on.
      if (error instanceof HeaderListTooLarge) throw new ConnectionError(ErrorCode.ENHANCE_YOUR_CALM, error.message)
      throw error
    }
    this.headersComplete(block.streamId, block.endStream, headers)
  }

  private headersComplete(streamId: number, endStream: boolean, headers: Array<HeaderField>) {
    const existing = this.streams.get(streamId)
    if (existing !== undefined) {
      // Trailers from the client: they must end the stream (8.1).
      if (!endStream) {
        this.resetStream(existing, ErrorCode.PROTOCOL_ERROR)
        return
      }
      this.receivedEnd(existing)
      return
    }
    // A stream already over (we reset it, say): the block was decoded to keep HPACK in step, and is dropped.
    if (streamId <= this.lastStreamId) return
    this.lastStreamId = streamId
    if (this.goingAway || this.peerGoingAway) {
      this.resetId(streamId, ErrorCode.REFUSED_STREAM)
      return
    }
    if (this.streams.size >= (this.settingsAcked ? MaxConcurrentStreams : MaxStreamsBeforeAck)) {
      this.resetId(streamId, ErrorCode.REFUSED_STREAM)
      return
    }
    const stream = new Http2Stream(this, streamId, headers, this.peerInitialWindow)
    this.streams.set(streamId, stream)
    this.onStream(stream)
    if (endStream) this.receivedEnd(stream)
  }

  private receivedEnd(stream: Http2Stream) {
    if (stream.receiveEnded) return
    stream.receiveEnded = true
    stream.events?.end()
    if (stream.sendEnded) this.closeStream(stream)
  }

  private onReset(streamId: number, payload: Buffer) {
    if (streamId === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "RST_STREAM on stream 0")
    if (payload.length !== 4) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "RST_STREAM not 4 bytes")
    if (streamId > this.lastStreamId) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "RST_STREAM on an idle stream")
    const stream = this.streams.get(streamId)
    if (stream !== undefined) this.closeStream(stream)
  }

  private onSettings(flags: number, streamId: number, payload: Buffer) {
    if (streamId !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "SETTINGS on a stream")
    if ((flags & Flag.ACK) !== 0) {
      if (payload.length !== 0) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "a SETTINGS ack with a payload")
      this.settingsAcked = true
      return
    }
    if (payload.length % 6 !== 0) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS not a multiple of 6 bytes")
    for (let i = 0; i < payload.length; i += 6) {
      const id = payload.readUInt16BE(i)
      const value = payload.readUInt32BE(i + 2)
      switch (id) {
        case Setting.ENABLE_PUSH:
          if (value > 1) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "SETTINGS_ENABLE_PUSH not 0 or 1")
          break
        case Setting.INITIAL_WINDOW_SIZE: {
          if (value > MaxWindow) throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "SETTINGS_INITIAL_WINDOW_SIZE over 2^31-1")
          // Every open stream's window moves by the change (6.9.2).
          const delta = value - this.peerInitialWindow
          this.peerInitialWindow = value
          for (const stream of this.streams.values()) {
            stream.sendWindow += delta
            if (stream.sendWindow > MaxWindow) throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "a stream window over 2^31-1")
          }
          break
        }
        case Setting.MAX_FRAME_SIZE:
          if (value < MaxFrameSize || value > 16_777_215) {
            throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "SETTINGS_MAX_FRAME_SIZE out of range")
          }
          this.peerMaxFrameSize = value
          break
        default:
          // HEADER_TABLE_SIZE: our encoder keeps no dynamic table; the rest we need not know.
          break
      }
    }
    this.answer(frame(FrameType.SETTINGS, Flag.ACK, 0, new Uint8Array(0)))
    this.flushData()
  }

  private onPing(flags: number, streamId: number, payload: Buffer) {
    if (streamId !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "PING on a stream")
    if (payload.length !== 8) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "PING not 8 bytes")
    if ((flags & Flag.ACK) === 0) this.answer(frame(FrameType.PING, Flag.ACK, 0, Uint8Array.from(payload)))
  }

  private onGoAway(streamId: number, payload: Buffer) {
    if (streamId !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "GOAWAY on a stream")
    if (payload.length < 8) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "GOAWAY shorter than 8 bytes")
    // A client's GOAWAY: it opens no more streams; those open finish, then we close.
    this.peerGoingAway = true
    if (!this.goingAway) {
      this.goingAway = true
      this.queue(goAway(this.lastStreamId, ErrorCode.NO_ERROR))
    }
    this.endIfDone()
  }

  private onWindowUpdate(streamId: number, payload: Buffer) {
    if (payload.length !== 4) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "WINDOW_UPDATE not 4 bytes")
    const increment = payload.readUInt32BE(0) & 0x7fffffff
    if (streamId === 0) {
      if (increment === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "a WINDOW_UPDATE of 0")
      this.connectionSendWindow += increment
      if (this.connectionSendWindow > MaxWindow) {
        throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "the connection window over 2^31-1")
      }
    } else {
      if (streamId > this.lastStreamId) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE on an idle stream")
      const stream = this.streams.get(streamId)
      if (stream === undefined) return
      if (increment === 0) {
        this.resetStream(stream, ErrorCode.PROTOCOL_ERROR)
        return
      }
      stream.sendWindow += increment
      if (stream.sendWindow > MaxWindow) {
        this.resetStream(stream, ErrorCode.FLOW_CONTROL_ERROR)
        return
      }
    }
    this.flushData()
  }

  // Outgoing

  /** @internal Http2Stream's: HEADERS (and CONTINUATIONs past the peer's frame size). */
  sendHeaders(stream: Http2Stream, headers: ReadonlyArray<HeaderField>, endStream: boolean) {
    const block = encodeHeaders(headers)
    const max = this.peerMaxFrameSize
    let flags = endStream ? Flag.END_STREAM : 0
    let type: number = FrameType.HEADERS
    let offset = 0
    do {
      const end = Math.min(block.length, offset + max)
      this.queue(frame(type, flags | (end === block.length ? Flag.END_HEADERS : 0), stream.id, block.subarray(offset, end)))
      offset = end
      type = FrameType.CONTINUATION
      flags = 0
    } while (offset < block.length)
    this.scheduleFlush()
  }

  /** @internal Http2Stream's: our side has ended (END_STREAM sent). */
  sentEnd(stream: Http2Stream) {
    stream.sendEnded = true
    // The answer is complete while the client still sends: tell it to stop (8.1), and the stream is over.
    if (!stream.receiveEnded) this.resetStream(stream, ErrorCode.NO_ERROR)
    else this.closeStream(stream)
  }

  /** @internal Http2Stream's, and on protocol errors of one stream: RST_STREAM, and the stream is over. */
  resetStream(stream: Http2Stream, code: number) {
    this.resetId(stream.id, code)
    this.closeStream(stream)
  }

  private resetId(streamId: number, code: number) {
    const payload = new Uint8Array(4)
    new DataView(payload.buffer).setUint32(0, code)
    this.queue(frame(FrameType.RST_STREAM, 0, streamId, payload))
    this.scheduleFlush()
  }

  private closeStream(stream: Http2Stream) {
    if (stream.closed) return
    stream.closed = true
    stream.queued.length = 0
    this.streams.delete(stream.id)
    stream.events?.close()
    this.endIfDone()
  }

  /**
   * Moves queued DATA (and the trailers after it) into the outbox as far as
   * the peer's windows allow, while the socket keeps up.
   */
  flushData(): void {
    for (const stream of this.streams.values()) {
      while (this.unsent === undefined && stream.queued.length > 0) {
        const window = Math.min(stream.sendWindow, this.connectionSendWindow)
        if (window <= 0) break
        const head = stream.queued[0] as Uint8Array
        const size = Math.min(head.length, window, this.peerMaxFrameSize)
        this.queue(frame(FrameType.DATA, 0, stream.id, head.subarray(0, size)))
        stream.sendWindow -= size
        this.connectionSendWindow -= size
        if (size === head.length) stream.queued.shift()
        else stream.queued[0] = head.subarray(size)
        // Big answers go out as they are cut, not all at once at the end.
        if (this.outboxBytes >= 1 << 18) this.flush()
      }
      if (stream.queued.length === 0 && stream.trailers !== undefined && !stream.sendEnded) {
        this.sendHeaders(stream, stream.trailers, true)
        this.sentEnd(stream)
      }
    }
    this.scheduleFlush()
  }

  /** A frame owed to the peer (a PING or SETTINGS ack): refused when the peer is not reading what we send. */
  private answer(bytes: Uint8Array) {
    if (this.outboxBytes + (this.unsent?.length ?? 0) > MaxUnansweredBytes) {
      throw new ConnectionError(ErrorCode.ENHANCE_YOUR_CALM, "the peer sends control frames without reading the answers")
    }
    this.queue(bytes)
  }

  private queue(bytes: Uint8Array) {
    if (this.ended) return
    this.outbox.push(bytes)
    this.outboxBytes += bytes.length
  }

  private scheduleFlush() {
    if (this.flushScheduled || this.ended) return
    this.flushScheduled = true
    queueMicrotask(() => {
      this.flushScheduled = false
      this.flush()
    })
  }

  /** Gives the socket what it takes of the outbox in one write; it keeps the rest until `drain`. */
  private flush() {
    if (this.unsent !== undefined || this.closedFired) return
    if (this.outbox.length === 0) {
      this.endIfDone()
      return
    }
    const bytes = this.outbox.length === 1 ? this.outbox[0] as Uint8Array : Buffer.concat(this.outbox)
    this.outbox = []
    this.outboxBytes = 0
    const taken = this.connection.write(bytes)
    if (taken < 0) return
    if (taken < bytes.length) this.unsent = bytes.subarray(taken)
    else this.endIfDone()
  }

  private drained() {
    const unsent = this.unsent
    if (unsent === undefined) return
    const taken = this.connection.write(unsent)
    if (taken < 0) return
    if (taken < unsent.length) {
      this.unsent = unsent.subarray(taken)
      return
    }
    this.unsent = undefined
    this.flushData()
    this.flush()
  }

  /** After GOAWAY: ends the connection once no stream is open and everything is written. */
  private endIfDone() {
    if (!this.goingAway || this.ended || this.streams.size > 0) return
    if (this.outbox.length > 0 || this.unsent !== undefined) {
      this.scheduleFlush()
      return
    }
    this.ended = true
    this.connection.end()
  }

  /** A connection error: GOAWAY with its code, what was queued and it sent, and the connection ended. */
  private fail(code: number, message: string) {
    if (this.ended) return
    const debug = Uint8Array.from(message.slice(0, 256), (c) => c.charCodeAt(0) & 0xff)
    this.outbox = []
    this.outboxBytes = 0
    this.goingAway = true
    this.queue(goAway(this.lastStreamId, code, debug))
    for (const stream of [...this.streams.values()]) this.closeStream(stream)
    // Half a frame still with us: the GOAWAY cannot follow it, so the connection just goes.
    if (this.unsent !== undefined) {
      this.ended = true
      this.connection.terminate()
      return
    }
    this.flush()
    if (this.ended) return
    this.ended = true
    this.connection.end()
  }

  private closedByPeer() {
    this.ended = true
    this.unsent = undefined
    this.outbox = []
    for (const stream of [...this.streams.values()]) this.closeStream(stream)
    if (this.closedFired) return
    this.closedFired = true
    for (const listener of this.closeListeners.splice(0)) listener()
  }
}

/** A frame: the 9-byte header (4.1) and the payload, in one buffer. */
export const frame = (type: number, flags: number, streamId: number, payload: Uint8Array): Uint8Array => {
  const out = new Uint8Array(9 + payload.length)
  out[0] = payload.length >>> 16
  out[1] = (payload.length >>> 8) & 0xff
  out[2] = payload.length & 0xff
  out[3] = type
  out[4] = flags
  new DataView(out.buffer).setUint32(5, streamId & 0x7fffffff)
  out.set(payload, 9)
  return out
}

const settingsPayload = (settings: ReadonlyArray<readonly [number, number]>) => {
  const out = new Uint8Array(6 * settings.length)
  const view = new DataView(out.buffer)
  settings.forEach(([id, value], i) => {
    view.setUint16(6 * i, id)
    view.setUint32(6 * i + 2, value)
  })
  return out
}

const windowUpdate = (streamId: number, increment: number) => {
  const payload = new Uint8Array(4)
  new DataView(payload.buffer).setUint32(0, increment)
  return frame(FrameType.WINDOW_UPDATE, 0, streamId, payload)
}

const goAway = (lastStreamId: number, code: number, debug: Uint8Array = new Uint8Array(0)) => {
  const payload = new Uint8Array(8 + debug.length)
  const view = new DataView(payload.buffer)
  view.setUint32(0, lastStreamId)
  view.setUint32(4, code)
  payload.set(debug, 8)
  return frame(FrameType.GOAWAY, 0, 0, payload)
}

/** A DATA or HEADERS payload without its padding (6.1); padding as long as the payload is a protocol error. */
const unpad = (flags: number, payload: Buffer): Buffer => {
  if ((flags & Flag.PADDED) === 0) return payload
  if (payload.length < 1) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "a padded frame without its pad length")
  const padding = payload[0] as number
  if (padding >= payload.length) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "padding as long as the frame")
  return payload.subarray(1, payload.length - padding)
}

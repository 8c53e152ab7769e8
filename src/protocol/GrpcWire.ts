/**
 * gRPC over HTTP/2 as both ends of a plugin connection write it
 * (grpc/grpc's PROTOCOL-HTTP2.md): status codes, the five-byte message
 * prefix, and the percent-encoding of grpc-message. Pure: no I/O here.
 */

/** The gRPC status codes halkyon's client and the SDK's server use. */
export const Status = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16
} as const

/** The largest message either side accepts, as gRPC's own default. */
export const MaxMessageBytes = 4 * 1024 * 1024

/** Frames one message: compressed flag (0), 4-byte big-endian length, bytes. */
export const frame = (message: Uint8Array): Buffer => {
  const out = Buffer.allocUnsafe(5 + message.length)
  out[0] = 0
  out.writeUInt32BE(message.length, 1)
  out.set(message, 5)
  return out
}

/** Why an incoming byte stream is not gRPC messages we can read. */
export class FramingError extends Error {}

/**
 * Splits an incoming byte stream into messages as they complete. Chunks are
 * kept as they arrive and each message is copied out once, when its last
 * byte is in: reassembly is linear in the bytes received, however small the
 * chunks (concatenating at every chunk was quadratic).
 */
export class MessageReader {
  private chunks: Array<Buffer> = []
  /** Index of the first chunk not yet consumed. */
  private head = 0
  /** Bytes held in chunks[head..]. */
  private held = 0
  /** The length of the message whose prefix was read, until it completes. */
  private expected: number | undefined
  /** Bytes copied while reassembling, in all: at most once each byte received. */
  copiedBytes = 0

  /** The messages the chunk completes; throws FramingError on a compressed or oversized message. */
  push(chunk: Buffer): Array<Uint8Array> {
    if (chunk.length > 0) {
      this.chunks.push(chunk)
      this.held += chunk.length
    }
    const messages: Array<Uint8Array> = []
    for (;;) {
      if (this.expected === undefined) {
        if (this.held < 5) break
        const prefix = this.take(5)
        // Neither side negotiates compression, so a compressed message is a peer's mistake.
        if (prefix[0] !== 0) throw new FramingError("a compressed message, though no compression was negotiated")
        const size = prefix.readUInt32BE(1)
        if (size > MaxMessageBytes) throw new FramingError(`a message of ${size} bytes, over the ${MaxMessageBytes}-byte limit`)
        this.expected = size
      }
      if (this.held < this.expected) break
      messages.push(this.take(this.expected))
      this.expected = undefined
    }
    return messages
  }

  /** Bytes of a message not yet complete (its prefix included). */
  get pending(): number {
    return this.held + (this.expected === undefined ? 0 : 5)
  }

  /** The next `n` bytes held, in a buffer of their own, consumed. */
  private take(n: number): Buffer {
    const out = Buffer.allocUnsafe(n)
    let filled = 0
    while (filled < n) {
      const chunk = this.chunks[this.head] as Buffer
      const count = Math.min(chunk.length, n - filled)
      chunk.copy(out, filled, 0, count)
      filled += count
      if (count === chunk.length) this.chunks[this.head++] = EmptyBuffer
      else this.chunks[this.head] = chunk.subarray(count)
    }
    this.held -= n
    this.copiedBytes += n
    if (this.head === this.chunks.length) {
      this.chunks = []
      this.head = 0
    } else if (this.head > 1024 && this.head * 2 > this.chunks.length) {
      this.chunks = this.chunks.slice(this.head)
      this.head = 0
    }
    return out
  }
}

const EmptyBuffer = Buffer.alloc(0)

/** gRPC's percent-encoding of grpc-message: printable ASCII except `%` passes. */
export const encodeGrpcMessage = (message: string): string =>
  Array.from(Buffer.from(message, "utf8"))
    .map((b) => (b >= 0x20 && b <= 0x7e && b !== 0x25 ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, "0")}`))
    .join("")

/** The reverse; a malformed escape is kept as it is, as gRPC's own decoders do. */
export const decodeGrpcMessage = (encoded: string): string => {
  if (!encoded.includes("%")) return encoded
  const bytes: Array<number> = []
  for (let i = 0; i < encoded.length; i++) {
    const hex = encoded.slice(i + 1, i + 3)
    if (encoded[i] === "%" && /^[0-9A-Fa-f]{2}$/.test(hex)) {
      bytes.push(Number.parseInt(hex, 16))
      i += 2
    } else {
      bytes.push(...Buffer.from(encoded[i] ?? "", "utf8"))
    }
  }
  return Buffer.from(bytes).toString("utf8")
}

/** The gRPC code for a response whose HTTP status is not 200 (PROTOCOL-HTTP2.md's table). */
export const codeForHttpStatus = (status: number): number => {
  switch (status) {
    case 400:
      return Status.INTERNAL
    case 401:
      return Status.UNAUTHENTICATED
    case 403:
      return Status.PERMISSION_DENIED
    case 404:
      return Status.UNIMPLEMENTED
    case 429:
    case 502:
    case 503:
    case 504:
      return Status.UNAVAILABLE
    default:
      return Status.UNKNOWN
  }
}

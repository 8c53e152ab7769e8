/**
 * What bounds a plugin's output in the operator: lines split from a byte
 * stream with a length cap (the rest of an over-long line is counted and
 * dropped, never held), and a per-plugin rate limit on the lines relayed into
 * the operator's log. Pure: the caller feeds bytes and timestamps.
 *
 * It does not log: PluginProcess relays what comes out.
 */

/** The longest handshake line a plugin may print. */
export const MaxHandshakeLineBytes = 16 * 1024
/** The longest log line relayed; longer ones are cut and marked. */
export const MaxLogLineBytes = 64 * 1024

export interface Line {
  readonly text: string
  /** Bytes of the line past the cap, dropped. */
  readonly truncatedBytes: number
}

/** The line as relayed: cut lines say how much was cut. */
export const lineText = (line: Line): string =>
  line.truncatedBytes === 0 ? line.text : `${line.text}… [truncated ${line.truncatedBytes} bytes]`

const decoder = new TextDecoder()

/**
 * Splits bytes into lines at `\n` (a `\r` before it is dropped), keeping at
 * most `maxBytes` of each line: memory stays under that cap whatever a
 * plugin writes, with or without newlines.
 */
export class BoundedLines {
  private parts: Array<Uint8Array> = []
  private kept = 0
  private dropped = 0

  constructor(public maxBytes: number) {}

  /** The lines the chunk completes. */
  push(chunk: Uint8Array): Array<Line> {
    const lines: Array<Line> = []
    let start = 0
    for (;;) {
      const newline = chunk.indexOf(0x0a, start)
      const end = newline === -1 ? chunk.length : newline
      this.keep(chunk.subarray(start, end))
      if (newline === -1) break
      lines.push(this.finish())
      start = newline + 1
    }
    return lines
  }

  /** The last line when the stream ends without a newline, if any. */
  end(): Line | undefined {
    return this.kept === 0 && this.dropped === 0 ? undefined : this.finish()
  }

  /** Whether the line in progress is already over the cap. */
  get overflowing(): boolean {
    return this.dropped > 0
  }

  /** The start of the line in progress (its first `maxBytes` bytes), for evidence; "" when none. */
  partial(maxBytes: number): string {
    let text = ""
    let left = maxBytes
    for (const part of this.parts) {
      if (left <= 0) break
      text += decoder.decode(part.subarray(0, left), { stream: true })
      left -= part.length
    }
    return text + decoder.decode()
  }

  /** Bytes held for the line in progress: never more than the cap. */
  get held(): number {
    return this.kept
  }

  private keep(bytes: Uint8Array) {
    const room = this.maxBytes - this.kept
    if (bytes.length <= room) {
      if (bytes.length > 0) this.parts.push(bytes.slice())
      this.kept += bytes.length
      return
    }
    if (room > 0) this.parts.push(bytes.slice(0, room))
    this.kept += Math.max(room, 0)
    this.dropped += bytes.length - Math.max(room, 0)
  }

  private finish(): Line {
    let bytes: Uint8Array
    if (this.parts.length === 1) bytes = this.parts[0] as Uint8Array
    else {
      bytes = new Uint8Array(this.kept)
      let at = 0
      for (const part of this.parts) {
        bytes.set(part, at)
        at += part.length
      }
    }
    let text = decoder.decode(bytes)
    if (this.dropped === 0 && text.endsWith("\r")) text = text.slice(0, -1)
    const line = { text, truncatedBytes: this.dropped }
    this.parts = []
    this.kept = 0
    this.dropped = 0
    return line
  }
}

/** Lines a plugin may relay per second on average, and in a burst. */
export const LogLinesPerSecond = 200
export const LogLinesBurst = 400

/**
 * A token bucket over a plugin's log lines: `admit` says whether a line is
 * relayed, and counts those that are not until `takeDropped` reports them.
 */
export class LogRateLimit {
  private tokens: number
  private last: number | undefined
  private droppedSince = 0

  constructor(readonly perSecond = LogLinesPerSecond, readonly burst = LogLinesBurst) {
    this.tokens = burst
  }

  /** Whether a line seen at `nowMs` may be relayed. */
  admit(nowMs: number): boolean {
    if (this.last !== undefined) this.tokens = Math.min(this.burst, this.tokens + ((nowMs - this.last) / 1000) * this.perSecond)
    this.last = nowMs
    if (this.tokens >= 1) {
      this.tokens -= 1
      return true
    }
    this.droppedSince += 1
    return false
  }

  /** Lines dropped since the last call, reset to zero. */
  takeDropped(): number {
    const n = this.droppedSince
    this.droppedSince = 0
    return n
  }
}

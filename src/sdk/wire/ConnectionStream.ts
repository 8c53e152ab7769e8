/**
 * A listener's Connection as a node:stream Duplex, which is what node:http2
 * serves: `server.emit("connection", new ConnectionStream(connection))`.
 *
 * node:stream is loaded after the handshake, with node:http2, and so it is
 * imported dynamically: Bun's bundler hoists the static imports of builtins
 * out of lazily loaded modules to the top of the bundle, where a static
 * `import { Duplex } from "node:stream"` here would load it before the
 * handshake (docs/performance.md). The socket is Bun's (Listener.ts), so TLS, when on, is
 * already done below this stream: HTTP/2 sees plain bytes.
 *
 * Writes: Bun's socket.write is unbuffered and says how many bytes it took.
 * The rest is kept and written on `drain`, and a write's callback runs only
 * once all its bytes are with the socket, so node:stream's own buffering
 * (and the HTTP/2 session above it) sees real backpressure. Reads are pushed
 * as they come: HTTP/2 flow control already bounds what a peer may send
 * ahead of the session reading it.
 */
import type { Duplex } from "node:stream"
import type { Connection } from "./Listener.ts"

type Written = (error?: Error | null) => void

/** What `loadConnectionStream` gives: a Duplex made from a Connection. */
export type ConnectionStreamClass = new(connection: Connection) => Duplex

/** Loads node:stream and defines the bridge on its Duplex. */
export const loadConnectionStream = async (): Promise<ConnectionStreamClass> => {
  const { Duplex } = await import("node:stream")
  return class ConnectionStream extends Duplex {
    private unsent: Uint8Array | undefined
    private written: Written | undefined

    constructor(private readonly connection: Connection) {
      // A connection is not half-open: when the peer ends, so do we.
      super({ allowHalfOpen: false })
      // The session learns of a failed connection by its close; an 'error'
      // nobody listens to would take the whole plugin down.
      this.on("error", () => {})
      connection.attach({
        data: (bytes) => {
          if (!this.destroyed) this.push(bytes)
        },
        drain: () => this.flush(),
        close: (error) => {
          if (this.destroyed) return
          this.push(null)
          this.destroy(error)
        }
      })
    }

    override _read(): void {}

    override _write(chunk: Buffer, _encoding: BufferEncoding, written: Written): void {
      this.send(chunk, written)
    }

    // HTTP/2 writes frame by frame: one socket write for what has piled up.
    override _writev(chunks: Array<{ chunk: Buffer }>, written: Written): void {
      this.send(chunks.length === 1 ? (chunks[0] as { chunk: Buffer }).chunk : Buffer.concat(chunks.map((c) => c.chunk)), written)
    }

    // Called once every write has been taken by the socket.
    override _final(done: Written): void {
      this.connection.end()
      done()
    }

    override _destroy(error: Error | null, done: Written): void {
      const written = this.written
      this.unsent = undefined
      this.written = undefined
      // Destroyed without an error (a session that is done): what was written
      // still goes out before the FIN. With one: the connection is dropped.
      if (error === null) this.connection.end()
      else this.connection.terminate()
      written?.(error ?? closedError())
      done(error)
    }

    private send(bytes: Uint8Array, written: Written) {
      const taken = this.connection.write(bytes)
      if (taken < 0) written(closedError())
      else if (taken >= bytes.length) written()
      else {
        this.unsent = bytes.subarray(taken)
        this.written = written
      }
    }

    private flush() {
      const unsent = this.unsent
      const written = this.written
      if (unsent === undefined || written === undefined) return
      const taken = this.connection.write(unsent)
      if (taken >= 0 && taken < unsent.length) {
        this.unsent = unsent.subarray(taken)
        return
      }
      this.unsent = undefined
      this.written = undefined
      written(taken < 0 ? closedError() : undefined)
    }
  }
}

const closedError = () => new Error("the connection is closed")

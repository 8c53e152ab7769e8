/**
 * A small gRPC server on node:http2, for plugins.
 *
 * Why not @grpc/grpc-js here: a plugin is started for every host start and
 * every restart, and loading grpc-js (with protobufjs) costs a bundled plugin
 * more start-up time than the whole rest of the plugin. The server side of
 * gRPC over HTTP/2 is small: length-prefixed messages in DATA frames, the
 * status in trailers (protocol/GrpcWire.ts, shared with the host's client,
 * which every test runs against this server; issue #6's conformance suite
 * checks it against go-plugin's own Go client).
 *
 * It does not do compression, and it does not enforce deadlines (the client
 * does; a plugin's work is short).
 *
 * It is loaded, and node:http2 with it, after the plugin's handshake: the
 * socket is opened before (Listener.ts, Bun.listen), and `serve` hands every
 * connection to node:http2 through a Duplex (ConnectionStream.ts), those
 * that came in the meantime first.
 */
import type * as http2 from "node:http2"
import { encodeGrpcMessage, FramingError, frame, MessageReader, Status } from "../../protocol/GrpcWire.ts"
import type { Method } from "../../protocol/Rpc.ts"
import { loadConnectionStream } from "./ConnectionStream.ts"
import type { Listener } from "./Listener.ts"

/** An error a handler throws to answer with a given status. */
export class GrpcError extends Error {
  constructor(readonly code: number, message: string, readonly metadata: Record<string, string> = {}) {
    super(message)
  }
}

/** An open server stream: the handler sends messages until it ends or the client goes. */
export interface ServerStream<O> {
  send(message: O): void
  end(): void
  readonly closed: Promise<void>
}

type Route =
  | { readonly kind: "unary"; readonly handle: (body: Uint8Array) => Promise<Uint8Array> }
  | { readonly kind: "stream"; readonly open: (body: Uint8Array | undefined, stream: RawStream) => void }

interface RawStream {
  send(message: Uint8Array): void
  end(): void
  readonly closed: Promise<void>
}

/** gRPC status codes, for handlers that throw a GrpcError. */
export { Status }

export class GrpcServer {
  private readonly routes = new Map<string, Route>()
  private readonly streams = new Set<http2.ServerHttp2Stream>()
  private readonly sessions = new Set<http2.ServerHttp2Session>()
  private listener: Listener | undefined

  /** Registers a unary method. */
  unary<I, O>(method: Method<I, O>, handle: (request: I) => Promise<O> | O): this {
    this.routes.set(method.path, {
      kind: "unary",
      handle: async (body) => method.response.encode(await handle(method.request.decode(body))).finish()
    })
    return this
  }

  /** Registers a server-streaming or bidi method; the handler owns the stream. */
  stream<I, O>(method: Method<I, O>, open: (request: I | undefined, stream: ServerStream<O>) => void): this {
    this.routes.set(method.path, {
      kind: "stream",
      open: (body, raw) =>
        open(body === undefined ? undefined : method.request.decode(body), {
          send: (message) => raw.send(method.response.encode(message).finish()),
          end: () => raw.end(),
          closed: raw.closed
        })
    })
    return this
  }

  /**
   * Loads node:http2 and serves every connection of `listener` (opened
   * before the handshake), those that waited first. Register routes before.
   */
  async serve(listener: Listener): Promise<void> {
    this.listener = listener
    const [http2, ConnectionStream] = await Promise.all([import("node:http2"), loadConnectionStream()])
    const server = http2.createServer()
    this.serveOn(server)
    listener.serve((connection) => server.emit("connection", new ConnectionStream(connection)))
  }

  /**
   * Ends open streams with OK, closes the sessions, stops accepting, and
   * resolves once every connection has closed (a session closes its own).
   */
  close(): Promise<void> {
    // Open streams already answer OK in their trailers: ending them sends it.
    for (const stream of this.streams) if (!stream.closed && !stream.destroyed) stream.end()
    for (const session of this.sessions) if (!session.closed) session.close()
    return this.listener?.close() ?? Promise.resolve()
  }

  private serveOn(server: http2.Http2Server) {
    server.on("stream", (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => this.dispatch(stream, headers))
    server.on("session", (session: http2.ServerHttp2Session) => {
      this.sessions.add(session)
      session.once("close", () => this.sessions.delete(session))
    })
    server.on("sessionError", () => {})
  }

  private dispatch(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) {
    stream.on("error", () => {})
    const route = this.routes.get(String(headers[":path"]))
    if (route === undefined) {
      endStream(stream, Status.UNIMPLEMENTED, `unknown method ${String(headers[":path"])}`)
      return
    }
    const reader = new MessageReader()
    if (route.kind === "unary") {
      const received: Array<Uint8Array> = []
      stream.on("data", (chunk: Buffer) => {
        try {
          received.push(...reader.push(chunk))
        } catch (error) {
          endStream(stream, Status.INTERNAL, error instanceof FramingError ? `the host sent ${error.message}` : String(error))
        }
      })
      stream.on("end", () => {
        const body = received[0]
        if (body === undefined) {
          endStream(stream, Status.INTERNAL, "no request message")
          return
        }
        route.handle(body).then(
          (response) => {
            if (stream.closed) return
            stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true })
            stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }))
            stream.end(frame(response))
          },
          (error: unknown) => {
            const { code, message, metadata } = error instanceof GrpcError
              ? error
              : { code: Status.INTERNAL, message: `plugin error: ${String(error instanceof Error ? error.message : error)}`, metadata: {} }
            endStream(stream, code, message, metadata)
          }
        )
      })
      return
    }
    this.streams.add(stream)
    const closed = new Promise<void>((resolve) => stream.once("close", () => {
      this.streams.delete(stream)
      resolve()
    }))
    stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true })
    stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }))
    let opened = false
    const raw: RawStream = {
      send: (message) => {
        if (!stream.closed && !stream.destroyed) stream.write(frame(message))
      },
      end: () => {
        if (!stream.closed && !stream.destroyed) stream.end()
      },
      closed
    }
    // Server streams start on their one request; bidi streams start at once.
    stream.on("data", (chunk: Buffer) => {
      let messages: Array<Uint8Array>
      try {
        messages = reader.push(chunk)
      } catch {
        // A compressed or oversized message: its status was sent already, so the stream is reset.
        stream.close()
        return
      }
      for (const message of messages) {
        if (!opened) {
          opened = true
          route.open(message, raw)
        }
      }
    })
    stream.on("end", () => {
      if (!opened) {
        opened = true
        route.open(undefined, raw)
      }
    })
  }
}

const endStream = (stream: http2.ServerHttp2Stream, code: number, message: string, metadata: Record<string, string> = {}) => {
  if (stream.closed || stream.destroyed) return
  const status = { "grpc-status": String(code), ...(message === "" ? {} : { "grpc-message": encodeGrpcMessage(message) }), ...metadata }
  // Trailers-only response: the status travels in the headers.
  stream.respond({ ":status": 200, "content-type": "application/grpc", ...status }, { endStream: true })
}

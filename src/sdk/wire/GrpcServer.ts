/**
 * A small gRPC server for plugins, on our own HTTP/2 (Http2Session.ts).
 *
 * Why not @grpc/grpc-js here: a plugin is started for every host start and
 * every restart, and loading grpc-js (with protobufjs) costs a bundled plugin
 * more start-up time than the whole rest of the plugin. Why not node:http2
 * either: its server (with node:stream under it) costs a plugin about a
 * fifth of its memory once ready (docs/performance.md). The server side of
 * gRPC over HTTP/2 is small: length-prefixed messages in DATA frames, the
 * status in trailers (protocol/GrpcWire.ts, shared with the host's client,
 * which every test runs against this server; issue #6's conformance suite
 * checks it against go-plugin's own Go client).
 *
 * It does not do compression, and it does not enforce deadlines (the client
 * does; a plugin's work is short).
 *
 * It is loaded after the plugin's handshake: the socket is opened before
 * (Listener.ts, Bun.listen), and `serve` runs an HTTP/2 session on every
 * connection, those that came in the meantime first.
 */
import { encodeGrpcMessage, FramingError, frame, MessageReader, Status } from "../../protocol/GrpcWire.ts"
import type { Method } from "../../protocol/Rpc.ts"
import type { HeaderField } from "./Hpack.ts"
import { Http2Session, type Http2Stream } from "./Http2Session.ts"
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

const ResponseHeaders: ReadonlyArray<HeaderField> = [[":status", "200"], ["content-type", "application/grpc"]]
const OkTrailers: ReadonlyArray<HeaderField> = [["grpc-status", "0"]]

export class GrpcServer {
  private readonly routes = new Map<string, Route>()
  private readonly streams = new Set<Http2Stream>()
  private readonly sessions = new Set<Http2Session>()
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
   * Serves every connection of `listener` (opened before the handshake),
   * those that waited first. Register routes before.
   */
  serve(listener: Listener): Promise<void> {
    this.listener = listener
    listener.serve((connection) => {
      const session = new Http2Session(connection, (stream) => this.dispatch(stream))
      this.sessions.add(session)
      session.onClose(() => this.sessions.delete(session))
    })
    return Promise.resolve()
  }

  /**
   * Ends open streams with OK, sends every session GOAWAY, stops accepting,
   * and resolves once every connection has closed (a session closes its own
   * once its streams are over).
   */
  close(): Promise<void> {
    for (const stream of this.streams) stream.end(OkTrailers)
    for (const session of this.sessions) session.close()
    return this.listener?.close() ?? Promise.resolve()
  }

  private dispatch(stream: Http2Stream) {
    const path = stream.header(":path") ?? ""
    const route = this.routes.get(path)
    if (route === undefined) {
      endStream(stream, Status.UNIMPLEMENTED, `unknown method ${path}`)
      return
    }
    const reader = new MessageReader()
    if (route.kind === "unary") {
      let body: Uint8Array | undefined
      let failed = false
      stream.events = {
        data: (chunk) => {
          if (failed) return
          try {
            // The first message is the request; a unary call has no other.
            for (const message of reader.push(chunk)) body ??= message
          } catch (error) {
            failed = true
            endStream(stream, Status.INTERNAL, error instanceof FramingError ? `the host sent ${error.message}` : String(error))
          }
        },
        end: () => {
          if (failed) return
          if (body === undefined) {
            endStream(stream, Status.INTERNAL, "no request message")
            return
          }
          route.handle(body).then(
            (response) => {
              if (stream.closed) return
              stream.respond(ResponseHeaders)
              stream.write(frame(response))
              stream.end(OkTrailers)
            },
            (error: unknown) => {
              const { code, message, metadata } = error instanceof GrpcError
                ? error
                : {
                  code: Status.INTERNAL,
                  message: `plugin error: ${String(error instanceof Error ? error.message : error)}`,
                  metadata: {}
                }
              endStream(stream, code, message, metadata)
            }
          )
        },
        close: () => {}
      }
      return
    }
    this.streams.add(stream)
    const { promise: closed, resolve: closedNow } = Promise.withResolvers<void>()
    stream.respond(ResponseHeaders)
    let opened = false
    const raw: RawStream = {
      send: (message) => stream.write(frame(message)),
      end: () => stream.end(OkTrailers),
      closed
    }
    // Server streams start on their one request; bidi streams start at once.
    stream.events = {
      data: (chunk) => {
        let messages: Array<Uint8Array>
        try {
          messages = reader.push(chunk)
        } catch {
          // A compressed or oversized message: the stream cannot go on.
          stream.reset()
          return
        }
        for (const message of messages) {
          if (!opened) {
            opened = true
            route.open(message, raw)
          }
        }
      },
      end: () => {
        if (!opened) {
          opened = true
          route.open(undefined, raw)
        }
      },
      close: () => {
        this.streams.delete(stream)
        closedNow()
      }
    }
  }
}

const endStream = (stream: Http2Stream, code: number, message: string, metadata: Record<string, string> = {}) => {
  const status: Array<HeaderField> = [
    ...ResponseHeaders,
    ["grpc-status", String(code)],
    ...(message === "" ? [] : [["grpc-message", encodeGrpcMessage(message)] as const]),
    ...Object.entries(metadata).map(([name, value]) => [name.toLowerCase(), value] as const)
  ]
  // Trailers-only response: the status travels in the headers.
  stream.respond(status, true)
}

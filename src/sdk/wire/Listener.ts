/**
 * The plugin's listening socket, opened before the handshake with Bun.listen.
 *
 * Why Bun.listen: it is part of the runtime, where node:net is a module to
 * load and node:http2's secure server a larger one, so a plugin that listens
 * with it prints its handshake sooner, compiled or run as a bundle (figures:
 * docs/performance.md). With AutoMTLS, Bun's own TLS (BoringSSL, as
 * node:tls) does the handshake and the client certificate check, so nothing
 * else is needed to listen either.
 *
 * This module loads no node: builtin, nor does the HTTP/2 server that takes
 * its connections (Http2Session.ts). Connections that arrive before the
 * server is ready for them (the handshake is out first, then HTTP/2 loads)
 * wait with their bytes kept, and are handed over in order by `serve`.
 */

/** Where and how to listen. */
export interface ListenOptions {
  readonly unixSocket?: string
  readonly tcp?: { readonly host: string; readonly minPort: number; readonly maxPort: number }
  readonly tls?: { readonly certPem: string; readonly keyPem: string; readonly clientCaPem: string }
}

/** What goes into the handshake line. */
export interface Address {
  readonly network: "unix" | "tcp"
  readonly address: string
}

/** What the owner of a connection hears from it. */
export interface ConnectionEvents {
  data(bytes: Uint8Array): void
  /** The socket took all it was given before: write again. */
  drain(): void
  /** The peer went, the connection failed or it was closed; nothing follows. */
  close(error?: Error): void
}

/** One accepted connection: bytes out through `write`, the rest through the events of whoever `attach`es. */
export interface Connection {
  /**
   * Writes as much of `bytes` as the socket takes now and says how much that
   * was (-1 once it is closed): the rest is the caller's to keep and write on
   * `drain`. Bun's socket writes are unbuffered.
   */
  write(bytes: Uint8Array): number
  /** Ends our side once what was written is sent. */
  end(): void
  /** Closes at once, dropping whatever is unsent. */
  terminate(): void
  /** Starts delivering to `events`: first the bytes received so far, then a close that already happened. */
  attach(events: ConnectionEvents): void
}

type BunSocket = import("bun").Socket<SocketConnection | undefined>

/** A Connection fed by the listener's socket handlers. */
class SocketConnection implements Connection {
  private held: Array<Uint8Array> | undefined = []
  private events: ConnectionEvents | undefined
  private closedWith: { readonly error: Error | undefined } | undefined

  constructor(private readonly socket: BunSocket) {}

  write(bytes: Uint8Array): number {
    return this.socket.write(bytes)
  }

  end(): void {
    this.socket.end()
  }

  terminate(): void {
    this.socket.terminate()
  }

  attach(events: ConnectionEvents): void {
    this.events = events
    const held = this.held ?? []
    this.held = undefined
    for (const bytes of held) events.data(bytes)
    if (this.closedWith !== undefined) events.close(this.closedWith.error)
  }

  /** How many bytes are kept for whoever attaches (0 once someone has). */
  get heldBytes(): number {
    return (this.held ?? []).reduce((sum, bytes) => sum + bytes.byteLength, 0)
  }

  /** Bytes from the peer: kept until someone attaches (Bun hands each `data` call a fresh buffer). */
  received(bytes: Uint8Array): void {
    if (this.events === undefined) this.held?.push(bytes)
    else this.events.data(bytes)
  }

  drained(): void {
    this.events?.drain()
  }

  closed(error: Error | undefined): void {
    if (this.closedWith !== undefined) return
    this.closedWith = { error }
    this.events?.close(error)
  }
}

/**
 * BoringSSL's SSL_OP_NO_TLSv1 | SSL_OP_NO_TLSv1_1: TLS 1.2 at least, as
 * go-plugin requires. Bun's default already refuses older versions; this
 * says so rather than relying on it (Bun's TLS options have no minVersion).
 */
const NoTlsBelow12 = 0x04000000 | 0x10000000

/** ALPN "h2" in TLS wire format (length-prefixed): Bun.listen takes it as is. */
const AlpnH2 = "\x02h2"

export class Listener {
  private readonly connections = new Set<SocketConnection>()
  private readonly pending: Array<SocketConnection> = []
  private accept: ((connection: Connection) => void) | undefined
  private stopped = false
  private allClosed: (() => void) | undefined

  private constructor(private readonly socket: import("bun").SocketListener<SocketConnection | undefined>, readonly address: Address) {}

  /** Listens on the unix socket, or on a free port of the TCP range (go-plugin's PLUGIN_MIN_PORT..PLUGIN_MAX_PORT). */
  static open(options: ListenOptions): Listener {
    // Set before any handler runs: Bun calls them from the event loop, after this returns.
    let listener: Listener | undefined
    const handlers = socketHandlers(options.tls !== undefined, {
      opened: (connection) => listener?.opened(connection),
      closed: (connection) => listener?.closed(connection)
    })
    const tls = options.tls === undefined
      ? undefined
      : {
        cert: options.tls.certPem,
        key: options.tls.keyPem,
        // The host's certificate is the only CA: exactly that peer is trusted.
        ca: options.tls.clientCaPem,
        requestCert: true,
        rejectUnauthorized: true,
        secureOptions: NoTlsBelow12,
        ALPNProtocols: AlpnH2
      }
    if (options.unixSocket !== undefined) {
      const socket = Bun.listen<SocketConnection | undefined>({ unix: options.unixSocket, tls, socket: handlers, data: undefined })
      listener = new Listener(socket, { network: "unix", address: options.unixSocket })
      return listener
    }
    const tcp = options.tcp ?? { host: "127.0.0.1", minPort: 0, maxPort: 0 }
    let taken: unknown
    for (const port of portsToTry(tcp.minPort, tcp.maxPort)) {
      try {
        const socket = Bun.listen<SocketConnection | undefined>({ hostname: tcp.host, port, tls, socket: handlers, data: undefined })
        listener = new Listener(socket, { network: "tcp", address: `${tcp.host}:${socket.port}` })
        return listener
      } catch (error) {
        if ((error as { code?: unknown }).code !== "EADDRINUSE") throw error
        taken = error
      }
    }
    throw new Error(`no free port on ${tcp.host} between ${tcp.minPort} and ${tcp.maxPort}`, { cause: taken })
  }

  /** Connections opened before `serve` that still wait for it, and the bytes they sent meanwhile. */
  get waiting(): { readonly connections: number; readonly bytes: number } {
    return { connections: this.pending.length, bytes: this.pending.reduce((sum, c) => sum + c.heldBytes, 0) }
  }

  /** Hands every connection to `accept`: those that waited first, in the order they came. */
  serve(accept: (connection: Connection) => void): void {
    if (this.stopped) return
    this.accept = accept
    for (const connection of this.pending.splice(0)) accept(connection)
  }

  /**
   * Stops accepting and closes the connections nobody took; resolves once
   * every connection has closed (the served ones close with their sessions).
   */
  close(): Promise<void> {
    if (!this.stopped) {
      this.stopped = true
      this.socket.stop(false)
      for (const connection of this.pending.splice(0)) connection.terminate()
    }
    if (this.connections.size === 0) return Promise.resolve()
    return new Promise((resolve) => {
      const previous = this.allClosed
      this.allClosed = () => {
        previous?.()
        resolve()
      }
    })
  }

  private opened(connection: SocketConnection) {
    if (this.stopped) {
      connection.terminate()
      return
    }
    this.connections.add(connection)
    if (this.accept === undefined) this.pending.push(connection)
    else this.accept(connection)
  }

  private closed(connection: SocketConnection) {
    this.connections.delete(connection)
    const waiting = this.pending.indexOf(connection)
    if (waiting >= 0) this.pending.splice(waiting, 1)
    if (this.connections.size === 0) {
      const allClosed = this.allClosed
      this.allClosed = undefined
      allClosed?.()
    }
  }
}

/** The ports of the range from a random one on, wrapping around; port 0 (any) when there is no range. */
function* portsToTry(minPort: number, maxPort: number): Generator<number> {
  if (minPort === 0) {
    yield 0
    return
  }
  const count = Math.max(1, maxPort - minPort + 1)
  const first = Math.floor(Math.random() * count)
  for (let i = 0; i < count; i++) yield minPort + ((first + i) % count)
}

/** Bun's socket handlers: one set per listener, each socket's Connection in its `data`. */
const socketHandlers = (
  tls: boolean,
  listener: { readonly opened: (connection: SocketConnection) => void; readonly closed: (connection: SocketConnection) => void }
): import("bun").SocketHandler<SocketConnection | undefined> => ({
  // With TLS and no `handshake` handler, Bun calls `open` once the handshake
  // is over, but also when it failed: a peer whose certificate did not
  // verify is dropped here and never reaches HTTP/2.
  open(socket) {
    if (tls && !socket.authorized) {
      socket.terminate()
      return
    }
    const connection = new SocketConnection(socket)
    socket.data = connection
    listener.opened(connection)
  },
  data(socket, bytes) {
    socket.data?.received(bytes)
  },
  drain(socket) {
    socket.data?.drained()
  },
  close(socket, error) {
    const connection = socket.data
    if (connection === undefined) return
    listener.closed(connection)
    connection.closed(error)
  },
  // A handler that threw, or a TLS session that failed: the connection is
  // done, the plugin is not.
  error(socket, error) {
    const connection = socket.data
    socket.terminate()
    if (connection === undefined) return
    listener.closed(connection)
    connection.closed(error)
  }
})

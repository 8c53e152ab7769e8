/**
 * A gRPC channel to one plugin: one HTTP/2 connection (node:http2) to the
 * address of its handshake, with AutoMTLS when it sent a certificate (the
 * plugin's certificate is then the only trusted root, ours the client
 * certificate, and the name checked is localhost, whatever the socket path,
 * as go-plugin does).
 *
 * Why not @grpc/grpc-js: a reconcile makes three calls, and grpc-js spent
 * several times this client's CPU on each trio (docs/performance.md); its
 * name resolution, load balancing, retries and interceptors are of no use
 * on a private socket.
 * What gRPC asks of a client is small: a POST per call with the message
 * length-prefixed, the status in the trailers (GrpcWire.ts).
 *
 * The connection is made at the first call and made again at the next one
 * after it is lost; the plugin host restarts a plugin that died, so there is
 * no reconnect loop here. A call that cannot be made, or that the connection
 * drops, fails with UNAVAILABLE.
 */
import * as http2 from "node:http2"
import { connect as netConnect, type Socket } from "node:net"
import { connect as tlsConnect } from "node:tls"
import type { Handshake } from "../protocol/Handshake.ts"
import { codeForHttpStatus, decodeGrpcMessage, FramingError, frame, MaxMessageBytes, MessageReader, Status } from "../protocol/GrpcWire.ts"
import { derToPem, type Certificate } from "../protocol/Mtls.ts"
import type { Method } from "../protocol/Rpc.ts"
import { version } from "../Version.ts"

export interface ChannelOptions {
  readonly handshake: Handshake
  /** Our certificate, when AutoMTLS is on. */
  readonly certificate: Certificate | undefined
}

/** A call's gRPC status, when it is not OK. */
export class CallError extends Error {
  constructor(readonly code: number, readonly details: string) {
    super(details)
  }
}

/** An open stream; cancelling it resets it. */
export interface OpenStream {
  readonly cancel: () => void
}

export interface Channel {
  /**
   * One unary call with a deadline: `done` gets the response or a CallError,
   * once. Returns a function that cancels the call.
   */
  readonly unary: <I, O>(method: Method<I, O>, request: I, timeoutMs: number, done: (outcome: O | CallError) => void) => () => void
  /** Opens a server stream (no deadline: it lives as long as the connection); errors end it quietly. */
  readonly serverStream: <I, O>(method: Method<I, O>, request: I, onMessage: (message: O) => void) => OpenStream
  /** Opens a bidi stream and leaves it open, as go-plugin's broker expects; sends nothing. */
  readonly bidiStream: <I, O>(method: Method<I, O>) => OpenStream
  /** Stops new calls and closes the connection once its calls are done. */
  readonly close: () => void
}

/**
 * HTTP/2 receive windows as wide as the largest message, for each call and
 * for the connection: a plugin's answer then comes in one go rather than in
 * 64 KiB steps, each waiting for our window update (grpc-go's windows grow
 * to this by themselves).
 */
const StreamWindowBytes = MaxMessageBytes
const ConnectionWindowBytes = 4 * MaxMessageBytes

/** After close, how long calls still running may take before the connection is destroyed. */
const CloseGraceMs = 1_000

const UserAgent = `halkyon/${version}`

const describe = (error: unknown) => (error instanceof Error ? error.message : String(error))

export const makeChannel = ({ handshake, certificate }: ChannelOptions): Channel => {
  const secure = certificate !== undefined && handshake.certificate !== undefined
  const at = handshake.network === "unix" ? { path: handshake.address } : hostAndPort(handshake.address)
  const dial = (): Socket =>
    secure
      ? tlsConnect({
        ...at,
        ca: derToPem(handshake.certificate as Uint8Array),
        cert: certificate.certPem,
        key: certificate.keyPem,
        servername: "localhost",
        ALPNProtocols: ["h2"],
        minVersion: "TLSv1.2"
      })
      : netConnect(at)

  let session: http2.ClientHttp2Session | undefined
  let closed = false
  /** The live connection, or a new one. */
  const connection = (): http2.ClientHttp2Session => {
    if (session !== undefined && !session.closed && !session.destroyed) return session
    const fresh = http2.connect(secure ? "https://localhost" : "http://localhost", {
      createConnection: dial,
      settings: { initialWindowSize: StreamWindowBytes }
    })
    fresh.once("connect", () => fresh.setLocalWindowSize(ConnectionWindowBytes))
    // A failed or lost connection fails its streams, which say so; nothing else listens.
    fresh.on("error", () => {})
    const forget = () => {
      if (session === fresh) session = undefined
    }
    fresh.once("close", forget)
    fresh.once("goaway", forget)
    session = fresh
    return fresh
  }

  /** Starts a call's stream, or says why it cannot start. */
  const open = (path: string, timeoutMs: number | undefined): http2.ClientHttp2Stream | CallError => {
    if (closed) return new CallError(Status.UNAVAILABLE, "the connection to the plugin is closed")
    try {
      return connection().request({
        ":method": "POST",
        ":path": path,
        "content-type": "application/grpc",
        te: "trailers",
        "user-agent": UserAgent,
        ...(timeoutMs === undefined ? {} : { "grpc-timeout": `${Math.max(1, Math.ceil(timeoutMs))}m` })
      })
    } catch (error) {
      return new CallError(Status.UNAVAILABLE, describe(error))
    }
  }

  const unary = <I, O>(method: Method<I, O>, request: I, timeoutMs: number, done: (outcome: O | CallError) => void): () => void => {
    const stream = open(method.path, timeoutMs)
    if (stream instanceof CallError) {
      done(stream)
      return () => {}
    }
    let received: Uint8Array | undefined
    const call = follow(stream, (message) => {
      if (received !== undefined) call.fail(Status.INTERNAL, "the plugin sent two responses to a unary call")
      received = message
    })
    let settled = false
    const settle = (outcome: O | CallError) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      done(outcome)
    }
    const timer = setTimeout(() => {
      settle(new CallError(Status.DEADLINE_EXCEEDED, `no answer within ${timeoutMs} ms`))
      call.cancel()
    }, timeoutMs)
    const deadline = performance.now() + timeoutMs
    void call.ended.then((status) => {
      // grpc-go resets a call whose deadline (our grpc-timeout) passed rather than answering it: a
      // reset at the deadline is the deadline, and counts as a timeout.
      if (status.code === Status.UNAVAILABLE && performance.now() >= deadline - 1) {
        return settle(new CallError(Status.DEADLINE_EXCEEDED, `no answer within ${timeoutMs} ms`))
      }
      if (status.code !== Status.OK) return settle(new CallError(status.code, status.details))
      if (received === undefined) return settle(new CallError(Status.INTERNAL, "the plugin ended the call without a response"))
      let response: O
      try {
        response = method.response.decode(received)
      } catch (error) {
        return settle(new CallError(Status.INTERNAL, `the plugin's response cannot be decoded: ${describe(error)}`))
      }
      settle(response)
    })
    stream.end(frame(method.request.encode(request).finish()))
    return () => {
      settle(new CallError(Status.CANCELLED, "the call was cancelled"))
      call.cancel()
    }
  }

  const serverStream = <I, O>(method: Method<I, O>, request: I, onMessage: (message: O) => void): OpenStream => {
    const stream = open(method.path, undefined)
    if (stream instanceof CallError) return { cancel: () => {} }
    const call = follow(stream, (bytes) => {
      try {
        onMessage(method.response.decode(bytes))
      } catch {
        call.cancel()
      }
    })
    stream.end(frame(method.request.encode(request).finish()))
    return { cancel: call.cancel }
  }

  const bidiStream = <I, O>(method: Method<I, O>): OpenStream => {
    const stream = open(method.path, undefined)
    if (stream instanceof CallError) return { cancel: () => {} }
    return { cancel: follow(stream, () => {}).cancel }
  }

  const close = () => {
    closed = true
    const last = session
    if (last === undefined || last.destroyed) return
    last.close()
    setTimeout(() => last.destroy(), CloseGraceMs).unref()
  }

  return { unary, serverStream, bidiStream, close }
}

interface CallStatus {
  readonly code: number
  readonly details: string
}

/**
 * Reads a call's response: its messages to `onMessage`, and its status once
 * the stream has closed (from the trailers, a trailers-only response, the
 * HTTP status, or the reason the stream went away).
 */
const follow = (stream: http2.ClientHttp2Stream, onMessage: (message: Uint8Array) => void) => {
  const reader = new MessageReader()
  let status: CallStatus | undefined
  let failure: CallStatus | undefined
  let streamError = ""
  const fail = (code: number, details: string) => {
    failure ??= { code, details }
    cancel()
  }
  const cancel = () => {
    if (!stream.closed && !stream.destroyed) stream.close(http2.constants.NGHTTP2_CANCEL)
  }
  const statusOf = (headers: http2.IncomingHttpHeaders): CallStatus | undefined => {
    const code = headers["grpc-status"]
    if (code === undefined) return undefined
    const message = headers["grpc-message"]
    return { code: Number(code), details: decodeGrpcMessage(typeof message === "string" ? message : "") }
  }
  stream.on("response", (headers) => {
    const http = Number(headers[":status"])
    if (http !== 200) return fail(codeForHttpStatus(http), `the plugin answered HTTP ${http}`)
    const type = String(headers["content-type"] ?? "")
    if (!type.startsWith("application/grpc")) {
      return fail(Status.UNKNOWN, `the plugin answered with content-type ${JSON.stringify(type)}, not gRPC`)
    }
    // A trailers-only response carries its status in the headers.
    status = statusOf(headers) ?? status
  })
  stream.on("data", (chunk: Buffer) => {
    try {
      for (const message of reader.push(chunk)) onMessage(message)
    } catch (error) {
      fail(Status.INTERNAL, `the plugin sent ${error instanceof FramingError ? error.message : describe(error)}`)
    }
  })
  stream.on("trailers", (trailers) => {
    status = statusOf(trailers) ?? status
  })
  // The plugin has finished the call: finish our side too (a bidi stream's
  // is still open), or its server waits for it before it can close.
  stream.on("end", () => {
    if (!stream.writableEnded) stream.end()
  })
  stream.on("error", (error: unknown) => {
    streamError = describe(error)
  })
  const ended = new Promise<CallStatus>((resolve) => {
    stream.once("close", () => {
      if (failure !== undefined) return resolve(failure)
      if (status !== undefined) {
        const whole = reader.pending === 0 || status.code !== Status.OK
        return resolve(whole ? status : { code: Status.INTERNAL, details: "the plugin's response ended mid-message" })
      }
      const why = streamError !== "" ? streamError : `the stream was reset (HTTP/2 code ${stream.rstCode ?? "none"})`
      resolve({ code: Status.UNAVAILABLE, details: `the connection to the plugin ended before the call did: ${why}` })
    })
  })
  return { ended, cancel, fail }
}

const hostAndPort = (address: string) => {
  const cut = address.lastIndexOf(":")
  return { host: address.slice(0, cut).replace(/^\[|\]$/g, ""), port: Number(address.slice(cut + 1)) }
}

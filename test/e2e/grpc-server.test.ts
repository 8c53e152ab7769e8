/**
 * The SDK's gRPC server in-process, against the host's gRPC client, with
 * AutoMTLS on and off: what the Bun.listen socket and its bridge into
 * node:http2 (src/sdk/wire) must get right. Connections made between the
 * handshake and HTTP/2's loading wait and are served; messages larger than
 * the socket's buffers cross intact both ways (writes the socket only partly
 * takes); a peer that is not the host is refused while the server goes on;
 * a client that leaves ends its streams; close() ends the connections, served or waiting;
 * TLS below 1.2 is refused (a hand-written ClientHello: no openssl needed).
 * The server's HTTP/2 is the SDK's own (src/sdk/wire/Http2Session.ts): a
 * bare node:http2 client with the protocol's default 64 KiB windows makes it
 * wait on flow control for 4 MiB answers, opens more streams than it allows
 * at once, and resets a stream in the middle of its answer.
 */
import { afterEach, describe, expect, test } from "bun:test"
import { randomBytes } from "node:crypto"
import { mkdtempSync, rmSync } from "node:fs"
import * as http2 from "node:http2"
import * as net from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as tls from "node:tls"
import type { Handshake } from "../../src/protocol/Handshake.ts"
import { CallError, type Channel, makeChannel } from "../../src/plugin-client/GrpcChannel.ts"
import { frame, MessageReader, Status } from "../../src/protocol/GrpcWire.ts"
import type { Method } from "../../src/protocol/Rpc.ts"
import { BuildDependents, CheckValidity, Describe, StreamStdio } from "../../src/protocol/Methods.ts"
import { type Certificate, generateCertificate } from "../../src/protocol/Mtls.ts"
import { GrpcServer } from "../../src/sdk/wire/GrpcServer.ts"
import { MaxConcurrentStreams } from "../../src/sdk/wire/Http2Session.ts"
import { type Address, Listener } from "../../src/sdk/wire/Listener.ts"
import { eventually } from "../support/paths.ts"

const cleanups: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

const socketDir = () => {
  const dir = mkdtempSync(join(tmpdir(), "halkyon-grpc-"))
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

interface Peers {
  readonly plugin: Certificate
  readonly host: Certificate
}

/**
 * A listener on a fresh unix socket (AutoMTLS when `peers` is given), as a
 * plugin opens it before its handshake, and a server with the tests' routes
 * that does not serve it yet: Describe names the plugin, BuildDependents
 * echoes its request back reversed.
 */
const listening = (peers?: Peers) => {
  const tlsOptions = peers === undefined
    ? undefined
    : { certPem: peers.plugin.certPem, keyPem: peers.plugin.keyPem, clientCaPem: peers.host.certPem }
  const listener = Listener.open({ unixSocket: join(socketDir(), "plugin.sock"), tls: tlsOptions })
  const server = new GrpcServer()
    .unary(Describe, () => ({ name: "wire", category: "test", types: [], parameters: [], dependents: [], refuseUnknownParameters: false }))
    .unary(BuildDependents, (request) => ({ dependents: [{ id: "echo", object: Buffer.from(request.capability).reverse() }] }))
  cleanups.push(() => server.close(), () => listener.close())
  return { server, listener, address: listener.address }
}

const handshakeOf = (address: Address, peers?: Peers): Handshake => ({
  coreVersion: 1,
  appVersion: 1,
  network: address.network,
  address: address.address,
  protocol: "grpc",
  certificate: peers?.plugin.der,
  multiplexed: undefined
})

const channelTo = (address: Address, peers?: Peers, as?: Certificate) => {
  const channel = makeChannel({ handshake: handshakeOf(address, peers), certificate: as ?? peers?.host })
  cleanups.push(() => channel.close())
  return channel
}

/** One call through the host's channel, as a promise: rejects with the CallError. */
const unaryCall = <I, O>(channel: Channel, method: Method<I, O>, request: I, timeoutMs: number) =>
  new Promise<O>((resolve, reject) =>
    channel.unary(method, request, timeoutMs, (outcome) => (outcome instanceof CallError ? reject(outcome) : resolve(outcome)))
  )

/** The status code a call failed with, or undefined when it succeeded. */
const failureCode = (call: Promise<unknown>) => call.then(() => undefined, (e: unknown) => (e instanceof CallError ? e.code : -1))

const newPeers = async (): Promise<Peers> => ({ plugin: await generateCertificate(), host: await generateCertificate() })

/** Bytes that show where they were cut or shuffled: every position holds its own number, mod 251. */
const pattern = (size: number) => {
  const bytes = Buffer.allocUnsafe(size)
  for (let i = 0; i < size; i++) bytes[i] = i % 251
  return bytes
}

/** A bare node:http2 client on plain sockets, with the protocol's default 64 KiB windows: the server must wait for its WINDOW_UPDATEs. */
const bareSession = (address: Address) => {
  const session = http2.connect("http://localhost", { createConnection: () => net.connect(address.address) })
  session.on("error", () => {})
  cleanups.push(() => new Promise<void>((resolve) => (session.closed ? resolve() : session.close(() => resolve()))))
  return session
}

/** What a call on a bare session got: its status and the messages of the answer. */
interface BareOutcome {
  readonly status: string | undefined
  readonly messages: ReadonlyArray<Uint8Array>
}

const bareRequest = (session: http2.ClientHttp2Session, path: string) =>
  session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers" })

/** Reads a call's answer on a bare stream until it closes. */
const bareOutcome = (stream: http2.ClientHttp2Stream) =>
  new Promise<BareOutcome>((resolve) => {
    const reader = new MessageReader()
    const messages: Array<Uint8Array> = []
    let status: string | undefined
    stream.on("response", (headers) => (status ??= headers["grpc-status"] as string | undefined))
    stream.on("trailers", (trailers) => (status = trailers["grpc-status"] as string | undefined))
    stream.on("data", (chunk: Buffer) => messages.push(...reader.push(chunk)))
    stream.on("error", () => {})
    stream.on("close", () => resolve({ status, messages }))
  })

const bareUnary = <I, O>(session: http2.ClientHttp2Session, method: Method<I, O>, request: I) => {
  const stream = bareRequest(session, method.path)
  stream.end(frame(method.request.encode(request).finish()))
  return bareOutcome(stream).then((outcome) => ({
    status: outcome.status,
    responses: outcome.messages.map((m) => method.response.decode(m))
  }))
}

const RecordHandshake = 0x16
const RecordAlert = 0x15
const HandshakeServerHello = 2
const AlertProtocolVersion = 70

const u16 = (n: number) => Buffer.from([n >> 8, n & 0xff])
const list16 = (values: ReadonlyArray<number>) => {
  const body = Buffer.concat(values.map(u16))
  return Buffer.concat([u16(body.length), body])
}
const extension = (type: number, body: Buffer) => Buffer.concat([u16(type), u16(body.length), body])

/**
 * A TLS ClientHello record (RFC 5246 7.4.1.2) offering `version` and nothing above it (no
 * supported_versions extension): ECDHE suites for the plugin's ECDSA or RSA key, P-256 and X25519.
 */
const clientHello = (version: number) => {
  const extensions = Buffer.concat([
    extension(0x000a, list16([0x001d, 0x0017])), // supported_groups
    extension(0x000b, Buffer.from([1, 0])), // ec_point_formats: uncompressed
    extension(0x000d, list16([0x0403, 0x0804, 0x0401])) // signature_algorithms
  ])
  const body = Buffer.concat([
    u16(version),
    randomBytes(32),
    Buffer.from([0]), // no session id
    list16([0xc02b, 0xc02f, 0xc009, 0xc013]),
    Buffer.from([1, 0]), // suites; null compression
    u16(extensions.length),
    extensions
  ])
  const handshake = Buffer.concat([Buffer.from([1, body.length >> 16, (body.length >> 8) & 0xff, body.length & 0xff]), body])
  return Buffer.concat([Buffer.from([RecordHandshake, 3, 1]), u16(handshake.length), handshake])
}

/** Sends `hello` on a fresh connection and resolves with the first bytes the server answers (at least 7). */
const firstRecord = (address: Address, hello: Buffer) =>
  new Promise<Buffer>((resolve, reject) => {
    let received = Buffer.alloc(0)
    const socket = net.connect(address.address, () => socket.write(hello))
    socket.on("data", (bytes: Buffer) => {
      received = Buffer.concat([received, bytes])
      if (received.length >= 7) {
        resolve(received)
        socket.destroy()
      }
    })
    socket.on("error", reject)
    socket.on("close", () => reject(new Error(`the server closed after ${received.length} bytes: ${received.toString("hex")}`)))
  })

for (const autoMtls of [false, true]) {
  describe(`gRPC server on Bun.listen (AutoMTLS ${autoMtls ? "on" : "off"})`, () => {
    const peers = () => (autoMtls ? newPeers() : Promise.resolve(undefined))

    test("a call made before HTTP/2 is loaded waits, and is answered once it is", async () => {
      const p = await peers()
      const { server, listener, address } = listening(p)
      let answered = false
      const call = unaryCall(channelTo(address, p), Describe, {}, 5_000).then((response) => {
        answered = true
        return response
      })
      // The connection is open and its request (after the 24-byte HTTP/2 preface) is held, unanswered.
      expect(await eventually(() => listener.waiting.connections === 1 && listener.waiting.bytes > 24, 5_000)).toBe(true)
      expect(answered).toBe(false)
      await server.serve(listener)
      expect(listener.waiting).toEqual({ connections: 0, bytes: 0 })
      expect((await call).name).toBe("wire")
    })

    test("3 MiB requests and responses cross intact, several at once, more than the socket takes at once", async () => {
      const p = await peers()
      const { server, listener, address } = listening(p)
      await server.serve(listener)
      // The host's windows are as wide as a message: the server may write megabytes at once, more than the socket takes.
      const channel = channelTo(address, p)
      const request = pattern(3 * 1024 * 1024)
      const responses = await Promise.all(
        Array.from({ length: 4 }, () => unaryCall(channel, BuildDependents, { capability: request, observed: [] }, 20_000))
      )
      const expected = Buffer.from(request).reverse()
      for (const response of responses) {
        const object = Buffer.from(response.dependents[0]?.object ?? new Uint8Array())
        expect(object.length).toBe(expected.length)
        expect(object.equals(expected)).toBe(true)
      }
    })

    test("a host that disconnects ends its session and its open streams", async () => {
      const p = await peers()
      const { server, listener, address } = listening(p)
      let streamClosed: Promise<void> | undefined
      server.stream(StreamStdio, (_request, stream) => {
        streamClosed = stream.closed
      })
      await server.serve(listener)
      // A host whose connection drops (it was killed, say): no GOAWAY, no RST_STREAM.
      const socket = p === undefined
        ? net.connect(address.address)
        : tls.connect({
          path: address.address,
          servername: "localhost",
          ca: p.plugin.certPem,
          cert: p.host.certPem,
          key: p.host.keyPem,
          ALPNProtocols: ["h2"]
        })
      const session = http2.connect("http://localhost", { createConnection: () => socket })
      session.on("error", () => {})
      const stream = session.request({ ":method": "POST", ":path": StreamStdio.path, "content-type": "application/grpc", te: "trailers" })
      stream.on("error", () => {})
      stream.write(Buffer.from([0, 0, 0, 0, 0]))
      for (let i = 0; i < 200 && streamClosed === undefined; i++) await Bun.sleep(10)
      expect(streamClosed).toBeDefined()
      socket.destroy()
      const outcome = await Promise.race([streamClosed?.then(() => "closed"), Bun.sleep(2_000).then(() => "still open")])
      expect(outcome).toBe("closed")
    })

    test("close() ends connections still waiting for HTTP/2, and resolves", async () => {
      const p = await peers()
      const { listener, address } = listening(p)
      const call = failureCode(unaryCall(channelTo(address, p), Describe, {}, 5_000))
      expect(await eventually(() => listener.waiting.connections === 1, 5_000)).toBe(true)
      const closed = await Promise.race([listener.close().then(() => "resolved"), Bun.sleep(2_000).then(() => "pending")])
      expect(closed).toBe("resolved")
      expect(listener.waiting.connections).toBe(0)
      expect(await call).toBe(Status.UNAVAILABLE)
    })

    test("close() ends served connections, and resolves", async () => {
      const p = await peers()
      const { server, listener, address } = listening(p)
      await server.serve(listener)
      const channel = channelTo(address, p)
      expect((await unaryCall(channel, Describe, {}, 5_000)).name).toBe("wire")
      const started = performance.now()
      await server.close()
      expect(performance.now() - started).toBeLessThan(400)
      expect(await failureCode(unaryCall(channel, Describe, {}, 1_000))).toBe(Status.UNAVAILABLE)
    })
  })
}

describe("the SDK's HTTP/2 against a bare node:http2 client", () => {
  test("a 4 MiB message each way crosses the client's 64 KiB windows and ours, intact", async () => {
    const { server, listener, address } = listening()
    await server.serve(listener)
    const session = bareSession(address)
    // As large as a message may be once the response's own fields are around it.
    const request = pattern(4 * 1024 * 1024 - 64)
    const outcome = await bareUnary(session, BuildDependents, { capability: request, observed: [] })
    expect(outcome.status).toBe("0")
    const object = Buffer.from(outcome.responses[0]?.dependents[0]?.object ?? new Uint8Array())
    expect(object.length).toBe(request.length)
    expect(object.equals(Buffer.from(request).reverse())).toBe(true)
    // The session is still good for more.
    expect((await bareUnary(session, Describe, {})).responses[0]?.name).toBe("wire")
  })

  test("300 calls at once on one connection, three times the streams it allows open: all answered, at most its limit open at once", async () => {
    const { server, listener, address } = listening()
    let open = 0
    let mostOpen = 0
    server.unary(CheckValidity, async () => {
      mostOpen = Math.max(mostOpen, ++open)
      await Bun.sleep(5)
      open--
      return { errors: [] }
    })
    await server.serve(listener)
    const channel = channelTo(address)
    // A first call: the client then has our SETTINGS, and keeps to our limit of open streams.
    expect((await unaryCall(channel, Describe, {}, 5_000)).name).toBe("wire")
    const outcomes = await Promise.all(
      Array.from({ length: 300 }, () => unaryCall(channel, CheckValidity, { capability: Buffer.alloc(0) }, 20_000))
    )
    expect(outcomes.length).toBe(300)
    expect(mostOpen).toBeLessThanOrEqual(MaxConcurrentStreams)
    expect(mostOpen).toBeGreaterThan(1)
    // On a fresh connection the burst races our SETTINGS: what the client opened before it knew the limit is answered too.
    const fresh = channelTo(address)
    const burst = await Promise.all(
      Array.from({ length: 300 }, () => unaryCall(fresh, CheckValidity, { capability: Buffer.alloc(0) }, 20_000))
    )
    expect(burst.length).toBe(300)
  })

  test("a client that resets a stream mid-answer: the handler's stream closes, the queued answer is dropped, the connection goes on", async () => {
    const { server, listener, address } = listening()
    let closed: Promise<void> | undefined
    server.stream(StreamStdio, (_request, stream) => {
      closed = stream.closed
      // Far more than the client's 64 KiB window: most of it waits for a WINDOW_UPDATE that never comes.
      for (let i = 0; i < 64; i++) stream.send({ channel: 1, data: Buffer.alloc(16 * 1024, i) })
    })
    await server.serve(listener)
    const session = bareSession(address)
    const stream = bareRequest(session, StreamStdio.path)
    stream.on("error", () => {})
    stream.write(frame(new Uint8Array(0)))
    // Reading paused: the window is not given back, the server's answer stops at 64 KiB.
    stream.pause()
    expect(await eventually(() => closed !== undefined, 5_000)).toBe(true)
    stream.close(http2.constants.NGHTTP2_CANCEL)
    const outcome = await Promise.race([closed?.then(() => "closed"), Bun.sleep(2_000).then(() => "still open")])
    expect(outcome).toBe("closed")
    expect((await bareUnary(session, Describe, {})).responses[0]?.name).toBe("wire")
    // A unary call reset before its answer is read: the next calls on the session are answered.
    const big = bareRequest(session, BuildDependents.path)
    big.on("error", () => {})
    big.end(frame(BuildDependents.request.encode({ capability: pattern(1024 * 1024), observed: [] }).finish()))
    big.pause()
    big.once("response", () => big.close(http2.constants.NGHTTP2_CANCEL))
    await new Promise<void>((resolve) => big.once("close", () => resolve()))
    expect((await bareUnary(session, Describe, {})).responses[0]?.name).toBe("wire")
  })
})

describe("AutoMTLS on Bun.listen", () => {
  test("a client with another certificate, or none, is refused; the server goes on serving the host", async () => {
    const peers = await newPeers()
    const { server, listener, address } = listening(peers)
    await server.serve(listener)
    const stranger = await generateCertificate()
    expect(await failureCode(unaryCall(channelTo(address, peers, stranger), Describe, {}, 2_000))).toBe(Status.UNAVAILABLE)
    const withoutCertificate = await new Promise<string>((resolve) => {
      const socket = tls.connect({ path: address.address, servername: "localhost", ca: peers.plugin.certPem, ALPNProtocols: ["h2"] })
      socket.on("error", (e) => resolve(e.message))
      socket.on("close", () => resolve("closed"))
      socket.on("secureConnect", () => socket.write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
    })
    expect(withoutCertificate).toMatch(/CERTIFICATE_REQUIRED|closed/)
    // Plain bytes to a TLS socket: not a TLS client at all.
    await new Promise<void>((resolve) => {
      const socket = net.connect(address.address, () => socket.write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
      // Read (the TLS alert): a paused socket would never see its end.
      socket.resume()
      socket.on("error", () => resolve())
      socket.on("close", () => resolve())
    })
    expect((await unaryCall(channelTo(address, peers), Describe, {}, 2_000)).name).toBe("wire")
  })

  test("negotiates h2 and refuses TLS below 1.2", async () => {
    const peers = await newPeers()
    const { server, listener, address } = listening(peers)
    await server.serve(listener)
    const connect = (options: tls.ConnectionOptions) =>
      new Promise<{ alpn: string | false | null; version: string | null } | { error: string }>((resolve) => {
        const socket = tls.connect({
          path: address.address,
          servername: "localhost",
          ca: peers.plugin.certPem,
          cert: peers.host.certPem,
          key: peers.host.keyPem,
          ALPNProtocols: ["h2"],
          ...options
        })
        socket.on("secureConnect", () => {
          resolve({ alpn: socket.alpnProtocol ?? null, version: socket.getProtocol() })
          socket.end()
        })
        socket.on("error", (e) => resolve({ error: e.message }))
      })
    expect(await connect({ minVersion: "TLSv1.2", maxVersion: "TLSv1.2" })).toEqual({ alpn: "h2", version: "TLSv1.2" })
    expect(await connect({})).toEqual({ alpn: "h2", version: "TLSv1.3" })
    // Bun's own TLS client offers nothing below 1.2, so the ClientHello is written by hand: the same
    // hello gets a ServerHello as TLS 1.2 and a protocol_version alert as TLS 1.1.
    const tls12 = await firstRecord(address, clientHello(0x0303))
    expect([tls12[0], tls12[5]]).toEqual([RecordHandshake, HandshakeServerHello])
    const tls11 = await firstRecord(address, clientHello(0x0302))
    expect([tls11[0], tls11[6]]).toEqual([RecordAlert, AlertProtocolVersion])
    expect((await unaryCall(channelTo(address, peers), Describe, {}, 2_000)).name).toBe("wire")
  })
})

describe("the TCP listener (Windows, or no socket folder)", () => {
  test("takes the free port of PLUGIN_MIN_PORT..PLUGIN_MAX_PORT when the others are taken", async () => {
    const minPort = 20_000 + Math.floor(Math.random() * 4_000)
    const maxPort = minPort + 2
    // The first two ports are ours, the last must be free (it is, all but always).
    for (const port of [minPort, minPort + 1]) {
      const blocker = Bun.listen({ hostname: "127.0.0.1", port, socket: { data() {} } })
      cleanups.push(() => blocker.stop(true))
    }
    const listener = Listener.open({ tcp: { host: "127.0.0.1", minPort, maxPort } })
    const server = new GrpcServer().unary(Describe, () => ({
      name: "wire",
      category: "test",
      types: [],
      parameters: [],
      dependents: [],
      refuseUnknownParameters: false
    }))
    cleanups.push(() => server.close(), () => listener.close())
    const address = listener.address
    expect(address).toEqual({ network: "tcp", address: `127.0.0.1:${maxPort}` })
    await server.serve(listener)
    expect((await unaryCall(channelTo(address), Describe, {}, 2_000)).name).toBe("wire")
  })

  test("says so when every port of the range is taken", () => {
    const taken = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } })
    cleanups.push(() => taken.stop(true))
    expect(() => Listener.open({ tcp: { host: "127.0.0.1", minPort: taken.port, maxPort: taken.port } })).toThrow(
      `no free port on 127.0.0.1 between ${taken.port} and ${taken.port}`
    )
  })
})

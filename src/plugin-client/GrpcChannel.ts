/**
 * A grpc-js channel to one plugin, typed by the generated service
 * descriptors: the address and credentials from the handshake (AutoMTLS: the
 * plugin's certificate is the only trusted root, ours the client certificate).
 */
import * as grpc from "@grpc/grpc-js"
import type { Handshake } from "../protocol/Handshake.ts"
import type { Method } from "../protocol/Rpc.ts"
import { derToPem, type Certificate } from "../protocol/Mtls.ts"

export interface ChannelOptions {
  readonly handshake: Handshake
  /** Our certificate, when AutoMTLS is on. */
  readonly certificate: Certificate | undefined
}

export const target = (handshake: Handshake): string =>
  handshake.network === "unix" ? `unix://${handshake.address}` : handshake.address

export const makeChannel = ({ handshake, certificate }: ChannelOptions): grpc.Client => {
  if (certificate !== undefined && handshake.certificate !== undefined) {
    const credentials = grpc.credentials.createSsl(
      Buffer.from(derToPem(handshake.certificate)),
      Buffer.from(certificate.keyPem),
      Buffer.from(certificate.certPem)
    )
    // The plugin's certificate names localhost, whatever the socket path.
    return new grpc.Client(target(handshake), credentials, {
      "grpc.ssl_target_name_override": "localhost",
      "grpc.default_authority": "localhost"
    })
  }
  return new grpc.Client(target(handshake), grpc.credentials.createInsecure(), { "grpc.default_authority": "localhost" })
}

/** grpc-js's serializer and deserializer for a method's messages. */
const codecs = <I, O>(method: Method<I, O>) =>
  [(value: I) => Buffer.from(method.request.encode(value).finish()), (bytes: Buffer) => method.response.decode(bytes)] as const

/** One unary call with a deadline; resolves or rejects with grpc-js's ServiceError. */
export const unaryCall = <I, O>(channel: grpc.Client, method: Method<I, O>, request: I, timeoutMs: number, signal?: AbortSignal): Promise<O> =>
  new Promise((resolve, reject) => {
    const call = channel.makeUnaryRequest(
      method.path,
      ...codecs(method),
      request,
      new grpc.Metadata(),
      { deadline: Date.now() + timeoutMs },
      (error, response) => (error || response === undefined ? reject(error) : resolve(response))
    )
    signal?.addEventListener("abort", () => call.cancel(), { once: true })
  })

/** Opens a server stream (no deadline: it lives as long as the connection). */
export const serverStream = <I, O>(channel: grpc.Client, method: Method<I, O>, request: I): grpc.ClientReadableStream<O> =>
  channel.makeServerStreamRequest(
    method.path,
    ...codecs(method),
    request
  )

/** Opens a bidi stream and leaves it open, as go-plugin's broker expects. */
export const bidiStream = <I, O>(channel: grpc.Client, method: Method<I, O>): grpc.ClientDuplexStream<I, O> =>
  channel.makeBidiStreamRequest(
    method.path,
    ...codecs(method)
  )

export const isServiceError = (e: unknown): e is grpc.ServiceError =>
  typeof e === "object" && e !== null && "code" in e && "details" in e

/**
 * One RPC as both sides see it: its HTTP/2 path and the codecs of its
 * messages, taken from the generated service definitions (src/gen). Pure.
 */

/** Kubernetes objects and Capabilities travel as JSON bytes (UTF-8): these encode them… */
export const jsonBytes = (value: unknown): Buffer => Buffer.from(JSON.stringify(value), "utf8")

/** …and give their text back. */
export const jsonText = (bytes: Uint8Array): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("utf8")

/** What generated code gives for each message: encode and decode. */
export interface Codec<T> {
  encode(message: T): { finish(): Uint8Array }
  decode(input: Uint8Array): T
}

export interface Method<Req, Res> {
  /** e.g. /halkyon.capability.v1.CapabilityPlugin/Describe */
  readonly path: string
  readonly name: string
  readonly request: Codec<Req>
  readonly response: Codec<Res>
}

interface ServiceDefinition {
  readonly fullName: string
  readonly methods: Readonly<Record<string, { readonly name: string; readonly requestType: unknown; readonly responseType: unknown }>>
}

type MessageOf<C> = C extends Codec<infer T> ? T : never

/** Picks a method of a generated service definition. */
export const method = <S extends ServiceDefinition, K extends keyof S["methods"] & string>(
  service: S,
  key: K
): Method<MessageOf<S["methods"][K]["requestType"]>, MessageOf<S["methods"][K]["responseType"]>> => {
  const m = service.methods[key] as unknown as { name: string; requestType: Codec<never>; responseType: Codec<never> }
  return {
    path: `/${service.fullName}/${m.name}`,
    name: m.name,
    request: m.requestType as Codec<MessageOf<S["methods"][K]["requestType"]>>,
    response: m.responseType as Codec<MessageOf<S["methods"][K]["responseType"]>>
  }
}

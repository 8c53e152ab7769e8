/**
 * AutoMTLS certificates: each side of a go-plugin connection makes a throwaway
 * self-signed certificate and trusts exactly the peer's.
 *
 * The certificate follows go-plugin's template (CN and DNS SAN `localhost`,
 * CA flag, server and client auth, ~30 years). It is written as DER here, in a
 * few lines, rather than through an X.509 library: the template never
 * changes, and a library would add start-up time to every plugin. Keys and
 * signatures come from WebCrypto, which a bundled plugin loads much faster
 * than node:crypto (docs/performance.md).
 */

export interface Certificate {
  /** PEM of the certificate. */
  readonly certPem: string
  /** PEM (PKCS#8) of its private key. */
  readonly keyPem: string
  /** The certificate as DER, for the handshake line. */
  readonly der: Uint8Array
}

// DER building blocks: tag, length, value.
const length = (n: number): Buffer => {
  if (n < 0x80) return Buffer.from([n])
  const bytes: Array<number> = []
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff)
  return Buffer.from([0x80 | bytes.length, ...bytes])
}
const tlv = (tag: number, ...content: ReadonlyArray<Buffer>): Buffer => {
  const value = Buffer.concat(content)
  return Buffer.concat([Buffer.from([tag]), length(value.length), value])
}
const sequence = (...content: ReadonlyArray<Buffer>) => tlv(0x30, ...content)
const oid = (dotted: string): Buffer => {
  const [a = 0, b = 0, ...rest] = dotted.split(".").map(Number)
  const bytes: Array<number> = [a * 40 + b]
  for (const arc of rest) {
    const chunk: Array<number> = [arc & 0x7f]
    for (let v = Math.floor(arc / 128); v > 0; v = Math.floor(v / 128)) chunk.unshift((v & 0x7f) | 0x80)
    bytes.push(...chunk)
  }
  return tlv(0x06, Buffer.from(bytes))
}
const time = (date: Date): Buffer => {
  const iso = date.toISOString().replace(/[-:T]/g, "").slice(0, 14) + "Z"
  // RFC 5280: UTCTime until 2049, GeneralizedTime from 2050.
  return date.getUTCFullYear() < 2050 ? tlv(0x17, Buffer.from(iso.slice(2))) : tlv(0x18, Buffer.from(iso))
}
const extension = (id: string, critical: boolean, value: Buffer) =>
  sequence(oid(id), ...(critical ? [tlv(0x01, Buffer.from([0xff]))] : []), tlv(0x04, value))

const EcdsaWithSha256 = sequence(oid("1.2.840.10045.4.3.2"))
const LocalhostName = sequence(tlv(0x31, sequence(oid("2.5.4.3"), tlv(0x0c, Buffer.from("localhost")))))
const ThirtyYearsMs = 30 * 365 * 24 * 3600 * 1000

/** An INTEGER from unsigned big-endian bytes, in minimal DER. */
const unsignedInteger = (bytes: Uint8Array): Buffer => {
  let start = 0
  while (start < bytes.length - 1 && bytes[start] === 0) start++
  const trimmed: Buffer = Buffer.from(bytes.subarray(start))
  return tlv(0x02, (trimmed[0] ?? 0) & 0x80 ? Buffer.concat([Buffer.from([0]), trimmed]) : trimmed)
}

const Ecdsa = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" }

/** Makes a fresh self-signed ECDSA P-256 certificate for one plugin connection. */
export const generateCertificate = async (): Promise<Certificate> => {
  const keys = await crypto.subtle.generateKey(Ecdsa, true, ["sign", "verify"])
  const spki = Buffer.from(await crypto.subtle.exportKey("spki", keys.publicKey))
  const pkcs8 = Buffer.from(await crypto.subtle.exportKey("pkcs8", keys.privateKey))
  const serial = crypto.getRandomValues(new Uint8Array(16))
  // A positive INTEGER in minimal DER: top bit clear, and never a leading zero
  // byte (BoringSSL rejects a non-minimal serial as an invalid certificate).
  serial[0] = ((serial[0] ?? 0) & 0x7f) | 0x40
  const now = Date.now()
  const tbs = sequence(
    tlv(0xa0, tlv(0x02, Buffer.from([2]))), // version v3
    tlv(0x02, Buffer.from(serial)),
    EcdsaWithSha256,
    LocalhostName,
    sequence(time(new Date(now - 30_000)), time(new Date(now + ThirtyYearsMs))),
    LocalhostName,
    spki,
    tlv(
      0xa3,
      sequence(
        extension("2.5.29.19", true, sequence(tlv(0x01, Buffer.from([0xff])))), // CA
        // digitalSignature, keyEncipherment, keyAgreement, keyCertSign
        extension("2.5.29.15", true, tlv(0x03, Buffer.from([0x02, 0xac]))),
        extension("2.5.29.37", false, sequence(oid("1.3.6.1.5.5.7.3.1"), oid("1.3.6.1.5.5.7.3.2"))),
        extension("2.5.29.17", false, sequence(tlv(0x82, Buffer.from("localhost"))))
      )
    )
  )
  // WebCrypto signs as r||s; X.509 wants SEQUENCE { INTEGER r, INTEGER s }.
  const raw = new Uint8Array(await crypto.subtle.sign(Ecdsa, keys.privateKey, new Uint8Array(tbs)))
  const signature = sequence(unsignedInteger(raw.subarray(0, 32)), unsignedInteger(raw.subarray(32)))
  const der = sequence(tbs, EcdsaWithSha256, tlv(0x03, Buffer.from([0]), signature))
  return { certPem: derToPem(der), keyPem: pem("PRIVATE KEY", pkcs8), der: new Uint8Array(der) }
}

const pem = (label: string, der: Uint8Array): string => {
  const body = Buffer.from(der).toString("base64").replace(/(.{64})/g, "$1\n").replace(/\n$/, "")
  return `-----BEGIN ${label}-----\n${body}\n-----END ${label}-----\n`
}

/** Wraps a DER certificate in PEM armour. */
export const derToPem = (der: Uint8Array): string => pem("CERTIFICATE", der)

import { beforeAll, describe, expect, test } from "bun:test"
import { X509Certificate } from "node:crypto"
import { createSecureContext } from "node:tls"
import { type Certificate, generateCertificate } from "../../src/protocol/Mtls.ts"

describe("AutoMTLS certificate", () => {
  let cert: Certificate
  let x509: X509Certificate
  beforeAll(async () => {
    cert = await generateCertificate()
    x509 = new X509Certificate(cert.certPem)
  })

  test("is self-signed for localhost, as go-plugin's", () => {
    expect(x509.subject).toBe("CN=localhost")
    expect(x509.issuer).toBe("CN=localhost")
    expect(x509.subjectAltName).toBe("DNS:localhost")
    expect(x509.ca).toBe(true)
    expect(x509.verify(x509.publicKey)).toBe(true)
    expect(x509.checkHost("localhost")).toBe("localhost")
  })

  test("is valid from 30 s ago for about 30 years", () => {
    const from = new Date(x509.validFrom).getTime()
    const to = new Date(x509.validTo).getTime()
    expect(Date.now() - from).toBeGreaterThanOrEqual(29_000)
    expect(Date.now() - from).toBeLessThan(120_000)
    expect((to - Date.now()) / (365 * 24 * 3600 * 1000)).toBeGreaterThan(29.9)
  })

  test("allows server and client auth", () => {
    expect(x509.keyUsage).toEqual(["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"])
  })

  test("each certificate is new", async () => {
    expect((await generateCertificate()).certPem).not.toBe(cert.certPem)
  })

  test("every generated certificate is accepted by TLS and verifies (minimal DER: serial, signature)", async () => {
    for (let i = 0; i < 400; i++) {
      const c = await generateCertificate()
      expect(() => createSecureContext({ cert: c.certPem, key: c.keyPem, ca: c.certPem })).not.toThrow()
      const x = new X509Certificate(c.certPem)
      expect(x.verify(x.publicKey)).toBe(true)
    }
  })
})

import { describe, expect, test } from "bun:test"
import { formatHandshake, negotiateVersion, parseHandshake, parseOfferedVersions } from "../../src/protocol/Handshake.ts"
import { generateCertificate } from "../../src/protocol/Mtls.ts"

describe("handshake line", () => {
  const cases: ReadonlyArray<[string, string, ReadonlyArray<number>, string]> = [
    ["plain unix grpc", "1|1|unix|/tmp/plugin123|grpc|", [1], "ok"],
    ["tcp", "1|1|tcp|127.0.0.1:10001|grpc|", [1], "ok"],
    ["trailing newline", "1|1|unix|/tmp/p|grpc|\n", [1], "ok"],
    ["no protocol field means netrpc", "1|1|unix|/tmp/p", [1], "NetRpc"],
    ["netrpc", "1|1|unix|/tmp/p|netrpc", [1], "NetRpc"],
    ["unknown protocol", "1|1|unix|/tmp/p|thrift|", [1], "UnknownProtocol"],
    ["core version 2", "2|1|unix|/tmp/p|grpc|", [1], "CoreVersion"],
    ["version not offered", "1|3|unix|/tmp/p|grpc|", [1, 2], "NoSharedVersion"],
    ["garbage", "Starting plugin v1.2.3...", [1], "Malformed"],
    ["bad network", "1|1|udp|/tmp/p|grpc|", [1], "Malformed"],
    ["empty address", "1|1|unix||grpc|", [1], "Malformed"],
    ["non-numeric app version", "1|x|unix|/tmp/p|grpc|", [1], "Malformed"]
  ]
  for (const [name, line, offered, expected] of cases) {
    test(name, () => {
      const parsed = parseHandshake(line, offered)
      expect(parsed.ok ? "ok" : parsed.problem._tag).toBe(expected)
    })
  }

  test("a certificate round-trips through the line without base64 padding", async () => {
    const cert = await generateCertificate()
    const line = formatHandshake({
      appVersion: 1,
      network: "unix",
      address: "/tmp/p",
      protocol: "grpc",
      certificate: cert.der,
      multiplexed: undefined
    })
    const field = line.split("|")[5] ?? ""
    expect(field.endsWith("=")).toBe(false)
    expect(field.length).toBeGreaterThan(50)
    const parsed = parseHandshake(line, [1])
    if (!parsed.ok) throw new Error(JSON.stringify(parsed.problem))
    expect(Buffer.from(parsed.handshake.certificate ?? []).equals(Buffer.from(cert.der))).toBe(true)
  })

  test("a short field 6 is not a certificate (go-plugin's rule)", () => {
    const parsed = parseHandshake("1|1|unix|/tmp/p|grpc|abc", [1])
    if (!parsed.ok) throw new Error(`the line did not parse: ${JSON.stringify(parsed.problem)}`)
    expect(parsed.handshake.address).toBe("/tmp/p")
    expect(parsed.handshake.certificate).toBe(undefined)
  })

  test("the multiplexing answer is field 7", () => {
    const line = formatHandshake({
      appVersion: 1,
      network: "unix",
      address: "/tmp/p",
      protocol: "grpc",
      certificate: undefined,
      multiplexed: false
    })
    expect(line).toBe("1|1|unix|/tmp/p|grpc||false")
    const parsed = parseHandshake(line, [1])
    if (!parsed.ok) throw new Error(`the line did not parse: ${JSON.stringify(parsed.problem)}`)
    expect(parsed.handshake.multiplexed).toBe(false)
    const yes = parseHandshake("1|1|unix|/tmp/p|grpc||true", [1])
    expect(yes.ok && yes.handshake.multiplexed).toBe(true)
  })
})

describe("version negotiation", () => {
  test("picks the highest shared version", () => expect(negotiateVersion([1, 2, 3], [2, 3, 4])).toBe(3))
  test("falls back to the plugin's lowest when none is shared", () => expect(negotiateVersion([1], [7, 8])).toBe(7))
  test("falls back to the plugin's lowest when the host offers nothing", () => expect(negotiateVersion([], [2, 3])).toBe(2))
  test("reads PLUGIN_PROTOCOL_VERSIONS, ignoring junk", () => expect(parseOfferedVersions(" 1, 2,x,,3")).toEqual([1, 2, 3]))
})

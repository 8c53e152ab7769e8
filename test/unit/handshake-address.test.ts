import { describe, expect, test } from "bun:test"
import type { Handshake } from "../../src/protocol/Handshake.ts"
import { addressProblem } from "../../src/plugin-host/HandshakeAddress.ts"

const at = (network: "unix" | "tcp", address: string): Handshake => ({
  coreVersion: 1,
  appVersion: 1,
  network,
  address,
  protocol: "grpc",
  certificate: undefined,
  multiplexed: undefined
})

describe("handshake address", () => {
  const dir = "/tmp/hk-abc123"
  const cases: ReadonlyArray<[string, Handshake, string, string | undefined]> = [
    ["a socket in the folder", at("unix", "/tmp/hk-abc123/plugin0a1b2c3d4e"), "linux", undefined],
    ["a socket in the folder, trailing slash on the folder", at("unix", "/tmp/hk-abc123/p"), "darwin", undefined],
    ["another plugin's socket", at("unix", "/tmp/hk-other/plugin00"), "linux", "outside the folder"],
    ["a path climbing out", at("unix", "/tmp/hk-abc123/../x.sock"), "linux", "outside the folder"],
    ["the folder itself", at("unix", "/tmp/hk-abc123"), "linux", "outside the folder"],
    ["a relative path", at("unix", "plugin.sock"), "linux", "not an absolute path"],
    ["TCP on Linux, even loopback", at("tcp", "127.0.0.1:10001"), "linux", "on this OS a plugin must listen on a unix socket"],
    ["TCP on Windows, loopback", at("tcp", "127.0.0.1:10001"), "win32", undefined],
    ["TCP on Windows, IPv6 loopback", at("tcp", "[::1]:10001"), "win32", undefined],
    ["TCP on Windows, remote", at("tcp", "10.0.0.5:10001"), "win32", "not on the loopback interface"],
    ["TCP on Windows, no port", at("tcp", "127.0.0.1:x"), "win32", "no valid port"]
  ]
  for (const [name, handshake, platform, expected] of cases) {
    test(name, () => {
      const problem = addressProblem(handshake, name.includes("trailing slash") ? `${dir}/` : dir, platform)
      if (expected === undefined) expect(problem).toBeUndefined()
      else expect(problem).toContain(expected)
    })
  }
})

/** The --reattach value: what the SDK prints is what the host parses, and a bad value says what is expected. */
import { describe, expect, test } from "bun:test"
import { formatReattach, parseReattach } from "../../src/protocol/Reattach.ts"

describe("--reattach values", () => {
  test("a unix socket and a TCP address survive formatting and parsing", () => {
    for (
      const target of [
        { name: "postgres", network: "unix", address: "/tmp/plugin1a2b3c4d5e" },
        { name: "redis", network: "tcp", address: "127.0.0.1:10001" }
      ] as const
    ) {
      expect(parseReattach(formatReattach(target))).toEqual({ ok: true, target })
    }
  })

  test("a bare absolute path is a unix socket", () => {
    expect(parseReattach("memcached=/tmp/plugin00")).toEqual({
      ok: true,
      target: { name: "memcached", network: "unix", address: "/tmp/plugin00" }
    })
  })

  test.each([
    ["postgres", "expected NAME=unix:/path/to/socket"],
    ["=unix:/tmp/p", "expected NAME=unix:/path/to/socket"],
    ["postgres=", "expected NAME=unix:/path/to/socket"],
    ["pg sql=unix:/tmp/p", "the plugin name \"pg sql\" may hold only"],
    ["postgres=unix:tmp/p", "the socket path \"tmp/p\" is not absolute"],
    ["postgres=tcp:localhost", "\"localhost\" is not HOST:PORT"]
  ])("%p is refused: %s", (value, problem) => {
    const parsed = parseReattach(value)
    expect(parsed.ok).toBe(false)
    if (!parsed.ok) expect(parsed.problem).toContain(problem)
  })
})

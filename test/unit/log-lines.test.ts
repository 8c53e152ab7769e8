import { describe, expect, test } from "bun:test"
import { BoundedLines, lineText, LogRateLimit, MaxLogLineBytes } from "../../src/plugin-host/LogLines.ts"
import { parseLogLine, relayAnnotations } from "../../src/plugin-host/Hclog.ts"

const bytes = (text: string) => new TextEncoder().encode(text)

describe("bounded line splitter", () => {
  test("splits at newlines across chunks, dropping a \\r before them", () => {
    const lines = new BoundedLines(100)
    expect(lines.push(bytes("one\r\ntw"))).toEqual([{ text: "one", truncatedBytes: 0 }])
    expect(lines.push(bytes("o\nthree"))).toEqual([{ text: "two", truncatedBytes: 0 }])
    expect(lines.end()).toEqual({ text: "three", truncatedBytes: 0 })
    expect(lines.end()).toBeUndefined()
  })

  test("a line over the cap is cut and counted, and what follows the newline is whole", () => {
    const lines = new BoundedLines(8)
    expect(lines.push(bytes("abcdefghijkl"))).toEqual([])
    expect(lines.overflowing).toBe(true)
    expect(lines.push(bytes("mn\nok\n"))).toEqual([{ text: "abcdefgh", truncatedBytes: 6 }, { text: "ok", truncatedBytes: 0 }])
    expect(lineText({ text: "abcdefgh", truncatedBytes: 6 })).toBe("abcdefgh… [truncated 6 bytes]")
  })

  test("64 MiB without a newline holds no more than the cap", () => {
    const lines = new BoundedLines(MaxLogLineBytes)
    const chunk = new Uint8Array(64 * 1024).fill(0x41)
    let most = 0
    for (let i = 0; i < 1024; i++) {
      expect(lines.push(chunk)).toEqual([])
      most = Math.max(most, lines.held)
    }
    expect(most).toBe(MaxLogLineBytes)
    expect(lines.partial(5)).toBe("AAAAA")
    const last = lines.end()
    expect(last?.text.length).toBe(MaxLogLineBytes)
    expect(last?.truncatedBytes).toBe(64 * 1024 * 1024 - MaxLogLineBytes)
  })

  test("the cap can be raised between lines (handshake first, then logs)", () => {
    const lines = new BoundedLines(4)
    expect(lines.push(bytes("1|1\n"))).toEqual([{ text: "1|1", truncatedBytes: 0 }])
    lines.maxBytes = 10
    expect(lines.push(bytes("0123456789xy\n"))).toEqual([{ text: "0123456789", truncatedBytes: 2 }])
  })
})

describe("log rate limit", () => {
  test("a burst passes, then lines drop and are counted until tokens refill", () => {
    const limit = new LogRateLimit(10, 5)
    const admitted = Array.from({ length: 8 }, () => limit.admit(1_000)).filter(Boolean).length
    expect(admitted).toBe(5)
    expect(limit.takeDropped()).toBe(3)
    expect(limit.takeDropped()).toBe(0)
    // 10 lines a second: 100 ms later, one more.
    expect(limit.admit(1_100)).toBe(true)
    expect(limit.admit(1_100)).toBe(false)
    expect(limit.takeDropped()).toBe(1)
  })

  test("refill never exceeds the burst", () => {
    const limit = new LogRateLimit(10, 5)
    limit.admit(0)
    const admitted = Array.from({ length: 20 }, () => limit.admit(60_000)).filter(Boolean).length
    expect(admitted).toBe(5)
  })
})

describe("relayed plugin fields", () => {
  test("forged plugin and capability fields stay under plugin_fields", () => {
    const parsed = parseLogLine("{\"@level\":\"info\",\"@message\":\"hi\",\"plugin\":\"postgres\",\"capability\":\"prod/payments\"}")
    expect(relayAnnotations("evil", "stderr", parsed.fields)).toEqual({
      plugin: "evil",
      stream: "stderr",
      plugin_fields: { plugin: "postgres", capability: "prod/payments" }
    })
  })
  test("no fields, no plugin_fields", () => expect(relayAnnotations("p", "stdout", {})).toEqual({ plugin: "p", stream: "stdout" }))
})

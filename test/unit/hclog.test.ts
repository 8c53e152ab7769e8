import { describe, expect, test } from "bun:test"
import { parseLogLine } from "../../src/plugin-host/Hclog.ts"
import { hclogTimestamp, makeLogger } from "../../src/sdk/Log.ts"

describe("plugin stderr lines", () => {
  test("hclog JSON gives level, message and fields", () => {
    const line =
      "{\"@level\":\"warn\",\"@message\":\"disk low\",\"@module\":\"postgres\",\"@timestamp\":\"2026-11-23T20:00:00.123456Z\",\"free_mb\":12}"
    expect(parseLogLine(line)).toEqual({ level: "warn", message: "disk low", fields: { free_mb: 12 } })
  })
  test("[LEVEL] prefixes map to levels", () => {
    expect(parseLogLine("[ERROR] boom")).toEqual({ level: "error", message: "boom", fields: {} })
    expect(parseLogLine("[WARN] careful").level).toBe("warn")
  })
  test("a panic is an error", () => expect(parseLogLine("panic: runtime error").level).toBe("error"))
  test("anything else is debug", () => expect(parseLogLine("hello").level).toBe("debug"))
  test("broken JSON is a plain line", () => expect(parseLogLine("{not json").message).toBe("{not json"))
})

describe("SDK logger", () => {
  test("timestamps carry exactly 6 fractional digits", () => {
    expect(hclogTimestamp(1_700_000_000_123_456)).toBe("2023-11-14T22:13:20.123456Z")
    expect(hclogTimestamp()).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/)
  })
  test("writes hclog JSON lines that the host reads back", () => {
    const lines: Array<string> = []
    makeLogger("demo", (l) => lines.push(l)).info("ready", { port: 5432 })
    expect(lines[0]?.endsWith("\n")).toBe(true)
    expect(parseLogLine(lines[0] ?? "")).toEqual({ level: "info", message: "ready", fields: { port: 5432 } })
  })
})

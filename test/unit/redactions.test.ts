/**
 * Redactions: the resolved secret values every relayed plugin line goes
 * through (src/plugin-host/Redactions.ts). Values held per owner, shared
 * values counted, dropped with their last owner, short values left alone,
 * structured fields redacted at any depth, and past its bounds every text
 * withheld rather than one value let through.
 */
import { describe, expect, test } from "bun:test"
import { parseLogLine } from "../../src/plugin-host/Hclog.ts"
import { make, Redacted, redactFields, redactor, Withheld } from "../../src/plugin-host/Redactions.ts"

describe("redactor", () => {
  test("every occurrence of every value goes, a longer value before one it contains", () => {
    const redact = redactor(["hunter22", "hunter22-admin"])
    expect(redact("a hunter22 b hunter22-admin c hunter22")).toBe(`a ${Redacted} b ${Redacted} c ${Redacted}`)
  })
  test("values shorter than four characters are left alone: they would blank out ordinary words", () => {
    expect(redactor(["on", "abc"])("on abc")).toBe("on abc")
  })
})

describe("redactFields", () => {
  test("strings at any depth, keys included; numbers and booleans kept", () => {
    const redact = redactor(["s3cr3t-value"])
    expect(redactFields({ token: "s3cr3t-value", n: 1, ok: true, nested: { list: ["x s3cr3t-value y"] }, "s3cr3t-value": null }, redact))
      .toEqual({ token: Redacted, n: 1, ok: true, nested: { list: [`x ${Redacted} y`] }, [Redacted]: null })
  })
  test("a hclog line from a plugin: message and fields both redacted", () => {
    const line = parseLogLine(JSON.stringify({ "@level": "warn", "@message": "got s3cr3t-value", token: "s3cr3t-value" }))
    const redact = redactor(["s3cr3t-value"])
    expect(redact(line.message)).toBe(`got ${Redacted}`)
    expect(redactFields(line.fields, redact)).toEqual({ token: Redacted })
  })
  test("nesting deeper than the bound is replaced whole", () => {
    let deep: unknown = "s3cr3t-value"
    for (let i = 0; i < 20; i++) deep = { deeper: deep }
    expect(JSON.stringify(redactFields(deep, (t) => t))).not.toContain("s3cr3t-value")
  })
})

describe("Redactions", () => {
  test("values are held per owner; a value two owners share stays until both let it go", () => {
    const r = make()
    r.set("shop/db", ["pw-shared-1", "pw-only-db"])
    r.set("shop/cache", ["pw-shared-1"])
    expect(r.size()).toEqual({ owners: 2, values: 2 })
    expect(r.redact("pw-shared-1 pw-only-db")).toBe(`${Redacted} ${Redacted}`)
    r.set("shop/db", [])
    expect(r.redact("pw-shared-1 pw-only-db")).toBe(`${Redacted} pw-only-db`)
    r.set("shop/cache", [])
    expect(r.size()).toEqual({ owners: 0, values: 0 })
    expect(r.redact("pw-shared-1")).toBe("pw-shared-1")
  })
  test("an owner's new values replace its old ones", () => {
    const r = make()
    r.set("shop/db", ["pw-old-value"])
    r.set("shop/db", ["pw-new-value"])
    expect(r.redact("pw-old-value pw-new-value")).toBe(`pw-old-value ${Redacted}`)
    expect(r.size()).toEqual({ owners: 1, values: 1 })
  })
  test("past its bounds (values or bytes) it withholds every text rather than let one value through", () => {
    const byCount = make({ maxValues: 2, maxBytes: 1_000 })
    byCount.set("a", ["value-1", "value-2"])
    expect(byCount.redact("value-1 and more")).toBe(`${Redacted} and more`)
    byCount.set("b", ["value-3"])
    expect(byCount.redact("value-3 and more")).toBe(Withheld)
    byCount.set("b", [])
    expect(byCount.redact("value-1 and more")).toBe(`${Redacted} and more`)
    const byBytes = make({ maxValues: 100, maxBytes: 10 })
    byBytes.set("a", ["0123456789abc"])
    expect(byBytes.redact("anything")).toBe(Withheld)
  })
})

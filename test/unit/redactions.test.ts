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

describe("redactor over many values", () => {
  // Past a few values the text is scanned once; it must remove what the search in turn removes.
  const values = Array.from({ length: 200 }, (_, i) => `secret-${String(i).padStart(4, "0")}-value`)
  const many = redactor([...values, "secret-0007-value-longer", "abcd"])

  test("every occurrence of each, longest first where one starts another, at the start, the end and side by side", () => {
    expect(many("secret-0000-value")).toBe(Redacted)
    expect(many("x secret-0199-value y secret-0042-valuesecret-0042-value z")).toBe(`x ${Redacted} y ${Redacted}${Redacted} z`)
    expect(many("secret-0007-value-longer and secret-0007-value")).toBe(`${Redacted} and ${Redacted}`)
    expect(many("abcd abc secret-0200-value")).toBe(`${Redacted} abc secret-0200-value`)
  })

  test("a text holding none is returned as it is", () => {
    const text = "plugin applied dependent config-secret for shop/db-42"
    expect(many(text)).toBe(text)
  })

  test("the scan and the search in turn agree on random texts", () => {
    const few = (text: string) => values.reduce((t, v) => t.split(v).join(Redacted), text)
    let seed = 7
    const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31
    for (let n = 0; n < 200; n++) {
      const parts = Array.from({ length: 6 }, () => (random() < 0.5 ? values[Math.floor(random() * values.length)] : "·word·"))
      const text = parts.join("")
      expect(redactor(values)(text)).toBe(few(text))
    }
  })
})

test("Redactions keeps its index in step: a value added, shared, dropped, and one inside another", () => {
  const r = make()
  for (let i = 0; i < 50; i++) r.set(`ns/c${i}`, [`shared-prefix-${i}`])
  r.set("ns/long", ["shared-prefix-1-and-more"])
  expect(r.redact("shared-prefix-1-and-more shared-prefix-1 shared-prefix-49")).toBe(`${Redacted} ${Redacted} ${Redacted}`)
  r.set("ns/long", [])
  expect(r.redact("shared-prefix-1-and-more")).toBe(`${Redacted}-and-more`)
  r.set("ns/c1", [])
  expect(r.redact("shared-prefix-1-and-more shared-prefix-10")).toBe(`shared-prefix-1-and-more ${Redacted}`)
  expect(r.size()).toEqual({ owners: 49, values: 49 })
})

test("values sharing a long start (tokens of one issuer) and of every length tier are each found", () => {
  const tokens = Array.from({ length: 300 }, (_, i) => `ghp_0000000000000000${i}`)
  const r = make()
  r.set("ns/tokens", [...tokens, "abcd", "abcdefgh", "abcdefghijklmnopq"])
  expect(r.redact(`a ${tokens[0]} b ${tokens[299]} c ${tokens[150]}x`)).toBe(`a ${Redacted} b ${Redacted} c ${Redacted}x`)
  // Token 3 followed by "0" is token 30: the longest value found at a position wins.
  expect(r.redact(`${tokens[3]}0`)).toBe(Redacted)
  expect(r.redact("abcdefghijklmnopq abcdefghij abcdx")).toBe(`${Redacted} ${Redacted}ij ${Redacted}x`)
})

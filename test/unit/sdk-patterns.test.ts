/**
 * Parameter patterns the TypeScript SDK takes are patterns the API server's
 * CEL (RE2) takes and reads alike: definePlugin refuses the rest, naming what
 * RE2 does not take. The cases are go/sdk/testdata/patterns.json, which
 * go/sdk/patterns_test.go holds against Go's regexp (RE2 itself).
 */
import { describe, expect, test } from "bun:test"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { re2Problem } from "../../src/api/ParameterRules.ts"
import { definePlugin } from "../../src/sdk/Plugin.ts"
import { thrownMessage } from "../support/thrown.ts"

const cases = JSON.parse(readFileSync(join(import.meta.dir, "../../go/sdk/testdata/patterns.json"), "utf8")) as {
  readonly refusedByRe2: ReadonlyArray<string>
  readonly readOtherwise: ReadonlyArray<string>
  readonly shared: ReadonlyArray<string>
}

const withPattern = (pattern: string) => () =>
  definePlugin({
    name: "p",
    category: "c",
    types: [{ type: "t", versions: ["1"] }],
    parameters: [{ name: "P", pattern }],
    dependents: []
  })

describe("patterns outside RE2 are refused at definition", () => {
  for (const pattern of [...cases.refusedByRe2, ...cases.readOtherwise]) {
    test(`${pattern}: JavaScript takes it, definePlugin does not`, () => {
      expect(() => new RegExp(pattern)).not.toThrow()
      const what = re2Problem(pattern)
      expect(what).toBeString()
      expect(thrownMessage(withPattern(pattern))).toBe(
        `invalid plugin definition: parameter P: pattern ${pattern} uses ${what}, which RE2 does not take as JavaScript does; ` +
          "the API server checks patterns with RE2 (CEL's matches): write it without lookaround, backreferences or that escape"
      )
    })
  }

  test("each says what it met", () => {
    expect([
      "^(?=.*\\d).{8,}$",
      "a(?!b)",
      "(?<=\\$)\\d+",
      "(?<!-)\\d+",
      "(a)\\1",
      "(?<n>a)\\k<n>",
      "\\u00e9",
      "a{1001}",
      "[^]",
      "\\p{L}",
      "[\\b]",
      "\\x{41}"
    ].map(re2Problem)).toEqual([
      "a lookahead (?=…)",
      "a negative lookahead (?!…)",
      "a lookbehind (?<=…)",
      "a negative lookbehind (?<!…)",
      "a backreference \\1",
      "a named backreference \\k<…>",
      "the escape \\u",
      "a repeat count over 1000 ({1001})",
      "an empty class [] or [^]",
      "the escape \\p",
      "\\b inside a class",
      "\\x without two hex digits"
    ])
  })

  test("escaped characters are skipped whole: an escaped bracket, paren or brace starts nothing", () => {
    for (const pattern of ["\\[]", "\\(?=a\\)", "a\\{1001}", "[(?=]", "[\\]]"]) expect(re2Problem(pattern)).toBeUndefined()
  })
})

describe("patterns RE2 and JavaScript read alike are taken", () => {
  for (const pattern of cases.shared) {
    test(pattern, () => {
      expect(re2Problem(pattern)).toBeUndefined()
      expect(withPattern(pattern)).not.toThrow()
    })
  }
})

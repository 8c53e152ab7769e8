/**
 * `npm run bench:all` without running a bench: every bench it runs has its
 * section in docs/performance.md and writes its markdown, and a table is
 * placed between its markers and nowhere else.
 */
import { describe, expect, test } from "bun:test"
import { existsSync, readFileSync } from "node:fs"
import { join, resolve } from "node:path"
import { benches, markers, placeBetweenMarkers } from "../../scripts/bench-all.ts"

const root = resolve(import.meta.dir, "../..")
const doc = readFileSync(join(root, "docs/performance.md"), "utf8")

describe("bench:all", () => {
  test("runs every bench in bench/, each under its own name", () => {
    const scripts = benches.map((b) => b.script)
    expect(new Set(benches.map((b) => b.name)).size).toBe(benches.length)
    for (const name of ["startup", "download", "plugins", "interop", "reconcile", "control-plane", "references"]) {
      expect(scripts).toContain(`bench/${name}.ts`)
    }
  })

  test("each bench has its markers once in docs/performance.md, the end after the beginning", () => {
    for (const bench of benches) {
      const { begin, end } = markers(bench.name)
      expect({ bench: bench.name, begins: doc.split(begin).length - 1, ends: doc.split(end).length - 1 }).toEqual({
        bench: bench.name,
        begins: 1,
        ends: 1
      })
      expect(doc.indexOf(end)).toBeGreaterThan(doc.indexOf(begin))
    }
  })

  test("each bench writes its tables to the file BENCH_MARKDOWN names", () => {
    for (const bench of benches) {
      expect(existsSync(join(root, bench.script))).toBe(true)
      const source = readFileSync(join(root, bench.script), "utf8")
      expect({ script: bench.script, writes: /writeMarkdown\(|BENCH_MARKDOWN/.test(source) }).toEqual({
        script: bench.script,
        writes: true
      })
    }
  })

  test("places a table between its bench's markers, keeping the markers and everything around them", () => {
    const text = [
      "intro",
      "<!-- bench:plugins -->",
      "old stamp",
      "",
      "| old |",
      "<!-- /bench:plugins -->",
      "prose",
      "<!-- bench:interop -->",
      "kept",
      "<!-- /bench:interop -->",
      ""
    ].join("\n")
    expect(placeBetweenMarkers(text, "plugins", "new stamp\n\n| new |\n")).toBe(
      [
        "intro",
        "<!-- bench:plugins -->",
        "new stamp",
        "",
        "| new |",
        "<!-- /bench:plugins -->",
        "prose",
        "<!-- bench:interop -->",
        "kept",
        "<!-- /bench:interop -->",
        ""
      ].join("\n")
    )
  })

  test("places nothing where a bench's markers are missing", () => {
    expect(placeBetweenMarkers("no markers here\n", "reconcile", "| x |")).toBeUndefined()
    expect(placeBetweenMarkers("<!-- /bench:reconcile -->\n<!-- bench:reconcile -->\n", "reconcile", "| x |")).toBeUndefined()
  })
})

/**
 * What a plugin loads and parses before its handshake. node: builtins and
 * the services' generated code come after it (src/sdk/Serve.ts); a static
 * import anywhere breaks that quietly: Bun's bundler hoists the static
 * imports of builtins out of lazily loaded modules to the top of the bundle,
 * so they load first (a static node:stream import once cost ~2.5 ms there).
 * A bundle also carries its post-handshake code as a string, so that it is
 * not parsed at start (src/sdk/ServicesLoader.ts).
 */
import { expect, test } from "bun:test"
import { join } from "node:path"
import { builtPlugin, root, testPlugin } from "../support/paths.ts"

/** The module specifiers a minified bundle imports statically. */
const staticImports = (text: string) =>
  Array.from(
    text.matchAll(/(?:^|[;}\n])\s*import\s*(?:[\w$]+\s*,?\s*)?(?:\{[^}]*\}|\*\s*as\s+[\w$]+)?\s*(?:from\s*)?"([^"]+)"/g),
    (m) => m[1]
  )

test("a plugin bundle imports no module statically: nothing loads before the handshake but the bundle", async () => {
  for (const bundle of [builtPlugin("postgres.js"), testPlugin("conform.js")]) {
    expect({ bundle, imports: staticImports(await Bun.file(bundle).text()) }).toEqual({ bundle, imports: [] })
  }
})

test("a compiled plugin's entry module imports nothing statically, and what loads after the handshake is in modules of its own", async () => {
  // As scripts/build-plugins.ts compiles it (--splitting), less the bytecode.
  const built = await Bun.build({
    entrypoints: [join(root, "plugins/postgres/main.ts")],
    target: "bun",
    format: "esm",
    minify: true,
    splitting: true
  })
  const entry = built.outputs.find((o) => o.kind === "entry-point")
  const text = (await entry?.text()) ?? ""
  expect(staticImports(text)).toEqual([])
  expect(text).not.toContain("plugin.GRPCBroker")
  expect(text.length).toBeLessThan(30_000)
  expect(built.outputs.filter((o) => o.kind === "chunk").length).toBeGreaterThanOrEqual(1)
})

test("a plugin bundle carries what loads after the handshake as a string, loaded from a Blob URL", async () => {
  const text = await Bun.file(builtPlugin("postgres.js")).text()
  expect(text.match(/URL\.createObjectURL/g)?.length).toBe(1)
  // The string is a bundle of its own, in double quotes (scripts/build-plugins.ts says why).
  const start = text.indexOf("\"// @bun\\n")
  expect(start).toBeGreaterThan(0)
  let end = start + 1
  while (text[end] !== "\"") end += text[end] === "\\" ? 2 : 1
  const carried = JSON.parse(text.slice(start, end + 1)) as string
  const parsedAtStart = text.slice(0, start) + text.slice(end + 1)
  // The generated code, the HTTP/2 server (its preface, HPACK) and effect are in the string only.
  for (const marker of ["plugin.GRPCBroker", "PRI * HTTP/2.0", "a Huffman string holds EOS", "~effect/Cause"]) {
    expect({ marker, carried: carried.includes(marker), parsedAtStart: parsedAtStart.includes(marker) }).toEqual({
      marker,
      carried: true,
      parsedAtStart: false
    })
  }
  expect(parsedAtStart.length).toBeLessThan(30_000)
  // The SDK serves HTTP/2 itself: neither part loads node:http2, nor node:stream under it.
  for (const builtin of ["node:http2", "node:stream"]) expect({ builtin, found: text.includes(builtin) }).toEqual({ builtin, found: false })
})

/**
 * What a plugin loads before its handshake. node: builtins and the
 * services' generated code come after it (src/sdk/Serve.ts); a static import
 * anywhere in a bundle breaks that quietly: Bun's bundler hoists the static
 * imports of builtins out of lazily loaded modules to the top of the bundle,
 * so they load first (a static node:stream import once cost ~2.5 ms there).
 */
import { expect, test } from "bun:test"
import { builtPlugin, testPlugin } from "./support/paths.ts"

/** The module specifiers a minified bundle imports statically. */
const staticImports = async (bundle: string) =>
  Array.from((await Bun.file(bundle).text()).matchAll(/(?:^|[;}\n])\s*import\s*(?:[\w$]+\s*,?\s*)?(?:\{[^}]*\}|\*\s*as\s+[\w$]+)?\s*(?:from\s*)?"([^"]+)"/g), (m) => m[1])

test("a plugin bundle imports no module statically: nothing loads before the handshake but the bundle", async () => {
  for (const bundle of [builtPlugin("postgres.js"), testPlugin("conform.js")]) {
    expect({ bundle, imports: await staticImports(bundle) }).toEqual({ bundle, imports: [] })
  }
})

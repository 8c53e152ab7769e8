/**
 * src/ is layered, and every import points down (docs/architecture.md):
 * a module may import its own folder, and folders of its own rank or below;
 * never above, type-only imports included. No import cycles, between files
 * (value imports) or between folders (any import). The bundled plugins
 * import the SDK as `@halkyon/sdk`, nothing of src/ by path.
 */
import { describe, expect, test } from "bun:test"
import { relative } from "node:path"
import { cyclesOf, importsOf, sourceFiles } from "../support/imports.ts"
import { root } from "../support/paths.ts"

/** Each folder of src/ (or top-level file) and its rank, bottom first. */
export const Layers: ReadonlyArray<ReadonlyArray<string>> = [
  ["gen", "Version.ts"],
  ["protocol"],
  ["api", "kube", "metrics", "config", "lock"],
  ["plugin-client", "sdk"],
  ["plugin-host", "registry", "downloader", "release"],
  ["controller"],
  ["reconciler", "binding"],
  ["operator"],
  ["cli"],
  ["main.ts"]
]

const rankOf = new Map(Layers.flatMap((names, rank) => names.map((name) => [name, rank] as const)))
const src = `${root}/src`
/** The layer a file of src/ belongs to: its folder, or its own name at the top level. */
const layerOf = (file: string) => relative(src, file).split("/")[0] ?? ""

const srcEdges = sourceFiles(src).flatMap(importsOf)

describe("layers", () => {
  test("every folder and top-level file of src/ has a layer", () => {
    const unranked = [...new Set(sourceFiles(src).map(layerOf))].filter((layer) => !rankOf.has(layer))
    expect(unranked).toEqual([])
  })

  test("no import points up a layer, type-only imports included", () => {
    const upward = srcEdges
      .filter((e) => e.to.startsWith(`${src}/`))
      .filter((e) => (rankOf.get(layerOf(e.to)) ?? Infinity) > (rankOf.get(layerOf(e.from)) ?? -Infinity))
      .map((e) => `${relative(root, e.from)} -> ${relative(root, e.to)}${e.typeOnly ? " (type)" : ""}`)
    expect(upward).toEqual([])
  })

  test("no module of src/ imports tests, benchmarks or scripts (package.json, for the version, only)", () => {
    const outside = srcEdges.filter((e) => !e.to.startsWith(`${src}/`) && e.to !== `${root}/package.json`).map((e) =>
      `${relative(root, e.from)} -> ${relative(root, e.to)}`
    )
    expect(outside).toEqual([])
  })

  test("no import cycle between files", () => {
    const graph = new Map<string, Set<string>>()
    for (const e of srcEdges) {
      if (e.typeOnly) continue
      const targets = graph.get(e.from) ?? new Set<string>()
      targets.add(e.to)
      graph.set(e.from, targets)
    }
    expect(cyclesOf(graph).map((cycle) => cycle.map((f) => relative(root, f)))).toEqual([])
  })

  test("no import cycle between folders", () => {
    const graph = new Map<string, Set<string>>()
    for (const e of srcEdges) {
      const [from, to] = [layerOf(e.from), layerOf(e.to)]
      if (from === to) continue
      const targets = graph.get(from) ?? new Set<string>()
      targets.add(to)
      graph.set(from, targets)
    }
    expect(cyclesOf(graph)).toEqual([])
  })

  test("the bundled plugins reach the SDK by its package name only, as an outside project does", () => {
    const plugins = `${root}/plugins`
    const stray = sourceFiles(plugins)
      .flatMap(importsOf)
      .filter((e) => !e.to.startsWith(`${plugins}/`))
      .map((e) => `${relative(root, e.from)} -> ${relative(root, e.to)}`)
    expect(stray).toEqual([])
  })
})

describe("the cycle finder the checks rely on", () => {
  test("finds a cycle of three and a self-loop, and nothing in a chain", () => {
    const graph = new Map([
      ["a", new Set(["b"])],
      ["b", new Set(["c"])],
      ["c", new Set(["a"])],
      ["d", new Set(["d"])],
      ["e", new Set(["f"])]
    ])
    expect(cyclesOf(graph)).toEqual([["a", "b", "c"], ["d"]])
  })
})

/**
 * Reads the module graph of TypeScript sources: every relative specifier a
 * file imports or re-exports, statically or dynamically, type-only included.
 * Used by the layering test; it knows nothing of the layers themselves.
 */
import { readdirSync, readFileSync } from "node:fs"
import { dirname, join, resolve } from "node:path"

export interface ImportEdge {
  readonly from: string
  readonly to: string
  readonly typeOnly: boolean
}

/** Every .ts file under `dir`, recursively, as absolute paths. */
export const sourceFiles = (dir: string): ReadonlyArray<string> =>
  readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith(".ts") && !e.name.endsWith(".d.ts"))
    .map((e) => join(e.parentPath, e.name))
    .sort()

// `import x from "…"`, `import type {…} from "…"`, `export {…} from "…"`,
// `import "…"`, and `import("…")`; comments are stripped first.
const staticForm = /(?:^|[;\n])\s*(import|export)\s+(type\s+)?(?:[^"';]*?\s+from\s+)?["']([^"']+)["']/g
const dynamicForm = /\bimport\(\s*["']([^"']+)["']\s*\)/g
const comments = /\/\*[\s\S]*?\*\/|(^|[^:"'\\])\/\/[^\n]*/g

/** The relative imports of one file, resolved to absolute paths. */
export const importsOf = (file: string): ReadonlyArray<ImportEdge> => {
  const text = readFileSync(file, "utf8").replace(comments, "$1")
  const edges: Array<ImportEdge> = []
  const add = (specifier: string, typeOnly: boolean) => {
    if (specifier.startsWith(".")) edges.push({ from: file, to: resolve(dirname(file), specifier), typeOnly })
  }
  for (const m of text.matchAll(staticForm)) add(m[3] ?? "", m[2] !== undefined)
  for (const m of text.matchAll(dynamicForm)) add(m[1] ?? "", false)
  return edges
}

/** The cycles of a directed graph (Tarjan's strongly connected components of more than one node, or a self-loop). */
export const cyclesOf = (graph: ReadonlyMap<string, ReadonlySet<string>>): ReadonlyArray<ReadonlyArray<string>> => {
  let counter = 0
  const index = new Map<string, number>()
  const low = new Map<string, number>()
  const stack: Array<string> = []
  const onStack = new Set<string>()
  const found: Array<Array<string>> = []
  const visit = (node: string) => {
    index.set(node, counter)
    low.set(node, counter)
    counter++
    stack.push(node)
    onStack.add(node)
    for (const next of graph.get(node) ?? []) {
      if (!index.has(next)) {
        visit(next)
        low.set(node, Math.min(low.get(node)!, low.get(next)!))
      } else if (onStack.has(next)) low.set(node, Math.min(low.get(node)!, index.get(next)!))
    }
    if (low.get(node) === index.get(node)) {
      const component: Array<string> = []
      let member: string
      do {
        member = stack.pop()!
        onStack.delete(member)
        component.push(member)
      } while (member !== node)
      if (component.length > 1 || graph.get(node)?.has(node)) found.push(component.sort())
    }
  }
  for (const node of [...graph.keys()].sort()) if (!index.has(node)) visit(node)
  return found
}

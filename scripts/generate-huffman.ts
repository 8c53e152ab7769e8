/**
 * Writes src/sdk/wire/HuffmanCode.ts: the code lengths of HPACK's Huffman
 * code (RFC 7541 Appendix B), read from the table as golang.org/x/net
 * carries it (http2/hpack/tables.go, in the Go module cache). The code is
 * canonical (each length's codes are consecutive, in symbol order, after
 * the shorter ones), so the 257 lengths give every code; this script
 * checks that against the codes, then writes the lengths and the decoding
 * tree Hpack.ts walks.
 *
 *   bun scripts/generate-huffman.ts [path/to/tables.go]
 */
import { execFileSync } from "node:child_process"
import { readFileSync, writeFileSync } from "node:fs"
import { join, resolve } from "node:path"

const root = resolve(import.meta.dir, "..")
const goModCache = () => execFileSync("go", ["env", "GOMODCACHE"], { encoding: "utf8" }).trim()
const path = process.argv[2] ?? join(goModCache(), "golang.org/x/net@v0.61.0/http2/hpack/tables.go")
const source = readFileSync(path, "utf8")

const numbers = (name: string): Array<number> => {
  const start = source.indexOf(`var ${name} =`)
  if (start < 0) throw new Error(`${path} has no ${name}`)
  const body = source.slice(source.indexOf("{", start) + 1, source.indexOf("}", start))
  return [...body.matchAll(/0x[0-9a-fA-F]+|\d+/g)].map((m) => Number(m[0]))
}

const codes = numbers("huffmanCodes")
// EOS (256) is 30 bits of ones; tables.go leaves it out.
const lengths = [...numbers("huffmanCodeLen"), 30]
if (codes.length !== 256 || lengths.length !== 257) throw new Error(`${path}: expected 256 codes and lengths`)

const symbols = lengths.map((length, symbol) => ({ symbol, length })).sort((a, b) => a.length - b.length || a.symbol - b.symbol)
let code = 0
let previous = symbols[0]?.length ?? 0
for (const { symbol, length } of symbols) {
  code *= 2 ** (length - previous)
  previous = length
  const expected = symbol === 256 ? 0x3fffffff : codes[symbol]
  if (code !== expected) throw new Error(`symbol ${symbol}: canonical code ${code.toString(16)}, table ${expected?.toString(16)}`)
  code++
}

/**
 * The decoding tree: node `n`'s children at `2n` (bit 0) and `2n + 1` (bit
 * 1); a child below 0 is the leaf of symbol `-child - 1`. 257 leaves make
 * 256 branch nodes, node 0 the root; every slot is filled (the code is
 * complete).
 */
const tree = new Array<number>(2 * 256).fill(0)
let nodes = 1
code = 0
previous = symbols[0]?.length ?? 0
for (const { symbol, length } of symbols) {
  code *= 2 ** (length - previous)
  previous = length
  let node = 0
  for (let bit = length - 1; bit > 0; bit--) {
    const slot = 2 * node + (Math.floor(code / 2 ** bit) % 2)
    if (tree[slot] === 0) tree[slot] = nodes++
    node = tree[slot] as number
  }
  tree[2 * node + (code % 2)] = -symbol - 1
  code++
}
if (nodes !== 256 || tree.slice(1).includes(0)) throw new Error("the code does not make a complete tree")

const rows = (values: ReadonlyArray<number>) => {
  const out: Array<string> = []
  for (let i = 0; i < values.length; i += 32) out.push(`  ${values.slice(i, i + 32).join(", ")}`)
  return out.join(",\n")
}
writeFileSync(
  join(root, "src/sdk/wire/HuffmanCode.ts"),
  `/**
 * HPACK's Huffman code (RFC 7541 Appendix B) as the bit length of each
 * symbol's code, symbols 0-255 and EOS (256). The code is canonical, so
 * the codes follow from the lengths.
 * Written by scripts/generate-huffman.ts; do not edit.
 */
export const HuffmanCodeLengths: ReadonlyArray<number> = [
${rows(lengths)}
]

/**
 * The same code as a decoding tree: node \`n\`'s children are at \`2n\` (bit 0)
 * and \`2n + 1\` (bit 1); a child below 0 is the leaf of symbol \`-child - 1\`.
 * Node 0 is the root. Data rather than built at load, so that a plugin runs
 * no loop for it before its first call.
 */
export const HuffmanDecodeTree: ReadonlyArray<number> = [
${rows(tree)}
]
`
)

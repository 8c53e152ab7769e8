import { expect, test } from "bun:test"
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, relative } from "node:path"
import { bun, root } from "../support/paths.ts"

const files = (dir: string): Array<string> =>
  readdirSync(dir).flatMap((e) => (statSync(join(dir, e)).isDirectory() ? files(join(dir, e)) : [join(dir, e)]))

test("the generated TypeScript in src/gen matches the .proto files (run npm run generate)", () => {
  const out = mkdtempSync(join(tmpdir(), "halkyon-gen-check-"))
  try {
    const result = Bun.spawnSync([bun, join(root, "scripts/generate-proto.ts"), out], { stderr: "pipe" })
    expect(result.exitCode).toBe(0)
    const committed = join(root, "src/gen")
    const fresh = files(out).map((f) => relative(out, f)).sort()
    expect(fresh).toEqual(files(committed).map((f) => relative(committed, f)).sort())
    for (const f of fresh) expect(readFileSync(join(out, f), "utf8")).toBe(readFileSync(join(committed, f), "utf8"))
  } finally {
    rmSync(out, { recursive: true, force: true })
  }
}, 60_000)

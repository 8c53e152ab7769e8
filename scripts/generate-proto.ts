/**
 * Generates TypeScript from the .proto files in proto/ into src/gen/ (or the
 * folder given as the first argument, which the staleness test uses).
 *
 * ts-proto writes plain encode/decode functions over @bufbuild/protobuf's
 * wire module. We use it rather than protoc-gen-es because descriptor-based
 * code builds its descriptors when loaded, which cost a bundled plugin ~12 ms
 * of start-up; these functions cost nothing until called.
 * buf and ts-proto come from npm, so nothing else needs installing.
 * Run without an argument (npm run generate), it then regenerates the Go
 * code too (generate-go-proto.ts).
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"

const root = resolve(import.meta.dir, "..")
const out = resolve(process.argv[2] ?? join(root, "src/gen"))
const bin = join(root, "node_modules/.bin")

const options = [
  "outputServices=generic-definitions",
  "esModuleInterop=true",
  "forceLong=number",
  "outputJsonMethods=false",
  "outputPartialMethods=false",
  "useOptionals=messages",
  "oneof=unions-value",
  "env=node",
  "importSuffix=.ts"
]

const work = mkdtempSync(join(tmpdir(), "halkyon-gen-"))
try {
  const template = join(work, "buf.gen.yaml")
  writeFileSync(
    template,
    JSON.stringify({ version: "v2", clean: true, plugins: [{ local: join(bin, "protoc-gen-ts_proto"), out, opt: options }] })
  )
  const result = Bun.spawnSync([join(bin, "buf"), "generate", "--template", template], {
    cwd: join(root, "proto"),
    stdout: "inherit",
    stderr: "inherit"
  })
  if (result.exitCode !== 0) {
    console.error(`buf generate failed with exit code ${result.exitCode}`)
    process.exit(1)
  }
} finally {
  rmSync(work, { recursive: true, force: true })
}

if (process.argv[2] === undefined) await import("./generate-go-proto.ts")

/**
 * The Go side of the build: the committed Go code matches the .proto (like
 * generated.test.ts for TypeScript), go vet and go test pass in each Go
 * module, and build-plugins cross-built the Go plugin for every release
 * platform (npm test runs build-plugins first).
 */
import { expect, test } from "bun:test"
import { mkdtempSync, openSync, readSync, readdirSync, readFileSync, rmSync, statSync, closeSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, relative } from "node:path"
import { goBinary, ReleasePlatforms } from "../../scripts/go-plugin-build.ts"
import { bun, root } from "../support/paths.ts"

const files = (dir: string): Array<string> =>
  readdirSync(dir).flatMap((e) => (statSync(join(dir, e)).isDirectory() ? files(join(dir, e)) : [join(dir, e)]))

test("the generated Go code in go/gen matches the .proto files (run npm run generate)", () => {
  const out = mkdtempSync(join(tmpdir(), "halkyon-gen-go-check-"))
  try {
    const result = Bun.spawnSync([bun, join(root, "scripts/generate-go-proto.ts"), out], { stderr: "pipe" })
    expect(result.exitCode).toBe(0)
    const committed = join(root, "go/gen")
    const fresh = files(join(out, "gen")).map((f) => relative(join(out, "gen"), f)).sort()
    expect(fresh).toEqual(files(committed).map((f) => relative(committed, f)).sort())
    for (const f of fresh) expect(readFileSync(join(out, "gen", f), "utf8")).toBe(readFileSync(join(committed, f), "utf8"))
  } finally {
    rmSync(out, { recursive: true, force: true })
  }
}, 300_000)

const goModules = ["go", "plugins/redis", "test/fixtures/go-plugins", "test/conformance"]

for (const module of goModules) {
  test(`go vet and go test pass in ${module}`, () => {
    for (const args of [["vet", "./..."], ["test", "./..."]]) {
      const result = Bun.spawnSync([goBinary(), ...args], {
        cwd: join(root, module),
        env: { ...process.env, GOFLAGS: process.env.GOFLAGS ?? "-mod=mod", GOWORK: "off" },
        stdout: "pipe",
        stderr: "pipe"
      })
      expect({ args, exitCode: result.exitCode, output: result.exitCode === 0 ? "" : result.stdout.toString() + result.stderr.toString() })
        .toEqual({ args, exitCode: 0, output: "" })
    }
  }, 300_000)
}

/** The executable format and CPU a binary's header names. */
const header = (path: string) => {
  const fd = openSync(path, "r")
  const bytes = Buffer.alloc(4096)
  readSync(fd, bytes, 0, bytes.length, 0)
  closeSync(fd)
  if (bytes.readUInt32BE(0) === 0x7f454c46) {
    return { os: "linux", arch: ({ 0x3e: "amd64", 0xb7: "arm64" } as Record<number, string>)[bytes.readUInt16LE(18)] }
  }
  if (bytes.readUInt32LE(0) === 0xfeedfacf) {
    return { os: "darwin", arch: ({ 0x01000007: "amd64", 0x0100000c: "arm64" } as Record<number, string>)[bytes.readUInt32LE(4)] }
  }
  if (bytes.toString("latin1", 0, 2) === "MZ") {
    const pe = bytes.readUInt32LE(0x3c)
    return { os: "windows", arch: ({ 0x8664: "amd64", 0xaa64: "arm64" } as Record<number, string>)[bytes.readUInt16LE(pe + 4)] }
  }
  return { os: "unknown", arch: "unknown" }
}

test("the Go redis plugin is built for every release platform, CGO off, under dist/plugin-builds/redis/<os>_<arch>", () => {
  for (const { os, arch } of ReleasePlatforms) {
    const file = join(root, "dist/plugin-builds/redis", `${os}_${arch}`, os === "windows" ? "redis.exe" : "redis")
    expect({ file, ...header(file) }).toEqual({ file, os, arch })
  }
  // Static: no program interpreter, so it runs in a FROM scratch image.
  const linux = readFileSync(join(root, "dist/plugin-builds/redis/linux_amd64/redis"))
  expect(linux.includes("/lib64/ld-linux")).toBe(false)
})

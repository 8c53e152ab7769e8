/**
 * Generates the Go code of the capability contract (proto/halkyon/capability)
 * into go/gen/ (or into the folder given as the first argument, which the
 * staleness test uses), from the same .proto as the TypeScript side.
 *
 * The generated code is committed, so building a Go plugin needs no protoc.
 * The two generators are Go programs at pinned versions, installed from the
 * Go module proxy into ~/.cache/halkyon/go-tools/ on first use; buf (npm)
 * runs them as local plugins.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { homedir, tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { goBinary } from "./go-plugin-build.ts"

export const ProtocGenGo = "google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.11"
export const ProtocGenGoGrpc = "google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.1"

const root = resolve(import.meta.dir, "..")
const out = resolve(process.argv[2] ?? join(root, "go"))
const tools = join(homedir(), ".cache/halkyon/go-tools")

/** Installs a pinned Go tool into its own folder once; returns its path. */
const tool = (spec: string) => {
  const [path = "", version = ""] = spec.split("@")
  const bin = join(tools, version, path.split("/").pop() ?? "")
  if (!existsSync(bin)) {
    mkdirSync(join(tools, version), { recursive: true })
    const result = Bun.spawnSync([goBinary(), "install", spec], {
      env: { ...process.env, GOBIN: join(tools, version), CGO_ENABLED: "0" },
      stdout: "inherit",
      stderr: "inherit"
    })
    if (result.exitCode !== 0) throw new Error(`go install ${spec} failed with exit code ${result.exitCode}`)
  }
  return bin
}

const work = mkdtempSync(join(tmpdir(), "halkyon-gen-go-"))
try {
  const template = join(work, "buf.gen.yaml")
  // module= strips the go_package prefix: files land in <out>/gen/capability/v1.
  const opt = ["module=halkyon.io/plugins", "paths=import"]
  writeFileSync(
    template,
    JSON.stringify({
      version: "v2",
      plugins: [
        { local: tool(ProtocGenGo), out, opt },
        { local: tool(ProtocGenGoGrpc), out, opt }
      ]
    })
  )
  const result = Bun.spawnSync(
    [join(root, "node_modules/.bin/buf"), "generate", "--template", template, "--path", "halkyon/capability"],
    { cwd: join(root, "proto"), stdout: "inherit", stderr: "inherit" }
  )
  if (result.exitCode !== 0) {
    console.error(`buf generate failed with exit code ${result.exitCode}`)
    process.exit(1)
  }
} finally {
  rmSync(work, { recursive: true, force: true })
}

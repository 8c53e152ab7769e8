/**
 * Commands that read no kubeconfig load no module of @kubernetes/client-node
 * (issue #20): each runs from source under a preload that makes loading one
 * throw, and must still succeed. The compiled binary is built from the same
 * module graph (bun build --splitting keeps each lazy import its own chunk).
 */
import { afterAll, expect, test } from "bun:test"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { builtPlugin, bun, pluginsFolder, root } from "../support/paths.ts"

const forbid = join(root, "test/support/forbid-client-node.ts")

const run = async (args: ReadonlyArray<string>) => {
  const proc = Bun.spawn([bun, "--preload", forbid, ...args], {
    cwd: root,
    env: { ...process.env, HALKYON_PLUGINS: "", KUBECONFIG: "/nonexistent" },
    stdout: "pipe",
    stderr: "pipe"
  })
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited])
  return { code, stdout, stderr }
}

const plugins = pluginsFolder(builtPlugin("postgres"))
const work = mkdtempSync(join(tmpdir(), "halkyon-no-client-node-"))
afterAll(() => {
  plugins.cleanup()
  rmSync(work, { recursive: true, force: true })
})

test("the preload does forbid client-node: importing it fails", async () => {
  const { code, stderr } = await run(["-e", `await import("@kubernetes/client-node")`])
  expect(code).not.toBe(0)
  expect(stderr).toContain("client-node loaded")
})

const main = join(root, "src/main.ts")
const commands: ReadonlyArray<{ name: string; args: ReadonlyArray<string>; prints: string }> = [
  { name: "version", args: ["version"], prints: "halkyon " },
  { name: "--help", args: ["--help"], prints: "manifests" },
  {
    name: "manifests",
    args: ["manifests", "--namespace", "ops", "--plugins", "acme/redis@v2.1.0"],
    prints: "kind: CustomResourceDefinition"
  },
  { name: "manifests --crds-only", args: ["manifests", "--crds-only"], prints: "x-kubernetes-validations" },
  { name: "manifests --plugins-dir", args: ["manifests", "--plugins-dir", plugins.dir], prints: "halkyon-plugin-postgres" },
  {
    name: "plugins render",
    args: ["plugins", "render", builtPlugin("postgres"), "-f", join(root, "samples/postgres.yaml")],
    prints: "kind: StatefulSet"
  },
  { name: "plugins list", args: ["plugins", "list", "--plugins-dir", plugins.dir], prints: "postgres" }
]

for (const c of commands) {
  test(`${c.name} loads no client-node module`, async () => {
    const { code, stdout, stderr } = await run([main, ...c.args])
    expect(stderr).not.toContain("client-node loaded")
    expect(code, stderr).toBe(0)
    expect(stdout).toContain(c.prints)
  })
}

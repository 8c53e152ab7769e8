/**
 * A plugin author's whole path, from an empty folder outside the
 * repository, with the compiled halkyon binary and the language's own tools
 * only (npm and the packed SDK tarball; Go with this checkout's module as
 * halkyon.io/plugins): `plugins new` → install → the project's own tests →
 * `plugins build --release` → `plugins render` → the release served from
 * loopback release pages → `halkyon run --plugins acme/<name>@v0.1.0` on the
 * local control plane → the Capability becomes Ready.
 */
import { afterAll, beforeAll, expect, test } from "bun:test"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, relative } from "node:path"
import { buildSdk, packSdk } from "../../scripts/build-sdk.ts"
import { goBinary } from "../../src/release/PluginBuild.ts"
import {
  capabilityPath,
  type Cluster,
  markDeploymentReady,
  readyOf,
  startCluster,
  startOperator,
  untilReady,
  createNamespace
} from "../support/cluster.ts"
import { eventually, root } from "../support/paths.ts"
import { folderAssets, openReleasePages, type ReleaseServers, type TestCa } from "../support/releases.ts"

const halkyon = join(root, "dist/halkyon")
const work = mkdtempSync(join(tmpdir(), "halkyon-author-"))
const ns = "author"
let cluster: Cluster
let ca: TestCa
let servers: ReleaseServers
let close = async () => {}
let tarball = ""

beforeAll(async () => {
  buildSdk()
  tarball = packSdk(join(work, "sdk"))
  ;({ ca, servers, close } = await openReleasePages(join(work, "pages")))
  cluster = await startCluster()
  await createNamespace(cluster, ns)
}, 180_000)

afterAll(async () => {
  await cluster?.plane.stop()
  await close()
  rmSync(work, { recursive: true, force: true })
})

/** Runs a command in the project as its author would, failing the test with its output when it fails. */
const sh = async (command: ReadonlyArray<string>, cwd: string, env: Record<string, string> = {}) => {
  const proc = Bun.spawn([...command], { cwd, stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "1", ...env } })
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited])
  if (code !== 0) throw new Error(`${command.join(" ")} failed (${code}):\n${stdout}${stderr}`)
  return stdout
}

/** Serves the project's release folder as acme/<name>@v0.1.0, runs the operator with --plugins, and takes a Capability to Ready. */
const releasedAndReady = async (project: string, name: string) => {
  const rendered = await sh([halkyon, "plugins", "render", `dist/${name}`, "-f", "samples/capability.yaml", "-n", ns], project)
  // What the operator would apply: the Deployment, named for the Capability, in its namespace.
  for (const line of ["kind: Deployment", "  name: memcached-demo", `  namespace: ${ns}`, "uid: RENDER-PLACEHOLDER-capability-uid"]) {
    expect(rendered).toContain(line)
  }
  servers.publish(`acme/${name}@v0.1.0`, folderAssets(join(project, "dist/release")))
  const operator = startOperator(
    cluster,
    join(work, `plugins-${name}`),
    ["--plugins", `acme/${name}@v0.1.0`, "--release-base-url", servers.base, "--namespace", ns],
    undefined,
    { NODE_EXTRA_CA_CERTS: ca.caFile }
  )
  try {
    await untilReady(operator, 60_000)
    const capability = {
      apiVersion: "halkyon.io/v1beta1",
      kind: "Capability",
      metadata: { name: `sessions-${name}`, namespace: ns },
      spec: { category: "cache", type: "memcached", parameters: [{ name: "PORT", value: "11211" }] }
    }
    expect((await cluster.api("POST", capabilityPath(ns), capability)).status).toBe(201)
    const deployment = `/apis/apps/v1/namespaces/${ns}/deployments/sessions-${name}`
    expect(await eventually(async () => (await cluster.api("GET", deployment)).status === 200, 30_000)).toBe(true)
    // No kubelet here: a fake one runs its pod, and the deployment controller reports it available.
    await markDeploymentReady(cluster, ns, `sessions-${name}`)
    const path = capabilityPath(ns, `sessions-${name}`)
    expect(await eventually(async () => readyOf(await cluster.api("GET", path))?.status === "True", 30_000)).toBe(true)
    expect(readyOf(await cluster.api("GET", path))?.reason).toBe("Ready")
    expect(operator.logs.join("\n")).toContain(`installed acme/${name}@v0.1.0`)
  } finally {
    await operator.stop()
  }
}

test(
  "TypeScript: plugins new → npm install → npm test → build --release → render → a release → halkyon run --plugins → Ready",
  async () => {
    const project = join(work, "memcached")
    expect(relative(root, project).startsWith("..")).toBe(true)
    await sh([halkyon, "plugins", "new", "memcached", "--category", "cache", "--type", "memcached", "--dir", project], work, {
      HALKYON_SDK_SPEC: `file:${tarball}`
    })
    await sh(["npm", "install", "--no-audit", "--no-fund"], project)
    // The project's own test, with the Bun its package.json brings.
    await sh(["npm", "test"], project)
    await sh([halkyon, "plugins", "build", "--release"], project)
    await releasedAndReady(project, "memcached")
  },
  600_000
)

test("Go: plugins new --lang go → go test → build --release → render → a release → halkyon run --plugins → Ready", async () => {
  const project = join(work, "memcached-go")
  await sh(
    [
      halkyon,
      "plugins",
      "new",
      "memcached-go",
      "--category",
      "cache",
      "--type",
      "memcached",
      "--lang",
      "go",
      "--dir",
      project,
      "--go-module-dir",
      join(root, "go")
    ],
    work
  )
  const go = { GOWORK: "off" }
  await sh([goBinary(), "mod", "tidy"], project, go)
  await sh([goBinary(), "test", "./..."], project, go)
  await sh([halkyon, "plugins", "build", "--release"], project, go)
  await releasedAndReady(project, "memcached-go")
}, 600_000)

/** The README's main command, as a script runs it: npm run demo -- --no-wait. */
import { expect, test } from "bun:test"
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { bun, processesMatching, root } from "../support/paths.ts"

test("npm run demo takes the sample Capability to Ready and tears everything down", async () => {
  // A temp folder of its own: the control plane's folder (certificates, etcd data), the plugins folder
  // and every plugin socket folder are made in it, and kube-apiserver, etcd, the operator and its
  // plugins all name it on their command lines.
  const scratch = mkdtempSync(join(tmpdir(), "halkyon-demo-test-"))
  try {
    const demo = Bun.spawn([bun, join(root, "scripts/demo.ts"), "--no-wait"], {
      cwd: root,
      stdout: "pipe",
      stderr: "pipe",
      env: { ...process.env, TMPDIR: scratch }
    })
    const [stdout, stderr, code] = await Promise.all([new Response(demo.stdout).text(), new Response(demo.stderr).text(), demo.exited])
    expect({ code, stderr: code === 0 ? "" : stderr }).toEqual({ code: 0, stderr: "" })
    expect(stdout).toContain("Secret       postgres-db-config   owned by Capability/postgres-db")
    expect(stdout).toContain("bindingSecret: postgres-db-config")
    expect(stdout).toMatch(/capability\/postgres-db is Ready, [\d.]+ s after the demo started\./)
    // Then bound into a sample Deployment: app gets the files and DATABASE_URL, sidecar nothing.
    expect(stdout).toContain("container app: files at /bindings/db")
    expect(stdout).toContain("DATABASE_URL: {\"secretKeyRef\":{\"name\":\"postgres-db-config\",\"key\":\"uri\"}}")
    expect(stdout).toContain("container sidecar: untouched")
    expect(stdout).toMatch(/servicebinding\/db is Ready: the application reads \/bindings\/db\/uri/)
    // Every CRD the operator watches is installed: no list of one fails (the operator's log is the demo's output).
    expect(`${stdout}\n${stderr}`).not.toContain("listing ClusterWorkloadResourceMapping failed")
    expect(`${stdout}\n${stderr}`).toContain("ServiceBinding controller on")

    // What the demo made lived in the scratch folder, so the checks below cover it.
    const planeDir = /export KUBECONFIG=(\S+)\/kubeconfig/.exec(stdout)?.[1]
    const pluginsDir = /starting the operator: \S+ run --plugins-dir (\S+)/.exec(stdout)?.[1]
    expect(planeDir?.startsWith(`${scratch}/halkyon-control-plane-`)).toBe(true)
    expect(pluginsDir?.startsWith(`${scratch}/halkyon-demo-plugins-`)).toBe(true)
    // kube-apiserver (its certificates), etcd (its data folder), the operator and its plugins (the plugins folder) are gone.
    expect((await processesMatching(scratch)).filter((p) => p !== demo.pid)).toEqual([])
    // So are the control plane's folder, the plugins folder and the plugins' socket folders.
    expect(readdirSync(scratch)).toEqual([])
    expect([planeDir, pluginsDir].filter((dir) => dir !== undefined && existsSync(dir))).toEqual([])
  } finally {
    for (const pid of await processesMatching(scratch)) process.kill(pid, "SIGKILL")
    rmSync(scratch, { recursive: true, force: true })
  }
}, 30 * 60_000)

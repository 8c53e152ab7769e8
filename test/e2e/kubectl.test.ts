/**
 * What the README shows users typing, typed with a real kubectl (of kube-apiserver's release) against
 * a real API server and the compiled operator: applying the CRDs and a Capability, `kubectl wait
 * --for=condition=Ready`, the columns of `kubectl get cap` and `kubectl explain capability.spec`
 * (the descriptions the CRD's schema carries, as kubectl shows them).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { copyFileSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { capabilityCrd } from "../../src/api/Crds.ts"
import {
  capabilityPath,
  type Cluster,
  kubectl,
  type Operator,
  readyOf,
  startCluster,
  startOperator,
  untilReady,
  createNamespace
} from "../support/cluster.ts"
import { eventually, root, testPlugin } from "../support/paths.ts"

const ns = "kubectl-test"
let cluster: Cluster
let operator: Operator | undefined
let pluginsDir: string | undefined

/** A Capability as a user writes it in YAML (kubectl apply reads it from stdin). */
const capabilityYaml = (name: string, type: string) => `apiVersion: halkyon.io/v1beta1
kind: Capability
metadata:
  name: ${name}
  namespace: ${ns}
spec:
  category: test
  type: ${type}
  version: "1"
`

beforeAll(async () => {
  cluster = await startCluster()
  await createNamespace(cluster, ns)
  pluginsDir = mkdtempSync(join(tmpdir(), "halkyon-kubectl-plugins-"))
  copyFileSync(testPlugin("flaky.js"), join(pluginsDir, "flaky.js"))
  operator = await untilReady(startOperator(cluster, pluginsDir))
}, 30 * 60_000)

afterAll(async () => {
  await operator?.stop("SIGKILL")
  await cluster?.plane.stop()
  if (pluginsDir !== undefined) rmSync(pluginsDir, { recursive: true, force: true })
})

describe("kubectl, as the README uses it", () => {
  test("halkyon manifests --crds-only | kubectl apply -f - applies the CRDs, ServiceBinding's and ClusterWorkloadResourceMapping's included", async () => {
    const crds = Bun.spawnSync([join(root, "dist/halkyon"), "manifests", "--crds-only"], { stdout: "pipe", stderr: "pipe" })
    expect(crds.exitCode).toBe(0)
    const applied = await kubectl(cluster, ["apply", "-f", "-"], crds.stdout.toString())
    expect({ code: applied.code, stderr: applied.code === 0 ? "" : applied.stderr }).toEqual({ code: 0, stderr: "" })
    // The test cluster installed them already (without kubectl's annotation): configured, not created.
    expect(applied.stdout.trim().split("\n").map((l) => l.replace(/ (configured|unchanged)$/, ""))).toEqual([
      "customresourcedefinition.apiextensions.k8s.io/capabilities.halkyon.io",
      "customresourcedefinition.apiextensions.k8s.io/capabilityinfos.halkyon.io",
      "customresourcedefinition.apiextensions.k8s.io/servicebindings.servicebinding.io",
      "customresourcedefinition.apiextensions.k8s.io/clusterworkloadresourcemappings.servicebinding.io"
    ])
  })

  test("kubectl apply, then kubectl wait --for=condition=Ready capability/<name> returns once the operator made it Ready", async () => {
    const applied = await kubectl(cluster, ["apply", "-f", "-"], capabilityYaml("ready-one", "flaky"))
    expect(applied).toMatchObject({ code: 0, stdout: "capability.halkyon.io/ready-one created\n" })
    const waited = await kubectl(cluster, ["wait", "-n", ns, "--for=condition=Ready", "capability/ready-one", "--timeout=60s"])
    expect(waited).toMatchObject({ code: 0, stdout: "capability.halkyon.io/ready-one condition met\n" })
    expect(readyOf(await cluster.api("GET", capabilityPath(ns, "ready-one")))?.status).toBe("True")
  }, 90_000)

  test("kubectl wait times out on a Capability that is not Ready (no plugin serves it)", async () => {
    expect((await kubectl(cluster, ["apply", "-f", "-"], capabilityYaml("unserved", "nosuchtype"))).code).toBe(0)
    // The operator has looked at it: Ready=False, NoPlugin. kubectl wait must not take that for Ready.
    const reported = await kubectl(cluster, [
      "wait",
      "-n",
      ns,
      "--for=jsonpath={.status.conditions[?(@.type==\"Ready\")].reason}=NoPlugin",
      "capability/unserved",
      "--timeout=30s"
    ])
    expect(reported.code).toBe(0)
    const waited = await kubectl(cluster, ["wait", "-n", ns, "--for=condition=Ready", "capability/unserved", "--timeout=2s"])
    expect(waited.code).not.toBe(0)
    expect(waited.stderr).toContain("timed out waiting for the condition on capabilities/unserved")
  }, 60_000)

  test("kubectl get cap shows CATEGORY TYPE VERSION READY REASON AGE", async () => {
    const got = await kubectl(cluster, ["get", "cap", "-n", ns])
    expect(got.code).toBe(0)
    const [header, ...rows] = got.stdout.trim().split("\n").map((line) => line.trim().split(/\s+/))
    expect(header).toEqual(["NAME", "CATEGORY", "TYPE", "VERSION", "READY", "REASON", "AGE"])
    expect(rows.map((row) => row.slice(0, 6))).toEqual([
      ["ready-one", "test", "flaky", "1", "True", "Ready"],
      ["unserved", "test", "nosuchtype", "1", "False", "NoPlugin"]
    ])
    for (const row of rows) expect(row[6]).toMatch(/^\d+[sm]$/)
  })

  test("kubectl get capinfo shows what the plugins offer", async () => {
    const got = await kubectl(cluster, ["get", "capinfo"])
    expect(got.code).toBe(0)
    const [header, ...rows] = got.stdout.trim().split("\n").map((line) => line.trim().split(/\s+/))
    expect(header).toEqual(["NAME", "CATEGORY", "TYPE", "VERSIONS", "PLUGIN", "AGE"])
    expect(rows.map((row) => row.slice(0, 3))).toEqual([["test-flaky", "test", "flaky"]])
    expect(rows[0]?.[4]).toBe("flaky.js")
  })

  test("kubectl explain capability.spec lists the fields from the CRD's schema", async () => {
    // kube-apiserver publishes a new CRD's OpenAPI shortly after it is established: wait for it.
    let explained = await kubectl(cluster, ["explain", "capability.spec"])
    expect(await eventually(async () => (explained = await kubectl(cluster, ["explain", "capability.spec"])).code === 0, 30_000, 500)).toBe(
      true
    )
    expect(explained.stderr).toBe("")
    expect(explained.stdout).toMatch(/^GROUP:\s+halkyon\.io$/m)
    expect(explained.stdout).toMatch(/^KIND:\s+Capability$/m)
    expect(explained.stdout).toMatch(/^VERSION:\s+v1beta1$/m)
    expect(explained.stdout).toMatch(/^FIELD: spec <Object>$/m)
    // Each field of spec, its type, whether it is required and its description, as the CRD's schema has them
    // (kubectl wraps descriptions: compare them with whitespace collapsed).
    const collapse = (text: string | undefined) => (text ?? "").replace(/\s+/g, " ").trim()
    const fields = [...explained.stdout.matchAll(/^ {2}(\w+)\t<([^>]+)>( -required-)?\n((?: {4}.*\n)+)/gm)]
      .map((m) => [m[1], m[2], m[3] !== undefined, collapse(m[4])])
    const spec = capabilityCrd().spec.versions[0]?.schema?.openAPIV3Schema?.properties?.spec
    const described = (name: string) => collapse(spec?.properties?.[name]?.description)
    expect(fields).toEqual([
      ["category", "string", true, described("category")],
      ["parameters", "[]Object", false, described("parameters")],
      ["type", "string", true, described("type")],
      ["version", "string", false, described("version")]
    ])
    for (const [, , , description] of fields) expect(description).not.toMatch(/^$|<no description>/)
    const specDescription = /^DESCRIPTION:\n((?: {4}.*\n)+)FIELDS:$/m.exec(explained.stdout)?.[1]
    expect(collapse(specDescription)).toBe(collapse(spec?.description))
  })
})

/**
 * Finding the cluster as kubectl does, in order: --kubeconfig, KUBECONFIG (a
 * list of files, merged), ~/.kube/config, the in-cluster service account;
 * --context picks a context. Everything lives in a temp folder: the home
 * folder and the service account's root are options, the environment is
 * set per test and put back.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test"
import type https from "node:https"
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { delimiter, join } from "node:path"
import { Effect } from "effect"
import { type ClusterAccessOptions, loadKubeConfig } from "../../src/kube/ClusterAccess.ts"

const EnvKeys = ["KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"] as const
let saved: Record<string, string | undefined> = {}
let dir = ""

beforeEach(() => {
  saved = Object.fromEntries(EnvKeys.map((k) => [k, process.env[k]]))
  for (const k of EnvKeys) delete process.env[k]
  dir = mkdtempSync(join(tmpdir(), "halkyon-cluster-access-"))
})
afterEach(() => {
  for (const k of EnvKeys) {
    if (saved[k] === undefined) delete process.env[k]
    else process.env[k] = saved[k]
  }
  rmSync(dir, { recursive: true, force: true })
})

/** A kubeconfig with one cluster, user and context per name; the first is current. */
const kubeconfig = (path: string, names: ReadonlyArray<string>) => {
  const [first = ""] = names
  const text = [
    "apiVersion: v1",
    "kind: Config",
    `current-context: ${first}`,
    "clusters:",
    ...names.flatMap((n) => [`- name: ${n}`, "  cluster:", `    server: https://${n}.example:6443`]),
    "users:",
    ...names.flatMap((n) => [`- name: ${n}`, "  user:", `    token: token-${n}`]),
    "contexts:",
    ...names.flatMap((n) => [`- name: ${n}`, "  context:", `    cluster: ${n}`, `    user: ${n}`])
  ].join("\n")
  mkdirSync(join(path, ".."), { recursive: true })
  writeFileSync(path, text)
  return path
}

const defaults = () => ({ kubeconfig: undefined, context: undefined, home: join(dir, "home") })

/** The options with an empty home folder and no service account, unless given. */
const load = (options: Partial<ClusterAccessOptions>) =>
  Effect.runPromise(
    loadKubeConfig({ ...defaults(), serviceAccountRoot: join(dir, "none"), ...options }).pipe(
      Effect.map((kc) => ({
        server: kc.getCurrentCluster()?.server,
        context: kc.getCurrentContext(),
        contexts: kc.getContexts().map((c) => c.name)
      })),
      Effect.catchTag("ClusterAccessError", (e) => Effect.succeed({ error: e.message }))
    )
  )

/** A service account's token and CA under `root`, where a pod has them. */
const serviceAccount = (root: string) => {
  const folder = join(root, "var/run/secrets/kubernetes.io/serviceaccount")
  mkdirSync(folder, { recursive: true })
  writeFileSync(join(folder, "token"), "in-cluster-token")
  writeFileSync(join(folder, "ca.crt"), "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
  writeFileSync(join(folder, "namespace"), "operators")
  return root
}

describe("ClusterAccess", () => {
  test("--kubeconfig is read, and wins over KUBECONFIG and ~/.kube/config", async () => {
    const flag = kubeconfig(join(dir, "flag.yaml"), ["flag"])
    process.env.KUBECONFIG = kubeconfig(join(dir, "env.yaml"), ["env"])
    kubeconfig(join(dir, "home/.kube/config"), ["home"])
    expect(await load({ kubeconfig: flag })).toEqual({ server: "https://flag.example:6443", context: "flag", contexts: ["flag"] })
  })

  test("--kubeconfig naming a missing file is an error that says so", async () => {
    kubeconfig(join(dir, "home/.kube/config"), ["home"])
    expect(await load({ kubeconfig: join(dir, "missing.yaml") })).toEqual({
      error: `cannot reach a cluster: the kubeconfig ${join(dir, "missing.yaml")} does not exist`
    })
  })

  test("KUBECONFIG: a list of files, merged, the first one's current context; it wins over ~/.kube/config", async () => {
    const a = kubeconfig(join(dir, "a.yaml"), ["a"])
    const b = kubeconfig(join(dir, "b.yaml"), ["b", "c"])
    process.env.KUBECONFIG = [a, b].join(delimiter)
    kubeconfig(join(dir, "home/.kube/config"), ["home"])
    expect(await load({})).toEqual({ server: "https://a.example:6443", context: "a", contexts: ["a", "b", "c"] })
    // --context picks one from any of the files.
    expect(await load({ context: "c" })).toEqual({ server: "https://c.example:6443", context: "c", contexts: ["a", "b", "c"] })
  })

  test("~/.kube/config when neither --kubeconfig nor KUBECONFIG is given; an empty KUBECONFIG counts as unset", async () => {
    process.env.KUBECONFIG = ""
    kubeconfig(join(dir, "home/.kube/config"), ["home", "staging"])
    expect(await load({})).toEqual({ server: "https://home.example:6443", context: "home", contexts: ["home", "staging"] })
  })

  test("--context picks a context; an unknown one is an error naming those there are", async () => {
    const file = kubeconfig(join(dir, "k.yaml"), ["dev", "prod"])
    expect(await load({ kubeconfig: file, context: "prod" })).toEqual({
      server: "https://prod.example:6443",
      context: "prod",
      contexts: ["dev", "prod"]
    })
    expect(await load({ kubeconfig: file, context: "qa" })).toEqual({
      error: "cannot reach a cluster: context \"qa\" is not in the kubeconfig; it has: dev, prod"
    })
  })

  test("in a cluster: the service account's token and CA, and the API server from the environment", async () => {
    const root = serviceAccount(join(dir, "pod"))
    process.env.KUBERNETES_SERVICE_HOST = "10.0.0.1"
    process.env.KUBERNETES_SERVICE_PORT = "443"
    const kc = await Effect.runPromise(loadKubeConfig({ ...defaults(), serviceAccountRoot: root }))
    expect(kc.getCurrentCluster()?.server).toBe("https://10.0.0.1:443")
    expect(kc.getCurrentCluster()?.caFile).toBe(join(root, "var/run/secrets/kubernetes.io/serviceaccount/ca.crt"))
    expect(kc.getContextObject(kc.getCurrentContext())?.namespace).toBe("operators")
    const options: https.RequestOptions = {}
    await kc.applyToHTTPSOptions(options)
    expect((options.headers as Record<string, unknown> | undefined)?.Authorization).toBe("Bearer in-cluster-token")
    expect(String(options.ca)).toContain("BEGIN CERTIFICATE")
  })

  test("a home kubeconfig wins over the service account", async () => {
    const root = serviceAccount(join(dir, "pod"))
    process.env.KUBERNETES_SERVICE_HOST = "10.0.0.1"
    process.env.KUBERNETES_SERVICE_PORT = "443"
    kubeconfig(join(dir, "home/.kube/config"), ["home"])
    expect(await load({ serviceAccountRoot: root })).toMatchObject({ server: "https://home.example:6443" })
  })

  test("a token file without KUBERNETES_SERVICE_HOST is not a cluster; nothing at all is an error that lists the ways", async () => {
    const root = serviceAccount(join(dir, "pod"))
    expect(await load({ serviceAccountRoot: root })).toEqual({
      error: "cannot reach a cluster: no kubeconfig found: pass --kubeconfig, set KUBECONFIG, create ~/.kube/config, or run in a cluster"
    })
  })
})

/**
 * KubeClient's User-Agent and its check before writes, against a small
 * in-process HTTP server that records what reaches it: every request names
 * the replica (`halkyon/<version> (<identity>)`), and a write the check
 * refuses (--leader-check-writes when the Lease is not held) fails without
 * being sent, while reads go on. The check is asked as late as it can be:
 * after the credentials are derived (an exec plugin may take seconds).
 */
import { afterAll, expect, setSystemTime, test } from "bun:test"
import { KubeConfig } from "@kubernetes/client-node"
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Context, Effect, Layer } from "effect"
import { KubeClient, userAgentOf } from "../../src/kube/KubeClient.ts"

const seen: Array<{ method: string; path: string; userAgent: string | null }> = []
const server = Bun.serve({
  port: 0,
  hostname: "127.0.0.1",
  fetch: (request) => {
    const url = new URL(request.url)
    seen.push({ method: request.method, path: url.pathname, userAgent: request.headers.get("user-agent") })
    if (url.pathname === "/api/v1") {
      return Response.json({ resources: [{ name: "configmaps", kind: "ConfigMap", namespaced: true }] })
    }
    if (request.method === "GET") return Response.json({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "a", namespace: "ns" } })
    return Response.json({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "a", namespace: "ns" } }, { status: 201 })
  }
})
afterAll(() => server.stop(true))

const kubeconfig = () => {
  const kc = new KubeConfig()
  kc.loadFromOptions({
    clusters: [{ name: "c", server: `http://127.0.0.1:${server.port}`, skipTLSVerify: true }],
    users: [{ name: "u", token: "t" }],
    contexts: [{ name: "x", cluster: "c", user: "u" }],
    currentContext: "x"
  })
  return kc
}

const withClient = <A, E>(refuse: () => string | undefined, body: (client: KubeClient["Service"]) => Effect.Effect<A, E>) =>
  Effect.runPromise(
    Effect.scoped(
      Layer.build(KubeClient.layer(kubeconfig(), { identity: "replica-a", beforeWrite: refuse })).pipe(
        Effect.flatMap((context) => body(Context.get(context, KubeClient)))
      )
    )
  )

const object = { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "a", namespace: "ns" } }

test("a write the check refuses fails unsent with WriteRefused; reads go on; every request names the replica", async () => {
  let leading = false
  const refuse = () => (leading ? undefined : "replica-a does not hold lease ops/halkyon: not writing")
  const refused = await withClient(refuse, (client) =>
    Effect.gen(function*() {
      yield* client.get({ apiVersion: "v1", kind: "ConfigMap", namespace: "ns", name: "a" })
      return yield* client.create(object).pipe(Effect.flip)
    }))
  expect(refused.reason).toBe("WriteRefused")
  expect(refused.message).toContain("does not hold lease")
  expect(seen.filter((r) => r.method !== "GET")).toEqual([])

  leading = true
  await withClient(refuse, (client) =>
    Effect.gen(function*() {
      yield* client.create(object)
      yield* client.patchStatus({ apiVersion: "v1", kind: "ConfigMap", namespace: "ns", name: "a" }, { ready: true })
      yield* client.delete({ apiVersion: "v1", kind: "ConfigMap", namespace: "ns", name: "a" })
    }))
  expect(seen.filter((r) => r.method !== "GET").map((r) => r.method)).toEqual(["POST", "PATCH", "DELETE"])
  expect(new Set(seen.map((r) => r.userAgent))).toEqual(new Set([userAgentOf("replica-a")]))
  expect(userAgentOf("replica-a")).toMatch(/^halkyon\/\S+ \(replica-a\)$/)
})

test("the check is asked once the credentials are derived, right before the write goes out: not before an exec credential plugin runs", async () => {
  const folder = mkdtempSync(join(tmpdir(), "halkyon-exec-"))
  const runs = join(folder, "runs")
  const derivations = () => (existsSync(runs) ? readFileSync(runs, "utf8").split("\n").filter((l) => l !== "").length : 0)
  try {
    const credential = JSON.stringify({ apiVersion: "client.authentication.k8s.io/v1", kind: "ExecCredential", status: { token: "t" } })
    const kc = new KubeConfig()
    kc.loadFromOptions({
      clusters: [{ name: "c", server: `http://127.0.0.1:${server.port}`, skipTLSVerify: true }],
      users: [{
        name: "u",
        exec: {
          apiVersion: "client.authentication.k8s.io/v1",
          command: "sh",
          // An exec plugin that takes its time, as cloud providers' do, and counts its runs once it has answered.
          args: ["-c", `sleep 0.3; echo run >> '${runs}'; echo '${credential}'`],
          interactiveMode: "Never"
        }
      }],
      contexts: [{ name: "x", cluster: "c", user: "u" }],
      currentContext: "x"
    })
    const asked: Array<number> = []
    const refuse = () => {
      asked.push(derivations())
      return undefined
    }
    await Effect.runPromise(
      Effect.scoped(
        Layer.build(KubeClient.layer(kc, { identity: "replica-a", beforeWrite: refuse })).pipe(
          Effect.map((context) => Context.get(context, KubeClient)),
          Effect.flatMap((client) =>
            Effect.gen(function*() {
              yield* client.get({ apiVersion: "v1", kind: "ConfigMap", namespace: "ns", name: "a" })
              expect(derivations()).toBe(1)
              // A minute later the credentials are derived again, for the write: the check must come after that.
              setSystemTime(new Date(Date.now() + 61_000))
              yield* client.create(object)
            })
          )
        )
      )
    )
    expect(derivations()).toBe(2)
    expect(asked).toEqual([2])
  } finally {
    setSystemTime()
    rmSync(folder, { recursive: true, force: true })
  }
})

/**
 * The two SDKs answer alike through the real host client: a TypeScript
 * fixture plugin (test/fixtures/plugins/parity) and a Go one
 * (test/fixtures/go-plugins/parity) declare the same plugin, each on its
 * SDK; every RPC gets the same inputs, and the answers must be equal, and
 * CheckValidity's must be the errors go/sdk/testdata/validity.json expects.
 * Their binding ConfigMap's well-known entries come from each SDK's binding
 * entries helper.
 */
import { describe, expect, test } from "bun:test"
import { Effect } from "effect"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import type { PluginConnection } from "../../src/plugin-client/PluginClient.ts"
import { launchOptions, withPlugin } from "../support/launch.ts"
import { root, testPlugin } from "../support/paths.ts"

interface Fixtures {
  readonly cases: ReadonlyArray<{ readonly name: string; readonly spec: Record<string, unknown>; readonly errors: ReadonlyArray<string> }>
  readonly unknownDependents: ReadonlyArray<{ readonly id: string; readonly message: string }>
}
const fixtures = JSON.parse(readFileSync(join(root, "go/sdk/testdata/validity.json"), "utf8")) as Fixtures

const capability = (spec: Record<string, unknown>) => ({
  apiVersion: "halkyon.io/v1beta1",
  kind: "Capability",
  metadata: { name: "sessions", namespace: "shop" },
  spec
})
const valid = capability({
  category: "cache",
  type: "redis",
  parameters: [{ name: "PASSWORD", value: "x" }, { name: "PORT", value: "7000" }]
})

/** An RPC's answer, or its gRPC code and the plugin's message when it fails. */
const answer = <A>(call: Effect.Effect<A, { readonly _tag: string }>) =>
  call.pipe(
    Effect.map((value) => ({ value })),
    Effect.catch((e) =>
      Effect.succeed({
        failed: e._tag,
        code: "code" in e ? Number(e.code) : undefined,
        detail: "detail" in e ? String(e.detail) : undefined
      })
    )
  )

/** Everything the plugin answers to the same inputs. */
const answers = (connection: PluginConnection) =>
  Effect.gen(function*() {
    const validity = []
    for (const c of fixtures.cases) validity.push(yield* answer(connection.checkValidity(capability(c.spec))))
    const ownCheck = yield* answer(
      connection.checkValidity(
        capability({ category: "cache", type: "redis", parameters: [{ name: "PASSWORD", value: "x" }, { name: "TLS", value: "maybe" }] })
      )
    )
    const unreadable = yield* answer(connection.checkValidity({ metadata: { name: "x" }, spec: { type: "redis" } }))
    const built = yield* connection.buildDependents(valid)
    const config = built.find((d) => d.id === "config-secret")?.object ?? {}
    const updates = [
      yield* answer(connection.updateDependent("config-secret", valid, config)),
      yield* answer(connection.updateDependent("config-secret", valid, { ...config, data: { port: "6379" } })),
      yield* answer(connection.updateDependent("service", valid, {})),
      ...(yield* Effect.forEach(fixtures.unknownDependents, (u) => answer(connection.updateDependent(u.id, valid, {}))))
    ]
    const conditions = yield* answer(connection.evaluateConditions(valid, [
      { id: "config-secret", object: {} },
      { id: "deployment", object: { status: { availableReplicas: 0 } } },
      { id: "deployment", object: { status: { availableReplicas: 2 } } },
      { id: "deployment", error: { reason: "NotFound", message: "not found", code: 404 } },
      { id: "deployment", error: { reason: "Forbidden", message: "deployments is forbidden", code: 403 } },
      { id: "deployment", error: { reason: "", message: "connection reset", code: 500 } }
    ]))
    const unknownObserved = yield* answer(connection.evaluateConditions(valid, [{ id: "statefulset", object: {} }]))
    return { validity, ownCheck, unreadable, built: built.map((d) => [d.id, d.object]), updates, conditions, unknownObserved }
  })

const run = (file: string) =>
  withPlugin(file, launchOptions(), ({ connection, description }) => Effect.map(answers(connection), (a) => ({ description, ...a })))

describe("a TypeScript and a Go plugin declaring the same thing", () => {
  test("answer every RPC alike, with the messages the shared fixtures expect", async () => {
    const ts = await run(testPlugin("parity"))
    const go = await run(testPlugin("go-parity"))
    // The unreadable Capability's reason comes from each language's decoder: only its start is shared.
    const common = (a: typeof ts) => ({
      ...a,
      unreadable: { ...a.unreadable, detail: "detail" in a.unreadable ? a.unreadable.detail?.split(": ")[0] : "" }
    })
    expect(common(go)).toEqual(common(ts))

    expect(ts.validity).toEqual(fixtures.cases.map((c) => ({ value: c.errors })))
    expect(ts.ownCheck).toEqual({ value: ["parameter TLS must be on or off, got \"maybe\""] })
    expect(common(ts).unreadable).toEqual({ failed: "PluginCallFailed", code: 3, detail: "the Capability could not be read" })
    expect(ts.built).toEqual([
      ["config-secret", {
        apiVersion: "v1",
        kind: "ConfigMap",
        metadata: { name: "sessions-config", namespace: "shop" },
        data: {
          name: "sessions",
          namespace: "shop",
          version: "8.0",
          // From bindingEntries and BindingEntries: the spec's well-known entries, alike in both.
          type: "redis",
          provider: "halkyon",
          host: "sessions.shop.svc",
          port: "7000"
        }
      }],
      ["deployment", {
        apiVersion: "apps/v1",
        kind: "Deployment",
        metadata: { name: "sessions", namespace: "shop" },
        spec: { replicas: 1 }
      }],
      ["service", { apiVersion: "v1", kind: "Service", metadata: { name: "sessions", namespace: "shop" } }]
    ])
    expect(ts.updates.map((u) => ("value" in u ? u.value.needsUpdate : u.detail))).toEqual([
      false,
      true,
      false,
      ...fixtures.unknownDependents.map((u) => u.message)
    ])
    expect("value" in ts.conditions ? ts.conditions.value.map((c) => [c.id, c.state, c.reason, c.message]) : ts.conditions).toEqual([
      ["deployment", "pending", "NotAvailable", "0 available"],
      ["deployment", "ready", "Available", "2 available"],
      ["deployment", "pending", "NotFound", "Deployment for sessions does not exist yet"],
      ["deployment", "failed", "Forbidden", "deployments is forbidden"],
      ["deployment", "failed", "FetchFailed", "connection reset"]
    ])
    expect(ts.unknownObserved).toEqual({
      failed: "PluginCallFailed",
      code: 5,
      detail: "plugin kv has no dependent \"statefulset\"; it has: config-secret, deployment, service"
    })
  }, 60_000)
})

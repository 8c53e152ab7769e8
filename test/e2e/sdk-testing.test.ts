/**
 * `@halkyon/sdk/testing`'s process-level harness against this repository's
 * built plugins: the compiled postgres plugin and the Go redis plugin (any
 * plugin speaking the protocol), a refused call, and plugins that never
 * handshake. Run `bun scripts/build-plugins.ts` first.
 */
import { describe, expect, test } from "bun:test"
import { launchPlugin, PluginCallError, testPlugin } from "@halkyon/sdk/testing"
import { postgres } from "../../plugins/postgres/plugin.ts"
import { badPlugin, builtPlugin } from "../support/paths.ts"

describe("launchPlugin", () => {
  test("the compiled postgres plugin answers as the in-process harness does", async () => {
    await using launched = await launchPlugin(builtPlugin("postgres"))
    const t = testPlugin(postgres)
    const capability = t.capability({ name: "db", parameters: { DB_PASSWORD: "fixed" } })
    expect(await launched.describe()).toEqual(t.describe())
    expect(await launched.checkValidity(t.capability({ version: "9" }))).toEqual(t.validate(t.capability({ version: "9" })))
    expect(await launched.buildDependents(capability)).toEqual(t.build(capability))
    const sts = t.buildOne(capability, "statefulset")
    const observed = { statefulset: { object: { ...sts, status: { readyReplicas: 1 } } } }
    expect(t.conditions(capability, observed)).toEqual({
      statefulset: { state: "ready", reason: "ReplicasReady", message: "1/1 replicas ready" }
    })
    expect(await launched.evaluateConditions(capability, observed)).toEqual({
      statefulset: { state: "ready", reason: "ReplicasReady", message: "1/1 replicas ready", attributes: {} }
    })
    expect(await launched.close()).toBe(0)
  })

  test("a refused call rejects with its gRPC code and the plugin's message", async () => {
    await using launched = await launchPlugin(builtPlugin("postgres.js"))
    const refused = await launched.updateDependent(testPlugin(postgres).capability(), "ghost", {}).catch((e: unknown) => e)
    expect(refused).toBeInstanceOf(PluginCallError)
    expect(refused).toMatchObject({
      code: 5,
      details: "plugin postgres has no dependent \"ghost\"; it has: config-secret, statefulset, service"
    })
  })

  test("a Go plugin is launched the same way", async () => {
    await using launched = await launchPlugin(builtPlugin("redis"))
    expect((await launched.describe()).name).toBe("redis")
  })

  test("a plugin that exits or never handshakes is a rejected launch carrying its stderr", async () => {
    await expect(launchPlugin(badPlugin("exits"))).rejects.toThrow("cannot open configuration file")
    await expect(launchPlugin(badPlugin("silent"), { handshakeTimeoutMs: 500 })).rejects.toThrow("printed no handshake within 500 ms")
  })
})

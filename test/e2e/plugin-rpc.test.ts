/**
 * Every RPC of the postgres plugin, in both forms, with AutoMTLS on and off,
 * through the host's real launch path (process, handshake, gRPC client).
 */
import { describe, expect, test } from "bun:test"
import { Effect } from "effect"
import { CallError, makeChannel } from "../../src/plugin-client/GrpcChannel.ts"
import { Status } from "../../src/protocol/GrpcWire.ts"
import { Describe } from "../../src/protocol/Methods.ts"
import { generateCertificate } from "../../src/protocol/Mtls.ts"
import { launchOptions, withPlugin } from "../support/launch.ts"
import { builtPlugin, forms } from "../support/paths.ts"

const capability = (parameters: ReadonlyArray<{ name: string; value: string }> = [], version = "16") => ({
  apiVersion: "halkyon.io/v1beta1",
  kind: "Capability",
  metadata: { name: "db", namespace: "shop", uid: "1234", generation: 1 },
  spec: { category: "database", type: "PostgreS", version, parameters }
})

for (const { form, file } of forms(builtPlugin, "postgres")) {
  for (const autoMtls of [true, false]) {
    describe(`postgres plugin (${form}, AutoMTLS ${autoMtls ? "on" : "off"})`, () => {
      const options = launchOptions({ autoMtls })

      test("handshakes and describes itself", () =>
        withPlugin(file, options, (plugin) =>
          Effect.sync(() => {
            expect(plugin.handshake.protocol).toBe("grpc")
            expect(plugin.handshake.appVersion).toBe(1)
            expect(plugin.handshake.network).toBe("unix")
            expect(plugin.handshake.certificate !== undefined).toBe(autoMtls)
            const d = plugin.description
            expect(d.name).toBe("postgres")
            expect(d.category).toBe("database")
            expect(d.types.map((t) => [t.type, t.versions, t.defaultVersion])).toEqual([["postgres", ["14", "15", "16", "17", "18"], "17"]])
            expect(d.parameters.map((p) => [p.name, p.defaultValue, p.secret])).toEqual([
              ["DB_USER", "admin", false],
              ["DB_PASSWORD", "", true],
              ["DB_NAME", "sample-db", false],
              ["DB_PORT", "5432", false],
              ["KEEP_SECRET", "false", false]
            ])
            expect(d.dependents.map((x) => [x.id, x.kind, x.watched, x.owned, x.created, x.updated, x.checkedForReadiness, x.binding]))
              .toEqual([
                ["config-secret", "Secret", true, true, true, true, false, true],
                ["statefulset", "StatefulSet", true, true, true, true, true, false],
                ["service", "Service", true, true, true, true, false, false]
              ])
            // The graph, as it crosses the wire: the Secret first, then the other two together; nothing waited for.
            expect(d.dependents.map((x) => [x.id, x.dependsOn, x.waitForReady])).toEqual([
              ["config-secret", [], false],
              ["statefulset", ["config-secret"], false],
              ["service", ["config-secret"], false]
            ])
          })))

      test("checks validity: unknown versions and bad parameters are refused with the supported list", () =>
        withPlugin(file, options, ({ connection }) =>
          Effect.gen(function*() {
            expect(yield* connection.checkValidity(capability())).toEqual([])
            expect(yield* connection.checkValidity(capability([], ""))).toEqual([])
            expect(yield* connection.checkValidity(capability([], "9"))).toEqual([
              "version \"9\" of postgres is not supported by plugin postgres; supported versions: 14, 15, 16, 17, 18"
            ])
            expect(yield* connection.checkValidity(capability([{ name: "DB_PORT", value: "99999" }]))).toEqual([
              "parameter DB_PORT must be an integer from 1024 to 65535 (plugin postgres)"
            ])
          })))

      test("builds every dependent in one call, in order", () =>
        withPlugin(file, options, ({ connection }) =>
          Effect.gen(function*() {
            const built = yield* connection.buildDependents(
              capability([{ name: "DB_USER", value: "alice" }, { name: "DB_PASSWORD", value: "s3cret" }])
            )
            expect(built.map((d) => [d.id, d.object.kind, (d.object.metadata as { name: string }).name])).toEqual([
              ["config-secret", "Secret", "db-config"],
              ["statefulset", "StatefulSet", "db"],
              ["service", "Service", "db"]
            ])
            const secret = built[0]?.object as { stringData: Record<string, string> }
            expect(secret.stringData).toMatchObject({
              DB_USER: "alice",
              DB_PASSWORD: "s3cret",
              DB_NAME: "sample-db",
              DB_PORT: "5432",
              DB_HOST: "db.shop.svc"
            })
            const sts = built[1]?.object as { spec: { template: { spec: { containers: Array<{ image: string }> } } } }
            expect(sts.spec.template.spec.containers[0]?.image).toBe("postgres:16")
          })))

      test("1 MiB messages cross both ways intact, 64 calls at once on one connection", () =>
        withPlugin(file, options, ({ connection }) =>
          Effect.gen(function*() {
            // Random text: the same bytes must come back in the Secret the plugin builds. The password is in it four
            // times (DB_PASSWORD, password, and inside DATABASE_URL and uri): a message of nearly 3 MiB, under the 4 MiB limit.
            const big = Buffer.from(crypto.getRandomValues(new Uint8Array(512 * 1024))).toString("base64")
            const calls = Array.from({ length: 64 }, (_, i) => capability([{ name: "DB_PASSWORD", value: i === 0 ? big : `p${i}` }]))
            const built = yield* Effect.forEach(calls, (c) => connection.buildDependents(c), { concurrency: "unbounded" })
            expect((built[0]?.[0]?.object as { stringData: Record<string, string> }).stringData.DB_PASSWORD).toBe(big)
            expect(built.slice(1).map((b) => (b[0]?.object as { stringData: Record<string, string> }).stringData.DB_PASSWORD)).toEqual(
              calls.slice(1).map((_, i) => `p${i + 1}`)
            )
          })))

      test("generates a password when none is given, and keeps it on update", () =>
        withPlugin(file, options, ({ connection }) =>
          Effect.gen(function*() {
            const built = yield* connection.buildDependents(capability())
            const password = (built[0]?.object as { stringData: Record<string, string> }).stringData.DB_PASSWORD ?? ""
            expect(password.length).toBeGreaterThanOrEqual(20)
            const existing = {
              ...built[0]?.object,
              stringData: undefined,
              data: Object.fromEntries(
                Object.entries((built[0]?.object as { stringData: Record<string, string> }).stringData).map((
                  [k, v]
                ) => [k, Buffer.from(v).toString("base64")])
              )
            }
            const same = yield* connection.updateDependent("config-secret", capability(), existing)
            expect(same.needsUpdate).toBe(false)
            const renamed = yield* connection.updateDependent("config-secret", capability([{ name: "DB_NAME", value: "orders" }]), existing)
            expect(renamed.needsUpdate).toBe(true)
            expect((renamed.updated as { stringData: Record<string, string> }).stringData).toMatchObject({
              DB_NAME: "orders",
              DB_PASSWORD: password
            })
          })))

      test("updates the StatefulSet when the version changes, not otherwise", () =>
        withPlugin(file, options, ({ connection }) =>
          Effect.gen(function*() {
            const sts = (yield* connection.buildDependents(capability()))[1]?.object
            expect((yield* connection.updateDependent("statefulset", capability(), sts)).needsUpdate).toBe(false)
            const upgraded = yield* connection.updateDependent("statefulset", capability([], "17"), sts)
            expect(upgraded.needsUpdate).toBe(true)
            expect(JSON.stringify(upgraded.updated)).toContain("postgres:17")
          })))

      test("evaluates every condition in one call, from objects and fetch errors", () =>
        withPlugin(file, options, ({ connection }) =>
          Effect.gen(function*() {
            const sts = (yield* connection.buildDependents(capability()))[1]?.object ?? {}
            const notReady = { ...sts, metadata: { name: "db", generation: 2 }, status: { readyReplicas: 0, observedGeneration: 2 } }
            const readySts = { ...sts, metadata: { name: "db", generation: 2 }, status: { readyReplicas: 1, observedGeneration: 2 } }
            const conditions = yield* connection.evaluateConditions(capability(), [
              { id: "config-secret", object: {} },
              { id: "statefulset", object: notReady }
            ])
            // Only dependents checked for readiness get a condition.
            expect(conditions).toEqual([{
              id: "statefulset",
              state: "pending",
              reason: "ReplicasNotReady",
              message: "0/1 replicas ready",
              attributes: {}
            }])
            expect((yield* connection.evaluateConditions(capability(), [{ id: "statefulset", object: readySts }]))[0]?.state).toBe("ready")
            const missing = yield* connection.evaluateConditions(capability(), [{
              id: "statefulset",
              error: { reason: "NotFound", message: "not found", code: 404 }
            }])
            expect(missing[0]).toMatchObject({ state: "pending", reason: "NotFound" })
            const forbidden = yield* connection.evaluateConditions(capability(), [{
              id: "statefulset",
              error: { reason: "Forbidden", message: "no access", code: 403 }
            }])
            expect(forbidden[0]).toMatchObject({ state: "failed", reason: "Forbidden", message: "no access" })
          })))

      test("errors cross the wire as a status with a message for the user", () =>
        withPlugin(file, options, ({ connection }) =>
          Effect.gen(function*() {
            const bad = yield* Effect.flip(connection.buildDependents({ metadata: {}, spec: { category: "database" } }))
            expect(bad._tag).toBe("PluginCallFailed")
            expect(bad.message).toContain("the Capability could not be read")
            const unknown = yield* Effect.flip(connection.updateDependent("nope", capability(), {}))
            expect(unknown.message).toContain("has no dependent \"nope\"; it has: config-secret, statefulset, service")
          })))

      test("answers health checks and stops on Shutdown", () =>
        withPlugin(file, options, (plugin) =>
          Effect.gen(function*() {
            yield* plugin.connection.ping
            yield* plugin.connection.shutdown
            const code = yield* plugin.exited.pipe(Effect.timeout("2 seconds"))
            expect(code).toBe(0)
          })))
    })
  }
}

test("a client presenting a certificate the plugin did not get is rejected", () =>
  withPlugin(builtPlugin("postgres"), launchOptions({ autoMtls: true }), (plugin) =>
    Effect.promise(async () => {
      const stranger = await generateCertificate()
      const channel = makeChannel({ handshake: plugin.handshake, certificate: stranger })
      const error = await new Promise((resolve) => channel.unary(Describe, {}, 2_000, resolve))
      channel.close()
      expect(error).toBeInstanceOf(CallError)
      expect((error as CallError).code).toBe(Status.UNAVAILABLE)
      // The plugin itself is unharmed.
      await Effect.runPromise(plugin.connection.ping)
    })))

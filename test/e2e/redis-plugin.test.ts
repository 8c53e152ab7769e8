/**
 * Every RPC of the Go redis plugin through the host's real launch path
 * (process, go-plugin handshake, gRPC client), AutoMTLS on and off: the
 * same checks the postgres plugin gets in plugin-rpc.test.ts.
 */
import { describe, expect, test } from "bun:test"
import { Effect } from "effect"
import { launchOptions, withPlugin } from "../support/launch.ts"
import { builtPlugin } from "../support/paths.ts"
import { checkBindingEntries } from "../../src/sdk/Binding.ts"

const capability = (
  parameters: ReadonlyArray<{ name: string; value: string }> = [],
  version = "7.4",
  spec: Record<string, unknown> = {}
) => ({
  apiVersion: "halkyon.io/v1beta1",
  kind: "Capability",
  metadata: { name: "sessions", namespace: "shop", uid: "1234", generation: 1 },
  spec: { category: "cache", type: "Redis", version, parameters, ...spec }
})

const stringData = (o: Record<string, unknown> | undefined) => (o?.stringData ?? {}) as Record<string, string>
/** The Secret as the API server returns it: stringData folded into base64 data. */
const stored = (secret: Record<string, unknown>) => ({
  ...secret,
  stringData: undefined,
  data: Object.fromEntries(Object.entries(stringData(secret)).map(([k, v]) => [k, Buffer.from(v).toString("base64")]))
})

for (const autoMtls of [true, false]) {
  describe(`redis plugin (Go, AutoMTLS ${autoMtls ? "on" : "off"})`, () => {
    const options = launchOptions({ autoMtls })

    test("handshakes and describes itself", () =>
      withPlugin(builtPlugin("redis"), options, (plugin) =>
        Effect.sync(() => {
          expect(plugin.handshake).toMatchObject({ protocol: "grpc", appVersion: 1, network: "unix" })
          expect(plugin.handshake.certificate !== undefined).toBe(autoMtls)
          const d = plugin.description
          expect([d.name, d.category]).toEqual(["redis", "cache"])
          expect(d.types.map((t) => [t.type, t.versions, t.defaultVersion])).toEqual([["redis", ["7.2", "7.4", "8.0"], "8.0"]])
          expect(d.parameters.map((p) => [p.name, p.defaultValue, p.secret])).toEqual([
            ["REDIS_PASSWORD", "", true],
            ["REDIS_PORT", "6379", false],
            ["REDIS_MAXMEMORY", "64mb", false]
          ])
          expect(d.dependents.map((x) => [x.id, x.kind, x.watched, x.owned, x.created, x.updated, x.checkedForReadiness, x.binding]))
            .toEqual([
              ["config-secret", "Secret", true, true, true, true, false, true],
              ["deployment", "Deployment", true, true, true, true, true, false],
              ["service", "Service", true, true, true, true, false, false]
            ])
        })))

    test("checks validity with the SDK's messages", () =>
      withPlugin(builtPlugin("redis"), options, ({ connection }) =>
        Effect.gen(function*() {
          expect(yield* connection.checkValidity(capability())).toEqual([])
          expect(yield* connection.checkValidity(capability([], ""))).toEqual([])
          expect(yield* connection.checkValidity(capability([], "6.0"))).toEqual([
            "version \"6.0\" of redis is not supported by plugin redis; supported versions: 7.2, 7.4, 8.0"
          ])
          expect(yield* connection.checkValidity(capability([], "7.4", { category: "database", type: "valkey" }))).toEqual([
            "category \"database\" is not served by plugin redis (it serves \"cache\")",
            "type \"valkey\" is not served by plugin redis; supported types: redis"
          ])
          expect(yield* connection.checkValidity(capability([{ name: "REDIS_PORT", value: "0" }]))).toEqual([
            "parameter REDIS_PORT must be an integer from 1024 to 65535 (plugin redis)"
          ])
          const garbage = yield* Effect.flip(connection.checkValidity({ metadata: { name: "x" }, spec: "nope" }))
          expect(garbage._tag).toBe("PluginCallFailed")
          expect(garbage.message).toContain("the Capability could not be read")
        })))

    test("builds a Secret, a Deployment and a Service; the password is generated, and never put in the Deployment", () =>
      withPlugin(builtPlugin("redis"), options, ({ connection }) =>
        Effect.gen(function*() {
          const [secret, deployment, service] = yield* connection.buildDependents(capability([], ""))
          expect([secret?.id, deployment?.id, service?.id]).toEqual(["config-secret", "deployment", "service"])
          const settings = stringData(secret?.object)
          expect(settings.REDIS_PASSWORD).toMatch(/^[A-Za-z0-9_-]{24}$/)
          const uri = `redis://:${settings.REDIS_PASSWORD}@sessions.shop.svc:6379/0`
          expect(settings).toEqual({
            REDIS_HOST: "sessions.shop.svc",
            REDIS_PORT: "6379",
            REDIS_PASSWORD: settings.REDIS_PASSWORD ?? "",
            REDIS_URL: uri,
            // The Service Binding spec's well-known entries, from the Go SDK's BindingEntries.
            type: "redis",
            provider: "halkyon",
            host: "sessions.shop.svc",
            port: "6379",
            password: settings.REDIS_PASSWORD ?? "",
            uri
          })
          const wellKnown = Object.fromEntries(Object.entries(settings).filter(([k]) => !k.startsWith("REDIS_")))
          expect(checkBindingEntries(wellKnown)).toEqual([])
          const container =
            (deployment?.object as { spec: { template: { spec: { containers: Array<Record<string, unknown>> } } } }).spec.template.spec
              .containers[0]
          expect(container?.image).toBe("redis:8.0")
          expect(container?.args).toEqual(["--port", "6379", "--requirepass", "$(REDIS_PASSWORD)", "--maxmemory", "64mb"])
          expect(JSON.stringify(deployment?.object)).not.toContain(settings.REDIS_PASSWORD ?? "")
          expect(service?.object).toMatchObject({
            kind: "Service",
            metadata: { name: "sessions", namespace: "shop" },
            spec: { ports: [{ name: "redis", port: 6379, targetPort: 6379 }] }
          })
        })))

    test("updates: a generated password is kept; the version and port follow the Capability", () =>
      withPlugin(builtPlugin("redis"), options, ({ connection }) =>
        Effect.gen(function*() {
          const [secret, deployment, service] = yield* connection.buildDependents(capability())
          const existing = stored(secret?.object ?? {})
          expect(yield* connection.updateDependent("config-secret", capability(), existing)).toEqual({
            needsUpdate: false,
            updated: undefined,
            bytes: 0
          })
          const moved = yield* connection.updateDependent("config-secret", capability([{ name: "REDIS_PORT", value: "6380" }]), existing)
          expect(moved.needsUpdate).toBe(true)
          expect(stringData(moved.updated).REDIS_PASSWORD).toBe(stringData(secret?.object).REDIS_PASSWORD ?? "")
          expect(stringData(moved.updated).REDIS_PORT).toBe("6380")
          expect(stringData(moved.updated).port).toBe("6380")
          // A Secret from before the well-known entries gets them, keeping its generated password.
          const legacy = stored({
            ...(secret?.object ?? {}),
            stringData: Object.fromEntries(Object.entries(stringData(secret?.object)).filter(([k]) => k.startsWith("REDIS_")))
          })
          const upgradedSecret = yield* connection.updateDependent("config-secret", capability(), legacy)
          expect(upgradedSecret.needsUpdate).toBe(true)
          expect(stringData(upgradedSecret.updated)).toEqual(stringData(secret?.object))
          expect((yield* connection.updateDependent("deployment", capability(), deployment?.object)).needsUpdate).toBe(false)
          const upgraded = yield* connection.updateDependent("deployment", capability([], "8.0"), deployment?.object)
          expect(JSON.stringify(upgraded.updated)).toContain("\"image\":\"redis:8.0\"")
          expect((yield* connection.updateDependent("service", capability(), service?.object)).needsUpdate).toBe(false)
          const named = { ...service?.object, spec: { ports: [{ name: "redis", port: 6379, targetPort: "redis" }] } }
          expect((yield* connection.updateDependent("service", capability(), named)).needsUpdate).toBe(true)
          const unknown = yield* Effect.flip(connection.updateDependent("statefulset", capability(), {}))
          expect(unknown.message).toContain("plugin redis has no dependent \"statefulset\"; it has: config-secret, deployment, service")
        })))

    test("evaluates readiness from the Deployment's status", () =>
      withPlugin(builtPlugin("redis"), options, ({ connection }) =>
        Effect.gen(function*() {
          const deployment = (status: Record<string, number>) => ({
            metadata: { name: "sessions", generation: 2 },
            spec: { replicas: 1 },
            status
          })
          const conditions = yield* connection.evaluateConditions(capability(), [
            { id: "config-secret", object: {} },
            { id: "deployment", object: deployment({ observedGeneration: 1, availableReplicas: 1 }) },
            { id: "deployment", object: deployment({ observedGeneration: 2, availableReplicas: 0 }) },
            { id: "deployment", object: deployment({ observedGeneration: 2, availableReplicas: 1 }) },
            { id: "deployment", error: { reason: "NotFound", message: "not found", code: 404 } },
            { id: "deployment", error: { reason: "Forbidden", message: "deployments is forbidden", code: 403 } }
          ])
          expect(conditions.map((c) => [c.state, c.reason, c.message])).toEqual([
            ["pending", "RolloutPending", "waiting for the Deployment controller to roll out generation 2"],
            ["pending", "ReplicasNotAvailable", "0/1 replicas available"],
            ["ready", "ReplicasAvailable", "1/1 replicas available"],
            ["pending", "NotFound", "Deployment for sessions does not exist yet"],
            ["failed", "Forbidden", "deployments is forbidden"]
          ])
        })))
  })
}

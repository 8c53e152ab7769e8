/**
 * A ServiceBinding whose workload kind changes, against the in-memory API
 * server: the kinds it projected into are recorded on it (an annotation)
 * before the first write to each; the old kind's workloads are unbound, then
 * pruned from the record; deleting the binding unbinds every recorded kind.
 * A garbled record, or a recorded kind the controller may not list, does not
 * stop the reconcile.
 */
import { describe, expect, test } from "bun:test"
import { Effect } from "effect"
import { startBindingController } from "../../src/binding/BindingController.ts"
import { ProjectedKindsAnnotation, projectedKinds, projectedKindsValue } from "../../src/binding/Workloads.ts"
import { KubeApiError } from "../../src/kube/Errors.ts"
import type { KubeObject } from "../../src/kube/KubeObject.ts"
import { type FakeKube, makeFakeKube } from "../support/FakeKube.ts"
import { runWithFakeKube, untilTurns } from "../support/fake-run.ts"

const until = (condition: () => boolean | Promise<boolean>, what: string) => untilTurns(condition, what)

const run = runWithFakeKube

const bindingRef = { apiVersion: "servicebinding.io/v1", kind: "ServiceBinding", namespace: "shop", name: "db" }
const binding = (workload: { apiVersion: string; kind: string; name: string }, annotations?: Record<string, string>) => ({
  ...bindingRef,
  metadata: { name: "db", namespace: "shop", ...(annotations === undefined ? {} : { annotations }) },
  spec: { service: { apiVersion: "v1", kind: "Secret", name: "db-config" }, workload, env: [{ name: "DATABASE_URL", key: "uri" }] }
})
const secret = {
  apiVersion: "v1",
  kind: "Secret",
  metadata: { name: "db-config", namespace: "shop" },
  data: { type: Buffer.from("postgresql").toString("base64"), uri: Buffer.from("postgresql://db").toString("base64") }
}
const template = {
  metadata: { labels: { app: "web" } },
  spec: { containers: [{ name: "app", image: "web:1", env: [{ name: "MODE", value: "prod" }] }] }
}
const workload = (kind: "Deployment" | "StatefulSet", name: string) => ({
  apiVersion: "apps/v1",
  kind,
  metadata: { name, namespace: "shop" },
  spec: { selector: { matchLabels: { app: "web" } }, template }
})
const stored = (kube: FakeKube, kind: string, name: string) => kube.objects("apps/v1", kind, "shop").find((o) => o.metadata.name === name)
const templateOf = (o: KubeObject | undefined) => (o as { spec?: { template?: unknown } } | undefined)?.spec?.template
const projected = (o: KubeObject | undefined) => JSON.stringify(templateOf(o)).includes("svcb-db")
/** Unbound: nothing projected, and no field left to the binding's manager (the in-memory server's lists are atomic, so
 * what the empty apply leaves beside that is the real API server's business, checked in test/e2e). */
const unbound = (o: KubeObject | undefined) =>
  o !== undefined && !projected(o) &&
  !(o.metadata.managedFields ?? []).some((m) =>
    m.manager === "halkyon-binding.db" && Object.keys((m as { fieldsV1?: object }).fieldsV1 ?? {}).length > 0
  )
const sbOf = (kube: FakeKube) => kube.objects("servicebinding.io/v1", "ServiceBinding", "shop").find((b) => b.metadata.name === "db")
const readyOf = (kube: FakeKube) =>
  (sbOf(kube) as { status?: { conditions?: ReadonlyArray<{ type: string; status: string; reason: string }> } } | undefined)?.status
    ?.conditions?.find((c) => c.type === "Ready")
const start = startBindingController({ namespace: undefined, concurrency: 2, shutdownTimeoutMs: 1_000 })

describe("the record of the kinds a binding projected into", () => {
  test("decoded and bounded: a garbled, oversized or odd value is no kind at all; written sorted, each once", () => {
    expect(projectedKinds("[\"apps/v1/StatefulSet\",\"v1/Pod\",\"example.com/v1beta1/Batch\"]")).toEqual([
      { apiVersion: "apps/v1", kind: "StatefulSet" },
      { apiVersion: "v1", kind: "Pod" },
      { apiVersion: "example.com/v1beta1", kind: "Batch" }
    ])
    for (const value of [
      undefined,
      "",
      "not json",
      "{}",
      "\"apps/v1/Deployment\"",
      "[1]",
      "[\"Deployment\"]",
      "[\"apps/v1/\"]",
      "[\"../x/y/Z\"]"
    ]) {
      expect(projectedKinds(value)).toEqual([])
    }
    expect(projectedKinds(JSON.stringify(Array.from({ length: 17 }, (_, i) => `apps/v1/K${i}`)))).toEqual([])
    expect(projectedKindsValue([
      { apiVersion: "apps/v1", kind: "StatefulSet" },
      { apiVersion: "apps/v1", kind: "Deployment" },
      { apiVersion: "apps/v1", kind: "StatefulSet" }
    ])).toBe("[\"apps/v1/Deployment\",\"apps/v1/StatefulSet\"]")
  })
})

describe("a binding whose workload kind changes", () => {
  test("Deployment x to StatefulSet y: x is back to what it was, y is projected; deleting the binding unbinds y", () => {
    const kube = makeFakeKube()
    const logs: Array<string> = []
    return run(
      kube,
      logs,
      Effect.gen(function*() {
        yield* kube.client.create(secret)
        yield* kube.client.create(workload("Deployment", "x"))
        yield* kube.client.create(workload("StatefulSet", "y"))
        yield* kube.client.create(binding({ apiVersion: "apps/v1", kind: "Deployment", name: "x" }))
        yield* start
        yield* until(() => readyOf(kube)?.status === "True" && projected(stored(kube, "Deployment", "x")), "x projected")
        expect(sbOf(kube)?.metadata.annotations?.[ProjectedKindsAnnotation]).toBe("[\"apps/v1/Deployment\"]")
        // Recorded (with the finalizer, in one patch) before the first write to the Deployment.
        const first = kube.requests.findIndex((r) => r.verb === "apply" && r.kind === "Deployment")
        const recordedAt = kube.requests.findIndex((r) => r.verb === "mergePatch" && r.kind === "ServiceBinding")
        expect(recordedAt).toBeGreaterThanOrEqual(0)
        expect(recordedAt).toBeLessThan(first)

        const sent = kube.requests.length
        yield* kube.client.mergePatch(bindingRef, { spec: { workload: { kind: "StatefulSet", name: "y" } } }, "kubectl")
        yield* until(
          () =>
            projected(stored(kube, "StatefulSet", "y")) && !projected(stored(kube, "Deployment", "x")) &&
            sbOf(kube)?.metadata.annotations?.[ProjectedKindsAnnotation] === "[\"apps/v1/StatefulSet\"]",
          "y projected, x unbound"
        )
        yield* until(() => readyOf(kube)?.status === "True", "Ready again")
        expect(unbound(stored(kube, "Deployment", "x"))).toBe(true)
        const after = kube.requests.slice(sent)
        // The old kind unbound, then the record rewritten once (pruned, the new kind added), then the new kind written.
        const unboundAt = after.findIndex((r) => r.verb === "apply" && r.kind === "Deployment")
        const records = after.flatMap((
          r,
          i
        ) => (r.verb === "mergePatch" && r.kind === "ServiceBinding" && r.fieldManager === "halkyon-binding" ? [i] : []))
        const written = after.findIndex((r) => r.verb === "apply" && r.kind === "StatefulSet")
        expect(records).toHaveLength(1)
        expect(unboundAt).toBeLessThan(records[0] ?? -1)
        expect(records[0]).toBeLessThan(written)

        yield* kube.client.delete(bindingRef)
        yield* until(() => sbOf(kube) === undefined, "the binding gone")
        expect(unbound(stored(kube, "StatefulSet", "y"))).toBe(true)
      })
    )
  })

  test("deleted before the old kind was unbound (the controller away): both kinds are unbound", () => {
    const kube = makeFakeKube()
    const logs: Array<string> = []
    return run(
      kube,
      logs,
      Effect.gen(function*() {
        yield* kube.client.create(secret)
        yield* kube.client.create(workload("Deployment", "x"))
        yield* kube.client.create(workload("StatefulSet", "y"))
        // What an earlier run left: both kinds recorded and projected, the spec now naming the StatefulSet.
        yield* kube.client.create(binding({ apiVersion: "apps/v1", kind: "Deployment", name: "x" }))
        yield* Effect.scoped(Effect.gen(function*() {
          yield* start
          yield* until(() => readyOf(kube)?.status === "True" && projected(stored(kube, "Deployment", "x")), "x projected")
        }))
        yield* kube.client.mergePatch(bindingRef, {
          metadata: { annotations: { [ProjectedKindsAnnotation]: "[\"apps/v1/Deployment\",\"apps/v1/StatefulSet\"]" } },
          spec: { workload: { kind: "StatefulSet", name: "y" } }
        }, "kubectl")
        yield* kube.client.delete(bindingRef)
        yield* start
        yield* until(() => sbOf(kube) === undefined, "the binding gone")
        expect(unbound(stored(kube, "Deployment", "x"))).toBe(true)
        expect(unbound(stored(kube, "StatefulSet", "y"))).toBe(true)
      })
    )
  })

  test("a garbled record, or a recorded kind it may not list, does not stop the binding; the record is rewritten", async () => {
    for (const value of ["{not json", "[\"example.com/v1/Forbidden\",\"apps/v1/Deployment\"]"]) {
      const kube = makeFakeKube()
      const logs: Array<string> = []
      kube.intercept((r) =>
        r.kind === "Forbidden"
          ? new KubeApiError({ code: 403, reason: "Forbidden", detail: "no", request: `${r.verb} ${r.kind}` })
          : undefined
      )
      await run(
        kube,
        logs,
        Effect.gen(function*() {
          yield* kube.client.create(secret)
          yield* kube.client.create(workload("Deployment", "x"))
          yield* kube.client.create(
            binding({ apiVersion: "apps/v1", kind: "Deployment", name: "x" }, { [ProjectedKindsAnnotation]: value })
          )
          yield* start
          yield* until(() => readyOf(kube)?.status === "True" && projected(stored(kube, "Deployment", "x")), "x projected")
          expect(sbOf(kube)?.metadata.annotations?.[ProjectedKindsAnnotation]).toBe("[\"apps/v1/Deployment\"]")
          if (value.includes("Forbidden")) {
            expect(logs.some((l) => l.includes("the Forbidden (example.com/v1) it projected into before was not unbound"))).toBe(true)
          }
        })
      )
    }
  })
})

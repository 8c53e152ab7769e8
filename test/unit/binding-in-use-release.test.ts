/**
 * With the ServiceBinding controller off, the operator releases that
 * controller's in-use finalizer from a Capability being deleted (InUseRelease),
 * against the in-memory API server: only from one being deleted, only that
 * finalizer, logged, and retried when the server is away.
 */
import { describe, expect, test } from "bun:test"
import { Effect } from "effect"
import { TestClock } from "effect/testing"
import { ApiVersion, DependentsFinalizer, InUseFinalizer } from "../../src/api/Capability.ts"
import { releaseInUse } from "../../src/binding/InUseRelease.ts"
import { KubeApiError } from "../../src/kube/Errors.ts"
import { type FakeKube, makeFakeKube } from "../support/FakeKube.ts"
import { runWithFakeKube, untilTurns } from "../support/fake-run.ts"

const ref = (name: string) => ({ apiVersion: ApiVersion, kind: "Capability", namespace: "shop", name })
const capability = (name: string) => ({
  ...ref(name),
  metadata: { name, namespace: "shop", finalizers: [DependentsFinalizer, InUseFinalizer] },
  spec: { category: "database", type: "postgres", version: "16" }
})
const finalizers = (kube: FakeKube, name: string) =>
  kube.objects(ApiVersion, "Capability", "shop").find((c) => c.metadata.name === name)?.metadata.finalizers

const until = (condition: () => boolean | Promise<boolean>, what: string) => untilTurns(condition, what, 10_000)

const run = runWithFakeKube

describe("releaseInUse (--service-binding=false)", () => {
  test("removes the in-use finalizer from a Capability being deleted, and only that, and logs it; one not being deleted keeps it", () => {
    const kube = makeFakeKube()
    const logs: Array<string> = []
    return run(
      kube,
      logs,
      Effect.gen(function*() {
        yield* kube.client.create(capability("held"))
        yield* kube.client.create(capability("kept"))
        yield* kube.client.delete(ref("held"))
        yield* releaseInUse({ namespace: "shop" }).pipe(Effect.forkScoped)
        yield* until(() => !(finalizers(kube, "held") ?? []).includes(InUseFinalizer), "the release")
        // The operator's own finalizer stays: the Reconciler removes the dependents, then it.
        expect(finalizers(kube, "held")).toEqual([DependentsFinalizer])
        expect(finalizers(kube, "kept")).toEqual([DependentsFinalizer, InUseFinalizer])
        expect(logs.some((l) => l.startsWith(`capability shop/held: removed finalizer ${InUseFinalizer}`))).toBe(true)
        // A Capability deleted later, while it runs, is released too (it watches).
        yield* kube.client.delete(ref("kept"))
        yield* until(() => !(finalizers(kube, "kept") ?? []).includes(InUseFinalizer), "the second release")
        // One patch each, under the binding controller's field manager.
        expect(kube.requests.filter((r) => r.verb === "mergePatch").map((r) => r.fieldManager)).toEqual([
          "halkyon-binding",
          "halkyon-binding"
        ])
      })
    )
  })

  test("a server away is retried with backoff", () => {
    const kube = makeFakeKube()
    const logs: Array<string> = []
    return run(
      kube,
      logs,
      Effect.gen(function*() {
        yield* kube.client.create(capability("held"))
        yield* kube.client.delete(ref("held"))
        const away = new KubeApiError({ code: 503, reason: "ServiceUnavailable", detail: "etcd", request: "patch" })
        const stop = kube.intercept((r) => (r.verb === "mergePatch" ? away : undefined))
        yield* releaseInUse({ namespace: "shop" }).pipe(Effect.forkScoped)
        yield* until(() => kube.requests.some((r) => r.verb === "mergePatch"), "a first try")
        stop()
        yield* TestClock.adjust(200)
        yield* until(() => !(finalizers(kube, "held") ?? []).includes(InUseFinalizer), "the release, retried")
        expect(kube.requests.filter((r) => r.verb === "mergePatch").length).toBe(2)
      })
    )
  })
})

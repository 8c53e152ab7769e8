/**
 * The ServiceBinding controller keeping a Job binding's MutatingAdmissionPolicy,
 * against the in-memory API server: applied (policy, then binding) under its
 * own field manager with the binding Ready, removed when the binding goes
 * (its finalizer's path); and where the API server does not serve such
 * policies (404) or it may not keep them (403, `--bind-jobs` not applied),
 * no policy: ProjectionFailed saying what to do, logged once for all
 * bindings.
 */
import { describe, expect, test } from "bun:test"
import { Effect } from "effect"
import { startBindingController } from "../../src/binding/BindingController.ts"
import { MutatingApiVersion, MutatingBindingKind, MutatingPolicyKind, noPolicyAdvice } from "../../src/binding/JobPolicy.ts"
import { KubeApiError } from "../../src/kube/Errors.ts"
import { type FakeKube, makeFakeKube } from "../support/FakeKube.ts"
import { runWithFakeKube, untilTurns } from "../support/fake-run.ts"

const until = (condition: () => boolean | Promise<boolean>, what: string) => untilTurns(condition, what)

const run = runWithFakeKube

const bindingRef = (name: string) => ({ apiVersion: "servicebinding.io/v1", kind: "ServiceBinding", namespace: "shop", name })
const jobBinding = (name: string) => ({
  ...bindingRef(name),
  metadata: { name, namespace: "shop" },
  spec: {
    service: { apiVersion: "v1", kind: "Secret", name: "db-config" },
    workload: { apiVersion: "batch/v1", kind: "Job", name: "migrate" },
    env: [{ name: "DATABASE_URL", key: "uri" }]
  }
})
const secret = {
  apiVersion: "v1",
  kind: "Secret",
  metadata: { name: "db-config", namespace: "shop" },
  data: { type: Buffer.from("postgresql").toString("base64"), uri: Buffer.from("postgresql://db").toString("base64") }
}
const readyOf = (kube: FakeKube, name: string) =>
  (kube.objects("servicebinding.io/v1", "ServiceBinding", "shop").find((b) => b.metadata.name === name) as
    | { status?: { conditions?: ReadonlyArray<{ type: string; status: string; reason: string; message: string }> } }
    | undefined)?.status?.conditions?.find((c) => c.type === "Ready")
const fake = () => makeFakeKube({ clusterScoped: [MutatingPolicyKind, MutatingBindingKind] })
const start = startBindingController({ namespace: undefined, concurrency: 2, shutdownTimeoutMs: 1_000 })

describe("a Job binding's MutatingAdmissionPolicy, kept by the controller", () => {
  test("applied with its binding under the controller's field manager, Ready; removed on the binding's deletion", () => {
    const kube = fake()
    const logs: Array<string> = []
    return run(
      kube,
      logs,
      Effect.gen(function*() {
        yield* kube.client.create(secret)
        yield* kube.client.create(jobBinding("db"))
        yield* start
        yield* until(() => readyOf(kube, "db")?.status === "True", "Ready")
        expect(readyOf(kube, "db")?.message).toBe("Job migrate is projected as created, by MutatingAdmissionPolicy halkyon-binding.shop.db")
        expect(kube.objects(MutatingApiVersion, MutatingPolicyKind).map((p) => p.metadata.name)).toEqual(["halkyon-binding.shop.db"])
        expect(kube.objects(MutatingApiVersion, MutatingBindingKind).map((p) => p.metadata.name)).toEqual(["halkyon-binding.shop.db"])
        const applies = kube.requests.filter((r) => r.verb === "apply" && r.kind.startsWith("Mutating"))
        expect(applies.slice(0, 2).map((r) => `${r.kind} ${r.fieldManager}`)).toEqual([
          "MutatingAdmissionPolicy halkyon-service-binding",
          "MutatingAdmissionPolicyBinding halkyon-service-binding"
        ])
        yield* kube.client.delete(bindingRef("db"))
        yield* until(() => kube.objects("servicebinding.io/v1", "ServiceBinding", "shop").length === 0, "the binding gone")
        expect(kube.objects(MutatingApiVersion, MutatingPolicyKind)).toEqual([])
        expect(kube.objects(MutatingApiVersion, MutatingBindingKind)).toEqual([])
        // Its binding first, so that none points at a removed policy.
        expect(kube.requests.filter((r) => r.verb === "delete" && r.kind.startsWith("Mutating")).map((r) => r.kind)).toEqual([
          MutatingBindingKind,
          MutatingPolicyKind
        ])
        expect(logs).toContain("servicebinding shop/db: MutatingAdmissionPolicy halkyon-binding.shop.db removed")
      })
    )
  })

  for (const code of [403, 404]) {
    test(`${code}: no policy, ProjectionFailed while the Job does not exist yet, saying what to do; logged once for all bindings`, () => {
      const kube = fake()
      const logs: Array<string> = []
      kube.intercept((r) =>
        r.kind.startsWith("Mutating")
          ? new KubeApiError({ code, reason: code === 403 ? "Forbidden" : "NotFound", detail: "no", request: `${r.verb} ${r.kind}` })
          : undefined
      )
      return run(
        kube,
        logs,
        Effect.gen(function*() {
          yield* kube.client.create(secret)
          yield* kube.client.create(jobBinding("one"))
          yield* kube.client.create(jobBinding("two"))
          yield* start
          yield* until(
            () => readyOf(kube, "one")?.reason === "ProjectionFailed" && readyOf(kube, "two")?.reason === "ProjectionFailed",
            "both reported"
          )
          expect(readyOf(kube, "one")?.message).toBe(`Job migrate will not be projected as it is created: ${noPolicyAdvice(code)}`)
          const warnings = logs.filter((l) => l.includes("may not keep MutatingAdmissionPolicies"))
          expect(warnings).toHaveLength(1)
          expect(warnings[0]).toContain(`reports ProjectionFailed; ${noPolicyAdvice(code)}`)
          expect(kube.objects(MutatingApiVersion, MutatingPolicyKind)).toEqual([])
        })
      )
    })
  }

  test("refused as invalid (422): ProjectionFailed with the server's verdict, not the expression it quotes, and not retried as an error", () => {
    const kube = fake()
    const logs: Array<string> = []
    kube.intercept((r) =>
      r.kind === MutatingPolicyKind && r.verb === "apply"
        ? new KubeApiError({
          code: 422,
          reason: "Invalid",
          detail: `spec.mutations[0].jsonPatch.expression: Invalid value: "${"x".repeat(5_000)}": compilation failed: ERROR: ` +
            "<input>:-1:0: expression code point size exceeds limit: size: 104830, limit 100000",
          request: "PATCH mutatingadmissionpolicies"
        })
        : undefined
    )
    return run(
      kube,
      logs,
      Effect.gen(function*() {
        yield* kube.client.create(secret)
        yield* kube.client.create(jobBinding("long"))
        yield* start
        yield* until(() => readyOf(kube, "long")?.reason === "ProjectionFailed", "reported")
        expect(readyOf(kube, "long")?.message).toBe(
          "the API server refused the MutatingAdmissionPolicy that would project this binding into Jobs as they are created: " +
            "compilation failed: ERROR: <input>:-1:0: expression code point size exceeds limit: size: 104830, limit 100000"
        )
        expect(kube.objects(MutatingApiVersion, MutatingBindingKind)).toEqual([])
      })
    )
  })
})

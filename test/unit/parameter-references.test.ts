/**
 * Parameters given by reference (`valueFrom`), against the in-memory API
 * server: the plugin sees an ordinary `{name, value}`; a missing object or
 * key is ParameterReferenceNotFound naming the parameter, object and key and
 * is reconciled again when the object appears; a change of a referenced
 * Secret reaches the plugin through the controller's watch; a value a
 * plugin echoes never reaches the status, an Event or the log. Below: the
 * schema's rules (the decoder and the CRD say the same), and what the
 * references' index keeps.
 */
import { describe, expect, test } from "bun:test"
import { Context, Effect, Exit, Layer, Logger, Schema, type Scope } from "effect"
import { TestClock } from "effect/testing"
import { ApiVersion, Capability, type CapabilityStatus } from "../../src/api/Capability.ts"
import { capabilityCrd } from "../../src/api/Crds.ts"
import { ObjectCache } from "../../src/controller/ObjectCache.ts"
import type { KubeClient } from "../../src/kube/KubeClient.ts"
import type { KubeObject } from "../../src/kube/KubeObject.ts"
import { Metrics } from "../../src/metrics/Metrics.ts"
import type { PluginConnection } from "../../src/plugin-client/PluginClient.ts"
import { make as makeRedactions, Redactions } from "../../src/plugin-host/Redactions.ts"
import { startController } from "../../src/reconciler/CapabilityController.ts"
import {
  make as makeReferences,
  ParameterReferences,
  placeholderOf,
  Redacted,
  withValues
} from "../../src/reconciler/ParameterReferences.ts"
import { PluginIdentity } from "../../src/reconciler/PluginIdentity.ts"
import { Reconciler } from "../../src/reconciler/Reconciler.ts"
import { PluginRegistry } from "../../src/registry/PluginRegistry.ts"
import { type FakeKube, makeFakeKube, withoutImpersonation } from "../support/FakeKube.ts"
import { databaseDescription, type FakePlugin, makeFakePlugin } from "../support/FakePlugin.ts"
import { untilTurns } from "../support/fake-run.ts"

const Password = "correct-horse-battery"
const NewPassword = "staple-9f3a-rotated"
const capabilityRef = { apiVersion: ApiVersion, kind: "Capability", namespace: "shop", name: "db" }
const b64 = (s: string) => Buffer.from(s, "utf8").toString("base64")

const secret = (data: Record<string, string>): KubeObject => ({
  apiVersion: "v1",
  kind: "Secret",
  metadata: { name: "db-credentials", namespace: "shop" },
  data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, b64(v)]))
})

const capability = (parameters: ReadonlyArray<Record<string, unknown>>): KubeObject => ({
  apiVersion: ApiVersion,
  kind: "Capability",
  metadata: { name: "db", namespace: "shop" },
  spec: { category: "database", type: "postgres", parameters }
})

const fromSecret = { name: "DB_PASSWORD", valueFrom: { secretKeyRef: { name: "db-credentials", key: "password" } } }

interface World {
  readonly kube: FakeKube
  readonly plugin: FakePlugin
  /** The Capabilities the plugin was shown (checkValidity's argument). */
  readonly shown: Array<KubeObject>
  readonly reconciler: Reconciler["Service"]
  readonly context: Context.Context<
    Reconciler | ParameterReferences | Redactions | PluginRegistry | ObjectCache | PluginIdentity | KubeClient
  >
  readonly logs: Array<string>
}

const world = Effect.fnUntraced(function*(logs: Array<string>) {
  const kube = makeFakeKube()
  const plugin = makeFakePlugin()
  const shown: Array<KubeObject> = []
  const connection: PluginConnection = {
    ...plugin.connection,
    checkValidity: (c) => Effect.andThen(Effect.sync(() => shown.push(c as KubeObject)), plugin.connection.checkValidity(c))
  }
  const services = Layer.mergeAll(PluginIdentity.layer(withoutImpersonation), PluginRegistry.layer, ObjectCache.layer, Metrics.layer).pipe(
    Layer.provideMerge(kube.layer)
  )
  const context = yield* Layer.build(Reconciler.layer.pipe(Layer.provideMerge(services)))
  yield* Context.get(context, PluginRegistry).register("pg", databaseDescription(), connection)
  const w: World = { kube, plugin, shown, reconciler: Context.get(context, Reconciler), context, logs }
  return w
})

const run = <A, E>(body: (w: World) => Effect.Effect<A, E, Scope.Scope>) => {
  const logs: Array<string> = []
  const logger = Logger.make(({ message }) => void logs.push(JSON.stringify(message)))
  return Effect.runPromise(
    Effect.scoped(Effect.flatMap(world(logs), body)).pipe(Effect.provide(TestClock.layer()), Effect.provide(Logger.layer([logger])))
  )
}

const statusOf = (w: World) => Effect.map(w.kube.client.get(capabilityRef), (o) => (o as { status?: CapabilityStatus }).status)
const readyOf = (w: World) => Effect.map(statusOf(w), (s) => s?.conditions?.find((c) => c.type === "Ready"))
const eventTexts = (w: World) => w.kube.objects("v1", "Event", "shop").map((e) => `${String(e.reason)}: ${String(e.message)}`)
const parametersShown = (w: World) => (w.shown.at(-1)?.spec as { parameters?: unknown } | undefined)?.parameters

/** Everything the operator wrote or said that a person reads: statuses, Events, log lines. */
const everythingSaid = (w: World) => Effect.map(statusOf(w), (status) => [JSON.stringify(status), ...eventTexts(w), ...w.logs].join("\n"))

describe("a parameter by reference", () => {
  test("a secretKeyRef reaches the plugin as an ordinary {name, value}, beside the literal ones", () =>
    run((w) =>
      Effect.gen(function*() {
        yield* w.kube.client.create(secret({ password: Password }))
        yield* w.kube.client.create(capability([{ name: "DB_USER", value: "admin" }, fromSecret]))
        expect(yield* w.reconciler.reconcile("shop/db")).toEqual({})
        expect(parametersShown(w)).toEqual([{ name: "DB_USER", value: "admin" }, { name: "DB_PASSWORD", value: Password }])
        expect((yield* readyOf(w))?.reason).toBe("Ready")
        expect(yield* everythingSaid(w)).not.toContain(Password)
      })
    ))

  test("a configMapKeyRef reads data, or binaryData", () =>
    run((w) =>
      Effect.gen(function*() {
        yield* w.kube.client.create({
          apiVersion: "v1",
          kind: "ConfigMap",
          metadata: { name: "db-settings", namespace: "shop" },
          data: { user: "app" },
          binaryData: { name: b64("orders") }
        })
        yield* w.kube.client.create(capability([
          { name: "DB_USER", valueFrom: { configMapKeyRef: { name: "db-settings", key: "user" } } },
          { name: "DB_NAME", valueFrom: { configMapKeyRef: { name: "db-settings", key: "name" } } }
        ]))
        yield* w.reconciler.reconcile("shop/db")
        expect(parametersShown(w)).toEqual([{ name: "DB_USER", value: "app" }, { name: "DB_NAME", value: "orders" }])
      })
    ))

  test("a missing Secret: Ready=False, ParameterReferenceNotFound naming the parameter, Secret and key; the plugin is not called", () =>
    run((w) =>
      Effect.gen(function*() {
        yield* w.kube.client.create(capability([fromSecret]))
        expect(yield* w.reconciler.reconcile("shop/db")).toEqual({})
        const ready = yield* readyOf(w)
        expect(ready?.status).toBe("False")
        expect(ready?.reason).toBe("ParameterReferenceNotFound")
        expect(ready?.message).toContain("parameter DB_PASSWORD: Secret shop/db-credentials, key password: the Secret does not exist")
        expect(eventTexts(w)).toEqual([`ParameterReferenceNotFound: ${ready?.message}`])
        expect(w.plugin.calls).toEqual([])
      })
    ))

  test("a Secret without the key: ParameterReferenceNotFound naming the key, never another key's value", () =>
    run((w) =>
      Effect.gen(function*() {
        yield* w.kube.client.create(secret({ pass: Password }))
        yield* w.kube.client.create(capability([fromSecret]))
        yield* w.reconciler.reconcile("shop/db")
        const ready = yield* readyOf(w)
        expect(ready?.reason).toBe("ParameterReferenceNotFound")
        expect(ready?.message).toContain("the Secret has no key password")
        expect(yield* everythingSaid(w)).not.toContain(Password)
      })
    ))

  test("a plugin that echoes the value: the status, the Event and the log say [redacted]", () =>
    run((w) =>
      Effect.gen(function*() {
        w.plugin.behaviour.validity = [`parameter DB_PASSWORD "${Password}" is too long`]
        yield* w.kube.client.create(secret({ password: Password }))
        yield* w.kube.client.create(capability([fromSecret]))
        yield* w.reconciler.reconcile("shop/db")
        const ready = yield* readyOf(w)
        expect(ready?.reason).toBe("Invalid")
        expect(ready?.message).toBe(`parameter DB_PASSWORD "${Redacted}" is too long`)
        expect(yield* everythingSaid(w)).not.toContain(Password)
        expect(w.logs.join("\n")).toContain(Redacted)
      })
    ))

  test("a plugin that echoes another Capability's value in this one's message: redacted too", () =>
    run((w) =>
      Effect.gen(function*() {
        yield* w.kube.client.create(secret({ password: Password }))
        yield* w.kube.client.create(capability([fromSecret]))
        yield* w.reconciler.reconcile("shop/db")
        // Another Capability, with no reference of its own, whose plugin quotes the first one's password.
        const other = { ...capability([{ name: "DB_USER", value: "app" }]), metadata: { name: "other", namespace: "shop" } }
        yield* w.kube.client.create(other)
        w.plugin.behaviour.validity = [`parameter DB_PASSWORD "${Password}" is already used by shop/db`]
        yield* w.reconciler.reconcile("shop/other")
        const status = yield* w.kube.client.get({ ...capabilityRef, name: "other" })
        const ready = (status as { status?: CapabilityStatus }).status?.conditions?.find((c) => c.type === "Ready")
        expect(ready?.message).toBe(`parameter DB_PASSWORD "${Redacted}" is already used by shop/db`)
        expect(JSON.stringify(status)).not.toContain(Password)
        expect(w.logs.join("\n")).not.toContain(Password)
      })
    ))

  test("the resolved values go to Redactions (what the plugin host applies to a plugin's output) until no Capability references them", () =>
    run((w) =>
      Effect.gen(function*() {
        const redactions = Context.get(w.context, Redactions)
        const plugin = `plugin line: the password is ${Password}`
        yield* w.kube.client.create(secret({ password: Password }))
        yield* w.kube.client.create(capability([fromSecret]))
        // Before the Capability is reconciled nothing is known to redact.
        expect(redactions.redact(plugin)).toBe(plugin)
        yield* w.reconciler.reconcile("shop/db")
        expect(redactions.redact(plugin)).toBe(`plugin line: the password is ${Redacted}`)
        // The Secret changes: the new value replaces the old one.
        yield* w.kube.client.mergePatch(
          { apiVersion: "v1", kind: "Secret", namespace: "shop", name: "db-credentials" },
          { data: { password: b64(NewPassword) } },
          "kubectl-edit"
        )
        yield* w.reconciler.reconcile("shop/db")
        expect(redactions.redact(`${Password} ${NewPassword}`)).toBe(`${Password} ${Redacted}`)
        expect(redactions.size()).toEqual({ owners: 1, values: 1 })
        // The Capability gives up the reference: nothing is held for it.
        // As the Capability informer would: the reconciler reads the Capability from the cache.
        const edit = (parameters: ReadonlyArray<Record<string, unknown>>) =>
          Effect.map(
            w.kube.client.mergePatch(capabilityRef, { spec: { parameters } }, "kubectl-edit"),
            (o) => void Context.get(w.context, ObjectCache).put(o)
          )
        yield* edit([{ name: "DB_USER", value: "admin" }])
        yield* w.reconciler.reconcile("shop/db")
        expect(redactions.size()).toEqual({ owners: 0, values: 0 })
        // Referenced again, then deleted: dropped too.
        yield* edit([fromSecret])
        yield* w.reconciler.reconcile("shop/db")
        expect(redactions.size()).toEqual({ owners: 1, values: 1 })
        yield* w.kube.client.delete(capabilityRef)
        // Its finalizer holds it, marked for deletion: the informer would show that.
        Context.get(w.context, ObjectCache).put(yield* w.kube.client.get(capabilityRef))
        yield* w.reconciler.reconcile("shop/db")
        expect(redactions.size()).toEqual({ owners: 0, values: 0 })
      })
    ))
})

describe("the controller watches what parameters reference", () => {
  const until = (condition: () => boolean | Promise<boolean>, what: string) => untilTurns(condition, what)
  const started = (w: World) =>
    startController({ namespace: undefined, concurrency: 2, shutdownTimeoutMs: 1_000 }).pipe(Effect.provideContext(w.context))
  const reason = (w: World) => Effect.runPromise(readyOf(w)).then((r) => r?.reason)

  test("a missing Secret created later, then updated: each reaches the plugin without touching the Capability", () =>
    run((w) =>
      Effect.gen(function*() {
        const controller = yield* started(w)
        yield* controller.awaitSynced
        yield* w.kube.client.create(capability([fromSecret]))
        yield* until(async () => (await reason(w)) === "ParameterReferenceNotFound", "ParameterReferenceNotFound")
        yield* w.kube.client.create(secret({ password: Password }))
        yield* until(async () => (await reason(w)) === "Ready", "Ready once the Secret exists")
        expect(parametersShown(w)).toEqual([{ name: "DB_PASSWORD", value: Password }])
        yield* w.kube.client.mergePatch(
          { apiVersion: "v1", kind: "Secret", namespace: "shop", name: "db-credentials" },
          { data: { password: b64(NewPassword) } },
          "kubectl-edit"
        )
        yield* until(() => JSON.stringify(parametersShown(w)).includes(NewPassword), "the new password reaches the plugin")
        // The referenced Secret is the only one whose data is kept.
        const references = Context.get(w.context, ParameterReferences)
        yield* w.kube.client.create({ ...secret({ other: "x" }), metadata: { name: "unrelated", namespace: "shop" } })
        expect(references.size()).toEqual({ referenced: 1, kept: 1 })
        // Deleted: its references are forgotten.
        yield* w.kube.client.delete(capabilityRef)
        yield* until(() => references.size().referenced === 0, "the references forgotten")
        expect(references.size()).toEqual({ referenced: 0, kept: 0 })
        expect(yield* everythingSaid(w).pipe(Effect.orElseSucceed(() => w.logs.join("\n")))).not.toContain(Password)
      })
    ))

  test("a ConfigMap referenced by configMapKeyRef is watched: created later, then changed, each reaches the plugin", () =>
    run((w) =>
      Effect.gen(function*() {
        const settings = (user: string): KubeObject => ({
          apiVersion: "v1",
          kind: "ConfigMap",
          metadata: { name: "db-settings", namespace: "shop" },
          data: { user }
        })
        const controller = yield* started(w)
        yield* controller.awaitSynced
        yield* w.kube.client.create(capability([{ name: "DB_USER", valueFrom: { configMapKeyRef: { name: "db-settings", key: "user" } } }]))
        yield* until(async () => (await reason(w)) === "ParameterReferenceNotFound", "ParameterReferenceNotFound")
        expect((yield* readyOf(w))?.message).toContain(
          "parameter DB_USER: ConfigMap shop/db-settings, key user: the ConfigMap does not exist"
        )
        yield* w.kube.client.create(settings("app"))
        yield* until(async () => (await reason(w)) === "Ready", "Ready once the ConfigMap exists")
        expect(parametersShown(w)).toEqual([{ name: "DB_USER", value: "app" }])
        const reconcilesBefore = w.shown.length
        yield* w.kube.client.mergePatch(
          { apiVersion: "v1", kind: "ConfigMap", namespace: "shop", name: "db-settings" },
          { data: { user: "reporting" } },
          "kubectl-edit"
        )
        yield* until(() => JSON.stringify(parametersShown(w)).includes("reporting"), "the new value reaches the plugin")
        expect(w.shown.length).toBeGreaterThan(reconcilesBefore)
        // Only the referenced ConfigMap is kept; a change of another one reconciles nothing.
        const references = Context.get(w.context, ParameterReferences)
        expect(references.size()).toEqual({ referenced: 1, kept: 1 })
        const shownBefore = w.shown.length
        yield* w.kube.client.create({ ...settings("x"), metadata: { name: "unrelated", namespace: "shop" } })
        expect(references.size()).toEqual({ referenced: 1, kept: 1 })
        expect(w.shown.length).toBe(shownBefore)
      })
    ))
})

describe("the references' index", () => {
  test("a read older than what the watch last showed is not kept; a watch event drops what was kept", () =>
    Effect.runPromise(Effect.gen(function*() {
      const kube = makeFakeKube()
      const references = yield* makeReferences(kube.client, makeRedactions())
      references.markSynced("Secret")
      const created = yield* kube.client.create(secret({ password: Password }))
      const c = Schema.decodeUnknownSync(Capability)(capability([fromSecret]))
      yield* references.resolve("shop/db", capability([fromSecret]), c)
      expect(references.size()).toEqual({ referenced: 1, kept: 1 })
      // The watch shows a newer version: the kept data goes, and the Capability is named.
      const newer = { ...created, metadata: { ...created.metadata, resourceVersion: String(Number(created.metadata.resourceVersion) + 5) } }
      expect(references.changed(newer, false)).toEqual(["shop/db"])
      expect(references.size()).toEqual({ referenced: 1, kept: 0 })
      // The same version again (a relist) is no news.
      expect(references.changed(newer, false)).toEqual([])
      // A read of the older version than the watch showed is used, not kept.
      yield* references.resolve("shop/db", capability([fromSecret]), c)
      expect(references.size()).toEqual({ referenced: 1, kept: 0 })
      // Objects nobody references are not recorded.
      expect(references.changed({ ...created, metadata: { ...created.metadata, name: "other" } }, false)).toEqual([])
    })))

  test("render shows the reference in the value's place", () => {
    const raw = capability([{ name: "DB_USER", value: "admin" }, fromSecret])
    expect((withValues(raw, placeholderOf).spec as { parameters: unknown }).parameters).toEqual([
      { name: "DB_USER", value: "admin" },
      { name: "DB_PASSWORD", value: "<from Secret db-credentials, key password>" }
    ])
  })
})

describe("the schema: value or valueFrom, and one source", () => {
  const decode = Schema.decodeUnknownExit(Capability)
  const spec = (parameter: Record<string, unknown>) => capability([parameter])
  test.each([
    ["value and valueFrom", { name: "P", value: "x", valueFrom: { secretKeyRef: { name: "s", key: "k" } } }, "not both"],
    ["both sources", {
      name: "P",
      valueFrom: { secretKeyRef: { name: "s", key: "k" }, configMapKeyRef: { name: "c", key: "k" } }
    }, "exactly one"],
    ["no source", { name: "P", valueFrom: {} }, "exactly one"],
    ["an empty key", { name: "P", valueFrom: { secretKeyRef: { name: "s", key: "" } } }, "key"]
  ])("%s is refused", (_what, parameter, says) => {
    const exit = decode(spec(parameter))
    expect(Exit.isFailure(exit)).toBe(true)
    if (Exit.isFailure(exit)) expect(String(exit.cause)).toContain(says)
  })
  test("a value alone, a reference alone, or neither is accepted", () => {
    for (const p of [{ name: "P", value: "x" }, fromSecret, { name: "P" }]) expect(Exit.isSuccess(decode(spec(p)))).toBe(true)
  })
  test("the CRD says the same to the API server, in CEL", () => {
    const item = JSON.stringify(capabilityCrd().spec.versions[0]?.schema?.openAPIV3Schema)
    expect(item).toContain(`"x-kubernetes-validations":[{"rule":"!(has(self.value) && has(self.valueFrom))"`)
    expect(item).toContain(`"x-kubernetes-validations":[{"rule":"has(self.secretKeyRef) != has(self.configMapKeyRef)"`)
  })
})

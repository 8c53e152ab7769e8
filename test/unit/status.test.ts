/**
 * The status the reconciler writes, by table: when two statuses count as the
 * same (so nothing is written), and how the Ready condition's transition
 * time is kept or moved.
 */
import { describe, expect, test } from "bun:test"
import type { CapabilityStatus } from "../../src/api/Capability.ts"
import { nextStatus, rollUp, sameStatus } from "../../src/reconciler/Status.ts"

const ready = (status: "True" | "False" | "Unknown", at = "2026-12-01T10:00:00Z") => ({
  type: "Ready",
  status,
  reason: status === "True" ? "Ready" : "DependentsNotReady",
  message: "",
  observedGeneration: 1,
  lastTransitionTime: at
})
const dependent = { id: "statefulset", kind: "StatefulSet", name: "db", ready: false, reason: "RolloutPending", message: "waiting" }
const base: CapabilityStatus = {
  observedGeneration: 1,
  conditions: [ready("False")],
  dependents: [dependent],
  bindingSecret: "db-config",
  plugin: "postgres",
  version: "16"
}

describe("sameStatus", () => {
  const cases: ReadonlyArray<[string, CapabilityStatus | undefined, CapabilityStatus | undefined, boolean]> = [
    ["the very same object", base, base, true],
    ["an equal copy", base, structuredClone(base), true],
    ["keys in another order", base, {
      version: "16",
      plugin: "postgres",
      bindingSecret: "db-config",
      dependents: [{ ...dependent }],
      conditions: [{ ...ready("False") }],
      observedGeneration: 1
    }, true],
    [
      "a key set to undefined counts as absent",
      { ...base, bindingSecret: undefined },
      (({ bindingSecret: _b, ...rest }) => rest)(base),
      true
    ],
    ["no status on either side", undefined, undefined, true],
    ["no status against one", undefined, base, false],
    ["another generation", base, { ...base, observedGeneration: 2 }, false],
    ["a dependent now ready", base, { ...base, dependents: [{ ...dependent, ready: true }] }, false],
    ["one dependent more", base, { ...base, dependents: [dependent, dependent] }, false],
    ["a condition's transition time", base, { ...base, conditions: [ready("False", "2026-12-02T10:00:00Z")] }, false],
    ["a key gone", base, (({ version: _v, ...rest }) => rest)(base), false],
    ["a list against an object", { ...base, dependents: [] }, { ...base, dependents: {} as never }, false],
    ["a number against its text", base, { ...base, observedGeneration: "1" as never }, false]
  ]
  for (const [name, a, b, same] of cases) {
    test(`${name}: ${same ? "same" : "different"}`, () => {
      expect(sameStatus(a, b)).toBe(same)
      expect(sameStatus(b, a)).toBe(same)
    })
  }
})

describe("nextStatus", () => {
  const now = new Date("2026-12-03T12:00:00Z")
  const outcome = {
    ...rollUp([{ ...dependent, failed: false }]),
    dependents: [dependent],
    bindingSecret: "db-config",
    plugin: "postgres",
    version: "16"
  }

  test("the first status starts the Ready condition now", () => {
    const status = nextStatus(undefined, outcome, 1, now)
    expect(status.conditions).toEqual([{
      type: "Ready",
      status: "False",
      reason: "DependentsNotReady",
      message: "StatefulSet db: waiting",
      observedGeneration: 1,
      lastTransitionTime: "2026-12-03T12:00:00Z"
    }])
  })

  test("the same readiness keeps the transition time, so the status compares the same", () => {
    const first = nextStatus(undefined, outcome, 1, now)
    const again = nextStatus(first, outcome, 1, new Date("2026-12-03T13:00:00Z"))
    expect(sameStatus(first, again)).toBe(true)
  })

  test("a change of readiness moves the transition time", () => {
    const first = nextStatus(undefined, outcome, 1, now)
    const later = new Date("2026-12-03T13:00:00Z")
    const done = nextStatus(first, { ...outcome, ...rollUp([{ ...dependent, ready: true, failed: false }]) }, 1, later)
    expect(done.conditions?.[0]).toMatchObject({ status: "True", reason: "Ready", lastTransitionTime: "2026-12-03T13:00:00Z" })
  })

  test("facts a failed reconcile did not reach are kept from the previous status", () => {
    const first = nextStatus(undefined, outcome, 1, now)
    const failed = nextStatus(first, { ready: "Unknown", reason: "PluginUnavailable", message: "down" }, 1, now)
    expect(failed.dependents).toEqual([dependent])
    expect(failed.bindingSecret).toBe("db-config")
    expect(failed.binding).toEqual({ name: "db-config" })
  })

  test("the binding Secret is published as a Provisioned Service's status.binding.name too", () => {
    expect(nextStatus(undefined, outcome, 1, now)).toMatchObject({ bindingSecret: "db-config", binding: { name: "db-config" } })
  })
})

/**
 * The Capability's status as Kubernetes conventions want it, computed from
 * what a reconcile found. Pure: no I/O, so it is tested by table.
 *
 * - `conditions` holds one `Ready` condition (True/False/Unknown) whose
 *   lastTransitionTime changes only when its status does;
 * - `dependents` says how each dependent is doing;
 * - the status is written only when something other than time changed.
 */
import type { CapabilityStatus, Condition, DependentStatus, InventoryEntry } from "../api/Capability.ts"
import { kubeTime } from "../kube/Time.ts"

export type ReadyState = "True" | "False" | "Unknown"

export interface Outcome {
  readonly ready: ReadyState
  readonly reason: string
  readonly message: string
  readonly dependents?: ReadonlyArray<DependentStatus> | undefined
  readonly bindingSecret?: string | undefined
  readonly plugin?: string | undefined
  readonly version?: string | undefined
  /** What the operator applied and has not removed; kept from the previous status when undefined. */
  readonly inventory?: ReadonlyArray<InventoryEntry> | undefined
}

const ReadyType = "Ready"

export const readyCondition = (status: CapabilityStatus | undefined): Condition | undefined =>
  status?.conditions?.find((c) => c.type === ReadyType)

/** The status to write for `outcome`, keeping what the previous status says about unchanged facts. */
export const nextStatus = (
  previous: CapabilityStatus | undefined,
  outcome: Outcome,
  generation: number | undefined,
  now: Date
): CapabilityStatus => {
  const before = readyCondition(previous)
  const transitioned = before === undefined || before.status !== outcome.ready
  const ready: Condition = {
    type: ReadyType,
    status: outcome.ready,
    reason: outcome.reason,
    message: outcome.message,
    ...(generation === undefined ? {} : { observedGeneration: generation }),
    lastTransitionTime: transitioned ? kubeTime(now) : before.lastTransitionTime
  }
  return {
    ...(generation === undefined ? {} : { observedGeneration: generation }),
    conditions: [...(previous?.conditions ?? []).filter((c) => c.type !== ReadyType), ready],
    // Facts a failed reconcile did not get to are kept from the previous status.
    ...(outcome.dependents === undefined
      ? previous?.dependents === undefined ? {} : { dependents: previous.dependents }
      : { dependents: outcome.dependents }),
    ...(outcome.bindingSecret === undefined
      ? previous?.bindingSecret === undefined ? {} : { bindingSecret: previous.bindingSecret }
      : { bindingSecret: outcome.bindingSecret }),
    // The Provisioned Service duck type (servicebinding.io): the same Secret, where a ServiceBinding looks for it.
    ...(outcome.bindingSecret === undefined
      ? previous?.binding === undefined ? {} : { binding: previous.binding }
      : { binding: { name: outcome.bindingSecret } }),
    ...(outcome.inventory === undefined
      ? previous?.inventory === undefined ? {} : { inventory: previous.inventory }
      : outcome.inventory.length === 0
      ? {}
      : { inventory: outcome.inventory }),
    ...(outcome.plugin === undefined ? {} : { plugin: outcome.plugin }),
    ...(outcome.version === undefined ? {} : { version: outcome.version })
  }
}

/** The outcome with `redact` applied to every message a plugin may have written (a resolved parameter's value, echoed). */
export const redactOutcome = <O extends Outcome>(outcome: O, redact: (text: string) => string): O => ({
  ...outcome,
  message: redact(outcome.message),
  ...(outcome.dependents === undefined
    ? {}
    : { dependents: outcome.dependents.map((d) => ({ ...d, reason: redact(d.reason), message: redact(d.message) })) })
})

/**
 * Compares two statuses as their JSON would: key order never forces a write,
 * and a key whose value is undefined counts as absent. (A comparison of
 * key-sorted JSON texts did the same at a few times the cost.)
 */
export const sameStatus = (a: CapabilityStatus | undefined, b: CapabilityStatus | undefined): boolean => sameJson(a, b)

const sameJson = (a: unknown, b: unknown): boolean => {
  if (a === b) return true
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((x, i) => sameJson(x, b[i]))
  }
  const x = a as Record<string, unknown>
  const y = b as Record<string, unknown>
  const keys = Object.keys(x).filter((k) => x[k] !== undefined)
  return keys.length === Object.keys(y).filter((k) => y[k] !== undefined).length && keys.every((k) => sameJson(x[k], y[k]))
}

/** The Ready outcome from the dependents' states: failed beats pending beats ready. */
export const rollUp = (
  dependents: ReadonlyArray<DependentStatus & { readonly failed: boolean }>
): Pick<Outcome, "ready" | "reason" | "message"> => {
  const failed = dependents.filter((d) => d.failed)
  const pending = dependents.filter((d) => !d.ready && !d.failed)
  const describe = (d: DependentStatus) => `${d.kind} ${d.name}: ${d.message || d.reason}`
  if (failed.length > 0) return { ready: "False", reason: "DependentFailed", message: failed.map(describe).join(", ") }
  if (pending.length > 0) return { ready: "False", reason: "DependentsNotReady", message: pending.map(describe).join(", ") }
  return { ready: "True", reason: "Ready", message: `all ${dependents.length} dependents are ready` }
}

/**
 * A plugin connection without a process: a database plugin whose answers a
 * test sets (validity errors, the state it judges its dependents to be in, a
 * call that fails), and which records the calls it gets. Its dependents are
 * a binding Secret (created, not checked) and a StatefulSet (created,
 * updated, watched and checked for readiness), as the bundled plugins build.
 */
import { Effect } from "effect"
import { DeletionPolicy, type DependentInfo, type PluginDescription } from "../../src/gen/halkyon/capability/v1/capability.ts"
import type { PluginCallError } from "../../src/plugin-client/Errors.ts"
import type { BuiltDependent, DependentCondition, PluginConnection } from "../../src/plugin-client/PluginClient.ts"

export type PluginMethod = "checkValidity" | "buildDependents" | "updateDependent" | "evaluateConditions"

export interface PluginBehaviour {
  /** What checkValidity answers: no errors when empty. */
  validity: ReadonlyArray<string>
  /** How evaluateConditions judges the StatefulSet. */
  state: DependentCondition["state"]
  /** A call that fails, and how. */
  failing: { readonly method: PluginMethod; readonly error: PluginCallError } | undefined
  /** The StatefulSet's replicas: a change makes updateDependent ask for an update. */
  replicas: number
  /** A namespace the plugin puts its StatefulSet in (a plugin breaking the rules); the Capability's when undefined. */
  foreignNamespace: string | undefined
}

/** A dependent as Describe declares it: watched, owned and created unless `roles` says otherwise. */
export const dependentInfo = (id: string, apiVersion: string, kind: string, roles: Partial<DependentInfo> = {}): DependentInfo => ({
  id,
  apiVersion,
  kind,
  watched: true,
  owned: true,
  created: true,
  updated: false,
  checkedForReadiness: false,
  binding: false,
  dependsOn: [],
  waitForReady: false,
  deletionPolicy: DeletionPolicy.DELETION_POLICY_DELETE,
  ...roles
})

export const databaseDependents: Array<DependentInfo> = [
  dependentInfo("secret", "v1", "Secret", { binding: true }),
  dependentInfo("statefulset", "apps/v1", "StatefulSet", { updated: true, checkedForReadiness: true })
]

export const databaseDescription = (name = "pg"): PluginDescription => ({
  name,
  refuseUnknownParameters: false,
  category: "database",
  types: [{ type: "postgres", versions: ["15", "16"], defaultVersion: "16" }],
  parameters: [],
  dependents: databaseDependents
})

/** A built object with its size as the plugin would have sent it. */
const sized = (d: { readonly id: string; readonly object: Record<string, unknown> }): BuiltDependent => ({
  ...d,
  bytes: JSON.stringify(d.object).length
})

const Reasons = { ready: "Ready", pending: "RolloutPending", failed: "CrashLoopBackOff" } as const

const nameOf = (capability: unknown) => (capability as { metadata: { name: string } }).metadata.name

export interface FakePlugin {
  readonly connection: PluginConnection
  readonly behaviour: PluginBehaviour
  /** Method names, in the order called. */
  readonly calls: Array<string>
}

export const makeFakePlugin = (initial: Partial<PluginBehaviour> = {}): FakePlugin => {
  const behaviour: PluginBehaviour = {
    validity: [],
    state: "ready",
    failing: undefined,
    replicas: 1,
    foreignNamespace: undefined,
    ...initial
  }
  const calls: Array<string> = []
  const call = <A>(method: PluginMethod, answer: () => A): Effect.Effect<A, PluginCallError> =>
    Effect.suspend(() => {
      calls.push(method)
      return behaviour.failing?.method === method ? Effect.fail(behaviour.failing.error) : Effect.sync(answer)
    })
  const statefulSet = (capability: unknown): Record<string, unknown> => ({
    apiVersion: "apps/v1",
    kind: "StatefulSet",
    metadata: {
      name: nameOf(capability),
      ...(behaviour.foreignNamespace === undefined ? {} : { namespace: behaviour.foreignNamespace })
    },
    spec: { replicas: behaviour.replicas, serviceName: nameOf(capability) }
  })
  const connection: PluginConnection = {
    describe: Effect.succeed(databaseDescription()),
    checkValidity: () => call("checkValidity", () => behaviour.validity),
    buildDependents: (capability) =>
      call("buildDependents", (): ReadonlyArray<BuiltDependent> => [
        sized({
          id: "secret",
          object: { apiVersion: "v1", kind: "Secret", metadata: { name: `${nameOf(capability)}-config` }, stringData: { password: "p" } }
        }),
        sized({ id: "statefulset", object: statefulSet(capability) })
      ]),
    updateDependent: (_id, capability, existing) =>
      call("updateDependent", () => {
        const replicas = (existing as { spec?: { replicas?: number } }).spec?.replicas
        if (replicas === behaviour.replicas) return { needsUpdate: false, updated: undefined, bytes: 0 }
        const updated = statefulSet(capability)
        return { needsUpdate: true, updated, bytes: JSON.stringify(updated).length }
      }),
    evaluateConditions: (_capability, observed) =>
      call("evaluateConditions", () =>
        observed.map((o) => ({
          id: o.id,
          state: behaviour.state,
          reason: Reasons[behaviour.state],
          message: `the StatefulSet is ${behaviour.state}`,
          attributes: {}
        }))),
    ping: Effect.void,
    shutdown: Effect.void
  }
  return { connection, behaviour, calls }
}

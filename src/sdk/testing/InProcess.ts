/**
 * The in-process test harness: a plugin's declaration exercised through the
 * same functions its gRPC service calls (describe, validity check, build,
 * update, conditions), with no process and no gRPC, for fast unit tests.
 * The Capability goes through the same decoding as in a served plugin.
 */
import { type Capability, decodeCapabilityJson } from "../../api/Capability.ts"
import type { PluginDescription } from "../../gen/halkyon/capability/v1/capability.ts"
import {
  buildDependents,
  describe,
  evaluateConditions,
  makeContext,
  type Observation,
  updateDependent,
  validate
} from "../CapabilityService.ts"
import { type Condition, type Context, type ObjectShape, parameterErrors, type PluginDefinition } from "../Plugin.ts"

export type { Observation } from "../CapabilityService.ts"

/** What a test says about the Capability; the rest is filled in. */
export interface CapabilityInput {
  /** Default: "test". */
  readonly name?: string
  /** Default: "default". */
  readonly namespace?: string
  /** Default: the plugin's category. */
  readonly category?: string
  /** Default: the plugin's first type. */
  readonly type?: string
  /** Default: none, so the type's default version. */
  readonly version?: string
  readonly parameters?: Readonly<Record<string, string>>
}

/** A plugin under test, in this process. */
export interface PluginHarness {
  /** What the plugin tells the operator about itself (the Describe call). */
  describe(): PluginDescription
  /** A Capability for this plugin, decoded as a served plugin decodes it. */
  capability(input?: CapabilityInput): Capability
  /** The context the dependents' functions see for `capability`. */
  context(capability: Capability): Context
  /** The user-facing errors of the validity check; empty when valid. */
  validate(capability: Capability): Array<string>
  /**
   * Every dependent the Capability includes, as the operator would receive it, in order, apiVersion
   * and kind filled in; `deletionPolicy` when the plugin decides it per Capability.
   */
  build(capability: Capability): Array<{ readonly id: string; readonly object: ObjectShape; readonly deletionPolicy?: "delete" | "orphan" }>
  /** One built dependent; throws when the plugin has no dependent `id`. */
  buildOne<O extends ObjectShape = ObjectShape>(capability: Capability, id: string): O
  /** The object to apply over `existing`, or undefined when nothing needs to change. */
  update<O extends ObjectShape = ObjectShape>(capability: Capability, id: string, existing: O): O | undefined
  /**
   * The condition of each dependent checked for readiness, by id, from what was
   * observed: `{ object }` as fetched, or `{ error: { reason, message } }`.
   */
  conditions(capability: Capability, observed: Readonly<Record<string, Observation>>): Record<string, Condition>
}

/**
 * Wraps a plugin declaration for unit tests, in this process.
 *
 * @example
 * ```ts
 * import { expect, test } from "bun:test"
 * import { testPlugin } from "@halkyon/sdk/testing"
 * import { plugin } from "./plugin.ts"
 *
 * test("a Service on port 11211", () => {
 *   const t = testPlugin(plugin)
 *   const capability = t.capability({ parameters: { PORT: "11211" } })
 *   expect(t.validate(capability)).toEqual([])
 *   expect(t.buildOne(capability, "service")).toMatchObject({ apiVersion: "v1", kind: "Service" })
 * })
 * ```
 */
export const testPlugin = (plugin: PluginDefinition): PluginHarness => ({
  describe: () => describe(plugin),
  capability: (input = {}) => makeCapability(plugin, input),
  context: (capability) => makeContext(plugin, capability),
  validate: (capability) => validate(plugin, capability, parameterErrors),
  build: (capability) => buildDependents(plugin, makeContext(plugin, capability)),
  buildOne: <O extends ObjectShape>(capability: Capability, id: string) => {
    const found = buildDependents(plugin, makeContext(plugin, capability)).find((d) => d.id === id)
    if (found === undefined) {
      throw new Error(`plugin ${plugin.name} has no dependent "${id}"; it has: ${plugin.dependents.map((d) => d.id).join(", ")}`)
    }
    return found.object as O
  },
  update: <O extends ObjectShape>(capability: Capability, id: string, existing: O) =>
    updateDependent(plugin, id, existing, makeContext(plugin, capability)) as O | undefined,
  conditions: (capability, observed) => {
    const list = Object.entries(observed).map(([id, observation]) => ({ id, observation }))
    return Object.fromEntries(evaluateConditions(plugin, makeContext(plugin, capability), list).map(({ id, condition }) => [id, condition]))
  }
})

/** A Capability for `plugin`, through the Schema a served plugin decodes it with. */
const makeCapability = (plugin: PluginDefinition, input: CapabilityInput): Capability =>
  decodeCapabilityJson(JSON.stringify({
    apiVersion: "halkyon.io/v1beta1",
    kind: "Capability",
    metadata: { name: input.name ?? "test", namespace: input.namespace ?? "default" },
    spec: {
      category: input.category ?? plugin.category,
      type: input.type ?? plugin.types[0]?.type ?? "",
      ...(input.version === undefined ? {} : { version: input.version }),
      ...(input.parameters === undefined ? {} : { parameters: Object.entries(input.parameters).map(([name, value]) => ({ name, value })) })
    }
  }))
